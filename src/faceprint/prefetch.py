"""Work done one step ahead in a background thread, so decoding overlaps inference.

Why: the pipeline decodes a chunk of images, then detects and embeds it; done in turn,
the cores that run the networks sit idle while JPEGs are decoded, and the other way
round. Pillow's and OpenCV's decoders and ONNX Runtime's kernels release the GIL, so one
thread decoding the next chunk while this one runs the networks is real overlap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ahead(items: Iterable[T], fn: Callable[[T], R]) -> Iterator[R]:
    """``fn(item)`` for each of ``items`` in order, each computed in a background thread
    while the caller works on the previous result. An exception from ``fn`` is raised
    where its result is taken, as a plain loop would; when the caller stops early (an
    error, Ctrl-C), the step already started finishes in the background and is dropped."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faceprint-prefetch")
    try:
        pending: Future[R] | None = None
        for item in items:
            started = pool.submit(fn, item)  # the next step starts before this one is handed over
            if pending is not None:
                yield pending.result()
            pending = started
        if pending is not None:
            yield pending.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
