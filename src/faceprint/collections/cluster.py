"""Group unlabelled faces into people: average-linkage clustering under constraints.

Why average linkage: on this embedder the similarity of two photos of one person varies
with pose and age, so single linkage chains different people together through one
lookalike pair, and centroid-free methods (DBSCAN) need a density that differs between a
person with 3 photos and one with 300. Average linkage merges two clusters when the
*mean* cosine similarity over all pairs of their faces passes ``threshold`` (the measure
the rest of faceprint states its thresholds in), which is robust to one odd pair.

Why it fits in memory at 1M faces: for unit vectors the mean similarity over all pairs
of clusters A and B is ``dot(sum(A), sum(B)) / (|A| |B|)``, so a cluster is its vector
sum and size, never an n² matrix. Which clusters to compare comes from a k-nearest-
neighbour graph (exact search up to :data:`~faceprint.gallery.index.EXACT_MAX_SIZE`
faces, usearch's HNSW above): two clusters are candidates when a face of one is among
the ``k`` nearest of a face of the other; the linkage itself is exact.

The merge order is by rounds of *reciprocal best pairs*: every cluster finds its most
similar candidate, and pairs that chose each other merge. Average linkage is
"reducible" (a merge never makes the merged cluster more similar to a third cluster than
the better of its two parts was), so without constraints this yields the same clusters
as merging the single best pair at a time, in a few numpy passes instead of one Python
step per merge.

Constraints:

* ``groups``: faces that share a group (the photo they come from) are never one person:
  a person appears once per photo. Two clusters whose faces share a group never merge.
* ``cannot_link``: pairs of face rows the user separated (a split, a removed face).
* ``apart``: sets of face rows that must all end in different clusters (the first face
  of each person named by the user: two named people never merge), a clique of
  cannot-links stored as one token.
* ``must_link``: pairs of face rows the user joined (a named cluster, a merge); they
  start in one cluster. Must-links that contradict a cannot-link raise
  :class:`~faceprint.errors.InvalidArgumentError`.

Labels: ``-1`` for a face in no cluster of at least ``min_size`` faces ("not
clustered"), else ``0..m-1`` numbered largest cluster first (ties: lowest first row).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidArgumentError

#: Neighbours per face in the candidate graph: more finds merges between clusters whose
#: nearest faces are far down each other's lists, at the cost of memory (n * k pairs).
DEFAULT_K = 20

#: Edges whose linkage is computed in one numpy call (bounds the memory of a round).
EDGE_CHUNK = 1 << 15


def knn_graph(vectors: NDArray[np.float32], k: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The edges ``(rows, cols)`` from each row of ``vectors`` (unit rows) to its ``k``
    most cosine-similar other rows: exact up to ``EXACT_MAX_SIZE`` rows, HNSW above
    (approximate; usearch, extra ``[ann]``)."""
    from ..gallery.exact import exact_search
    from ..gallery.index import EXACT_MAX_SIZE

    n = len(vectors)
    kk = min(k + 1, n)  # each row finds itself first
    if n <= EXACT_MAX_SIZE:
        _, nbrs = exact_search(vectors, vectors, kk)
    else:
        from ..gallery.hnsw import usearch_index

        index = usearch_index()(ndim=vectors.shape[1], metric="ip", dtype="f32", connectivity=16)
        index.add(np.arange(n, dtype=np.uint64), vectors)
        found = index.search(vectors, kk)
        nbrs = np.asarray(found.keys).astype(np.int64).reshape(n, kk)
        counts = np.asarray(found.counts).reshape(n, 1)
        nbrs[np.arange(kk)[None, :] >= counts] = -1  # slots the graph search did not fill
    rows = np.repeat(np.arange(n, dtype=np.int64), nbrs.shape[1])
    cols = nbrs.reshape(-1).astype(np.int64)
    keep = (cols >= 0) & (cols != rows)
    return rows[keep], cols[keep]


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = np.arange(n, dtype=np.int64)

    def find(self, i: int) -> int:
        p = self.parent
        root = i
        while p[root] != root:
            root = int(p[root])
        while p[i] != root:  # path compression
            p[i], i = root, int(p[i])
        return root

    def roots(self) -> NDArray[np.int64]:
        """Every element's root, vectorised (pointer jumping)."""
        p = self.parent
        while True:
            q = p[p]
            if np.array_equal(q, p):
                return p.copy()
            p[:] = q


def _check(vectors: object, threshold: float, k: int, min_size: int) -> NDArray[np.float32]:
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2 or v.shape[1] == 0:
        raise InvalidArgumentError(f"expected an (n, d) array of face vectors, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise InvalidArgumentError("face vectors must be finite")
    norms = np.linalg.norm(v, axis=1)
    if len(v) and not np.allclose(norms, 1.0, atol=1e-3):
        raise InvalidArgumentError(
            f"face vectors must be L2-normalised (cosine similarity); norms range "
            f"{norms.min():.4f}..{norms.max():.4f}"
        )
    if not -1.0 <= threshold <= 1.0:
        raise InvalidArgumentError(f"threshold is a cosine similarity in [-1, 1], got {threshold}")
    if k < 1 or min_size < 1:
        raise InvalidArgumentError(f"need k >= 1 and min_size >= 1, got k={k}, min_size={min_size}")
    return v


def _pairs(pairs: Iterable[tuple[int, int]], n: int, what: str) -> list[tuple[int, int]]:
    out = []
    for a, b in pairs:
        if not (0 <= a < n and 0 <= b < n):
            raise InvalidArgumentError(f"{what} pair ({a}, {b}) names a row outside 0..{n - 1}")
        out.append((int(a), int(b)))
    return out


def _rows(rows: Iterable[int], n: int, what: str) -> list[int]:
    out = [int(i) for i in rows]
    if any(not 0 <= i < n for i in out):
        raise InvalidArgumentError(f"{what}: a row outside 0..{n - 1}")
    return out


def cluster_faces(
    vectors: NDArray[np.float32],
    threshold: float,
    *,
    groups: Sequence[Hashable] | None = None,
    must_link: Iterable[tuple[int, int]] = (),
    cannot_link: Iterable[tuple[int, int]] = (),
    apart: Iterable[Iterable[int]] = (),
    k: int = DEFAULT_K,
    min_size: int = 1,
) -> NDArray[np.int64]:
    """Cluster the rows of ``vectors`` (unit face vectors of one model) by average
    linkage of cosine similarity down to ``threshold``, under the constraints of the
    module doc. Returns one label per row (``-1``: not clustered)."""
    v = _check(vectors, threshold, k, min_size)
    n = len(v)
    if groups is not None and len(groups) != n:
        raise InvalidArgumentError(f"groups: expected one per face ({n}), got {len(groups)}")
    if n == 0:
        return np.zeros(0, np.int64)
    must = _pairs(must_link, n, "must_link")
    cannot = _pairs(cannot_link, n, "cannot_link")

    # conflict tokens per face: its group, and one token per cannot-link pair
    tokens: list[set[Hashable]] = [set() for _ in range(n)]
    if groups is not None:
        for i, g in enumerate(groups):
            if g is not None:
                tokens[i].add(("group", g))
    for j, (x, y) in enumerate(cannot):
        if x == y:
            raise InvalidArgumentError(f"cannot_link pair ({x}, {y}): a face cannot be kept from itself")
        tokens[x].add(("cannot", j))
        tokens[y].add(("cannot", j))
    for j, rows in enumerate(apart):
        for i in _rows(rows, n, "apart"):
            tokens[i].add(("apart", j))

    uf = _UnionFind(n)
    sums = v.astype(np.float64)
    sizes = np.ones(n, np.int64)
    members: list[set[Hashable]] = tokens
    for x, y in must:
        ra, rb = uf.find(x), uf.find(y)
        if ra == rb:
            continue
        if members[ra] & members[rb]:
            raise InvalidArgumentError(
                f"must_link pair ({x}, {y}) joins faces that must stay apart (same photo or a cannot-link)"
            )
        _merge(uf, sums, sizes, members, ra, rb)

    rows, cols = knn_graph(v, k)
    _agglomerate(uf, sums, sizes, members, rows, cols, threshold)
    return _labels(uf.roots(), min_size)


def _agglomerate(
    uf: _UnionFind,
    sums: NDArray[np.float64],
    sizes: NDArray[np.int64],
    members: list[set[Hashable]],
    rows: NDArray[np.int64],
    cols: NDArray[np.int64],
    threshold: float,
) -> None:
    """Merge reciprocal best pairs of clusters (nodes joined by an edge ``rows[i]`` --
    ``cols[i]``) by rounds while their average linkage passes ``threshold`` and their
    conflict tokens (``members``) do not meet (module doc)."""
    n = len(sums)
    forbidden = np.zeros(0, np.int64)  # cluster pairs (a * n + b) that share a token
    while True:
        roots = uf.roots()
        a, b = roots[rows], roots[cols]
        keep = a != b
        a, b = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
        if len(a) == 0:
            return
        pair = np.unique(np.stack([a, b], axis=1), axis=0)
        rows, cols = pair[:, 0], pair[:, 1]  # the graph shrinks to cluster-level edges
        sim = _linkage(sums, sizes, rows, cols)
        ok = sim >= threshold
        if len(forbidden):
            ok &= ~np.isin(rows * n + cols, forbidden)
        if not ok.any():
            return
        ea, eb, es = rows[ok], cols[ok], sim[ok]
        # each cluster's best candidate (both directions), ties to the lower id
        src = np.concatenate([ea, eb])
        dst = np.concatenate([eb, ea])
        ss = np.concatenate([es, es])
        order = np.lexsort((dst, -ss, src))
        src, dst = src[order], dst[order]
        first = np.ones(len(src), bool)
        first[1:] = src[1:] != src[:-1]
        best = dict(zip(src[first].tolist(), dst[first].tolist(), strict=True))
        progressed, conflicts = False, []
        for x, y in best.items():
            if x < y and best.get(y) == x:  # reciprocal best pair
                if members[x] & members[y]:
                    conflicts.append(x * n + y)  # never again while both clusters stand
                else:
                    _merge(uf, sums, sizes, members, x, y)
                progressed = True
        if conflicts:
            forbidden = np.union1d(forbidden, np.asarray(conflicts, np.int64))
        if not progressed:  # pragma: no cover - a best-pair graph always holds a reciprocal pair
            return


def extend_clusters(
    vectors: NDArray[np.float32],
    labels: NDArray[np.int64],
    threshold: float,
    *,
    groups: Sequence[Hashable] | None = None,
    cannot_link: Iterable[tuple[int, int]] = (),
    k: int = DEFAULT_K,
    min_size: int = 1,
) -> NDArray[np.int64]:
    """New faces join existing clusters without clustering everything again.

    ``labels`` has one entry per row of ``vectors``: the cluster of a face clustered
    before (kept: an existing cluster is never split, renumbered or merged with another
    one here, so names given to clusters stay right), ``-1`` for a new face or one not
    clustered before. Each such free face joins the existing cluster or forms a new one
    with other free faces, by the same average linkage and constraints as
    :func:`cluster_faces` (``groups`` for every row; a face of a photo already in a
    cluster does not join it; ``cannot_link`` pairs of rows, e.g. a face the user removed
    from a cluster and that cluster's first face, keep the two apart). Candidates:
    each free face's ``k`` nearest free faces and
    ``k`` nearest cluster means, so the cost grows with the free faces, not the
    collection. New clusters are numbered after the largest existing label, largest
    first; free faces left in clusters under ``min_size`` stay ``-1``."""
    from ..gallery.exact import exact_search

    v = _check(vectors, threshold, k, min_size)
    old = np.asarray(labels, dtype=np.int64)
    n = len(v)
    if old.shape != (n,):
        raise InvalidArgumentError(f"labels: expected one per face ({n}), got shape {old.shape}")
    if groups is not None and len(groups) != n:
        raise InvalidArgumentError(f"groups: expected one per face ({n}), got {len(groups)}")
    free = np.flatnonzero(old < 0)
    if len(free) == 0:
        return old.copy()
    ids, inverse = np.unique(old[old >= 0], return_inverse=True)  # node c < m: cluster ids[c]
    m = len(ids)
    dim = v.shape[1]
    sums = np.zeros((m + len(free), dim), np.float64)
    np.add.at(sums, inverse, v[old >= 0].astype(np.float64))
    sums[m:] = v[free]
    sizes = np.concatenate([np.bincount(inverse, minlength=m), np.ones(len(free), np.int64)]).astype(np.int64)
    members: list[set[Hashable]] = [set() for _ in range(m + len(free))]
    for c, cid in enumerate(ids.tolist()):
        members[c].add(("cluster", cid))  # two existing clusters never merge here
    if groups is not None:
        nodes = zip(np.flatnonzero(old >= 0).tolist(), inverse.tolist(), strict=True)
        for row, node in [*nodes, *((r, m + j) for j, r in enumerate(free.tolist()))]:
            if groups[row] is not None:
                members[node].add(("group", groups[row]))
    node_of = np.empty(n, np.int64)
    node_of[old >= 0] = inverse
    node_of[free] = m + np.arange(len(free))
    for j, (x, y) in enumerate(_pairs(cannot_link, n, "cannot_link")):
        members[int(node_of[x])].add(("cannot", j))
        members[int(node_of[y])].add(("cannot", j))

    fr, fc = knn_graph(v[free], k)
    rows, cols = [fr + m], [fc + m]
    if m:
        means = (sums[:m] / sizes[:m, None]).astype(np.float32)
        kk = min(k, m)
        _, near = exact_search(means, v[free], kk)
        rows.append(np.repeat(np.arange(len(free), dtype=np.int64) + m, kk))
        cols.append(near.reshape(-1))
    uf = _UnionFind(m + len(free))
    _agglomerate(uf, sums, sizes, members, np.concatenate(rows), np.concatenate(cols), threshold)

    roots = uf.roots()
    out = old.copy()
    joined = roots[m:] < m  # merged into an existing cluster (its node is the lowest id)
    out[free[joined]] = ids[roots[m:][joined]]
    rest = ~joined
    if rest.any():
        fresh = _labels(roots[m:][rest], min_size)
        start = int(ids.max()) + 1 if m else 0
        out[free[rest]] = np.where(fresh >= 0, fresh + start, -1)
    return out


def _linkage(
    sums: NDArray[np.float64], sizes: NDArray[np.int64], rows: NDArray[np.int64], cols: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Average linkage of each edge's two clusters, :data:`EDGE_CHUNK` edges at a time:
    gathering every edge's two sums at once would hold 2 x edges x dim floats (2 GB per
    side at 100k faces)."""
    out = np.empty(len(rows), np.float64)
    for s in range(0, len(rows), EDGE_CHUNK):
        r, c = rows[s : s + EDGE_CHUNK], cols[s : s + EDGE_CHUNK]
        out[s : s + EDGE_CHUNK] = np.einsum("ij,ij->i", sums[r], sums[c]) / (sizes[r] * sizes[c])
    return out


def _merge(
    uf: _UnionFind,
    sums: NDArray[np.float64],
    sizes: NDArray[np.int64],
    members: list[set[Hashable]],
    a: int,
    b: int,
) -> None:
    """Merge the clusters whose roots are ``a`` and ``b`` into the lower id."""
    keep, gone = (a, b) if a < b else (b, a)
    uf.parent[gone] = keep
    sums[keep] += sums[gone]
    sizes[keep] += sizes[gone]
    if len(members[gone]) > len(members[keep]):
        members[keep], members[gone] = members[gone], members[keep]
    members[keep] |= members[gone]
    members[gone] = set()


def _labels(roots: NDArray[np.int64], min_size: int) -> NDArray[np.int64]:
    """Labels numbered largest cluster first (ties: lowest first row); -1 under
    ``min_size``."""
    uniq, first, counts = np.unique(roots, return_index=True, return_counts=True)
    order = np.lexsort((first, -counts))
    label_of = np.full(len(uniq), -1, np.int64)
    big = order[counts[order] >= min_size]
    label_of[big] = np.arange(len(big))
    return label_of[np.searchsorted(uniq, roots)]
