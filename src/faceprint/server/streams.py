"""The streams one service process runs: recognition of an allow-listed camera, file or
network source in a thread of its own, and its events fanned out to any number of
Server-Sent-Events clients (the routes are :mod:`.routes.streams`).

**What may run.** Only a source on the operator's allow-list (``faceprint serve --stream
SRC``, :attr:`~.config.ServiceConfig.streams`), matched exactly: the entry itself, or its
display form with the password masked (so a client never needs a camera's password to
name it). Nothing a client sends is ever opened as a path or URL. One stream per source
at a time (a camera opens once; it also bounds the threads to the allow-list's size).

**Recognition** is :mod:`faceprint.video.stream`'s, not a copy: the same tracking, voting
and events as ``faceprint watch``, with the service's embedder (shared, so a stream makes
the gallery's vectors and costs no second network) and one detector set up for tracking
(:func:`~faceprint.video.stream.tracking_recognizer`). Each stream runs in a daemon thread
and holds the service's model lock one frame at a time (never while a frame is read); a
request waiting for the lock goes first (:attr:`~.engine.Service.model_waiting`), the
frame waiting at most :data:`YIELD_MAX_S`. So a stream costs a request at most one frame's
work, and under a flood of requests streams slow down (a live source then drops frames, as
it does for any slow consumer) instead of the API. Streams live in the process that
started them: with ``faceprint serve --workers N`` each worker has its own.

**Events.** Every stream keeps its ``run_started`` header and its last :data:`HISTORY`
events, numbered from 0 (the header) up; the last is ``run_ended`` (module
:mod:`.routes.streams` for the wire format). A client gets the header, the kept events,
then live ones. A client whose queue of undelivered live events reaches :data:`QUEUE` is
disconnected, never waited for (the recogniser must not block on a slow reader): it may
reconnect with ``Last-Event-ID`` and resume from the kept history without a loss, as a
browser's ``EventSource`` does by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, Any

from ..config import mask_url
from ..errors import VideoError
from .problems import Problem, scrub

if TYPE_CHECKING:
    from ..gallery.gallery import Gallery
    from ..recognizer import Recognizer
    from ..video.frames import FrameSource
    from .engine import Service

log = logging.getLogger("faceprint.server")

#: Events a stream keeps (besides its header) for clients that join late or reconnect.
HISTORY = 1000
#: Live events a client may fall behind by before it is disconnected (module doc).
QUEUE = 256
#: Clients one stream serves at once; one more is answered 503.
MAX_SUBSCRIBERS = 32
#: Finished streams still listed (the oldest are forgotten first).
KEEP_FINISHED = 16
#: Longest a stream's next frame waits while requests want the models.
YIELD_MAX_S = 0.5
#: Longest a stop waits for a stream's thread to end (it then ends on its own).
JOIN_S = 10.0

RUNNING, ENDED, STOPPED, FAILED = "running", "ended", "stopped", "failed"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class StreamOptions:
    """The settings of one stream: ``faceprint watch``'s options of the same names.
    ``max_frames`` ends the stream after that many processed frames; ``reconnect`` reopens
    a camera or network stream that drops (a monitor should outlive a network hiccup)."""

    detect_every: int = 1
    embed_every: int = 10
    min_frames: int = 3
    max_age: int = 30
    max_fps: float | None = None
    threshold: float | None = None
    max_frames: int | None = None
    reconnect: bool = True
    realtime: bool = False


@dataclass(frozen=True)
class Event:
    """One event as it goes on the wire (``frame``: its Server-Sent-Events text)."""

    id: int
    kind: str
    frame: bytes

    @classmethod
    def of(cls, event_id: int, event: dict[str, Any]) -> Event:
        kind = str(event["event"])
        data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
        return cls(event_id, kind, f"id: {event_id}\nevent: {kind}\ndata: {data}\n\n".encode())


class Subscription:
    """One client's view of a stream: the events it joined with, then live ones, in a
    queue the stream's thread fills and the client's event loop drains. The thread never
    waits: a full queue marks the client :attr:`lagged` (it is then disconnected)."""

    def __init__(self, backlog: list[Event], loop: asyncio.AbstractEventLoop) -> None:
        self._queue: deque[Event] = deque(backlog)
        self._limit = len(backlog) + QUEUE
        self._lock = threading.Lock()
        self._loop = loop
        self._wake = asyncio.Event()
        self.lagged = False
        self.closed = False

    def offer(self, event: Event) -> None:
        """Queue ``event`` (from the stream's thread); never blocks."""
        with self._lock:
            if self.closed or self.lagged:
                return
            if len(self._queue) >= self._limit:
                self.lagged = True
            else:
                self._queue.append(event)
        with contextlib.suppress(RuntimeError):  # the client's event loop is gone: nobody to wake
            self._loop.call_soon_threadsafe(self._wake.set)

    def take(self) -> list[Event]:
        """Every queued event, oldest first (from the client's event loop)."""
        with self._lock:
            out = list(self._queue)
            self._queue.clear()
            self._limit = QUEUE
        return out

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for news; ``False`` when none came."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            return False
        self._wake.clear()
        return True


class _Turn:
    """The model lock for one frame of a stream, taken after the requests waiting for it
    (module doc); reusable, as :func:`~faceprint.video.stream.recognize_stream` enters it
    once per frame."""

    def __init__(self, svc: Service, stop: threading.Event) -> None:
        self.svc = svc
        self.stop = stop

    def __enter__(self) -> None:
        deadline = time.monotonic() + YIELD_MAX_S
        while self.svc.model_waiting > 0 and not self.stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.002)
        self.svc.model_lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.svc.model_lock.release()


class LiveStream:
    """One stream: its state and counters (read by any thread, written by its own), its
    events, its clients, and its thread."""

    def __init__(
        self, entry: str, source: FrameSource, header: dict[str, Any], options: StreamOptions
    ) -> None:
        self.id = secrets.token_hex(16)
        self.entry = entry  # the allow-list entry: never shown (it may hold a password or a path)
        self.description = mask_url(source.description)
        self.options = options
        self.state = RUNNING
        self.started = str(header["started"])
        self.ended: str | None = None
        self.frames = 0
        self.dropped = 0
        self.error: str | None = None
        self._source = source
        self._header = Event.of(0, header)
        self._history: deque[Event] = deque(maxlen=HISTORY)
        self._next_id = 1
        self._final = False
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the stream's own thread ---------------------------------------------------------
    def start(self, svc: Service, recognizer: Recognizer, gallery: Gallery) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(svc, recognizer, gallery), name=f"faceprint-stream-{self.id[:8]}",
            daemon=True,
        )  # fmt: skip
        self._thread.start()

    def _run(self, svc: Service, recognizer: Recognizer, gallery: Gallery) -> None:
        from ..video.stream import recognize_stream
        from ..video.tracking import Tracker

        o = self.options
        state, error = ENDED, None
        try:
            for res in recognize_stream(
                recognizer, gallery, self._source, threshold=o.threshold, detect_every=o.detect_every,
                embed_every=o.embed_every, min_frames=o.min_frames, tracker=Tracker(max_age=o.max_age),
                max_frames=o.max_frames, stop=self._stop, lock=_Turn(svc, self._stop),
            ):  # fmt: skip
                if res.image is not None:
                    self.frames += 1
                self.dropped = res.dropped
                for ev in res.events:
                    self._publish(ev)
            if self._stop.is_set():
                state = STOPPED
        except Exception as exc:  # a stream's failure is reported in its events, not raised
            state, error = FAILED, scrub(f"{type(exc).__name__}: {exc}", svc.secrets)
            log.warning("stream %s (%s) failed: %s", self.id, self.description, error)
        finally:
            self._source.close()
            self.error, self.ended, self.state = error, _now(), state
            end = {"event": "run_ended", "state": state, "frames": self.frames, "dropped": self.dropped,
                   "ended": self.ended}  # fmt: skip
            if error is not None:
                end["error"] = error
            self._publish(end, final=True)

    def _publish(self, event: dict[str, Any], final: bool = False) -> None:
        with self._lock:
            item = Event.of(self._next_id, event)
            self._next_id += 1
            self._history.append(item)
            self._final = self._final or final
            subs = list(self._subs)
        for sub in subs:  # one producer thread: every client gets the events in order
            sub.offer(item)

    # -- control (any thread) -------------------------------------------------------------
    def stop(self, wait: float = JOIN_S) -> None:
        """Stop recognising and release the source: a file stops before its next frame; a
        live source is closed at once, which also ends a wait for its next frame. Every
        live track then ends, and ``run_ended`` closes the event stream."""
        self._stop.set()
        if self._source.live:
            self._source.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(wait)

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    # -- clients --------------------------------------------------------------------------
    def subscribe(self, after: int | None, loop: asyncio.AbstractEventLoop) -> Subscription | None:
        """A client for the events after id ``after`` (``None``: from the header on);
        ``None`` when the stream has ended and the client has seen everything."""
        with self._lock:
            items = [e for e in self._history if after is None or e.id > after]
            if after is None:
                items.insert(0, self._header)
            if self._final and not items:
                return None
            if len(self._subs) >= MAX_SUBSCRIBERS:
                raise Problem(
                    "overloaded",
                    f"this stream already has {MAX_SUBSCRIBERS} clients; retry shortly",
                    {"Retry-After": "5"},
                )
            sub = Subscription(items, loop)
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            sub.closed = True
            self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.description,
            "state": self.state,
            "started": self.started,
            "ended": self.ended,
            "frames": self.frames,
            "dropped": self.dropped,
            "error": self.error,
            "subscribers": self.subscribers,
            "settings": asdict(self.options),
            "events": f"/v1/streams/{self.id}/events",
        }


class StreamHub:
    """The streams of one service process (module doc). Blocking methods (:meth:`start`,
    :meth:`stop`, :meth:`close`) are for worker threads, not the event loop."""

    #: Seconds between keep-alive comments on an idle event stream.
    keepalive_s = 15.0

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self._streams: dict[str, LiveStream] = {}
        self._starting: set[str] = set()
        self._lock = threading.Lock()
        self._recognizer: Recognizer | None = None

    # -- the allow-list -------------------------------------------------------------------
    def allowed(self) -> list[str]:
        """The allow-list as clients see it (passwords masked): each one may be sent back as
        ``source``."""
        return [mask_url(e) for e in self.svc.config.streams]

    def resolve(self, source: str) -> str:
        """The allow-list entry ``source`` names, exactly, or a 403 that does not repeat it."""
        entries = self.svc.config.streams
        if not entries:
            raise Problem(
                "source-not-allowed",
                "this service allows no stream sources; the operator names each one with "
                "faceprint serve --stream SRC",
            )
        if source in entries:
            return source
        masked = [e for e in entries if mask_url(e) == source]
        if len(masked) == 1:
            return masked[0]
        raise Problem(
            "source-not-allowed",
            f"the source is not one of the {len(entries)} on this service's allow-list; a source must "
            "match an entry exactly (GET /v1/streams/sources lists them)",
        )

    # -- streams --------------------------------------------------------------------------
    def start(self, source: str, options: StreamOptions) -> LiveStream:
        """Open the allow-listed ``source`` and start recognising it in its own thread."""
        entry = self.resolve(source)
        with self._lock:
            busy = [s for s in self._streams.values() if s.entry == entry and s.running]
            if busy or entry in self._starting:
                extra = {"id": busy[0].id} if busy else None
                raise Problem("stream-running", "this source is already being streamed", extra=extra)
            self._starting.add(entry)
        try:
            rec = self._tracking_recognizer()
            gallery = self.svc.gallery
            gallery.check_model()
            try:
                src = self._open(entry, options)
            except VideoError as exc:
                raise Problem("source-unavailable", self._scrub(str(exc), entry)) from None
            try:
                from ..video.stream import run_header

                header = run_header(src, rec, gallery)
                if header["gallery"] is not None:
                    header["gallery"] = scrub(str(header["gallery"]), self.svc.secrets)
                stream = LiveStream(entry, src, header, options)
                with self._lock:
                    self._streams[stream.id] = stream
                    self._forget_old()
                stream.start(self.svc, rec, gallery)
            except BaseException:
                src.close()
                raise
        finally:
            with self._lock:
                self._starting.discard(entry)
        log.info("stream %s started: %s", stream.id, stream.description)
        return stream

    def get(self, stream_id: str) -> LiveStream:
        with self._lock:
            stream = self._streams.get(stream_id)
        if stream is None:
            raise Problem("not-found", "no stream has this id (finished streams are forgotten in time)")
        return stream

    def streams(self) -> list[LiveStream]:
        """Running and finished streams, newest first."""
        with self._lock:
            return list(reversed(self._streams.values()))

    def stop(self, stream_id: str) -> LiveStream:
        """Stop a stream (a finished one stays as it is) and wait for it to let its source go."""
        stream = self.get(stream_id)
        stream.stop()
        log.info("stream %s stopped: %s", stream.id, stream.description)
        return stream

    def stop_on_signals(self) -> Callable[[], None]:
        """Stop every stream as soon as the server is told to stop (SIGINT, SIGTERM), and
        return what undoes it. The server (uvicorn) waits for open responses before it runs
        the app's shutdown, and an event stream stays open while its stream runs: without
        this every client following a stream would hold the shutdown for its grace period
        and then be cut off without ``run_ended``. The server's own handler still runs
        first. Only where signals can be handled (the main thread of a server process)."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous: dict[int, Any] = {}

        def on_exit(sig: int, frame: FrameType | None) -> None:
            handler = previous.get(sig)
            if callable(handler):
                handler(sig, frame)
            threading.Thread(target=self.close, name="faceprint-streams-stop", daemon=True).start()

        for sig in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(sig)
            if callable(handler):  # the server's; not SIG_DFL or SIG_IGN: those are left as they are
                previous[sig] = handler
                signal.signal(sig, on_exit)

        def restore() -> None:
            for sig, handler in previous.items():
                if signal.getsignal(sig) is on_exit:
                    signal.signal(sig, handler)

        return restore

    def close(self) -> None:
        """Stop every stream (the service is shutting down): all are told at once, then
        waited for together, at most :data:`JOIN_S`."""
        with self._lock:
            running = [s for s in self._streams.values() if s.running]
        for s in running:
            s.stop(wait=0)
        deadline = time.monotonic() + JOIN_S
        for s in running:
            s.stop(wait=max(0.0, deadline - time.monotonic()))

    # -- internals ------------------------------------------------------------------------
    def _tracking_recognizer(self) -> Recognizer:
        """The service's embedder with a detector set up for tracking, built once; the
        service's own recognizer when its detector is not a registry name (a test's)."""
        from ..registry import detectors

        base = self.svc.recognizer  # 503 while the models load
        if self._recognizer is None or self._recognizer.embedder is not base.embedder:
            from ..video.stream import tracking_recognizer

            name = self.svc.config.detector or base.detector_name
            if name in detectors.names():
                self._recognizer = tracking_recognizer(
                    name, base.embedder, flip=base.flip, threads=self.svc.config.threads
                )
            else:
                self._recognizer = base
        return self._recognizer

    @staticmethod
    def _open(entry: str, options: StreamOptions) -> FrameSource:
        from ..video.sources import open_source

        live = True if options.realtime else None  # None: files as fast as they decode, the rest live
        return open_source(entry, max_fps=options.max_fps, reconnect=options.reconnect, live=live)

    def _scrub(self, message: str, entry: str) -> str:
        """``message`` without the server's paths: the entry itself (a file's path, as the
        operator wrote it) is replaced too; URLs are masked by the video module already."""
        is_file = not entry.strip().isdigit() and "://" not in entry
        return scrub(message, (*self.svc.secrets, entry) if is_file else self.svc.secrets)

    def _forget_old(self) -> None:
        finished = [s for s in self._streams.values() if not s.running]  # oldest first
        for s in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._streams[s.id]
