"""Identify requests that arrive together are served together.

One thread takes every identify request waiting in the queue (up to ``max_images`` images
in all), runs one :meth:`~faceprint.gallery.gallery.Gallery.identify` over all their
images under the model lock, and hands each request its own images' results. Detection
still runs image by image, but every face of the batch is embedded in one call and
searched in one call: on a CPU the embedder costs about the same for four faces as for
one, so under load each request pays for a share of a batch instead of a whole pass
(design rule 5: never one face at a time where a batch is possible).

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
    """The batching thread of one service (module doc); started on first use."""

    def __init__(self, service: Service, max_images: int = 16) -> None:
        self.service = service
        self.max_images = max_images
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(
        self, images: list[Image], top_k: int, threshold: float | None, max_faces: int | None
    ) -> Future[Identification]:
        """Queue one request; its future gets that request's :class:`Identification` (image
        labels ``image #1..n`` of its own images) or the exception its batch raised."""
        self._ensure_thread()
        job = _Job(list(images), (top_k, threshold, max_faces))
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="faceprint-identify", daemon=True)
                self._thread.start()

    def _take(self, first: _Job) -> tuple[list[_Job], list[_Job]]:
        """``first`` and the waiting jobs with its options (up to ``max_images`` images), and
        the waiting jobs with other options (served next)."""
        batch, others, n = [first], [], len(first.images)
        while True:
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

    def _loop(self) -> None:
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
                results = self._run(batch)
            except BaseException as exc:  # every request of the batch gets the error
                for j in batch:
                    j.future.set_exception(exc)
                continue
            for j, r in zip(batch, results, strict=True):
                j.future.set_result(r)

    def _run(self, batch: list[_Job]) -> list[Identification]:
        top_k, threshold, max_faces = batch[0].options
        images = [im for j in batch for im in j.images]
        with self.service.model_turn():
            gallery = self.service.gallery
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
