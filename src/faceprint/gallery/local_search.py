"""Search over a store's own snapshot, for stores that do not search themselves (SQLite).

Why a module of its own: the Store contract (:class:`~.records.Store`) makes every store
answer ``search_faces`` and ``centroids``. PostgreSQL answers them on the server
(pgvector); an SQLite file cannot, so :class:`LocalSearch` answers them in process from
the store's :class:`~.records.Snapshot`: exact search (numpy) up to
:data:`~.index.EXACT_MAX_SIZE` faces, HNSW (usearch, persisted at the store's
``index_path``) above (:func:`~.index.refresh_index`). The index is brought up to date
whenever the store's ``generation`` moves: enrolments since the graph was built are
searched exactly beside it until there are enough to justify a rebuild.

Similarities are cosine similarities of unit vectors (higher = more alike); a person's
centroid is the mean of their face vectors re-normalised to unit length.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import NDArray

from .records import Snapshot

if TYPE_CHECKING:
    from .index import SearchIndex


class _Snapshots(Protocol):
    def generation(self) -> int: ...

    def snapshot(self) -> Snapshot: ...


class LocalSearch:
    """``search_faces`` and ``centroids`` over ``store``'s snapshots (module doc); the
    index persists at ``index_path`` when it is an HNSW graph."""

    def __init__(self, store: _Snapshots, index_path: Path | None) -> None:
        self._store = store
        self._path = index_path
        self._lock = threading.Lock()
        self._state: tuple[Snapshot, SearchIndex | None] | None = None
        self._groups: tuple[int, dict[str, NDArray[np.intp]]] | None = None  # person -> snapshot rows

    def _current(self) -> tuple[Snapshot, SearchIndex | None]:
        with self._lock:
            gen = self._store.generation()
            if self._state is None or self._state[0].generation != gen:
                from .index import refresh_index

                snap = self._store.snapshot()
                old = self._state[1] if self._state is not None else None
                index = refresh_index(old, snap, self._path) if snap.face_ids else None
                if self._path is not None and getattr(index, "rebuilt", False):
                    self._forget_removed(snap)
                self._state = (snap, index)
            return self._state

    def _forget_removed(self, snap: Snapshot) -> None:
        """A graph just built and cached from ``snap`` must not keep a person another process
        removed meanwhile: drop the cache when it holds a face that is gone (it is rebuilt
        on the next search), as a removal itself does."""
        if self._store.generation() == snap.generation:
            return
        from .ann_cache import drop_if_holds

        assert self._path is not None
        drop_if_holds(self._path, set(snap.face_ids) - set(self._store.snapshot().face_ids))

    def search_faces(self, queries: NDArray[np.float32], k: int) -> list[list[tuple[str, str, float]]]:
        """The ``k`` most similar faces of each query row, best first: (face_id, person,
        cosine similarity)."""
        snap, index = self._current()
        if index is None:
            return [[] for _ in range(len(queries))]
        sims, rows = index.search(queries, k)
        return [
            [(snap.face_ids[r], snap.persons[r], float(s)) for s, r in zip(srow, rrow, strict=True) if r >= 0]
            for srow, rrow in zip(sims, rows, strict=True)
        ]

    def centroids(self, names: Sequence[str]) -> dict[str, NDArray[np.float32]]:
        """Each named person's centroid; unknown names are absent from the result."""
        snap, _ = self._current()
        with self._lock:
            if self._groups is None or self._groups[0] != snap.generation:
                persons = np.asarray(snap.persons, dtype=object)
                order = np.argsort(persons, kind="stable")
                uniq, starts = np.unique(persons[order], return_index=True)
                bounds = np.append(starts, len(order))
                rows = {str(n): order[bounds[i] : bounds[i + 1]] for i, n in enumerate(uniq)}
                self._groups = (snap.generation, rows)
            groups = self._groups[1]
        out: dict[str, NDArray[np.float32]] = {}
        for name in names:
            r = groups.get(name)
            if r is not None:
                v = snap.vectors[r].sum(axis=0, dtype=np.float64)
                out[name] = (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)
        return out
