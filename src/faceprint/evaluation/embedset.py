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
* **several pipelines in one pass** (:func:`embed_images_each`): each image is read once
  and run through every pipeline's detector; pipelines that share an embedder share one
  model, and the crops of a chunk of images are embedded in one batch;
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

from ..embedding import Embedder
from ..errors import EvaluationError, FaceprintError, InvalidArgumentError
from ..recognizer import Recognizer
from ..selection import central_face, largest_face
from ..types import Box, Face, Image

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
        name that is not registered, the defaults included, or ModelUnavailableError for an
        embedder MODEL_DIR that is incomplete or changed, without loading any model: a bad
        name must fail here, not in every worker process."""
        from ..recognizer import default_detector_name, default_embedder_name
        from ..registry import check_embedder, detectors

        det = self.detector or default_detector_name()
        if det not in detectors:
            detectors.resolve(det)  # raises, with the valid names
        check_embedder(self.embedder or default_embedder_name())

    def build(self, threads: int | None = None, embedder: Embedder | None = None) -> Recognizer:
        """The recognizer; ``embedder`` is a ready one to use instead of building this
        spec's (pipelines with the same embedder share its model)."""
        return Recognizer(
            self.detector,
            self.embedder if embedder is None else embedder,
            flip=self.flip,
            detector_options=dict(self.detector_options) or None,
            embedder_options=None if embedder is not None else dict(self.embedder_options) or None,
            threads=threads,
        )

    def embedder_key(self) -> str:
        """Specs with equal keys make identical embedders."""
        return repr((self.embedder, sorted(self.embedder_options.items())))


def pipeline_names(pipeline: PipelineSpec | Recognizer) -> tuple[str, str]:
    """(detector name, embedder name with ``+flip``) of ``pipeline``, without building it."""
    if isinstance(pipeline, Recognizer):
        return pipeline.detector_name, pipeline.embedder_name
    from ..recognizer import default_detector_name, default_embedder_name

    det = pipeline.detector or default_detector_name()
    return det, (pipeline.embedder or default_embedder_name()) + ("+flip" if pipeline.flip else "")


def pipeline_model_id(pipeline: PipelineSpec | Recognizer) -> str:
    """The id of ``pipeline``'s vectors (:func:`faceprint.embedding.model_id`): the id
    galleries are bound to. A spec's embedder is loaded (not its detector), since the id
    hashes the weights file it actually resolves."""
    if isinstance(pipeline, Recognizer):
        return pipeline.model_id
    from ..embedding import model_id
    from ..recognizer import default_embedder_name
    from ..registry import create_embedder

    name = pipeline.embedder or default_embedder_name()
    embedder = create_embedder(name, dict(pipeline.embedder_options) or None)
    return model_id(embedder, pipeline.flip)


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


Pipeline = PipelineSpec | Recognizer
#: A task: (path, sha256 key, indices of the pipelines that still need the image).
_Item = tuple[str, str, tuple[int, ...]]


def _build_all(pipelines: Sequence[Pipeline], threads: int | None) -> list[Recognizer]:
    """A recognizer per pipeline; specs with the same embedder share one embedder object."""
    shared: dict[str, Embedder] = {}
    recs = []
    for pl in pipelines:
        if isinstance(pl, Recognizer):
            recs.append(pl)
            continue
        rec = pl.build(threads, shared.get(pl.embedder_key()))
        shared.setdefault(pl.embedder_key(), rec.embedder)
        recs.append(rec)
    return recs


def _embed_chunk(
    recs: Sequence[Recognizer], items: Sequence[_Item], pick: str
) -> list[tuple[int, ImageResult]]:
    """(pipeline index, result) for every wanted pipeline of every image in ``items``: each
    image read once, each detector run on the chunk as one batch (MTCNN and SCRFD batch
    their networks), the chosen crops of recognizers sharing an embedder (and flip
    setting) embedded in one call."""
    from ..io import load_image

    out: list[tuple[int, ImageResult]] = []
    loaded: list[tuple[Path, str, Image, tuple[int, ...]]] = []
    for path_s, sha, wanted in items:
        path = Path(path_s)
        try:
            loaded.append((path, sha, load_image(path), wanted))
        except (FaceprintError, OSError) as exc:
            out.extend((j, ImageResult(path, sha, None, None, 0, str(exc))) for j in wanted)
    batches: dict[tuple[int, bool], list[tuple[list[Image], int, Path, str, Box, int]]] = {}
    for j, rec in enumerate(recs):
        mine = [x for x in loaded if j in x[3]]
        found = rec.detector.detect_batch([img for _, _, img, _ in mine]) if mine else []
        for (path, sha, img, _), faces in zip(mine, found, strict=True):
            chosen = _pick(faces, img.shape, pick)
            if chosen is None:
                out.append((j, ImageResult(path, sha, None, None, 0)))
                continue
            batches.setdefault((id(rec.embedder), rec.flip), []).append(
                (rec.crops(img, chosen), j, path, sha, chosen.box, len(faces))
            )
    for batch in batches.values():
        vecs = recs[batch[0][1]].embed_crops([c for b in batch for c in b[0]])
        for (_, j, path, sha, box, n), vec in zip(batch, vecs, strict=True):
            out.append((j, ImageResult(path, sha, np.asarray(vec, dtype=np.float32), box, n)))
    return out


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
    """The licence warnings of the pipeline's models (SCRFD's, an npm embedder's), once per
    run: given by the parent (``emit``), only marked as given in each worker, which would
    otherwise print them again."""
    from .. import models
    from ..registry import embedder_parts

    det, emb = pipeline_names(pipeline)
    for name in (det, *embedder_parts(emb.removesuffix("+flip"))):
        models.warn_licence_once(name, emit=emit)


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


def _worker_init(specs: list[PipelineSpec], env: dict[str, str]) -> None:
    """Build this worker's pipelines. A failure is kept and raised by the first task, so
    the parent gets ONE error (a failing initializer would instead be logged with its
    traceback in every worker, and multiprocessing.Pool would respawn workers forever)."""
    os.environ.update(env)
    try:
        import cv2

        # one worker per core: OpenCV's own pool (YuNet's OpenCV backend, warps) would
        # otherwise start a thread per core in every worker and oversubscribe the cores
        cv2.setNumThreads(1)
        for spec in specs:
            _licence_warning(spec, emit=False)
        _WORKER["recs"] = _build_all(specs, threads=1)
    except Exception as exc:
        _WORKER["error"] = _sendable(exc)


def _worker_run(task: tuple[list[_Item], str]) -> list[tuple[int, ImageResult]]:
    if "error" in _WORKER:
        raise _WORKER["error"]
    items, pick = task
    return _embed_chunk(_WORKER["recs"], items, pick)


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
    pipeline: Pipeline,
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
    caches = None if cache is None else [cache]
    return embed_images_each([pipeline], paths, pick, workers, progress, caches)[0]


def embed_images_each(
    pipelines: Sequence[Pipeline],
    paths: Sequence[Path],
    pick: str = "central",
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    caches: Sequence[EmbeddingCache] | None = None,
) -> list[dict[Path, ImageResult]]:
    """:func:`embed_images` for several pipelines in one pass over the images: each image
    is read once, run through every pipeline that still needs it, and the crops of
    pipelines sharing an embedder are embedded together. ``caches`` has one cache per
    pipeline. ``progress(n)`` is called as images complete for every pipeline. Returns one
    result dict per pipeline, in order. With any ready :class:`Recognizer` among the
    pipelines, everything runs in this process.
    """
    if pick not in PICKS:
        raise InvalidArgumentError(f"pick must be one of {', '.join(PICKS)}, got {pick!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InvalidArgumentError(f"workers must be an integer of at least 1, got {workers!r}")
    if not pipelines:
        raise InvalidArgumentError("no pipelines to embed with")
    if caches is not None and len(caches) != len(pipelines):
        raise InvalidArgumentError(f"{len(pipelines)} pipelines but {len(caches)} caches")
    paths = [Path(p) for p in paths]
    # An unreadable file gets a key of its own, so the embedder reports why it failed.
    keys = {p: file_sha256(p) or f"unreadable:{p}" for p in paths}
    unique: dict[str, Path] = {}
    copies: dict[str, int] = {}
    for p in paths:
        unique.setdefault(keys[p], p)
        copies[keys[p]] = copies.get(keys[p], 0) + 1
    n_workers = default_workers() if workers is None else workers
    by_key: list[dict[str, ImageResult]] = [{} for _ in pipelines]
    pkeys = [_pipeline_key(pl) for pl in pipelines]
    pending = {k: len(pipelines) for k in unique}

    def done(j: int, r: ImageResult) -> None:
        by_key[j][r.sha256] = r
        if caches is not None and not r.sha256.startswith("unreadable:"):
            caches[j].put((r.sha256, pick, pkeys[j]), r)
        pending[r.sha256] -= 1
        if progress is not None and pending[r.sha256] == 0:
            progress(copies[r.sha256])

    todo: list[_Item] = []
    for k, p in unique.items():
        wanted = []
        for j in range(len(pipelines)):
            hit = caches[j].get((k, pick, pkeys[j])) if caches is not None else None
            if hit is not None:
                done(j, hit)
            else:
                wanted.append(j)
        if wanted:
            todo.append((str(p), k, tuple(wanted)))

    chunks = [todo[i : i + CHUNK] for i in range(0, len(todo), CHUNK)]
    specs = [pl for pl in pipelines if isinstance(pl, PipelineSpec)]
    if len(specs) < len(pipelines) or n_workers == 1 or len(todo) < 2 * CHUNK:
        recs = _build_all(pipelines, threads=None)
        for chunk in chunks:
            for j, r in _embed_chunk(recs, chunk, pick):
                done(j, r)
    else:
        for spec in specs:
            _licence_warning(spec, emit=True)
        env = {k: v for k, v in os.environ.items() if k.startswith("FACEPRINT_")}
        pool = ProcessPoolExecutor(
            min(n_workers, len(chunks)), mp.get_context("spawn"), _worker_init, (specs, env)
        )
        try:
            with _workers_ignore_ctrl_c():
                results_in_order = pool.map(_worker_run, [(c, pick) for c in chunks])  # starts the workers
            for results in results_in_order:
                for j, r in results:
                    done(j, r)
        except BrokenProcessPool:
            raise EvaluationError(
                "a worker process died while embedding (out of memory, or a crash in native "
                "code); run with --workers 1 to see why"
            ) from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    outs: list[dict[Path, ImageResult]] = []
    for j in range(len(pipelines)):
        out: dict[Path, ImageResult] = {}
        for p in paths:
            r = by_key[j][keys[p]]
            out[p] = r if r.path == p else ImageResult(p, r.sha256, r.vector, r.box, r.faces, r.error)
        outs.append(out)
    return outs
