"""What a video source hands out and how it is read: :class:`Frame` and :class:`FrameSource`.

This module exists to keep the consumer side of a source (validation, RGB conversion, timestamps,
the two reading modes) apart from :mod:`.sources`, which turns what the user names into a
source, and :mod:`.capture`, which does the OpenCV and thread work. Two reading modes exist
because the two kinds of input want opposite things:

* **Files** (and any source opened with ``live=False``) are read on demand in the consumer's
  thread: every frame, in order, with the container's timestamps. Nothing is ever dropped, so an
  analysis of a recording is complete and repeatable; ``max_fps`` skips frames by timestamp to
  emulate a slower rate and counts them in ``dropped``.
* **Live sources** (cameras, ``rtsp://``/``http://`` streams, iterables) do not wait for a slow
  consumer. A daemon reader thread reads continuously into a one-slot buffer holding only the
  latest frame, so the consumer always gets a frame at most one frame old and the latency stays
  bounded however slow recognition is; overwritten frames count in ``dropped`` and show as gaps
  in ``Frame.index``. Timestamps are the wall clock at capture.

A stream that ends (end of file, camera unplugged, connection lost) just ends the iteration: a
live pipeline should stop or reconnect, not crash.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..config import get_settings
from ..errors import VideoError
from .capture import LiveBuffer, Reader

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Frame:
    """One frame: ``index`` in the source's own sequence (gaps are dropped frames), ``timestamp``
    in seconds (container time for files, wall clock at capture for live sources) and ``image``,
    RGB uint8 ``(H, W, 3)``, C-contiguous. ``eq=False``: arrays have no single truth value."""

    index: int
    timestamp: float
    image: NDArray[np.uint8]


class FrameSource:
    """An iterable of :class:`Frame` and a context manager; build it with :func:`open_source`.

    A source is one pass over its stream: a new iterator continues where the last one stopped.
    A live source's reader thread starts with its iterator's first frame and belongs to that
    iterator: when the iterator ends, is closed or is garbage-collected, the source closes (a
    thread reading a camera for nobody would hold the device). Iterating a closed source yields
    nothing. ``close()`` is idempotent. ``dropped`` and ``error`` stay readable after closing.
    """

    def __init__(
        self,
        reader: Reader,
        *,
        description: str,
        live: bool,
        fps: float | None,
        size: tuple[int, int] | None,
        frame_count: int | None,
        max_fps: float | None,
        input_bgr: bool,
        pace_fps: float | None = None,
    ) -> None:
        self.description = description
        self.live = live
        self.fps = fps
        self.size = size
        self.frame_count = frame_count
        self._max_fps = max_fps
        self._bgr = input_bgr
        self._max_pixels = get_settings().max_pixels
        self._index = 0
        self._prev_ts: float | None = None
        self._next_due: float | None = None
        self._skipped = 0
        self._closed = False
        self._busy = False
        self._state = LiveBuffer(reader, description, pace_fps)
        self._finalizer = weakref.finalize(self, self._state.shutdown)

    # ----------------------------------------------------------------------------- public
    @property
    def dropped(self) -> int:
        """Frames not handed out: overwritten in a live source's buffer, or skipped by ``max_fps``."""
        return self._state.dropped + self._skipped

    @property
    def error(self) -> BaseException | None:
        """The exception that ended a live source's reader thread early, if one did."""
        return self._state.error

    def __iter__(self) -> Iterator[Frame]:
        return self._iter_live() if self.live else self._iter_sync()

    def close(self) -> None:
        """Stop the reader thread (if any) and release the file, camera or connection."""
        self._closed = True
        self._finalizer()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FrameSource({self.description!r}, live={self.live})"

    # ----------------------------------------------------------------------------- helpers
    def _claim(self) -> None:
        if self._busy:
            raise VideoError(f"{self.description}: expected one iterator at a time, found a second one")
        self._busy = True

    def _image(self, index: int, raw: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """Validate and convert one frame to RGB; only frames handed out pay for it."""
        if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or raw.ndim != 3 or raw.shape[2] != 3:
            found = f"{raw.dtype} {raw.shape}" if isinstance(raw, np.ndarray) else type(raw).__name__
            raise VideoError(
                f"{self.description}: frame {index}: expected a uint8 array of shape (H, W, 3), got {found}"
            )
        height, width = raw.shape[:2]
        if width * height > self._max_pixels:
            raise VideoError(
                f"{self.description}: frame {index} is {width}x{height} = {width * height:,} pixels, "
                f"expected at most {self._max_pixels:,} (raise FACEPRINT_MAX_PIXELS)"
            )
        if self._bgr:  # cvtColor: the same pixels as raw[:, :, ::-1], 15x faster (1080p: 0.4 vs 7 ms)
            import cv2

            return np.asarray(cv2.cvtColor(np.ascontiguousarray(raw), cv2.COLOR_BGR2RGB), dtype=np.uint8)
        return np.ascontiguousarray(raw)

    def _stamp(self, pos_msec: float | None) -> float:
        """Container time for the frame at ``self._index``, strictly increasing: POS_MSEC when it
        moves forward, else index/fps, else one frame period after the previous frame."""
        prev = self._prev_ts
        if pos_msec is None:
            t = time.time()
            return t if prev is None or t > prev else math.nextafter(prev, math.inf)
        t = pos_msec / 1000.0
        if math.isfinite(t) and t >= 0 and (prev is None or t > prev):
            return t
        if self.fps:
            t = self._index / self.fps
            if prev is None or t > prev:
                return t
        return 0.0 if prev is None else prev + 1.0 / (self.fps or 25.0)

    def _iter_sync(self) -> Iterator[Frame]:
        """Every frame in order, read in the caller's thread; ``max_fps`` skips by timestamp."""
        self._claim()
        state = self._state
        period = 1.0 / self._max_fps if self._max_fps else None
        try:
            while not self._closed:
                item = state.reader.read(state.stop)
                if item is None:
                    self._end_of_stream()
                    return
                raw, pos = item
                index = self._index
                ts = self._stamp(pos)
                self._prev_ts = ts
                self._index += 1
                if period is not None:  # due times on a fixed grid, so 29.97 fps -> 10 fps keeps 10/s
                    if self._next_due is not None and ts < self._next_due - 1e-6:
                        self._skipped += 1
                        continue
                    due = (ts if self._next_due is None else self._next_due) + period
                    self._next_due = due if due > ts else ts + period  # after a gap: restart the grid
                yield Frame(index, ts, self._image(index, raw))
        finally:
            self._busy = False

    def _end_of_stream(self) -> None:
        if self.frame_count and self._index < self.frame_count - 1:
            log.warning(
                "%s: ended after %d of %d frames (truncated or corrupt)",
                self.description,
                self._index,
                self.frame_count,
            )
        self.close()

    def _iter_live(self) -> Iterator[Frame]:
        """The latest frame each time the consumer asks, at most ``max_fps`` times a second."""
        self._claim()
        state = self._state
        period = 1.0 / self._max_fps if self._max_fps else None
        last: float | None = None
        try:
            if self._closed or state.stop.is_set():
                return
            if state.thread is None:
                state.thread = threading.Thread(
                    target=state.pump, name=f"faceprint-video-reader: {self.description}", daemon=True
                )
                state.thread.start()
            while True:
                if period is not None and last is not None:
                    wait = last + period - time.monotonic()
                    if wait > 0 and state.stop.wait(wait):
                        return
                with state.cond:
                    while state.slot is None and not state.ended and not state.stop.is_set():
                        state.cond.wait(0.5)
                    if state.slot is None or state.stop.is_set():
                        return
                    index, stamp, raw = state.slot
                    state.slot = None
                last = time.monotonic()
                yield Frame(index, stamp, self._image(index, raw))
        finally:
            self._busy = False
            self.close()
