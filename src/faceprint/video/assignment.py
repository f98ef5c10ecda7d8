"""Optimal one-to-one assignment for the tracker: IoU matrices and a Hungarian solver.

Faces per frame are few (tens), so an exact O(n^3) solver written in numpy is cheap (a
50 x 50 matrix takes about a millisecond) and saves a SciPy dependency. Greedy matching is
not used: when two faces cross, the greedy "best IoU first" choice can steal a box from the
track that needs it, while the optimal assignment maximises the total overlap of the frame.

Boxes are ``(N, 4)`` float arrays of xyxy pixels, the convention of :class:`faceprint.types.Box`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


def iou_matrix(a: FloatArray, b: FloatArray) -> FloatArray:
    """``(N, M)`` intersection over union of the xyxy boxes ``a`` ``(N, 4)`` and ``b`` ``(M, 4)``.

    Boxes with no area have IoU 0 with everything (as :meth:`faceprint.types.Box.iou`).
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    out: FloatArray = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def linear_sum_assignment(cost: FloatArray) -> tuple[IntArray, IntArray]:
    """Rows and columns of a minimum-cost assignment of the ``(N, M)`` matrix ``cost``.

    Every row is assigned when ``N <= M``, every column otherwise (``min(N, M)`` pairs), and
    the sum of ``cost[rows, cols]`` is minimal. Rows come back in increasing order, like
    ``scipy.optimize.linear_sum_assignment``. Costs must be finite.

    This is the Hungarian method in its shortest-augmenting-path form (Jonker-Volgenant
    style, with row/column potentials): each row is added in turn and an augmenting path of
    minimal reduced cost is grown from it with a Dijkstra-like scan, vectorised over columns.
    """
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"expected a 2-D cost matrix, found shape {c.shape}")
    if c.size == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    if not np.isfinite(c).all():
        raise ValueError("expected finite costs, found inf or nan")
    transposed = c.shape[0] > c.shape[1]
    if transposed:
        c = c.T
    n, m = c.shape
    # 1-based as in the textbook form: column 0 is a virtual column holding the row being added.
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    row_of = np.zeros(m + 1, np.intp)  # row_of[j]: the row assigned to column j (0 = free)
    way = np.zeros(m + 1, np.intp)  # the previous column on the shortest path to column j
    for i in range(1, n + 1):
        row_of[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, bool)
        while True:
            used[j0] = True
            i0 = row_of[j0]
            free = ~used[1:]
            reduced = c[i0 - 1] - u[i0] - v[1:]
            better = free & (reduced < minv[1:])
            minv[1:][better] = reduced[better]
            way[1:][better] = j0
            candidates = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            u[row_of[used]] += delta
            v[used] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if row_of[j0] == 0:
                break
        while j0:  # augment along the path
            j1 = way[j0]
            row_of[j0] = row_of[j1]
            j0 = j1
    cols = np.nonzero(row_of[1:])[0]
    rows = row_of[1:][cols] - 1
    if transposed:
        rows, cols = cols, rows
    order = np.argsort(rows)
    return rows[order].astype(np.intp), cols[order].astype(np.intp)


def match_by_iou(iou: FloatArray, threshold: float) -> list[tuple[int, int]]:
    """Pairs ``(row, col)`` that maximise the summed IoU among pairs with ``iou >= threshold``.

    Pairs under the gate count as IoU 0 in the optimisation and are dropped from the answer,
    so a below-gate pair never takes a box that a valid pair could have had.
    """
    if iou.size == 0:
        return []
    gated = np.where(iou >= threshold, iou, 0.0)
    rows, cols = linear_sum_assignment(-gated)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= threshold]
