"""Video sources without shared data: source classification, errors at open, the live
reader thread (drops, latency, shutdown) on fake live sources, and reconnecting on a
scripted fake capture. Real files and a real HTTP stream are in the integration tests."""

from __future__ import annotations

import gc
import itertools
import logging
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceprint.config import mask_url
from faceprint.errors import VideoError
from faceprint.video import sources
from faceprint.video.sources import Frame, open_source

READER = "faceprint-video-reader"


def readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(READER)]


def frames(n: int, delay: float = 0.0, shape: tuple[int, int] = (48, 64)) -> Iterator[np.ndarray]:
    """A fake live source: ``n`` frames whose pixels encode their number, ``delay`` s apart."""
    for i in range(n):
        if delay:
            time.sleep(delay)
        yield np.full((*shape, 3), i % 256, np.uint8)


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    yield
    gc.collect()
    deadline = time.monotonic() + 3
    while readers() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not readers(), "a reader thread outlived its test"


# ------------------------------------------------------------------------- classification and errors
@pytest.mark.parametrize(
    "url", ["ftp://user:pw@host/a.mp4", "foo://x", "file:///tmp/a.mp4", "udp://1.2.3.4:5"]
)
def test_unsupported_scheme_names_the_supported_ones(url: str) -> None:
    with pytest.raises(VideoError, match="unsupported URL scheme") as err:
        open_source(url)
    msg = str(err.value)
    assert all(s in msg for s in ("rtsp://", "rtsps://", "http://", "https://"))
    assert "pw@" not in msg and "\n" not in msg


def test_mask_url_hides_passwords_even_with_at_signs() -> None:
    assert mask_url("rtsp://admin:p@ss@cam:554/s1") == "rtsp://admin:***@cam:554/s1"
    assert (
        mask_url("postgresql://alice:s3cr@h/db?password=x&a=1")
        == "postgresql://alice:***@h/db?password=***&a=1"
    )
    assert mask_url("rtsp://cam:554/a?x=a@b") == "rtsp://cam:554/a?x=a@b"
    assert mask_url("rtsp://user@cam/") == "rtsp://user@cam/"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="no such file"):
        open_source(tmp_path / "nope.mp4")


def test_text_file_named_mp4_and_empty_file(tmp_path: Path) -> None:
    text = tmp_path / "x.mp4"
    text.write_text("not a video\n")
    with pytest.raises(VideoError, match="cannot parse") as err:
        open_source(text)
    assert str(text) in str(err.value)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(VideoError, match="empty file"):
        open_source(str(empty))
    with pytest.raises(VideoError, match="directory"):
        open_source(tmp_path)


def _write_mp4(path: Path, n: int) -> Path:
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 48))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write mp4v")
    for i in range(n):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    return path


def test_zero_frame_file(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match=r"zero\.mp4"):
        open_source(_write_mp4(tmp_path / "zero.mp4", 0))


def test_file_that_opens_but_has_no_decodable_frame(tmp_path: Path) -> None:
    """An MP4 whose header survives but whose media data is gone: it opens, and the probe
    read at open time finds nothing, so the error comes from open_source, not later."""
    data = _write_mp4(tmp_path / "one.mp4", 1).read_bytes()
    boxes, i = [], 0
    while i + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        if size < 8:
            pytest.skip("unexpected MP4 layout from this OpenCV build")
        boxes.append((kind, data[i : i + size]))
        i += size
    gutted = tmp_path / "gutted.mp4"
    gutted.write_bytes(b"".join(body for kind, body in boxes if kind != b"mdat"))
    with pytest.raises(VideoError, match="at least one video frame"):
        open_source(gutted)


def test_absent_camera_fails_fast() -> None:
    t = time.monotonic()
    with pytest.raises(VideoError, match="camera 99"):
        open_source(99)
    assert time.monotonic() - t < 10
    with pytest.raises(VideoError, match="camera index >= 0"):
        open_source(-1)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_rtsp_to_a_closed_port_fails_at_open_with_the_password_masked() -> None:
    url = f"rtsp://admin:s3cret@127.0.0.1:{_closed_port()}/stream"
    t = time.monotonic()
    with pytest.raises(VideoError, match="cannot be opened") as err:
        open_source(url, timeout=2, reconnect=True, max_reconnects=1)
    assert time.monotonic() - t < 10
    assert "s3cret" not in str(err.value) and "admin:***@127.0.0.1" in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_fps": 0}, "max_fps"),
        ({"reconnect_delay": -1}, "reconnect_delay"),
        ({"max_reconnects": -1}, "max"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(VideoError, match=name):
        open_source(frames(1), **kwargs)


def test_array_sources() -> None:
    with pytest.raises(VideoError, match=r"\(N, H, W, 3\)"):
        open_source(np.zeros((4, 4, 3), np.uint8))
    stack = np.stack(list(frames(5)))
    got = list(open_source(stack, live=False))
    assert [f.index for f in got] == [0, 1, 2, 3, 4]


# ------------------------------------------------------------------------------- fake live sources
def test_slow_consumer_gets_fresh_frames_and_drops_are_counted() -> None:
    src = open_source(frames(1000, delay=0.001))
    assert src.live and src.frame_count is None
    seen: list[Frame] = []
    ages: list[float] = []
    for frame in src:
        ages.append(time.time() - frame.timestamp)
        seen.append(frame)
        time.sleep(0.02)  # a consumer ~20x slower than the source
    idx = [f.index for f in seen]
    assert idx == sorted(set(idx)) and idx[-1] == 999, "in order, and the last frame arrives"
    assert src.dropped > 0 and src.dropped == 1000 - len(seen)
    assert any(b - a > 1 for a, b in itertools.pairwise(idx)), "gaps in index show drops"
    assert max(ages) < 0.1, f"stale frames handed out: {max(ages):.3f} s"
    assert all(int(f.image[0, 0, 0]) == f.index % 256 for f in seen), "image matches its index"
    assert seen[0].image.flags.c_contiguous and seen[0].image.shape == (48, 64, 3)


def test_fast_consumer_of_a_live_iterable_sees_every_frame() -> None:
    def slow() -> Iterator[np.ndarray]:
        yield from frames(20, delay=0.01)

    src = open_source(slow())
    assert [f.index for f in src] == list(range(20)) and src.dropped == 0


def test_close_mid_stream_stops_the_thread() -> None:
    src = open_source(frames(100_000, delay=0.001))
    got = 0
    for _ in src:
        got += 1
        if got == 5:
            assert len(readers()) == 1
            src.close()
    assert got == 5 and not readers()
    src.close()  # idempotent
    assert list(src) == []


def test_close_from_another_thread_ends_a_waiting_consumer() -> None:
    unstall = threading.Event()

    def stalls() -> Iterator[np.ndarray]:
        yield np.zeros((8, 8, 3), np.uint8)
        unstall.wait(30)  # a source that stops delivering: its reader is stuck in our code
        yield np.zeros((8, 8, 3), np.uint8)

    src = open_source(stalls())
    threading.Timer(0.3, src.close).start()
    t = time.monotonic()
    assert len(list(src)) == 1
    assert time.monotonic() - t < 5, "close() must not wait for a stuck source"
    unstall.set()  # the daemon thread then sees the stop flag and ends


def test_abandoned_iterator_stops_the_thread_when_collected() -> None:
    src = open_source(frames(100_000, delay=0.001))
    it = iter(src)
    next(it)
    assert len(readers()) == 1
    del it
    gc.collect()
    assert not readers()
    with open_source(frames(100_000, delay=0.001)) as other:
        it2 = iter(other)
        next(it2)
        del other  # the source dropped first, then its iterator: nothing keeps the thread alive
        del it2
    gc.collect()
    assert not readers()


def test_a_failing_generator_ends_the_stream_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> Iterator[np.ndarray]:
        yield np.zeros((8, 8, 3), np.uint8)
        raise RuntimeError("capture card on fire")

    src = open_source(broken())
    with caplog.at_level(logging.WARNING, logger="faceprint.video"):
        assert len(list(src)) == 1
    assert isinstance(src.error, RuntimeError)
    assert "capture card on fire" in caplog.text


def test_one_iterator_at_a_time() -> None:
    src = open_source(frames(100_000, delay=0.001))
    it = iter(src)
    next(it)
    with pytest.raises(VideoError, match="one iterator at a time"):
        next(iter(src))
    src.close()


def test_max_fps_on_a_live_source() -> None:
    src = open_source(frames(100_000, delay=0.001), max_fps=20)
    t0 = time.monotonic()
    got = []
    for frame in src:
        got.append(frame)
        if time.monotonic() - t0 > 1.0:
            break
    src.close()
    assert 12 <= len(got) <= 23, len(got)
    assert src.dropped > len(got)


def test_not_live_iterable_keeps_every_frame_and_bgr_is_reversed() -> None:
    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[..., 0] = 255  # blue in BGR
    got = list(open_source([bgr] * 30, live=False, input_bgr=True))
    assert [f.index for f in got] == list(range(30))
    assert got[0].image[0, 0].tolist() == [0, 0, 255]
    ts = [f.timestamp for f in got]
    assert all(b > a for a, b in itertools.pairwise(ts))


@pytest.mark.parametrize("live", [True, False])
def test_bad_frames_and_the_pixel_cap(live: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(VideoError, match=r"frame 0: expected a uint8 array of shape \(H, W, 3\), got float"):
        list(open_source([np.zeros((4, 4, 3))], live=live))
    monkeypatch.setenv("FACEPRINT_MAX_PIXELS", "1000")
    with pytest.raises(VideoError, match="pixels, expected at most 1,000"):
        list(open_source(frames(3), live=live))


# ------------------------------------------------------------------ cameras and streams (scripted)
class FakeCap:
    """An OpenCV capture that yields ``n`` BGR frames, then fails like a dropped stream."""

    def __init__(self, n: int, opened: bool = True, start: int = 0) -> None:
        self.n, self.opened, self.i, self.start = n, opened, 0, start
        self.released = False

    def isOpened(self) -> bool:
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.i >= self.n:
            return False, None
        self.i += 1
        img = np.zeros((48, 64, 3), np.uint8)
        img[..., 0] = self.start + self.i  # blue channel in BGR
        return True, img

    def get(self, prop: int) -> float:
        import cv2

        return {
            cv2.CAP_PROP_FPS: 25.0,
            cv2.CAP_PROP_FRAME_WIDTH: 64.0,
            cv2.CAP_PROP_FRAME_HEIGHT: 48.0,
            cv2.CAP_PROP_POS_MSEC: 40.0 * (self.i - 1),
        }.get(prop, -1.0)

    def release(self) -> None:
        self.released = True


def _script(monkeypatch: pytest.MonkeyPatch, name: str, caps: list[FakeCap]) -> list[FakeCap]:
    pytest.importorskip("cv2")
    queue = list(caps)

    def opener(*args: object) -> FakeCap:
        return queue.pop(0) if queue else FakeCap(0, opened=False)

    monkeypatch.setattr(sources, name, opener)
    return caps


def test_camera_that_disconnects_ends_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    caps = _script(monkeypatch, "open_camera", [FakeCap(4)])
    src = open_source("0")
    assert src.live and src.description == "camera 0 (64x48, 25 fps)" and src.size == (64, 48)
    got = list(src)
    assert 1 <= len(got) <= 4 and got[-1].index == 3
    assert got[0].image[0, 0].tolist()[2] >= 1, "BGR became RGB: the blue value is last"
    assert caps[0].released


def test_reconnect_counts_consecutive_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    caps = _script(monkeypatch, "open_network", [FakeCap(5), FakeCap(3, start=100), FakeCap(0, opened=False)])
    src = open_source("rtsp://u:pw@cam/s", reconnect=True, reconnect_delay=0.01, max_reconnects=1, live=False)
    assert src.description.startswith("rtsp://u:***@cam/s")
    got = list(src)
    # 5 frames, a reconnect that works (resets the count), 3 frames, a reconnect that fails: end
    assert [f.index for f in got] == list(range(8))
    assert [int(f.image[0, 0, 2]) for f in got] == [1, 2, 3, 4, 5, 101, 102, 103]
    ts = [f.timestamp for f in got]
    assert all(b > a for a, b in itertools.pairwise(ts)), "timestamps stay monotonic across reopen"
    assert all(c.released for c in caps)


def test_without_reconnect_a_lost_stream_just_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    _script(monkeypatch, "open_network", [FakeCap(3), FakeCap(3)])
    assert len(list(open_source("http://cam/video", live=False))) == 3


def test_close_interrupts_a_reconnect_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    _script(monkeypatch, "open_network", [FakeCap(1)])
    src = open_source("rtsp://cam/s", reconnect=True, reconnect_delay=60)
    it = iter(src)
    next(it)
    time.sleep(0.1)  # the reader is now waiting to reconnect
    t = time.monotonic()
    src.close()
    assert time.monotonic() - t < 3 and not readers()
