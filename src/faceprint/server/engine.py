"""The state one service process holds: configuration, keys, audit, the gallery and the
models, and the one way routes run blocking work.

Models load in a background thread when the app starts, so ``/v1/health`` answers at
once and ``/v1/ready`` says when recognition can be served (models loaded, the gallery's
search index built or loaded). Model work (detection, embedding) runs in worker threads,
each model copy under one lock (YuNet's OpenCV detector is not safe to share between
threads). Identify, the hot path, runs on ``parallel`` copies side by side
(:mod:`.batching`); detect, verify, lookalike, enrolment and calibration use the first
copy, under :attr:`Service.model_lock`. Requests beyond ``max_in_flight`` are refused by
:class:`~.limits.InFlight`; one that waits longer than ``timeout_s`` for its answer gets
504 (:meth:`Service.run`). Background work on the first copy (streams, :mod:`.streams`)
takes the lock one frame at a time and lets requests waiting for it
(:attr:`Service.model_waiting`) go first.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ..config import get_settings
from .batching import IdentifyBatcher
from .config import ServiceConfig
from .keys import KeyRing
from .limits import RateLimiter
from .problems import Problem
from .servicedb import ServiceDB

if TYPE_CHECKING:
    from ..gallery.gallery import Gallery
    from ..gallery.results import Identification
    from ..recognizer import Recognizer
    from ..types import Image

log = logging.getLogger("faceprint.server")
T = TypeVar("T")


class Service:
    """Everything one process serves with (module doc). ``gallery`` opens the store at
    construction (a bad location fails at start, not at the first request)."""

    def __init__(self, config: ServiceConfig) -> None:
        from ..gallery import open_store
        from ..gallery.gallery import Gallery

        self.config = config.__class__(**{**config.__dict__, "limits": config.limits.check()})
        settings = get_settings()
        db_path = Path(config.service_db) if config.service_db else settings.service_db
        self.db = ServiceDB(db_path)
        self.keys = KeyRing(self.db)
        self.rate = RateLimiter(config.limits.rate_per_second, config.limits.burst)
        self.store = open_store(config.gallery)
        self.gallery: Gallery = Gallery(self.store)
        self._recognizer: Recognizer | None = None
        #: galleries over the model copies that identify batches also run on (:meth:`attach`)
        self.copies: list[Gallery] = []
        self.loaded = threading.Event()
        self.load_error: str | None = None
        self.model_lock = threading.Lock()
        self.batcher = IdentifyBatcher(self, max_images=config.limits.max_images)
        #: requests now waiting for :attr:`model_lock`: background work lets them go first
        self.model_waiting = 0
        self._waiting_lock = threading.Lock()
        #: strings never to show a client (:func:`~.problems.scrub`)
        self.secrets = tuple(
            str(s)
            for s in (
                self.store.location,
                db_path,
                settings.data_dir,
                settings.home,
                settings.cache_dir,
                Path.home(),
            )
            if s
        )

    # -- models -----------------------------------------------------------------------
    def load_models(self) -> None:
        """Build the recognizer (and the copies ``parallel`` asks for), run each once on a
        blank image and search the gallery once, so the first request pays neither for
        lazy initialisation nor for building or loading the search index (minutes for a
        new 100k-face gallery: requests would time out meanwhile). Called in a background
        thread at start; ``/v1/ready`` answers 503 until it has finished."""
        try:
            from ..recognizer import Recognizer

            n = self.config.resolved_parallel()
            threads = self.config.resolved_threads()
            if n > 1 and threads is not None:
                import cv2

                cv2.setNumThreads(threads)  # the copies run side by side: no oversubscription
            recs = []
            for _ in range(n):
                cfg = self.config
                rec = Recognizer(detector=cfg.detector, embedder=cfg.embedder, threads=threads)
                self._warm(rec)
                recs.append(rec)
            self._warm_search()
            self.attach(recs[0], recs[1:])
            log.info(
                "models loaded: %s + %s (%s), %d cop%s",
                recs[0].detector_name, recs[0].embedder_name, recs[0].model_id, n, "y" if n == 1 else "ies",
            )  # fmt: skip
        except Exception as exc:  # reported by /v1/ready and by every model route
            from .problems import scrub

            self.load_error = scrub(f"{type(exc).__name__}: {exc}", self.secrets)
            log.error("cannot load the models: %s", exc)
        finally:
            self.loaded.set()

    @staticmethod
    def _warm(rec: Recognizer) -> None:
        import numpy as np

        blank = np.zeros((160, 160, 3), np.uint8)
        rec.detect(blank)
        rec.embed_crops([blank[:150, :150]])

    def _warm_search(self) -> None:
        """One search and one operating point, so the index is built or loaded now."""
        import numpy as np

        from ..gallery.gallery import Gallery

        bound = self.store.model()
        if bound is None or self.store.count_people() == 0:
            return
        probe = np.zeros((1, bound[1]), np.float32)
        probe[0, 0] = 1.0
        started = time.monotonic()
        Gallery(self.store).rank(probe, 1)
        log.info("gallery search ready in %.1f s", time.monotonic() - started)

    def attach(self, recognizer: Recognizer, copies: Sequence[Recognizer] = ()) -> None:
        """Serve with ``recognizer`` (loaded by :meth:`load_models`, or shared by several
        services in one process, as the tests do), and identify batches also on
        ``copies`` (each used by one batching thread only, :mod:`.batching`); the service
        is ready from now on."""
        from ..gallery.gallery import Gallery

        self.gallery = Gallery(self.store, recognizer)
        self.copies = [Gallery(self.store, r) for r in copies]
        self._recognizer = recognizer
        self.loaded.set()

    @property
    def recognizer(self) -> Recognizer:
        """The loaded recognizer; 503 while loading or when loading failed."""
        if not self.loaded.is_set():
            raise Problem("unavailable", "the models are still loading; retry shortly", {"Retry-After": "2"})
        if self._recognizer is None:
            raise Problem(
                "unavailable", f"the models could not be loaded: {self.load_error}", {"Retry-After": "30"}
            )
        return self._recognizer

    # -- running blocking work --------------------------------------------------------
    async def run(
        self, fn: Callable[..., T], *args: Any, models: bool = True, timeout: float | None = None
    ) -> T:
        """``fn(*args)`` in a worker thread, under the model lock when ``models``; a 504
        problem when the answer takes longer than ``timeout`` seconds (default: the
        limits' ``timeout_s``; the thread then finishes its work and its result is
        dropped)."""
        if models:
            _ = self.recognizer  # 503 at once while loading, not after the timeout

            def locked() -> T:
                with self.model_turn():
                    return fn(*args)

            call: Callable[[], T] = locked
        else:

            def call() -> T:
                return fn(*args)

        if timeout is None:
            timeout = self.config.limits.timeout_s
        try:
            with anyio.fail_after(timeout):
                return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
        except TimeoutError:
            raise Problem("timeout", f"no answer within {timeout:g} s; the service is overloaded") from None

    async def identify(
        self, images: list[Image], top_k: int, threshold: float | None, max_faces: int | None
    ) -> Identification:
        """:meth:`Gallery.identify` of ``images``, batched with the identify requests that
        wait beside it (:mod:`.batching`); image labels are ``image #1..n``. A 504 problem
        past ``timeout_s``."""
        _ = self.recognizer
        future = self.batcher.submit(images, top_k, threshold, max_faces)
        timeout = self.config.limits.timeout_s
        try:
            with anyio.fail_after(timeout):
                return await asyncio.wrap_future(future)
        except TimeoutError:
            future.cancel()
            raise Problem(
                "timeout", f"no answer within {timeout:g} s; the service may be overloaded"
            ) from None

    def yield_models(self, max_wait_s: float = 0.5) -> None:
        """Called between two steps by long work that holds the model lock (a calibration):
        when requests wait for the models, release the lock until they have taken it (at
        most ``max_wait_s``), then wait for it again, so recognition goes on meanwhile."""
        if self.model_waiting <= 0:
            return
        self.model_lock.release()
        try:
            deadline = time.monotonic() + max_wait_s
            while self.model_waiting > 0 and time.monotonic() < deadline:
                time.sleep(0.002)
        finally:
            self.model_lock.acquire()

    @contextmanager
    def model_turn(self) -> Iterator[None]:
        """Hold the model lock for one request's work, counted in :attr:`model_waiting`
        while waiting, so background work (streams) lets it go first."""
        with self._waiting_lock:
            self.model_waiting += 1
        try:
            self.model_lock.acquire()
        finally:
            with self._waiting_lock:
                self.model_waiting -= 1
        try:
            yield
        finally:
            self.model_lock.release()

    def close(self) -> None:
        self.batcher.close()
        self.store.close()
        self.db.close()
