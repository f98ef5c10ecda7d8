"""Video and camera streams: read frames (:mod:`.sources`), track faces across frames
(:mod:`.tracking`), and recognise each track by voting over its frames (:mod:`.stream`).

``faceprint.video.recognize_stream(recognizer, gallery, source, ...)`` is the entry point
(``run_header`` gives a run's first event, ``tracking_recognizer`` a recognizer whose
detector is set up for tracking); the names below load their module on first use, so
importing the package costs nothing.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = [
    "Frame",
    "FrameResult",
    "StreamRecognizer",
    "TrackRecognition",
    "Tracker",
    "open_source",
    "recognize_stream",
    "run_header",
    "tracking_recognizer",
]

_WHERE = {
    "Frame": "sources",
    "open_source": "sources",
    "Tracker": "tracking",
    "FrameResult": "stream",
    "StreamRecognizer": "stream",
    "TrackRecognition": "stream",
    "recognize_stream": "stream",
    "run_header": "stream",
    "tracking_recognizer": "stream",
}

if TYPE_CHECKING:
    from .sources import Frame, open_source
    from .stream import (
        FrameResult,
        StreamRecognizer,
        TrackRecognition,
        recognize_stream,
        run_header,
        tracking_recognizer,
    )
    from .tracking import Tracker


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'faceprint.video' has no attribute {name!r}")
