"""Search indexes over a gallery :class:`~faceprint.gallery.records.Snapshot`.

Every index answers the same question: for each query vector, the ``k`` enrolled faces
with the highest cosine similarity, best first, as *row numbers into the snapshot*
(``snapshot.face_ids[row]``, ``snapshot.persons[row]``). Vectors are L2-normalised, so the
dot product *is* the cosine similarity; similarities returned by every index are exact
float32 dot products (the ANN index re-scores its candidates against the snapshot), so
thresholds mean the same whichever index answered.

Two kinds:

* :class:`ExactIndex` -- numpy matmul + ``argpartition``; perfect recall, no build, no
  file. Queries are processed in chunks so the (chunk, N) score matrix stays ~64 MB.
* :class:`AnnIndex` -- usearch HNSW (extra ``[ann]``). It is a *cache*: the store
  (SQLite/PostgreSQL) is the source of truth. When given a ``path`` the graph is saved
  there with a JSON sidecar (``<path>.json``) recording the snapshot's generation, count,
  dimension and a digest of its face ids; it is loaded only when all of these match, and
  rebuilt from the snapshot (written atomically: temp file + ``os.replace``) when the file
  is missing, unreadable, corrupt or stale. Losing or deleting it never loses data.

``open_index(kind="auto")`` picks exact search up to :data:`EXACT_MAX_SIZE` faces and
HNSW above; see that constant for the measurement behind it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from ..errors import GalleryError, IncompatibleEmbeddingError, MissingExtraError
from .records import Snapshot

log = logging.getLogger(__name__)

#: Largest gallery (number of faces) searched exactly by ``kind="auto"``.
#:
#: Measured on the 2-core dev machine (shared with other jobs; clustered 128-D vectors,
#: one query per call, k=5; bench/gallery_scale.py and bench/results/gallery_scale.json):
#: exact p50 is 0.2-0.3 ms at 10k faces, 0.9 ms at 20k, 1.3 ms at 30k, 1.9 ms at 50k and
#: 5-8 ms at 100k; usearch HNSW answers in 0.1-0.3 ms at 10k and 0.5-1.5 ms at 100k.
#: HNSW is faster from ~10k on, exact crosses ~2 ms near 50k. We switch at 20k, where
#: exact is still under 1 ms -- nothing a user notices next to embedding a face (>= 10 ms)
#: -- while keeping perfect recall, no build and no cache file to keep in sync.
EXACT_MAX_SIZE = 20_000

#: HNSW parameters (usearch names). ef_add=64 halves the build time of ef_add=128 at
#: 100k faces (23 s vs 48 s, 2 cores); ef_search=256 then gives recall@1 0.98-0.997
#: against exact at 100k clustered faces for ~1.4 ms per query. Raise ``expansion_search``
#: for more recall (512: 1.000, ~2.2 ms).
ANN_CONNECTIVITY = 16
ANN_EXPANSION_ADD = 64
ANN_EXPANSION_SEARCH = 256

#: Scores of at most this many elements are materialised at once by exact search.
_CHUNK_ELEMENTS = 16 * 1024 * 1024

#: From this many queries at once, a BLAS matmul beats one einsum pass per query.
_BLAS_MIN_QUERIES = 8

_SIDECAR_VERSION = 1

KINDS = ("auto", "exact", "ann")


@runtime_checkable
class SearchIndex(Protocol):
    """A k-nearest-neighbour index over one snapshot of a gallery.

    ``search(queries (Q, D) float32, k)`` returns ``(similarities (Q, k'), rows (Q, k'))``
    with ``k' = min(k, size)``: cosine similarities as float32, best first, and int64 row
    numbers into the snapshot the index was built from.
    """

    kind: str
    size: int
    generation: int
    dim: int | None

    def search(
        self, queries: NDArray[np.floating[Any]], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]: ...


def _check_snapshot(snapshot: Snapshot) -> NDArray[np.float32]:
    """The snapshot's vectors as a C-contiguous (N, D) float32 array, or GalleryError."""
    vecs = np.asarray(snapshot.vectors)
    n = len(snapshot.face_ids)
    if vecs.size == 0 and n == 0:
        dim = vecs.shape[1] if vecs.ndim == 2 else 0
        return np.zeros((0, dim), np.float32)
    if vecs.ndim != 2 or vecs.shape[0] != n or len(snapshot.persons) != n:
        raise GalleryError(
            f"snapshot is inconsistent: expected vectors of shape (N, D) with N = {n} face ids "
            f"and {len(snapshot.persons)} persons, found vectors of shape {vecs.shape}"
        )
    if not np.issubdtype(vecs.dtype, np.floating):
        raise GalleryError(f"snapshot vectors must be floating point, found dtype {vecs.dtype}")
    return np.ascontiguousarray(vecs, dtype=np.float32)


def _check_queries(queries: Any, dim: int | None, k: Any) -> NDArray[np.float32]:
    """Queries as (Q, D) float32; a single (D,) vector is taken as one query."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise GalleryError(f"k must be a positive integer, found {k!r}")
    q = np.asarray(queries)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2:
        raise GalleryError(f"queries must have shape (Q, D) or (D,), found shape {q.shape}")
    if not np.issubdtype(q.dtype, np.floating):
        raise GalleryError(f"queries must be floating point (float32), found dtype {q.dtype}")
    if dim is not None and dim > 0 and q.shape[1] != dim:
        raise IncompatibleEmbeddingError(
            f"queries have {q.shape[1]} dimensions but the gallery's vectors have {dim}: "
            "they come from another embedder"
        )
    q = np.ascontiguousarray(q, dtype=np.float32)
    if q.size and not np.isfinite(q).all():
        raise GalleryError("queries contain NaN or infinite values")
    return q


def _empty_result(q: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    return np.zeros((q, 0), np.float32), np.zeros((q, 0), np.int64)


def _top_k(scores: NDArray[np.float32], k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Per row of ``scores`` the k largest, sorted descending (ties: lower row first)."""
    n = scores.shape[1]
    if k < n:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), scores.shape).copy()
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    rows = np.take_along_axis(part, order, axis=1).astype(np.int64)
    return np.take_along_axis(part_scores, order, axis=1), rows


def _exact_search(
    vectors: NDArray[np.float32], q: NDArray[np.float32], k: int
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Top-k rows of ``vectors`` for each of the checked queries ``q`` (k <= N)."""
    chunk = max(1, _CHUNK_ELEMENTS // vectors.shape[0])
    sims = np.empty((q.shape[0], k), np.float32)
    rows = np.empty((q.shape[0], k), np.int64)
    for start in range(0, q.shape[0], chunk):
        block = q[start : start + chunk]
        if len(block) < _BLAS_MIN_QUERIES:
            # A few queries: numpy's own single-threaded loop. Multithreaded BLAS gemv was
            # 3x slower (16 vs 5.5 ms at 100k faces) on a 2-core machine shared with other work.
            scores = np.stack([np.einsum("nd,d->n", vectors, v) for v in block])
        else:
            scores = block @ vectors.T
        sims[start : start + chunk], rows[start : start + chunk] = _top_k(scores, k)
    return sims, rows


class ExactIndex:
    """Brute-force cosine search: exact, nothing to build or persist."""

    kind = "exact"

    def __init__(self, snapshot: Snapshot) -> None:
        self._vectors = _check_snapshot(snapshot)
        self.size = int(self._vectors.shape[0])
        self.generation = snapshot.generation
        self.dim: int | None = int(self._vectors.shape[1]) or None

    def search(
        self, queries: NDArray[np.floating[Any]], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        q = _check_queries(queries, self.dim, k)
        kk = min(int(k), self.size)
        if kk == 0 or q.shape[0] == 0:
            return _empty_result(q.shape[0])
        return _exact_search(self._vectors, q, kk)


def _usearch() -> Any:
    try:
        # onnxruntime must be loaded before usearch: the other order segfaults in
        # onnxruntime's module init (usearch 2.26 / numkong 7.8 with onnxruntime 1.32).
        import onnxruntime  # type: ignore[import-untyped]  # noqa: F401
        from usearch.index import Index
    except ImportError as exc:
        raise MissingExtraError(
            "the ANN index needs usearch, which is not installed: run pip install 'faceprint[ann]'"
        ) from exc
    return Index


def ann_available() -> bool:
    """Whether usearch (extra ``[ann]``) can be imported."""
    try:
        _usearch()
    except MissingExtraError:
        return False
    return True


def _ids_digest(face_ids: tuple[str, ...]) -> str:
    """sha256 of the face ids in row order: ties the file to *this* gallery's rows."""
    h = hashlib.sha256()
    for fid in face_ids:
        h.update(fid.encode())
        h.update(b"\n")
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then move the result onto ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache is as readable as the gallery dir
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class AnnIndex:
    """usearch HNSW index over a snapshot, optionally cached in a file.

    ``dtype`` is the storage type of the vectors inside the graph: ``"f32"`` (default),
    ``"f16"`` (half the memory) or ``"i8"`` (a quarter). Similarities returned are always
    re-scored exactly against the snapshot's float32 vectors; the quantised storage only
    affects which candidates the graph finds.
    """

    kind = "ann"

    def __init__(
        self,
        snapshot: Snapshot,
        path: Path | str | None = None,
        *,
        dtype: str = "f32",
        connectivity: int = ANN_CONNECTIVITY,
        expansion_add: int = ANN_EXPANSION_ADD,
        expansion_search: int = ANN_EXPANSION_SEARCH,
        threads: int = 0,
    ) -> None:
        index_cls = _usearch()
        self._vectors = _check_snapshot(snapshot)
        self.size = int(self._vectors.shape[0])
        self.generation = snapshot.generation
        self.dim: int | None = int(self._vectors.shape[1]) or None
        self.path = Path(path) if path is not None else None
        self.rebuilt = False
        self.build_seconds = 0.0
        self._threads = threads
        self._meta: dict[str, Any] = {
            "version": _SIDECAR_VERSION,
            "generation": snapshot.generation,
            "count": self.size,
            "dim": self.dim or 0,
            "dtype": dtype,
            "connectivity": connectivity,
            "expansion_add": expansion_add,
            "ids_sha256": _ids_digest(snapshot.face_ids),
        }
        self._index: Any = None
        if self.size == 0:
            return
        if self.path is not None:
            self._index = self._load(index_cls)
        if self._index is None:
            t = time.perf_counter()
            self._index = index_cls(
                ndim=self.dim,
                metric="ip",
                dtype=dtype,
                connectivity=connectivity,
                expansion_add=expansion_add,
                expansion_search=expansion_search,
                enable_key_lookups=False,
            )
            self._index.add(np.arange(self.size, dtype=np.uint64), self._vectors, threads=threads)
            self.build_seconds = time.perf_counter() - t
            self.rebuilt = True
            if self.path is not None:
                self._save()
        self._index.expansion_search = expansion_search

    @property
    def sidecar(self) -> Path | None:
        return None if self.path is None else self.path.with_name(self.path.name + ".json")

    def _load(self, index_cls: Any) -> Any:
        """The cached graph if file and sidecar match this snapshot, else ``None``."""
        assert self.path is not None and self.sidecar is not None
        if not self.path.exists():
            log.info("ANN index %s missing: building it from the gallery", self.path)
            return None
        try:
            meta = json.loads(self.sidecar.read_text())
            stale = {k: (meta.get(k), v) for k, v in self._meta.items() if meta.get(k) != v}
            if stale:
                log.info("ANN index %s is stale (%s): rebuilding it", self.path, stale)
                return None
            # Checked before usearch parses it: a damaged graph can load "fine" and answer
            # wrong rows (or worse). sha256 runs at ~1.8 GB/s here: ~0.4 s at 1M faces.
            if meta.get("bytes") != self.path.stat().st_size or meta.get("sha256") != _file_sha256(self.path):
                raise ValueError("file does not match the checksum recorded in its sidecar")
            index = index_cls.restore(str(self.path))
            if index is None or len(index) != self.size or index.ndim != self.dim:
                raise ValueError("not a usearch index of the recorded size and dimension")
            return index
        except (OSError, ValueError, RuntimeError, TypeError, AttributeError) as exc:
            log.warning("ANN index %s is unreadable (%s): rebuilding it from the gallery", self.path, exc)
            return None

    def _save(self) -> None:
        """Write graph then sidecar, each atomically. A crash between the two leaves a
        sidecar that does not describe the new file (size/generation), so it is rebuilt."""
        assert self.path is not None and self.sidecar is not None
        try:
            _atomic_write(self.path, lambda tmp: self._index.save(str(tmp)))
            meta = {**self._meta, "bytes": self.path.stat().st_size, "sha256": _file_sha256(self.path)}
            _atomic_write(self.sidecar, lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))
        except OSError as exc:  # a cache we cannot write is not an error: search still works
            log.warning("could not save ANN index to %s (%s): it will be rebuilt next time", self.path, exc)

    @property
    def expansion_search(self) -> int:
        return int(self._index.expansion_search) if self._index is not None else ANN_EXPANSION_SEARCH

    @expansion_search.setter
    def expansion_search(self, value: int) -> None:
        if self._index is not None:
            self._index.expansion_search = int(value)

    @property
    def memory_bytes(self) -> int:
        """Bytes usearch holds for the graph and its vectors (not the snapshot copy)."""
        return int(self._index.memory_usage) if self._index is not None else 0

    def search(
        self, queries: NDArray[np.floating[Any]], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        q = _check_queries(queries, self.dim, k)
        kk = min(int(k), self.size)
        if kk == 0 or q.shape[0] == 0:
            return _empty_result(q.shape[0])
        res = self._index.search(q, kk, threads=self._threads)
        keys = np.asarray(res.keys).reshape(q.shape[0], -1)[:, :kk].astype(np.int64)
        # one query comes back as ``Matches`` (len = found), several as ``BatchMatches``
        counts = np.asarray(res.counts) if hasattr(res, "counts") else np.asarray([len(res)])
        short = counts.reshape(-1) < kk
        keys[short] = 0  # placeholders, answered exactly below
        # Re-score candidates exactly: true float32 cosine whatever the graph's storage dtype.
        sims = np.einsum("qkd,qd->qk", self._vectors[keys], q).astype(np.float32, copy=False)
        order = np.lexsort((keys, -sims), axis=1)
        sims, rows = np.take_along_axis(sims, order, axis=1), np.take_along_axis(keys, order, axis=1)
        if short.any():  # the graph found fewer than k' (tiny or poorly connected): answer exactly
            sims[short], rows[short] = _exact_search(self._vectors, q[short], kk)
        return sims, rows


def open_index(snapshot: Snapshot, path: Path | None = None, kind: str = "auto") -> SearchIndex:
    """An index over ``snapshot``.

    ``kind``: ``"exact"``, ``"ann"`` (usearch HNSW, cached at ``path`` when given), or
    ``"auto"``: exact up to :data:`EXACT_MAX_SIZE` faces, ANN above -- and exact, with a
    log message, when usearch is not installed. ``"ann"`` without usearch raises
    :class:`MissingExtraError` naming ``pip install 'faceprint[ann]'``.
    """
    if kind not in KINDS:
        raise GalleryError(f"index kind must be one of {', '.join(KINDS)}, found {kind!r}")
    if kind == "exact":
        return ExactIndex(snapshot)
    if kind == "ann":
        return AnnIndex(snapshot, path)
    if len(snapshot.face_ids) <= EXACT_MAX_SIZE:
        return ExactIndex(snapshot)
    if not ann_available():
        log.warning(
            "gallery has %d faces (> %d) but usearch is not installed: searching exactly; "
            "pip install 'faceprint[ann]' for faster search",
            len(snapshot.face_ids),
            EXACT_MAX_SIZE,
        )
        return ExactIndex(snapshot)
    return AnnIndex(snapshot, path)
