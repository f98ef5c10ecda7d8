"""Video sources on the real clips in ../shared/data/video, and a real HTTP stream of one
served from 127.0.0.1. Data-free behaviour (errors, fake live sources, reconnecting) is in
tests/unit/test_frame_sources.py."""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from conftest import SHARED, need
from faceprint.errors import VideoError
from faceprint.video.sources import open_source

cv2 = pytest.importorskip("cv2")

VIDEO = SHARED / "data" / "video"
READER = "faceprint-video-reader"


@pytest.fixture
def clip() -> Path:
    """640x360, 275 frames at 29.97 fps (about 9.2 s of video)."""
    return need(VIDEO / "short_hamilton_clip.mp4")


@pytest.fixture
def hd_clip() -> Path:
    """1920x1080, 105 frames."""
    return need(VIDEO / "facenet_pytorch_tracking_video.mp4")


def cv2_frames(path: Path) -> tuple[list[np.ndarray], list[float]]:
    """Every frame (BGR) and its POS_MSEC, straight from OpenCV: the reference to compare with."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    images, msec = [], []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        images.append(img)
        msec.append(cap.get(cv2.CAP_PROP_POS_MSEC))
    cap.release()
    return images, msec


def test_file_frames_timestamps_and_colours(clip: Path) -> None:
    ref, msec = cv2_frames(clip)
    with open_source(clip) as src:
        assert not src.live and src.size == (640, 360) and src.frame_count == 275
        assert src.fps == pytest.approx(29.97, abs=0.01)
        assert src.description == "file short_hamilton_clip.mp4 (640x360, 29.97 fps, 275 frames)"
        got = list(src)
    assert len(got) == len(ref) == 275
    assert [f.index for f in got] == list(range(275)) and src.dropped == 0
    ts = [f.timestamp for f in got]
    assert ts[0] == 0.0 and all(b > a for a, b in itertools.pairwise(ts))
    assert ts == pytest.approx([m / 1000 for m in msec]), "timestamps come from the container"
    assert ts[-1] == pytest.approx(274 / 29.97, abs=0.01)
    for i in (0, 137, 274):
        img = got[i].image
        assert img.dtype == np.uint8 and img.shape == (360, 640, 3) and img.flags.c_contiguous
        assert np.array_equal(img, ref[i][:, :, ::-1]), f"frame {i} is not OpenCV's BGR frame as RGB"


def test_hd_file(hd_clip: Path) -> None:
    src = open_source(str(hd_clip))
    assert src.size == (1920, 1080) and src.frame_count == 105
    assert sum(1 for _ in src) == 105 and src.dropped == 0


def test_pixel_cap_refuses_the_file_at_open(hd_clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEPRINT_MAX_PIXELS", "1000000")
    with pytest.raises(VideoError, match=r"1920x1080 = 2,073,600 pixels, expected at most 1,000,000"):
        open_source(hd_clip)


def test_max_fps_on_a_file_skips_by_timestamp(clip: Path) -> None:
    src = open_source(clip, max_fps=10)
    got = list(src)
    duration = 274 / 29.97
    assert abs(len(got) - (duration * 10 + 1)) <= 2
    assert src.dropped == 275 - len(got)
    gaps = np.diff([f.timestamp for f in got])
    assert gaps.min() >= 0.1 - 1 / 29.97 and gaps.max() <= 0.1 + 1 / 29.97
    assert len(list(open_source(clip, max_fps=60))) == 275, "a limit above the file's rate keeps all"


def test_a_second_loop_continues_where_the_first_stopped(clip: Path) -> None:
    src = open_source(clip)
    for frame in src:
        if frame.index == 9:
            break
    assert [f.index for f in src][:2] == [10, 11]


def test_truncated_mp4_is_refused_at_open(clip: Path, tmp_path: Path) -> None:
    bad = tmp_path / "truncated.mp4"
    bad.write_bytes(clip.read_bytes()[:2048])
    with pytest.raises(VideoError, match="corrupt, truncated or not a video") as err:
        open_source(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_a_file_played_live_runs_at_its_own_rate(clip: Path) -> None:
    src = open_source(clip, live=True)
    assert src.live
    t0, got = time.monotonic(), []
    for frame in src:
        got.append(frame)
        time.sleep(0.05)  # slower than 30 fps: some frames are dropped
        if time.monotonic() - t0 > 1.0:
            break
    src.close()
    last = got[-1].index
    assert 20 <= last <= 40, f"about 30 frames produced in 1 s, got {last + 1}"
    assert src.dropped > 0 and abs(got[-1].timestamp - time.time()) < 1.0, "wall-clock timestamps"
    assert not [t for t in threading.enumerate() if t.name.startswith(READER)]


# --------------------------------------------------------------------------- a real HTTP stream
class _RangeHandler(BaseHTTPRequestHandler):
    """Serves one file with Range support (FFmpeg seeks to the index at an MP4's end), and
    answers 404 once the test says the server is gone."""

    body: ClassVar[bytes] = b""
    gone: ClassVar[threading.Event] = threading.Event()

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.gone.is_set():
            self.send_error(404)
            return
        data = self.body
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        start, end = (int(m.group(1)), int(m.group(2) or len(data) - 1)) if m else (0, len(data) - 1)
        self.send_response(206 if m else 200)
        if m:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(data[start : end + 1])


@pytest.fixture
def http_clip(clip: Path) -> Iterator[str]:
    _RangeHandler.body = clip.read_bytes()
    _RangeHandler.gone = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://viewer:hunter2@127.0.0.1:{server.server_address[1]}/clip.mp4"
    try:
        probe = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
        readable = probe.isOpened() and probe.read()[0]
        probe.release()
        if not readable:
            pytest.skip("this OpenCV/FFmpeg build cannot read http:// streams")
        yield url
    finally:
        server.shutdown()
        server.server_close()


def test_http_stream_is_live(http_clip: str) -> None:
    with open_source(http_clip, timeout=5) as src:
        assert src.live and src.size == (640, 360)
        assert "hunter2" not in src.description and "viewer:***@127.0.0.1" in src.description
        got = []
        for frame in src:
            got.append(frame)
            time.sleep(0.01)
    assert len(got) >= 2
    idx = [f.index for f in got]
    assert idx == sorted(set(idx)) and src.dropped == idx[-1] + 1 - len(got)
    assert abs(got[-1].timestamp - time.time()) < 5, "live sources carry wall-clock time"
    gc.collect()
    assert not [t for t in threading.enumerate() if t.name.startswith(READER)]


def test_http_stream_read_in_full_then_the_server_goes_away(
    http_clip: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Not live: every frame in order. The stream ends, the reconnect attempt meets a server
    that is gone, and the iteration ends cleanly after max_reconnects=1."""
    src = open_source(
        http_clip, live=False, reconnect=True, reconnect_delay=0.05, max_reconnects=1, timeout=5
    )
    got = []
    with caplog.at_level(logging.WARNING, logger="faceprint.video"):
        for frame in src:
            got.append(frame.index)
            if frame.index == 274:
                _RangeHandler.gone.set()
    assert got == list(range(275))
    assert "reconnecting" in caplog.text and "giving up after 1" in caplog.text
    assert "hunter2" not in caplog.text
