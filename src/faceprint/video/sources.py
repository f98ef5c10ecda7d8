"""Frames from a video file, a camera, a network stream or the caller's own iterable.

:func:`open_source` turns whatever the user names into a :class:`~.frames.FrameSource`, an
iterable of :class:`~.frames.Frame` (RGB uint8 images, like everything else in faceprint). This
module is the opening side: it classifies the source (camera index, URL, file, iterable), checks
the arguments, opens and probes the capture, and describes it; how frames are then read (on
demand for files, through a reader thread for live sources) is :mod:`.frames`, and the OpenCV
and thread work is :mod:`.capture`. ``Frame`` and ``FrameSource`` are re-exported here.

Failures that are the user's to fix (a missing or corrupt file, a file with no frames, an absent
camera, an unreachable URL, a scheme FFmpeg is not asked to handle, frames above the pixel cap)
raise :class:`~faceprint.errors.VideoError` from :func:`open_source`, before any frame is promised.
A stream that ends later just ends the iteration. ``reconnect=True`` reopens a lost camera or
network stream. Passwords in URLs never reach a message, a log line or a description.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..config import get_settings, mask_url
from ..errors import VideoError
from .capture import CaptureReader, IterReader, open_camera, open_file, open_network
from .frames import Frame, FrameSource

__all__ = ["NETWORK_SCHEMES", "NETWORK_TIMEOUT_S", "Frame", "FrameSource", "open_source"]


#: URL schemes read through FFmpeg; anything else with ``://`` is refused rather than guessed.
NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https")
#: Seconds FFmpeg may wait to open a network stream and for each frame after that.
NETWORK_TIMEOUT_S = 10.0

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def _positive(name: str, value: float | None, *, zero_ok: bool = False) -> None:
    if value is None:
        return
    ok = isinstance(value, int | float) and math.isfinite(value) and (value >= 0 if zero_ok else value > 0)
    if not ok:
        expected = "a finite number >= 0" if zero_ok else "a positive finite number"
        raise VideoError(f"{name}: expected {expected}, got {value!r}")


def open_source(
    source: str | int | os.PathLike[str] | Iterable[NDArray[np.uint8]],
    *,
    max_fps: float | None = None,
    reconnect: bool = False,
    reconnect_delay: float = 1.0,
    max_reconnects: int | None = None,
    live: bool | None = None,
    input_bgr: bool = False,
    timeout: float = NETWORK_TIMEOUT_S,
) -> FrameSource:
    """Open ``source`` for reading frames; see the module docstring for the two reading modes.

    ``source`` is a camera index (an int or a digit string such as ``"0"``), an ``rtsp://``,
    ``rtsps://``, ``http://`` or ``https://`` URL, a file path, or an iterable of numpy frames (RGB
    unless ``input_bgr``; each must be a new array, the source keeps a reference like a queue).
    Cameras, URLs and iterables are live, files are not; ``live`` overrides that (a file opened
    live is played at its own frame rate, as a camera would deliver it). ``reconnect`` reopens a
    camera or network stream that stops, after ``reconnect_delay`` seconds, up to
    ``max_reconnects`` consecutive failed attempts (``None``: forever); a source that cannot be
    opened at all is always a :class:`VideoError` here. ``timeout`` bounds a network open and each
    network read, in seconds.
    """
    _positive("max_fps", max_fps)
    _positive("reconnect_delay", reconnect_delay, zero_ok=True)
    _positive("timeout", timeout)
    if max_reconnects is not None and (not isinstance(max_reconnects, int) or max_reconnects < 0):
        raise VideoError(f"max_reconnects: expected None or an int >= 0, got {max_reconnects!r}")
    retry = (reconnect_delay, max_reconnects) if reconnect else None
    common: dict[str, Any] = {"max_fps": max_fps, "input_bgr": input_bgr}
    cap_pixels = get_settings().max_pixels

    if isinstance(source, bool):
        raise VideoError(f"video source: expected a path, URL, camera index or frames, got {source!r}")
    if isinstance(source, int) or (isinstance(source, str) and source.strip().isdigit()):
        index = int(source)
        if index < 0:
            raise VideoError(f"camera {index}: expected a camera index >= 0")
        failure = "expected a connected camera, found none or it is busy"
        opener: Callable[[], Any] = lambda: open_camera(index)  # noqa: E731
        return _capture_source(opener, f"camera {index}", failure, live, retry, cap_pixels, common)
    if isinstance(source, str) and (m := _SCHEME.match(source)):
        scheme = m.group(1).lower()
        shown = mask_url(source)
        if scheme not in NETWORK_SCHEMES:
            supported = ", ".join(f"{s}://" for s in NETWORK_SCHEMES)
            raise VideoError(f"{shown}: unsupported URL scheme {scheme}://, expected one of {supported}")
        failure = (
            "expected a reachable server streaming video FFmpeg can decode, found none: connection "
            f"refused, no answer within {timeout:g} s, or not a video"
        )
        opener = lambda: open_network(source, timeout)  # noqa: E731
        return _capture_source(opener, shown, failure, live, retry, cap_pixels, common)
    if isinstance(source, str | os.PathLike):
        return _file_source(Path(source), live, cap_pixels, common)
    if isinstance(source, np.ndarray) and source.ndim != 4:
        raise VideoError(f"frames array: expected shape (N, H, W, 3), got {source.shape}")
    if isinstance(source, Iterable):
        what = f"frames from {type(source).__name__}"
        reader = IterReader(iter(source))
        is_live = True if live is None else live
        return FrameSource(
            reader, description=what, live=is_live, fps=None, size=None, frame_count=None, **common
        )
    raise VideoError(
        f"video source: expected a path, URL, camera index or iterable of frames, got {type(source).__name__}"
    )


def _check_size(what: str, size: tuple[int, int] | None, cap: int) -> None:
    if size is not None and size[0] * size[1] > cap:
        raise VideoError(
            f"{what}: frames are {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels, expected at most "
            f"{cap:,} (raise FACEPRINT_MAX_PIXELS)"
        )


def _describe(what: str, size: tuple[int, int] | None, fps: float | None, count: int | None) -> str:
    """``what (640x360, 29.97 fps, 275 frames)`` with whatever of it is known."""
    parts = [f"{size[0]}x{size[1]}"] if size else []
    parts += [f"{round(fps, 2):g} fps"] if fps else []
    parts += [f"{count} frames"] if count else []
    return f"{what} ({', '.join(parts)})" if parts else what


def _props(cap: Any) -> tuple[float | None, tuple[int, int] | None, int | None]:
    """fps, (width, height) and frame count as the backend reports them; ``None`` when unknown."""
    import cv2

    fps = float(cap.get(cv2.CAP_PROP_FPS))
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    return (
        fps if math.isfinite(fps) and 0 < fps < 1000 else None,
        (w, h) if w > 0 and h > 0 else None,
        count if count > 0 else None,
    )


def _open(opener: Callable[[], Any], what: str, failure: str) -> Any:
    """An opened capture, or a VideoError that says ``failure`` (also for OpenCV exceptions)."""
    try:
        cap = opener()
    except Exception as exc:  # cv2.error: the backend refused the name outright
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VideoError(f"{what}: cannot be opened ({failure}; OpenCV said: {detail})") from exc
    if cap is None or not cap.isOpened():
        if cap is not None:
            cap.release()
        raise VideoError(f"{what}: cannot be opened ({failure})")
    return cap


def _capture_source(
    opener: Callable[[], Any],
    what: str,
    failure: str,
    live: bool | None,
    retry: tuple[float, int | None] | None,
    cap_pixels: int,
    common: dict[str, Any],
) -> FrameSource:
    """A camera or network stream: opened now so an absent one fails here, read later."""
    cap = _open(opener, what, failure)
    fps, size, _ = _props(cap)
    try:
        _check_size(what, size, cap_pixels)
    except VideoError:
        cap.release()
        raise
    return FrameSource(
        CaptureReader(cap, opener, what, retry),
        description=_describe(what, size, fps, None),
        live=True if live is None else live,
        fps=fps,
        size=size,
        frame_count=None,
        **{**common, "input_bgr": True},
    )


def _file_source(path: Path, live: bool | None, cap_pixels: int, common: dict[str, Any]) -> FrameSource:
    """A video file, probed now: its first frame is decoded here (and handed out first), so a
    corrupt file or one without a single frame is an error at open, not an empty stream later."""
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if not path.is_file():
        raise VideoError(f"{path}: expected a video file, found a directory or special file")
    nbytes = path.stat().st_size
    if nbytes == 0:
        raise VideoError(f"{path}: expected a video file, found an empty file (0 bytes)")
    failure = (
        f"expected a video FFmpeg can read (e.g. MP4, MKV, AVI), found {nbytes:,} bytes it cannot parse: "
        "corrupt, truncated or not a video"
    )
    cap = _open(lambda: open_file(path), str(path), failure)
    fps, _, count = _props(cap)
    reader = CaptureReader(cap, lambda: None, str(path), None)
    try:
        first = reader.read(threading.Event())
        if first is None:
            raise VideoError(
                f"{path}: expected at least one video frame, found none (truncated, or no decodable video)"
            )
        size = (first[0].shape[1], first[0].shape[0])
        _check_size(str(path), size, cap_pixels)
    except BaseException:
        reader.close()
        raise
    reader.push_back(first)
    is_live = False if live is None else live
    return FrameSource(
        reader,
        description=_describe(f"file {path.name}", size, fps, count),
        live=is_live,
        fps=fps,
        size=size,
        frame_count=count,
        pace_fps=(fps or 25.0) if is_live else None,
        **{**common, "input_bgr": True},
    )
