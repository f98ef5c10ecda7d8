"""Search indexes over a gallery :class:`~faceprint.gallery.records.Snapshot`.

Every index answers the same question: for each query vector, the ``k`` enrolled faces
with the highest cosine similarity, best first, as *row numbers into the snapshot*
(``snapshot.face_ids[row]``, ``snapshot.persons[row]``). Vectors are L2-normalised, so the
dot product *is* the cosine similarity; similarities returned by every index are exact
float32 dot products (the ANN index re-scores its candidates against the snapshot), so
thresholds mean the same whichever index answered. Equal similarities are ordered by row.

Two kinds:

* :class:`ExactIndex` -- numpy matmul + ``argpartition``; perfect recall, no build, no
  file. Queries are processed in chunks so the (chunk, N) score matrix stays ~64 MB.
* :class:`AnnIndex` -- usearch HNSW (extra ``[ann]``), maintained incrementally. It is a
  *cache*: the store (SQLite/PostgreSQL) is the source of truth, and losing or deleting
  the files never loses data.

How the ANN index follows a gallery that changes. The HNSW graph covers the faces of the
snapshot it was built from, its *base*: graph key ``i`` is the base's face
``base_ids[i]``. For a newer snapshot (faces are only ever added or removed; a face id
names one vector for good) the index computes, by face id:

* the *delta* -- faces enrolled since the base. They are searched exactly (numpy, as
  :class:`ExactIndex`) and merged with the graph's answer into one top-k;
* the *tombstones* -- base faces removed since. The graph is asked for extra candidates
  (``k`` plus up to the number of tombstones) and removed faces are dropped; a query left
  with fewer than ``k`` live candidates is answered by exact search instead.

Graph keys are translated to rows of the *current* snapshot, so the result contract is the
same as :class:`ExactIndex`'s. The graph is rebuilt only when the delta or the tombstones
pass the thresholds of :data:`ANN_REBUILD_DELTA`, :data:`ANN_REBUILD_DELTA_FRACTION` and
:data:`ANN_REBUILD_TOMBSTONE_FRACTION`; enrolling one person into a 1M-face gallery costs
an exact search over a few vectors, not a 15-minute rebuild.

Files, when a ``path`` is given (all three written atomically: temp file + ``os.replace``):

* ``<path>`` -- the usearch graph of the base;
* ``<path>.ids.npy`` -- the base's face ids in key order (UTF-8, numpy ``S`` array, read
  with ``allow_pickle=False``), so another process can map keys to face ids;
* ``<path>.json`` -- the sidecar, written *last*: format version, dimension, storage dtype,
  graph parameters, the base's generation and count, and the size and sha256 of the two
  files above. The files are trusted only when both checksums match, so a crash between
  the writes (new graph or ids, old sidecar) reads as a mismatch; a missing, unreadable,
  corrupt or mismatched file, or other graph parameters, is rebuilt from the snapshot
  with a log message. The ids are checked (cheap) before the graph's checksum, so a base
  too far behind is rebuilt without hashing the graph.

:func:`refresh_index` moves an index already in memory to a newer snapshot: the graph is
reused without reading any file. :func:`open_index` starts from the file (or builds).
``kind="auto"`` picks exact search up to :data:`EXACT_MAX_SIZE` faces and HNSW above; see
that constant for the measurement behind it.
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

#: The graph is rebuilt when more than ``max(ANN_REBUILD_DELTA, ANN_REBUILD_DELTA_FRACTION
#: * base)`` faces were enrolled since it was built, or more than
#: ``ANN_REBUILD_TOMBSTONE_FRACTION * base`` of its faces were removed.
#:
#: Why these: every query pays an exact search over the delta -- measured p50 0.9 ms at 20k
#: vectors and 1.9 ms at 50k (see :data:`EXACT_MAX_SIZE`) -- while a rebuild costs about
#: 854 s at 1M faces (2 cores) and blocks the search that triggers it. Up to 20k new
#: faces, or 5% of the base (50k at 1M, i.e. at most ~2 ms added to a ~5 ms query), the
#: exact delta is the cheaper side. Removed faces cost over-fetching from the graph (and
#: memory for dead nodes); beyond 10% of the graph a query of a removed person risks
#: coming back with too few live candidates and falling back to exact search.
ANN_REBUILD_DELTA = 20_000
ANN_REBUILD_DELTA_FRACTION = 0.05
ANN_REBUILD_TOMBSTONE_FRACTION = 0.10

#: Scores of at most this many elements are materialised at once by exact search.
_CHUNK_ELEMENTS = 16 * 1024 * 1024

#: From this many queries at once, a BLAS matmul beats one einsum pass per query.
_BLAS_MIN_QUERIES = 8

#: Extra graph candidates asked for at first when the graph holds removed faces (at least
#: ``k``); multiplied by 8 for the queries left short, up to this many candidates per
#: query, after which they are answered exactly.
_MIN_OVERFETCH = 32
_MAX_CANDIDATES = 4096

#: Format of the sidecar; files of another version are rebuilt. 2: incremental base
#: (``<path>.ids.npy`` and its checksum).
_SIDECAR_VERSION = 2

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


def _encode_ids(face_ids: tuple[str, ...]) -> NDArray[np.bytes_] | None:
    """The face ids as a numpy ``S`` array of UTF-8, or ``None`` when that would not give
    them back unchanged (``S`` drops trailing NULs; lone surrogates do not encode).

    UTF-8 bytes rather than numpy's ``U`` (4 bytes a character): 32 MB instead of 128 MB
    for 1M uuid4-hex ids.
    """
    try:
        encoded = [f.encode() for f in face_ids]
    except UnicodeEncodeError:
        return None
    arr: NDArray[np.bytes_] = np.array(encoded, dtype=np.bytes_) if encoded else np.zeros(0, "S1")
    return arr if arr.tolist() == encoded else None


def _decode_ids(arr: Any, count: int) -> tuple[str, ...]:
    if not isinstance(arr, np.ndarray) or arr.dtype.kind != "S" or arr.shape != (count,):
        raise ValueError(f"ids file does not hold {count} face ids")
    return tuple(b.decode() for b in arr.tolist())


class _Mapping:
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


class _Graph:
    """A usearch HNSW graph over one snapshot, the *base*: key ``i`` is ``ids[i]``.

    Shared, read-only, by every :class:`AnnIndex` derived from it by :func:`refresh_index`.
    """

    def __init__(self, index: Any, ids: tuple[str, ...], generation: int) -> None:
        self.index = index
        self.ids = ids
        self.generation = generation
        self._position: dict[str, int] | None = None

    def map(self, face_ids: tuple[str, ...]) -> _Mapping:
        """Keys -> rows of a snapshot with these ``face_ids``.

        Enrolment-only changes keep the base as a prefix (stores list faces in insertion
        order): that case costs one tuple comparison (~20 ms at 1M). Otherwise a dict from
        face id to key, built once per graph (~0.4 s at 1M) and one lookup per face.
        """
        base, n = len(self.ids), len(face_ids)
        if n >= base and face_ids[:base] == self.ids:
            return _Mapping(np.arange(base, dtype=np.int64), np.arange(base, n, dtype=np.int64))
        if self._position is None:
            self._position = {fid: key for key, fid in enumerate(self.ids)}
        get = self._position.get
        keys = np.fromiter((get(fid, -1) for fid in face_ids), np.int64, n)
        found = keys >= 0
        key_row = np.full(base, -1, np.int64)
        key_row[keys[found]] = np.flatnonzero(found)
        return _Mapping(key_row, np.flatnonzero(~found).astype(np.int64))

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


class AnnIndex:
    """usearch HNSW index over a snapshot, optionally cached in a file, kept up to date
    incrementally (module docstring: base graph + exact delta - tombstones).

    ``dtype`` is the storage type of the vectors inside the graph: ``"f32"`` (default),
    ``"f16"`` (half the memory) or ``"i8"`` (a quarter). Similarities returned are always
    re-scored exactly against the snapshot's float32 vectors; the quantised storage only
    affects which candidates the graph finds.

    What happened is told by ``rebuilt`` (the graph was built here, taking
    ``build_seconds``), ``reused`` (taken from an index in memory by
    :func:`refresh_index`), ``base_size``/``base_generation`` (the snapshot the graph
    covers), ``delta_size`` and ``tombstones``.
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
        found = self._load(index_cls, snapshot) if self.path is not None else None
        if found is None:
            graph = self._build(index_cls, snapshot)
            found = graph, graph.map(snapshot.face_ids)
            if self.path is not None:
                self._save(graph)
        self._attach(*found)
        self._graph_index.expansion_search = expansion_search

    def _setup(
        self, snapshot: Snapshot, path: Path | str | None, params: dict[str, Any], threads: int
    ) -> None:
        self._vectors = _check_snapshot(snapshot)
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
        self._graph: _Graph | None = None
        self._key_row = np.zeros(0, np.int64)
        self._delta_rows = np.zeros(0, np.int64)
        self._delta_vectors = np.zeros((0, self.dim or 0), np.float32)
        self.tombstones = 0

    def _attach(self, graph: _Graph, mapping: _Mapping) -> None:
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
        return None if self.path is None else self.path.with_name(self.path.name + ".json")

    @property
    def ids_path(self) -> Path | None:
        return None if self.path is None else self.path.with_name(self.path.name + ".ids.npy")

    def _fixed_meta(self) -> dict[str, Any]:
        """Sidecar fields a file must share with this index to be used at all."""
        return {
            "version": _SIDECAR_VERSION,
            "dim": self.dim or 0,
            "dtype": self.params["dtype"],
            "connectivity": self.params["connectivity"],
            "expansion_add": self.params["expansion_add"],
        }

    def _build(self, index_cls: Any, snapshot: Snapshot) -> _Graph:
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
        return _Graph(index, snapshot.face_ids, snapshot.generation)

    def _load(self, index_cls: Any, snapshot: Snapshot) -> tuple[_Graph, _Mapping] | None:
        """The cached graph and where its faces are in ``snapshot``, if the files are intact,
        were built with this index's parameters and are not too far behind; else ``None``."""
        assert self.path is not None and self.sidecar is not None and self.ids_path is not None
        if not self.path.exists():
            log.info("ANN index %s missing: building it from the gallery", self.path)
            return None
        try:
            meta = json.loads(self.sidecar.read_text())
            if not isinstance(meta, dict):
                raise ValueError("sidecar is not a JSON object")
            fixed = self._fixed_meta()
            stale = {k: (meta.get(k), v) for k, v in fixed.items() if meta.get(k) != v}
            if stale:
                log.info("ANN index %s was built differently (%s): rebuilding it", self.path, stale)
                return None
            count = meta["count"]
            if not isinstance(count, int) or count < 1:
                raise ValueError(f"sidecar records a count of {count!r}")
            # Checksums before parsing: a damaged graph can load "fine" and answer wrong rows
            # (or worse). The ids file first: it is small and says whether the graph is
            # worth hashing (sha256 runs at ~1.8 GB/s here: ~0.4 s for a 1M-face graph).
            _check_file(self.ids_path, meta, "ids_bytes", "ids_sha256")
            with self.ids_path.open("rb") as f:
                ids = _decode_ids(np.load(f, allow_pickle=False), count)
            graph_gen = meta.get("generation")
            graph = _Graph(None, ids, graph_gen if isinstance(graph_gen, int) else -1)
            mapping = graph.map(snapshot.face_ids)
            reason = mapping.rebuild_reason()
            if reason is not None:
                log.info("ANN index %s is too far behind the gallery (%s): rebuilding it", self.path, reason)
                return None
            _check_file(self.path, meta, "bytes", "sha256")
            graph.index = index_cls.restore(str(self.path))
            if graph.index is None or len(graph.index) != count or graph.index.ndim != self.dim:
                raise ValueError("not a usearch index of the recorded size and dimension")
            return graph, mapping
        except (OSError, EOFError, ValueError, RuntimeError, TypeError, AttributeError, KeyError) as exc:
            log.warning("ANN index %s is unreadable (%s): rebuilding it from the gallery", self.path, exc)
            return None

    def _save(self, graph: _Graph) -> None:
        """Write graph, ids, then the sidecar that vouches for both, each atomically. A crash
        before the sidecar leaves checksums that do not match the new files: rebuilt."""
        assert self.path is not None and self.sidecar is not None and self.ids_path is not None
        ids_path = self.ids_path
        ids = _encode_ids(graph.ids)
        if ids is None:
            log.warning("ANN index not saved to %s: face ids that UTF-8/numpy cannot round-trip", self.path)
            return

        def write_ids(tmp: Path) -> None:
            with tmp.open("wb") as f:  # a file object: np.save would append ".npy" to a name
                np.save(f, ids, allow_pickle=False)

        try:
            _atomic_write(self.path, lambda tmp: graph.index.save(str(tmp)))
            _atomic_write(ids_path, write_ids)
            meta = {
                **self._fixed_meta(),
                "generation": graph.generation,
                "count": len(graph.ids),
                "bytes": self.path.stat().st_size,
                "sha256": _file_sha256(self.path),
                "ids_bytes": ids_path.stat().st_size,
                "ids_sha256": _file_sha256(ids_path),
            }
            _atomic_write(self.sidecar, lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))
        except OSError as exc:  # a cache we cannot write is not an error: search still works
            log.warning("could not save ANN index to %s (%s): it will be rebuilt next time", self.path, exc)

    def refreshed(self, snapshot: Snapshot) -> AnnIndex | None:
        """This index moved to ``snapshot``, reusing its graph in memory (no file is read or
        written), or ``None`` when the graph cannot serve it: empty snapshot or graph, other
        dimension, or delta/tombstones past the rebuild thresholds."""
        vectors = _check_snapshot(snapshot)
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

    def search(
        self, queries: NDArray[np.floating[Any]], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        q = _check_queries(queries, self.dim, k)
        kk = min(int(k), self.size)
        if kk == 0 or q.shape[0] == 0:
            return _empty_result(q.shape[0])
        sims_parts, rows_parts = [], []
        exact = np.zeros(q.shape[0], bool)  # queries the graph could not answer
        live = self.base_size - self.tombstones
        if live > 0:
            sims, rows, ok = self._search_graph(q, min(kk, live))
            sims_parts.append(sims)
            rows_parts.append(rows)
            exact |= ~ok
        if self.delta_size > 0:
            sims, rows = _exact_search(self._delta_vectors, q, min(kk, self.delta_size))
            sims_parts.append(sims)
            rows_parts.append(self._delta_rows[rows])
        sims, rows = np.concatenate(sims_parts, axis=1), np.concatenate(rows_parts, axis=1)
        order = np.lexsort((rows, -sims), axis=1)[:, :kk]
        sims, rows = np.take_along_axis(sims, order, axis=1), np.take_along_axis(rows, order, axis=1)
        if exact.any():
            sims[exact], rows[exact] = _exact_search(self._vectors, q[exact], kk)
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
            chunk = max(1, _CHUNK_ELEMENTS // (want * self.dim))  # bounds the (chunk, want, D) gather
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


def _check_file(path: Path, meta: dict[str, Any], size_key: str, sha_key: str) -> None:
    if meta.get(size_key) != path.stat().st_size or meta.get(sha_key) != _file_sha256(path):
        raise ValueError(f"{path.name} does not match the checksum recorded in its sidecar")


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
    (:data:`ANN_REBUILD_DELTA` and neighbours) the file at ``path`` is consulted (another
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
