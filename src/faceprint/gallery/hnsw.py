"""The usearch HNSW graph of the ANN index, and how it maps onto newer snapshots.

Why a module of its own: a graph is expensive (minutes to build at 1M faces), so one
graph serves many snapshots of a changing gallery, and the rules for when it may -- the
rebuild thresholds -- belong with it rather than with the search code.

Conventions:

* a :class:`Graph` covers the faces of the snapshot it was built from, its *base*:
  graph key ``i`` is the base's face ``ids[i]``;
* faces are only ever added or removed, and a face id names one vector for good, so a
  newer snapshot relates to the base by face id alone (:meth:`Graph.map`): the *delta*
  (faces enrolled since, searched exactly beside the graph) and the *tombstones* (base
  faces removed since, dropped from the graph's answers);
* a graph is shared, read-only, by every index derived from it.

usearch is the extra ``[ann]``; :func:`ann_available` says whether it can be imported.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import MissingExtraError

#: The graph is rebuilt when more than ``max(ANN_REBUILD_DELTA, ANN_REBUILD_DELTA_FRACTION
#: * base)`` faces were enrolled since it was built, or more than
#: ``ANN_REBUILD_TOMBSTONE_FRACTION * base`` of its faces were removed.
#:
#: Why these: every query pays an exact search over the delta -- measured p50 0.9 ms at 20k
#: vectors and 1.9 ms at 50k (see :data:`~.index.EXACT_MAX_SIZE`) -- while a rebuild costs
#: about 854 s at 1M faces (2 cores) and blocks the search that triggers it. Up to 20k new
#: faces, or 5% of the base (50k at 1M, i.e. at most ~2 ms added to a ~5 ms query), the
#: exact delta is the cheaper side. Removed faces cost over-fetching from the graph (and
#: memory for dead nodes); beyond 10% of the graph a query of a removed person risks
#: coming back with too few live candidates and falling back to exact search.
ANN_REBUILD_DELTA = 20_000
ANN_REBUILD_DELTA_FRACTION = 0.05
ANN_REBUILD_TOMBSTONE_FRACTION = 0.10


def usearch_index() -> Any:
    """usearch's ``Index`` class, or :class:`MissingExtraError` naming the extra to install."""
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
        usearch_index()
    except MissingExtraError:
        return False
    return True


class KeyMapping:
    """Where the faces of one graph (its base) are in a newer snapshot.

    ``key_row[key]``: the current row of graph key ``key``, -1 for a removed face.
    ``delta_rows``: current rows of faces the graph does not hold (enrolled since).
    """

    def __init__(self, key_row: NDArray[np.int64], delta_rows: NDArray[np.int64]) -> None:
        self.key_row = key_row
        self.delta_rows = delta_rows
        self.tombstones = int(np.count_nonzero(key_row < 0))

    def rebuild_reason(self) -> str | None:
        """Why the graph is too far behind to keep (see :data:`ANN_REBUILD_DELTA`), or None."""
        base, delta = len(self.key_row), len(self.delta_rows)
        max_delta = max(ANN_REBUILD_DELTA, int(ANN_REBUILD_DELTA_FRACTION * base))
        if delta > max_delta:
            return f"{delta} faces enrolled since it was built (rebuilt above {max_delta})"
        max_tomb = int(ANN_REBUILD_TOMBSTONE_FRACTION * base)
        if self.tombstones > max_tomb:
            return f"{self.tombstones} of its {base} faces removed since (rebuilt above {max_tomb})"
        return None


class Graph:
    """A usearch HNSW graph over one snapshot, the *base*: key ``i`` is ``ids[i]``.

    Shared, read-only, by every :class:`~.ann.AnnIndex` derived from it by
    :func:`~.index.refresh_index`.
    """

    def __init__(self, index: Any, ids: tuple[str, ...], generation: int) -> None:
        self.index = index
        self.ids = ids
        self.generation = generation
        self._position: dict[str, int] | None = None

    def map(self, face_ids: tuple[str, ...]) -> KeyMapping:
        """Keys -> rows of a snapshot with these ``face_ids``.

        Enrolment-only changes keep the base as a prefix (stores list faces in insertion
        order): that case costs one tuple comparison (~20 ms at 1M). Otherwise a dict from
        face id to key, built once per graph (~0.4 s at 1M) and one lookup per face.
        """
        base, n = len(self.ids), len(face_ids)
        if n >= base and face_ids[:base] == self.ids:
            return KeyMapping(np.arange(base, dtype=np.int64), np.arange(base, n, dtype=np.int64))
        if self._position is None:
            self._position = {fid: key for key, fid in enumerate(self.ids)}
        get = self._position.get
        keys = np.fromiter((get(fid, -1) for fid in face_ids), np.int64, n)
        found = keys >= 0
        key_row = np.full(base, -1, np.int64)
        key_row[keys[found]] = np.flatnonzero(found)
        return KeyMapping(key_row, np.flatnonzero(~found).astype(np.int64))

    def search(self, q: NDArray[np.float32], count: int, threads: int) -> NDArray[np.int64]:
        """(Q, count) graph keys, best first; -1 where the graph found fewer."""
        res = self.index.search(q, count, threads=threads)
        raw = np.asarray(res.keys).reshape(q.shape[0], -1)[:, :count].astype(np.int64)
        # one query comes back as ``Matches`` (len = found), several as ``BatchMatches``
        # (padded with key 0 beyond ``counts``)
        counts = np.asarray(res.counts).reshape(-1) if hasattr(res, "counts") else np.array([len(res)])
        keys = np.full((q.shape[0], count), -1, np.int64)
        keys[:, : raw.shape[1]] = raw
        keys[np.arange(count)[None, :] >= counts[:, None]] = -1
        return keys
