"""Exact (brute-force) cosine search, and the search contract every index shares.

Why a module of its own: exact search is both an index (:class:`ExactIndex`, used for
galleries up to :data:`~.index.EXACT_MAX_SIZE` faces) and a building block of the ANN
index, which searches the faces enrolled since its graph was built, and the queries its
graph cannot answer, with :func:`exact_search`.

Conventions (the contract of :class:`~.index.SearchIndex`):

* vectors are L2-normalised, so the dot product *is* the cosine similarity; similarities
  are float32 dot products, so thresholds mean the same whichever index answered;
* results are *row numbers into the snapshot* the index was built from
  (``snapshot.face_ids[row]``), best first; equal similarities are ordered by row;
* a query set is ``(Q, D)`` float32 (one ``(D,)`` vector is one query); ``k`` results
  are asked for and ``min(k, size)`` come back.

Queries are processed in chunks so the (chunk, N) score matrix stays ~64 MB.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import GalleryError, IncompatibleEmbeddingError
from .records import Snapshot

#: Scores of at most this many elements are materialised at once by exact search.
CHUNK_ELEMENTS = 16 * 1024 * 1024

#: From this many queries at once, a BLAS matmul beats one einsum pass per query.
_BLAS_MIN_QUERIES = 8

Result = tuple[NDArray[np.float32], NDArray[np.int64]]


def check_snapshot(snapshot: Snapshot) -> NDArray[np.float32]:
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


def check_queries(queries: Any, dim: int | None, k: Any) -> NDArray[np.float32]:
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


def _top_k(scores: NDArray[np.float32], k: int) -> Result:
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


def exact_search(vectors: NDArray[np.float32], q: NDArray[np.float32], k: int) -> Result:
    """Top-k rows of ``vectors`` for each of the checked queries ``q`` (k <= N)."""
    chunk = max(1, CHUNK_ELEMENTS // vectors.shape[0])
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


class IndexBase:
    """What every index does with a query before its own search: check the queries and
    ``k`` against the snapshot, clamp ``k`` to the number of faces, answer empty results
    for an empty snapshot or no queries. Subclasses implement :meth:`_search`."""

    kind: str
    size: int
    generation: int
    dim: int | None

    def search(self, queries: NDArray[np.floating[Any]], k: int) -> Result:
        """``(similarities (Q, k'), rows (Q, k'))``, ``k' = min(k, size)``; module doc."""
        q = check_queries(queries, self.dim, k)
        kk = min(int(k), self.size)
        if kk == 0 or q.shape[0] == 0:
            return np.zeros((q.shape[0], 0), np.float32), np.zeros((q.shape[0], 0), np.int64)
        return self._search(q, kk)

    def _search(self, q: NDArray[np.float32], k: int) -> Result:
        """Top ``k`` rows (``1 <= k <= size``) of each of the checked queries ``q``."""
        raise NotImplementedError


class ExactIndex(IndexBase):
    """Brute-force cosine search: exact, nothing to build or persist."""

    kind = "exact"

    def __init__(self, snapshot: Snapshot) -> None:
        self._vectors = check_snapshot(snapshot)
        self.size = int(self._vectors.shape[0])
        self.generation = snapshot.generation
        self.dim: int | None = int(self._vectors.shape[1]) or None

    def _search(self, q: NDArray[np.float32], k: int) -> Result:
        return exact_search(self._vectors, q, k)
