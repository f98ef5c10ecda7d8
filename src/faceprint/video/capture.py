"""The reading machinery behind :mod:`faceprint.video.sources` and :mod:`.frames`: opening
OpenCV captures, raw frames from captures and from the caller's iterables, and the live sources'
reader thread.

Everything here returns frames as the device delivers them (BGR for OpenCV, whatever the caller
gave for iterables); validation and the RGB conversion happen in :class:`~.frames.FrameSource`
only for frames that are handed out, so a live reader that drops most frames does not pay for
converting them. ``cv2`` is imported inside the functions: ``import faceprint`` loads no OpenCV.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

log = logging.getLogger(__name__)

#: A raw frame and the container's position in milliseconds (``None``: the source has no clock).
RawFrame = tuple[NDArray[np.uint8], float | None]

_CLOSE_WAIT_S = 2.0


class Reader(Protocol):
    """Where frames come from. ``read`` blocks for the next frame and returns ``None`` at the
    end; ``stop`` interrupts waits between reconnect attempts. ``close`` is idempotent."""

    def read(self, stop: threading.Event) -> RawFrame | None: ...

    def close(self) -> None: ...


def open_file(path: Path) -> Any:
    """A capture of a video file through FFmpeg (the one backend that reads every container)."""
    import cv2

    return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)


def open_camera(index: int) -> Any:
    """A capture of camera ``index`` through the platform backend (V4L2 on Linux): FFmpeg in
    the opencv-python wheels has no libavdevice, so it cannot open cameras."""
    import cv2

    return cv2.VideoCapture(index, cv2.CAP_ANY)


def open_network(url: str, timeout: float) -> Any:
    """A capture of a network stream through FFmpeg with open and read timeouts, so an
    unreachable camera or a stalled stream fails within ``timeout`` instead of FFmpeg's 30 s."""
    import cv2

    ms = max(1, round(timeout * 1000))
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
    return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)


class CaptureReader:
    """Frames from an OpenCV capture, reopening it with ``opener`` when it stops if ``retry``
    is ``(delay_s, max_consecutive_attempts or None)``; attempts reset after a good frame, so a
    stream that drops now and then over weeks is not given up on, and one that is gone for good
    ends after the last attempt. ``close`` may come from another thread while ``read`` blocks:
    the capture is then released by the reader when its read returns (releasing an OpenCV
    capture mid-read can crash the process)."""

    def __init__(
        self,
        cap: Any,
        opener: Callable[[], Any],
        what: str,
        retry: tuple[float, int | None] | None,
    ) -> None:
        self._cap: Any = cap
        self._opener = opener
        self._what = what
        self._retry = retry
        self._failures = 0
        self._pending: RawFrame | None = None
        self._lock = threading.Lock()
        self._closing = False

    def push_back(self, frame: RawFrame) -> None:
        """Make ``frame`` (a probe read at open) the next one ``read`` returns."""
        self._pending = frame

    def read(self, stop: threading.Event) -> RawFrame | None:
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        while not stop.is_set():
            got = self._read_once()
            if got is not None:
                self._failures = 0
                return got
            if not self._reopen(stop):
                return None
        return None

    def _read_once(self) -> RawFrame | None:
        import cv2

        with self._lock:
            cap = self._cap
            if cap is None or self._closing:
                return None
            try:
                ok, img = cap.read()
                pos = float(cap.get(cv2.CAP_PROP_POS_MSEC)) if ok else None
            finally:
                if self._closing:  # close() gave up waiting for us: we release it
                    self._release_locked()
        if not ok or img is None:
            return None
        return img, pos

    def _reopen(self, stop: threading.Event) -> bool:
        """Wait, then open the source again; ``False`` when reconnecting is off, exhausted or stopped."""
        if self._retry is None or self._closing:
            return False
        delay, limit = self._retry
        if limit is not None and self._failures >= limit:
            log.warning("%s: stream lost; giving up after %d reconnect attempts", self._what, self._failures)
            return False
        self._failures += 1
        of = f"/{limit}" if limit is not None else ""
        log.warning(
            "%s: stream lost; reconnecting in %g s (attempt %d%s)", self._what, delay, self._failures, of
        )
        with self._lock:
            self._release_locked()
        if stop.wait(delay):
            return False
        try:
            cap = self._opener()
        except Exception as exc:  # cv2.error or an OS error: one more failed attempt
            log.warning("%s: reconnect failed: %s", self._what, exc)
            return True
        with self._lock:
            if self._closing:
                cap.release()
                return False
            if cap is not None and cap.isOpened():
                self._cap = cap
            elif cap is not None:
                cap.release()
        return True

    def _release_locked(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def close(self) -> None:
        self._closing = True
        if self._lock.acquire(timeout=_CLOSE_WAIT_S):
            try:
                self._release_locked()
            finally:
                self._lock.release()


class IterReader:
    """Frames from the caller's iterable. ``close`` closes a generator, so its own clean-up
    (releasing the caller's camera, say) runs when the source is closed."""

    def __init__(self, frames: Iterator[Any]) -> None:
        self._it = frames
        self._done = False

    def read(self, stop: threading.Event) -> RawFrame | None:
        if self._done:
            return None
        try:
            item = next(self._it)
        except StopIteration:
            self._done = True
            return None
        return item, None

    def close(self) -> None:
        self._done = True
        close = getattr(self._it, "close", None)
        if callable(close):
            try:
                close()
            except Exception as exc:  # the caller's clean-up failing must not fail our close()
                log.debug("closing the frame iterable failed: %s", exc)


class LiveBuffer:
    """A live source's one-slot buffer and the daemon thread that fills it: the consumer takes
    the latest frame, and a frame overwritten before it was taken counts in ``dropped``. It holds
    no reference to the :class:`~.frames.FrameSource` or its iterator, so both can be
    garbage-collected while the thread runs, and their finalisers can stop it."""

    def __init__(self, reader: Reader, description: str, pace_fps: float | None) -> None:
        self.reader = reader
        self.description = description
        self.pace_fps = pace_fps
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.slot: tuple[int, float, NDArray[np.uint8]] | None = None
        self.produced = 0
        self.dropped = 0
        self.ended = False
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self._released = False
        self._release_lock = threading.Lock()

    def release(self) -> None:
        with self._release_lock:
            if not self._released:
                self._released = True
                self.reader.close()

    def pump(self) -> None:
        """Reader thread body: read until the source ends or ``stop`` is set, keeping only the
        latest frame. Any exception ends the stream with a warning instead of killing the
        process or leaving the consumer waiting."""
        start = time.monotonic()
        try:
            while not self.stop.is_set():
                if self.pace_fps:  # a file played as if live: no faster than its own frame rate
                    due = start + self.produced / self.pace_fps - time.monotonic()
                    if due > 0 and self.stop.wait(due):
                        break
                item = self.reader.read(self.stop)
                if item is None:
                    break
                stamp = time.time()
                with self.cond:
                    if self.slot is not None:
                        self.dropped += 1
                    self.slot = (self.produced, stamp, item[0])
                    self.produced += 1
                    self.cond.notify_all()
        except Exception as exc:
            self.error = exc
            log.warning("%s: reading stopped after %d frames: %s", self.description, self.produced, exc)
        finally:
            with self.cond:
                self.ended = True
                self.cond.notify_all()
            if self.stop.is_set():  # closed while reading: the thread owns the capture last
                self.release()

    def shutdown(self) -> None:
        """Stop the thread and release the device; safe from any thread, any number of times."""
        self.stop.set()
        with self.cond:
            self.cond.notify_all()
        thread = self.thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(_CLOSE_WAIT_S)
        if thread is None or not thread.is_alive():
            self.release()
