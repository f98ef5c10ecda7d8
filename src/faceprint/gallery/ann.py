"""The approximate (HNSW) index: a usearch graph kept up to date incrementally.

Why: past :data:`~.index.EXACT_MAX_SIZE` faces exact search gets slow, but rebuilding an
HNSW graph on every enrolment would cost minutes at 1M faces. So :class:`AnnIndex` keeps
one graph (:class:`~.hnsw.Graph`, over the snapshot it was built from, its *base*) and
answers for a newer snapshot by merging, per query:

* the graph's answer, with the *tombstones* -- base faces removed since -- dropped. The
  graph is asked for extra candidates (``k`` plus up to the number of tombstones); a
  query left with fewer than ``k`` live candidates is answered by exact search instead;
* an exact search of the *delta* -- faces enrolled since the base (:mod:`.exact`).

Graph keys are translated to rows of the *current* snapshot and every candidate is
re-scored as an exact float32 dot product against the snapshot, so the result contract
is :class:`~.exact.ExactIndex`'s (rows, best first, ties by row) and thresholds mean the
same whichever index answered. The graph is rebuilt only past the thresholds of
:mod:`.hnsw` (:data:`~.hnsw.ANN_REBUILD_DELTA` and neighbours); when the index has a
``path``, the graph is cached in files (:mod:`.ann_cache`), a cache never the truth.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import ann_cache
from .exact import CHUNK_ELEMENTS, IndexBase, Result, check_snapshot, exact_search
from .hnsw import Graph, KeyMapping, usearch_index
from .records import Snapshot

log = logging.getLogger(__name__)

#: HNSW parameters (usearch names), chosen for the target of p50 < 5 ms per query with
#: recall@1 >= 0.99 at 1M faces. Measured at 1M clustered 128-D faces on the 2-core dev
#: machine (bench/gallery_scale.py; one query per call, k=5, 300 queries):
#:
#: * M=16, ef_add=64 (the former default; bench/results/gallery_scale_1m_m16.txt): build
#:   231 s, recall@1 0.747 at ef_search 128 (p50 1.27 ms) and 0.870 at 256 (p50 2.35 ms);
#: * M=32, ef_add=128 (bench/results/gallery_scale_1m.json): build 854 s, 752 MB file;
#:   ef_search 256 gives recall@1 0.990 at p50 4.79 ms (p99 6.15 ms), 512 gives 0.993 at
#:   p50 8.71 ms.
#:
#: The denser graph costs ~3.7x the build time, which is why the index is maintained
#: incrementally (see the module docstring) rather than rebuilt on every enrolment.
#: Raise ``expansion_search`` for more recall at a proportional cost in latency.
ANN_CONNECTIVITY = 32
ANN_EXPANSION_ADD = 128
ANN_EXPANSION_SEARCH = 256

#: Extra graph candidates asked for at first when the graph holds removed faces (at least
#: ``k``); multiplied by 8 for the queries left short, up to this many candidates per
#: query, after which they are answered exactly.
_MIN_OVERFETCH = 32
_MAX_CANDIDATES = 4096


class AnnIndex(IndexBase):
    """usearch HNSW index over a snapshot, optionally cached in a file, kept up to date
    incrementally (module docstring: base graph + exact delta - tombstones).

    ``dtype`` is the storage type of the vectors inside the graph: ``"f32"`` (default),
    ``"f16"`` (half the memory) or ``"i8"`` (a quarter). Similarities returned are always
    re-scored exactly against the snapshot's float32 vectors; the quantised storage only
    affects which candidates the graph finds.

    What happened is told by ``rebuilt`` (the graph was built here, taking
    ``build_seconds``), ``reused`` (taken from an index in memory by
    :func:`~.index.refresh_index`), ``base_size``/``base_generation`` (the snapshot the
    graph covers), ``delta_size`` and ``tombstones``.
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
        index_cls = usearch_index()
        self._setup(
            snapshot,
            path,
            {
                "dtype": dtype,
                "connectivity": connectivity,
                "expansion_add": expansion_add,
                "expansion_search": expansion_search,
            },
            threads,
        )
        if self.size == 0:
            return
        fixed = ann_cache.fixed_meta(self.dim, self.params)
        found = None
        if self.path is not None:
            found = ann_cache.load_graph(self.path, fixed, index_cls, snapshot.face_ids, self.dim)
        if found is None:
            graph = self._build(index_cls, snapshot)
            found = graph, graph.map(snapshot.face_ids)
            if self.path is not None:
                ann_cache.save_graph(self.path, fixed, graph)
        self._attach(*found)
        self._graph_index.expansion_search = expansion_search

    def _setup(
        self, snapshot: Snapshot, path: Path | str | None, params: dict[str, Any], threads: int
    ) -> None:
        self._vectors = check_snapshot(snapshot)
        self._face_ids = snapshot.face_ids
        self.size = int(self._vectors.shape[0])
        self.generation = snapshot.generation
        self.dim: int | None = int(self._vectors.shape[1]) or None
        self.path = Path(path) if path is not None else None
        self.params = params
        self._threads = threads
        self.rebuilt = False
        self.reused = False
        self.build_seconds = 0.0
        self._graph: Graph | None = None
        self._key_row = np.zeros(0, np.int64)
        self._delta_rows = np.zeros(0, np.int64)
        self._delta_vectors = np.zeros((0, self.dim or 0), np.float32)
        self.tombstones = 0

    def _attach(self, graph: Graph, mapping: KeyMapping) -> None:
        self._graph = graph
        self._key_row = mapping.key_row
        self._delta_rows = mapping.delta_rows
        self._delta_vectors = np.ascontiguousarray(self._vectors[mapping.delta_rows])
        self.tombstones = mapping.tombstones

    @property
    def _graph_index(self) -> Any:
        assert self._graph is not None
        return self._graph.index

    @property
    def base_size(self) -> int:
        """Faces in the graph (removed ones included)."""
        return len(self._key_row)

    @property
    def base_generation(self) -> int | None:
        return self._graph.generation if self._graph is not None else None

    @property
    def delta_size(self) -> int:
        """Faces enrolled since the graph was built, searched exactly."""
        return len(self._delta_rows)

    @property
    def sidecar(self) -> Path | None:
        return None if self.path is None else ann_cache.sidecar_path(self.path)

    @property
    def ids_path(self) -> Path | None:
        return None if self.path is None else ann_cache.ids_path(self.path)

    def _build(self, index_cls: Any, snapshot: Snapshot) -> Graph:
        t = time.perf_counter()
        index = index_cls(
            ndim=self.dim,
            metric="ip",
            dtype=self.params["dtype"],
            connectivity=self.params["connectivity"],
            expansion_add=self.params["expansion_add"],
            expansion_search=self.params["expansion_search"],
            enable_key_lookups=False,
        )
        index.add(np.arange(self.size, dtype=np.uint64), self._vectors, threads=self._threads)
        self.build_seconds = time.perf_counter() - t
        self.rebuilt = True
        return Graph(index, snapshot.face_ids, snapshot.generation)

    def refreshed(self, snapshot: Snapshot) -> AnnIndex | None:
        """This index moved to ``snapshot``, reusing its graph in memory (no file is read or
        written), or ``None`` when the graph cannot serve it: empty snapshot or graph, other
        dimension, or delta/tombstones past the rebuild thresholds."""
        vectors = check_snapshot(snapshot)
        if self._graph is None or vectors.shape[0] == 0 or vectors.shape[1] != self.dim:
            return None
        if snapshot.generation == self.generation and snapshot.face_ids == self._face_ids:
            return self
        mapping = self._graph.map(snapshot.face_ids)
        reason = mapping.rebuild_reason()
        if reason is not None:
            log.info("ANN index in memory is too far behind the gallery (%s)", reason)
            return None
        new = AnnIndex.__new__(AnnIndex)
        new._setup(snapshot, self.path, self.params, self._threads)
        new._attach(self._graph, mapping)
        new.reused = True
        return new

    @property
    def expansion_search(self) -> int:
        """The graph's search breadth; shared with indexes refreshed from this one."""
        return int(self._graph.index.expansion_search) if self._graph is not None else ANN_EXPANSION_SEARCH

    @expansion_search.setter
    def expansion_search(self, value: int) -> None:
        if self._graph is not None:
            self._graph.index.expansion_search = int(value)

    @property
    def memory_bytes(self) -> int:
        """Bytes usearch holds for the graph and its vectors (not the snapshot copy)."""
        return int(self._graph.index.memory_usage) if self._graph is not None else 0

    def _search(self, q: NDArray[np.float32], k: int) -> Result:
        sims_parts, rows_parts = [], []
        exact = np.zeros(q.shape[0], bool)  # queries the graph could not answer
        live = self.base_size - self.tombstones
        if live > 0:
            sims, rows, ok = self._search_graph(q, min(k, live))
            sims_parts.append(sims)
            rows_parts.append(rows)
            exact |= ~ok
        if self.delta_size > 0:
            sims, rows = exact_search(self._delta_vectors, q, min(k, self.delta_size))
            sims_parts.append(sims)
            rows_parts.append(self._delta_rows[rows])
        sims, rows = np.concatenate(sims_parts, axis=1), np.concatenate(rows_parts, axis=1)
        order = np.lexsort((rows, -sims), axis=1)[:, :k]
        sims, rows = np.take_along_axis(sims, order, axis=1), np.take_along_axis(rows, order, axis=1)
        if exact.any():
            sims[exact], rows[exact] = exact_search(self._vectors, q[exact], k)
        return sims, rows

    def _search_graph(
        self, q: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.bool_]]:
        """Top ``k`` live graph faces of each query, re-scored exactly, as current rows;
        ``ok[i]`` is False where the graph gave fewer than ``k`` live candidates (the
        caller answers those exactly; their sims are -inf).

        With removed faces in the graph, asks for ``k + min(pad, tombstones)`` candidates,
        ``pad`` starting at ``max(k, _MIN_OVERFETCH)`` and growing x8 for the queries left
        short (e.g. a query of a removed person, whose own faces crowd the top), until
        every tombstone fits or :data:`_MAX_CANDIDATES` is reached.
        """
        graph = self._graph
        assert graph is not None and self.dim is not None
        nq, base, tomb = q.shape[0], self.base_size, self.tombstones
        sims = np.full((nq, k), -np.inf, np.float32)
        rows = np.zeros((nq, k), np.int64)
        ok = np.zeros(nq, bool)
        todo = np.arange(nq)
        pad = max(k, _MIN_OVERFETCH)
        while todo.size:
            want = min(base, k + min(pad, tomb))
            chunk = max(1, CHUNK_ELEMENTS // (want * self.dim))  # bounds the (chunk, want, D) gather
            short = []
            for start in range(0, todo.size, chunk):
                sel = todo[start : start + chunk]
                keys = graph.search(q[sel], want, self._threads)
                cand = np.where(keys >= 0, self._key_row[np.maximum(keys, 0)], -1)
                live = cand >= 0
                # Re-score exactly: true float32 cosine whatever the graph's storage dtype.
                s = np.einsum("qkd,qd->qk", self._vectors[np.maximum(cand, 0)], q[sel])
                s = np.where(live, s, -np.inf).astype(np.float32, copy=False)
                r = np.where(live, cand, np.iinfo(np.int64).max)
                order = np.lexsort((r, -s), axis=1)[:, :k]
                enough = live.sum(axis=1) >= k
                sims[sel[enough]] = np.take_along_axis(s[enough], order[enough], axis=1)
                rows[sel[enough]] = np.take_along_axis(r[enough], order[enough], axis=1)
                ok[sel[enough]] = True
                # more candidates can only help where the graph filled the request with the
                # dead; where it came back short (tiny or poorly connected), it cannot
                filled = (keys >= 0).all(axis=1)
                short.append(sel[~enough & filled])
            todo = np.concatenate(short) if short else np.zeros(0, np.int64)
            if want >= base or pad >= tomb or want >= _MAX_CANDIDATES:
                break
            pad *= 8
        return sims, rows, ok
