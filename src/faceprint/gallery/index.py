"""Search indexes over a gallery :class:`~faceprint.gallery.records.Snapshot`: the one
entry point, :func:`open_index` / :func:`refresh_index`, and the contract they keep.

Every index answers the same question: for each query vector, the ``k`` enrolled faces
with the highest cosine similarity, best first, as *row numbers into the snapshot*
(``snapshot.face_ids[row]``, ``snapshot.persons[row]``). Vectors are L2-normalised, so the
dot product *is* the cosine similarity; similarities returned by every index are exact
float32 dot products (the ANN index re-scores its candidates against the snapshot), so
thresholds mean the same whichever index answered. Equal similarities are ordered by row.

Two kinds, one module each:

* :class:`~.exact.ExactIndex` (:mod:`.exact`) -- numpy matmul + ``argpartition``; perfect
  recall, no build, no file;
* :class:`~.ann.AnnIndex` (:mod:`.ann`) -- usearch HNSW (extra ``[ann]``), maintained
  incrementally: a graph over an earlier snapshot (:mod:`.hnsw`) plus an exact search of
  the faces enrolled since, minus the faces removed since; rebuilt only past the
  thresholds of :data:`~.hnsw.ANN_REBUILD_DELTA` and neighbours. Its files
  (:mod:`.ann_cache`) are a *cache*: the store (SQLite/PostgreSQL) is the source of truth,
  and losing or deleting them never loses data.

:func:`refresh_index` moves an index already in memory to a newer snapshot: the graph is
reused without reading any file. :func:`open_index` starts from the file (or builds).
``kind="auto"`` picks exact search up to :data:`EXACT_MAX_SIZE` faces and HNSW above; see
that constant for the measurement behind it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from ..errors import GalleryError
from .ann import ANN_CONNECTIVITY, ANN_EXPANSION_ADD, ANN_EXPANSION_SEARCH, AnnIndex
from .exact import ExactIndex
from .hnsw import ann_available
from .records import Snapshot

__all__ = [
    "ANN_CONNECTIVITY",
    "ANN_EXPANSION_ADD",
    "ANN_EXPANSION_SEARCH",
    "EXACT_MAX_SIZE",
    "KINDS",
    "AnnIndex",
    "ExactIndex",
    "SearchIndex",
    "ann_available",
    "open_index",
    "refresh_index",
]

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


def _resolve_kind(kind: str, n: int) -> str:
    """``"exact"`` or ``"ann"`` for a snapshot of ``n`` faces (see :func:`open_index`)."""
    if kind not in KINDS:
        raise GalleryError(f"index kind must be one of {', '.join(KINDS)}, found {kind!r}")
    if kind != "auto":
        return kind
    if n <= EXACT_MAX_SIZE:
        return "exact"
    if not ann_available():
        log.warning(
            "gallery has %d faces (> %d) but usearch is not installed: searching exactly; "
            "pip install 'faceprint[ann]' for faster search",
            n,
            EXACT_MAX_SIZE,
        )
        return "exact"
    return "ann"


def open_index(snapshot: Snapshot, path: Path | None = None, kind: str = "auto") -> SearchIndex:
    """An index over ``snapshot``, starting from the file at ``path`` when there is one.

    ``kind``: ``"exact"``, ``"ann"`` (usearch HNSW, cached at ``path`` when given), or
    ``"auto"``: exact up to :data:`EXACT_MAX_SIZE` faces, ANN above -- and exact, with a
    log message, when usearch is not installed. ``"ann"`` without usearch raises
    :class:`MissingExtraError` naming ``pip install 'faceprint[ann]'``.

    An ANN file built from an older snapshot is used with the changes since applied
    (module docstring), unless they pass the rebuild thresholds.
    """
    if _resolve_kind(kind, len(snapshot.face_ids)) == "exact":
        return ExactIndex(snapshot)
    return AnnIndex(snapshot, path)


def refresh_index(
    old: SearchIndex | None, snapshot: Snapshot, path: Path | None = None, kind: str = "auto"
) -> SearchIndex:
    """An index over ``snapshot``, reusing ``old`` (an index over an earlier snapshot of the
    same gallery) when it can: call this when the store's generation moves.

    Meant for ``Gallery.search_faces``: keep the index returned and pass it back as ``old``
    with the next snapshot. When ``old`` is an :class:`AnnIndex` over the same ``path`` and
    ``kind`` still resolves to ANN, its graph is kept in memory and only the faces enrolled
    or removed since are applied: no file is read or written, and the cost is mapping face
    ids (a tuple comparison when faces were only added, ~0.1-0.8 s at 1M faces otherwise)
    plus copying the new faces' vectors. When the changes pass the rebuild thresholds
    (:data:`~.hnsw.ANN_REBUILD_DELTA` and neighbours) the file at ``path`` is consulted (another
    process may have rebuilt it) and otherwise the graph is rebuilt with ``old``'s
    parameters and saved. In every other case (``old`` is ``None`` or exact, another path
    or kind) this is :func:`open_index`.

    ``old`` itself is left unchanged and still answers for its own snapshot; the new index
    shares its graph (so setting ``expansion_search`` on one affects both).
    """
    target = _resolve_kind(kind, len(snapshot.face_ids))
    same_path = isinstance(old, AnnIndex) and old.path == (Path(path) if path is not None else None)
    if target == "ann" and isinstance(old, AnnIndex) and same_path and snapshot.face_ids:
        new = old.refreshed(snapshot)
        if new is not None:
            return new
        return AnnIndex(snapshot, path, threads=old._threads, **old.params)
    return open_index(snapshot, path, kind=target)
