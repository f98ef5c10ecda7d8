"""``watch`` without weights (fake detector and embedder, see test_quality): why a track
ends ``unknown``, which tracks are shown, and the events file's run header."""

from __future__ import annotations

import json
import threading
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

from test_quality import BIG, IMAGE, TINY, FakeDetector, FakeEmbedder

from faceprint.gallery.gallery import Gallery
from faceprint.gallery.sqlite import SqliteStore
from faceprint.recognizer import Recognizer
from faceprint.types import UNKNOWN
from faceprint.video.stream import StreamRecognizer, run_header


def _run(tmp_path: Path, faces: list, frames: int, **kw: object) -> dict:
    rec = Recognizer(detector=FakeDetector(faces), embedder=FakeEmbedder())  # type: ignore[arg-type]
    g = Gallery(SqliteStore(tmp_path / "g.sqlite"), rec)
    rec.detector = FakeDetector([BIG])
    assert g.enroll("ann", [IMAGE]).added
    rec.detector = FakeDetector(faces)
    sr = StreamRecognizer(rec, g, embed_every=1, cuts=False, **kw)  # type: ignore[arg-type]
    for i in range(frames):
        sr.process(IMAGE, i, i / 25)
    (ended,) = sr.finish(frames, frames / 25)
    return ended


def test_a_track_above_the_threshold_says_it_lacks_embeddings(tmp_path: Path) -> None:
    ended = _run(tmp_path, [BIG], 4, min_frames=10)
    assert ended["label"] == UNKNOWN and ended["similarity"] >= ended["threshold"]
    assert ended["reason"] == "too few embeddings (4 of the 10 needed)"
    named = _run(tmp_path / "b", [BIG], 4, min_frames=3)
    assert named["label"] == "ann" and "reason" not in named


def test_a_track_of_tiny_faces_says_none_passed_the_gate(tmp_path: Path) -> None:
    ended = _run(tmp_path, [TINY], 4)
    assert ended["label"] == UNKNOWN and ended["embeddings"] == 0
    assert ended["reason"] == "no face passed the quality gate"


def test_a_coasting_track_is_not_visible(tmp_path: Path) -> None:
    rec = Recognizer(detector=FakeDetector([BIG]), embedder=FakeEmbedder())  # type: ignore[arg-type]
    sr = StreamRecognizer(rec, None, cuts=False)
    for i in range(3):
        res = sr.process(IMAGE, i, i / 25)
    assert [r.coasting for r in res.recognitions] == [False] and len(res.visible) == 1
    rec.detector = FakeDetector([])  # the face is gone: the track coasts on
    res = sr.process(IMAGE, 3, 3 / 25)
    assert [r.coasting for r in res.recognitions] == [True] and res.visible == ()
    assert res.to_dict()["recognitions"][0]["coasting"] is True


def test_the_run_header_names_source_models_and_start_masking_passwords() -> None:
    rec = Recognizer(detector=FakeDetector([]), embedder=FakeEmbedder())  # type: ignore[arg-type]
    src = SimpleNamespace(description="stream rtsp://admin:hunter2@10.0.0.5/live")
    h = run_header(src, rec, None)
    assert h["event"] == "run_started" and "hunter2" not in json.dumps(h)
    assert h["source"] == "stream rtsp://admin:***@10.0.0.5/live"
    assert h["detector"] == "fake" and h["embedder"] == "fake" and h["gallery"] is None
    assert h["model"] == "fake@1+00000000"
    assert datetime.fromisoformat(h["started"]).tzinfo is not None


class _CountingLock:
    """A lock that counts how often it was taken (recognize_stream's ``lock``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.taken = 0

    def __enter__(self) -> None:
        self.lock.acquire()
        self.taken += 1

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def test_a_stream_ends_at_max_frames_or_on_stop_taking_its_lock_per_frame() -> None:
    from faceprint.video import open_source, recognize_stream

    rec = Recognizer(detector=FakeDetector([BIG]), embedder=FakeEmbedder())  # type: ignore[arg-type]
    frames = (IMAGE.copy() for _ in range(50))
    lock = _CountingLock()
    src = open_source(frames, live=False)
    results = list(recognize_stream(rec, None, src, max_frames=5, lock=lock, cuts=False))
    assert [r.index for r in results if r.image is not None] == [0, 1, 2, 3, 4]
    assert lock.taken == 5 and not lock.lock.locked()
    assert [e["event"] for e in results[-1].events] == ["track_ended"]  # live tracks end

    stop = threading.Event()
    seen = 0
    for r in recognize_stream(rec, None, open_source((IMAGE.copy() for _ in range(50)), live=False),
                              stop=stop, cuts=False):  # fmt: skip
        seen += r.image is not None
        if seen == 3:
            stop.set()  # another thread would do this: the stream stops before the next frame
    assert seen == 3 and r.image is None and r.events[-1]["event"] == "track_ended"
