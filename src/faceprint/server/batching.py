"""Identify requests that arrive together are served together, on every model copy.

One thread per model copy (:attr:`~.engine.Service.copies`, ``parallel`` in all) takes
every identify request waiting in the shared queue (up to ``max_images`` images in all),
runs one :meth:`~faceprint.gallery.gallery.Gallery.identify` over all their images on its
copy, and hands each request its own images' results. The first thread uses the first
copy under the model lock (it shares that copy with the other model routes and streams);
each other thread owns its copy alone. Every face of a batch is embedded in one call and
searched in one call (design rule 5: never one face at a time where a batch is
possible), while detection, the largest cost, runs image by image: so under load the
copies working side by side are what spreads a request's cost over the cores.

Requests are grouped by their ``(top_k, threshold, max_faces)``: a batch never mixes
options, so every answer is exactly what its request would get alone.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..gallery.results import Identification
    from ..types import Image
    from .engine import Service

log = logging.getLogger("faceprint.server")


@dataclass
class _Job:
    images: list[Image]
    options: tuple[int, float | None, int | None]
    future: Future[Identification] = field(default_factory=Future)


class IdentifyBatcher:
    """The batching threads of one service (module doc); started on first use."""

    def __init__(self, service: Service, max_images: int = 16) -> None:
        self.service = service
        self.max_images = max_images
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        #: images identified by each slot's thread (slot 0: the shared first copy)
        self.served: dict[int, int] = {}

    def submit(
        self, images: list[Image], top_k: int, threshold: float | None, max_faces: int | None
    ) -> Future[Identification]:
        """Queue one request; its future gets that request's :class:`Identification` (image
        labels ``image #1..n`` of its own images) or the exception its batch raised."""
        self._ensure_threads()
        job = _Job(list(images), (top_k, threshold, max_faces))
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def _ensure_threads(self) -> None:
        """One thread per model copy: slot 0 is the shared first copy, the others own theirs."""
        with self._start_lock:
            want = 1 + len(self.service.copies)
            while len(self._threads) < want:
                self._threads.append(self._start(len(self._threads)))
            for i, t in enumerate(self._threads):
                if not t.is_alive():
                    self._threads[i] = self._start(i)

    def _start(self, slot: int) -> threading.Thread:
        t = threading.Thread(target=self._loop, args=(slot,), name=f"faceprint-identify-{slot}", daemon=True)
        t.start()
        return t

    def _take(self, first: _Job) -> tuple[list[_Job], list[_Job]]:
        """``first`` and the waiting jobs with its options (up to ``max_images`` images and
        this thread's share of the jobs waiting), and the waiting jobs with other options
        it met meanwhile (served next)."""
        batch, others, n = [first], [], len(first.images)
        # With several copies, a thread takes its share of what waits, not all of it:
        # batching saves little (detection is per image) while an idle copy saves a lot.
        share = -(-(1 + self._queue.qsize()) // max(1, len(self._threads)))
        while len(batch) < share:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)
                break
            if job.options == first.options and n + len(job.images) <= self.max_images:
                batch.append(job)
                n += len(job.images)
            else:
                others.append(job)
        return batch, others

    def _loop(self, slot: int) -> None:
        pending: list[_Job] = []
        while True:
            job = pending.pop(0) if pending else self._queue.get()
            if job is None:
                return
            batch, others = self._take(job)
            pending.extend(others)
            batch = [j for j in batch if j.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                results = self._run(batch, slot)
            except BaseException as exc:  # every request of the batch gets the error
                for j in batch:
                    j.future.set_exception(exc)
                continue
            self.served[slot] = self.served.get(slot, 0) + sum(len(j.images) for j in batch)
            for j, r in zip(batch, results, strict=True):
                j.future.set_result(r)

    def _run(self, batch: list[_Job], slot: int) -> list[Identification]:
        top_k, threshold, max_faces = batch[0].options
        images = [im for j in batch for im in j.images]
        if slot == 0 or slot > len(self.service.copies):  # (copies dropped by a new attach)
            with self.service.model_turn():
                gallery = self.service.gallery
                whole = gallery.identify(images, top_k=top_k, threshold=threshold, max_faces=max_faces)
        else:
            gallery = self.service.copies[slot - 1]
            whole = gallery.identify(images, top_k=top_k, threshold=threshold, max_faces=max_faces)
        out, i = [], 0
        for j in batch:
            n = len(j.images)
            dropped = whole.dropped[i : i + n] if whole.dropped else ()
            out.append(
                replace(
                    whole,
                    images=tuple(f"image #{k + 1}" for k in range(n)),
                    results=whole.results[i : i + n],
                    dropped=dropped if any(dropped) else (),
                )
            )
            i += n
        return out
