"""Embed a set of evaluation images once each, on every core.

Evaluation time is embedding time, so every evaluator goes through :func:`embed_images`:

* **once per image content**: paths are keyed by the sha256 of their bytes and the
  pipeline (detector, embedder, flip), so an image listed in many pairs, or copied
  under two names, is embedded once per run;
* **on every core**: with ``workers > 1`` the images are split into chunks and embedded by
  worker *processes* (``spawn``: each builds its own pipeline from a :class:`PipelineSpec`
  with one onnxruntime thread), which on this project's 2-core machine beats one process
  with two intra-op threads because detection and decoding run in parallel too. Component
  names are checked before any worker starts; a worker that cannot build its pipeline (a
  broken model file) or dies ends the run with one error, never a pool that respawns
  failing workers forever;
* **one face per image**: ``pick="central"`` takes the face nearest the image centre
  (LFW labels that one), ``"largest"`` the largest (a user's own labelled photos). The
  number of faces the detector found is kept, so reports can say how many images held
  several faces or none.

An image that cannot be read is not an exception: its :class:`ImageResult` carries the
error, and evaluators count it as a failure to detect (it counts against the system).
Vectors are unit-length float32 (cosine similarity = dot product).
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import pickle
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import EvaluationError, FaceprintError, InvalidArgumentError
from ..recognizer import Recognizer
from ..selection import central_face, largest_face
from ..types import Box, Face

PICKS = ("central", "largest")
#: Images per task sent to a worker process: large enough to amortise the round trip,
#: small enough to keep the progress bar moving and both cores busy to the end.
CHUNK = 8


@dataclass(frozen=True)
class PipelineSpec:
    """How to build a :class:`Recognizer` in another process (names, not objects)."""

    detector: str | None = None
    embedder: str | None = None
    flip: bool = False
    detector_options: Mapping[str, Any] = field(default_factory=dict)
    embedder_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise UnknownComponentError (listing the valid names) for a detector or embedder
        name that is not registered, the defaults included, without loading any model:
        a bad name must fail here, not in every worker process."""
        from ..recognizer import DEFAULT_EMBEDDER, default_detector_name
        from ..registry import detectors, embedders

        for registry, name in ((detectors, self.detector), (embedders, self.embedder)):
            if name is not None and name not in registry:
                registry.resolve(name)  # raises, with the valid names
        det = self.detector or default_detector_name()
        if det not in detectors:
            detectors.resolve(det)
        if self.embedder is None:
            from ..config import get_settings

            emb = get_settings().embedder or DEFAULT_EMBEDDER
            if emb not in embedders:
                embedders.resolve(emb)

    def build(self, threads: int | None = None) -> Recognizer:
        return Recognizer(
            self.detector,
            self.embedder,
            flip=self.flip,
            detector_options=dict(self.detector_options) or None,
            embedder_options=dict(self.embedder_options) or None,
            threads=threads,
        )


def pipeline_names(pipeline: PipelineSpec | Recognizer) -> tuple[str, str]:
    """(detector name, embedder name with ``+flip``) of ``pipeline``, without building it."""
    if isinstance(pipeline, Recognizer):
        return pipeline.detector_name, pipeline.embedder_name
    from ..recognizer import DEFAULT_EMBEDDER, default_detector_name

    det = pipeline.detector or default_detector_name()
    return det, (pipeline.embedder or DEFAULT_EMBEDDER) + ("+flip" if pipeline.flip else "")


def pipeline_model_id(pipeline: PipelineSpec | Recognizer) -> str:
    """``name@version(+flip)`` of ``pipeline``'s vectors: the id galleries are bound to."""
    from ..embedding import model_id

    if isinstance(pipeline, Recognizer):
        return model_id(pipeline.embedder) + ("+flip" if pipeline.flip else "")
    from ..recognizer import DEFAULT_EMBEDDER
    from ..registry import embedders

    cls = embedders.resolve(pipeline.embedder or DEFAULT_EMBEDDER)
    return f"{cls.name}@{cls.version}" + ("+flip" if pipeline.flip else "")


@dataclass(frozen=True)
class ImageResult:
    """One image's chosen face: its vector (``None`` when no face was found or the image
    could not be read), box (xyxy pixels), the number of faces found, and the read error."""

    path: Path
    sha256: str
    vector: NDArray[np.float32] | None
    box: Box | None
    faces: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.vector is not None


def _pick(faces: list[Face], shape: tuple[int, ...], pick: str) -> Face | None:
    return largest_face(faces) if pick == "largest" else central_face(faces, shape)


def _embed_one(rec: Recognizer, path: Path, sha: str, pick: str) -> ImageResult:
    from ..io import load_image

    try:
        img = load_image(path)
    except (FaceprintError, OSError) as exc:
        return ImageResult(path, sha, None, None, 0, str(exc))
    faces = rec.detector.detect(img)
    chosen = _pick(faces, img.shape, pick)
    if chosen is None:
        return ImageResult(path, sha, None, None, 0)
    (f,) = rec.embed(img, [chosen])
    vec = np.asarray(f.embedding, dtype=np.float32)
    return ImageResult(path, sha, vec, f.box, len(faces))


_WORKER: dict[str, Any] = {}


def _sendable(exc: BaseException) -> Exception:
    """``exc`` as an error the parent can unpickle: a FaceprintError as it is, anything
    else (onnxruntime's, dlib's) as an EvaluationError that names it."""
    if isinstance(exc, FaceprintError):
        try:
            pickle.loads(pickle.dumps(exc))
            return exc
        except Exception:  # an error class that cannot be rebuilt from its args
            pass
    kind = f"{type(exc).__module__}.{type(exc).__name__}".removeprefix("builtins.")
    return EvaluationError(f"a worker process could not build the pipeline: {kind}: {exc}")


def _licence_warning(pipeline: PipelineSpec, emit: bool) -> None:
    """SCRFD's licence warning, once per run: given by the parent (``emit``), only marked
    as given in each worker, which would otherwise print it again."""
    if pipeline_names(pipeline)[0] == "scrfd":
        from ..detection.scrfd import warn_licence_once

        warn_licence_once(emit=emit)


@contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """Start worker processes with SIGINT blocked, a mask they inherit and keep, so Ctrl-C
    stops the run through this process alone, without a traceback from every worker
    caught mid-import. Blocked, not ignored: a Ctrl-C while the workers start is held
    and delivered here when this ends. POSIX only (elsewhere nothing changes)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _worker_init(spec: PipelineSpec, env: dict[str, str]) -> None:
    """Build this worker's pipeline. A failure is kept and raised by the first task, so
    the parent gets ONE error (a failing initializer would instead be logged with its
    traceback in every worker, and multiprocessing.Pool would respawn workers forever)."""
    os.environ.update(env)
    try:
        _licence_warning(spec, emit=False)
        _WORKER["rec"] = spec.build(threads=1)
    except Exception as exc:
        _WORKER["error"] = _sendable(exc)


def _worker_run(task: tuple[list[tuple[str, str]], str]) -> list[ImageResult]:
    if "error" in _WORKER:
        raise _WORKER["error"]
    items, pick = task
    return [_embed_one(_WORKER["rec"], Path(p), sha, pick) for p, sha in items]


def file_sha256(path: Path) -> str:
    """sha256 of the file's bytes; ``""`` when it cannot be read (the embedder reports why)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return ""
    return h.hexdigest()


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


class EmbeddingCache:
    """Results kept across several evaluations of one run (e.g. a benchmark that runs
    verification, calibration and identification on the same images), keyed by image
    sha256, face choice and pipeline. In memory only: a later run embeds again, so a
    changed model file can never be answered from stale vectors."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str, str], ImageResult] = {}

    def get(self, key: tuple[str, str, str]) -> ImageResult | None:
        return self._items.get(key)

    def put(self, key: tuple[str, str, str], value: ImageResult) -> None:
        self._items[key] = value

    def __len__(self) -> int:
        return len(self._items)


def _pipeline_key(pipeline: PipelineSpec | Recognizer) -> str:
    if isinstance(pipeline, Recognizer):
        return f"recognizer@{id(pipeline)}"
    opts = (sorted(pipeline.detector_options.items()), sorted(pipeline.embedder_options.items()))
    return repr((pipeline.detector, pipeline.embedder, pipeline.flip, opts))


def embed_images(
    pipeline: PipelineSpec | Recognizer,
    paths: Sequence[Path],
    pick: str = "central",
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    cache: EmbeddingCache | None = None,
) -> dict[Path, ImageResult]:
    """Embed the chosen face of every image in ``paths`` (see the module doc).

    ``pipeline`` is a :class:`PipelineSpec` (may use worker processes) or a ready
    :class:`Recognizer` (always in this process: its objects cannot be sent elsewhere).
    ``workers`` defaults to one per core. ``progress(n)`` is called as images complete
    (counting every path, duplicates included). ``cache`` answers images embedded by an
    earlier call of the same run. Returns a result for every path.
    """
    if pick not in PICKS:
        raise InvalidArgumentError(f"pick must be one of {', '.join(PICKS)}, got {pick!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InvalidArgumentError(f"workers must be an integer of at least 1, got {workers!r}")
    paths = [Path(p) for p in paths]
    # An unreadable file gets a key of its own, so the embedder reports why it failed.
    keys = {p: file_sha256(p) or f"unreadable:{p}" for p in paths}
    unique: dict[str, Path] = {}
    copies: dict[str, int] = {}
    for p in paths:
        unique.setdefault(keys[p], p)
        copies[keys[p]] = copies.get(keys[p], 0) + 1
    n_workers = default_workers() if workers is None else workers
    by_key: dict[str, ImageResult] = {}
    pkey = _pipeline_key(pipeline)

    def done(results: list[ImageResult]) -> None:
        for r in results:
            by_key[r.sha256] = r
            if cache is not None and not r.sha256.startswith("unreadable:"):
                cache.put((r.sha256, pick, pkey), r)
            if progress is not None:
                progress(copies[r.sha256])

    todo = []
    for k, p in unique.items():
        hit = cache.get((k, pick, pkey)) if cache is not None else None
        if hit is not None:
            done([hit])
        else:
            todo.append((str(p), k))

    if isinstance(pipeline, Recognizer) or n_workers == 1 or len(todo) < 2 * CHUNK:
        rec = pipeline if isinstance(pipeline, Recognizer) else pipeline.build()
        for path, key in todo:
            done([_embed_one(rec, Path(path), key, pick)])
    else:
        _licence_warning(pipeline, emit=True)
        chunks = [(todo[i : i + CHUNK], pick) for i in range(0, len(todo), CHUNK)]
        env = {k: v for k, v in os.environ.items() if k.startswith("FACEPRINT_")}
        pool = ProcessPoolExecutor(
            min(n_workers, len(chunks)), mp.get_context("spawn"), _worker_init, (pipeline, env)
        )
        try:
            with _workers_ignore_ctrl_c():
                results_in_order = pool.map(_worker_run, chunks)  # starts the workers
            for results in results_in_order:
                done(results)
        except BrokenProcessPool:
            raise EvaluationError(
                "a worker process died while embedding (out of memory, or a crash in native "
                "code); run with --workers 1 to see why"
            ) from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    out: dict[Path, ImageResult] = {}
    for p in paths:
        r = by_key[keys[p]]
        out[p] = r if r.path == p else ImageResult(p, r.sha256, r.vector, r.box, r.faces, r.error)
    return out
