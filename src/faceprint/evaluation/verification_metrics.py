"""Verification (1:1) metrics: accuracy, best threshold, ROC, AUC, EER, TAR@FAR, F1.

Why a module of its own: these are the numbers of the pairs protocol (LFW and the like),
where each pair is *genuine* (same person, label True) or *impostor* (label False); the
open-set identification metrics are :mod:`.identification_metrics`. Import both through
:mod:`.metrics`, which states the conventions: scores are cosine similarities, a pair is
accepted when ``score >= threshold``, TAR = accepted genuines / genuines, FAR = accepted
impostors / impostors, a pair without a face scores :data:`~.scores.NO_FACE_SCORE`, and a
target FAR below 1/#impostors is reported unreachable rather than as a TAR of 0 or 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .scores import (
    Labels,
    Scores,
    allowed,
    check_labels,
    check_scores,
    just_above,
    nan_to_none,
    next_higher,
)

#: The fixed threshold grid of :func:`threshold_sweep`, so sweeps of different runs line up.
DEFAULT_SWEEP_GRID: NDArray[np.float64] = np.round(np.linspace(-1.0, 1.0, 2001), 3)


def accuracy(scores: Scores, labels: Labels, threshold: float) -> float:
    """Fraction of pairs judged right with ``same = score >= threshold``."""
    if len(scores) == 0:
        return float("nan")
    return float(np.mean((scores >= threshold) == labels))


def best_threshold(scores: Scores, labels: Labels) -> tuple[float, float]:
    """The threshold of maximum accuracy on (scores, labels), and that accuracy.

    Candidates are midpoints between consecutive distinct scores (plus both ends), so
    the threshold does not sit on a training score. Ties in accuracy take the median
    candidate of the best run, which is the most central choice.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if len(s) == 0:
        raise ValueError("no scores to fit a threshold on")
    u = np.unique(s)
    cands = np.concatenate([[u[0] - 1e-6], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-6]])
    order = np.argsort(s)
    ss, yy = s[order], y[order]
    # For threshold t: correct = #negatives with s < t + #positives with s >= t.
    idx = np.searchsorted(ss, cands, side="left")
    neg_below = np.concatenate([[0], np.cumsum(~yy)])[idx]
    pos_above = int(yy.sum()) - np.concatenate([[0], np.cumsum(yy)])[idx]
    acc = (neg_below + pos_above) / len(s)
    best = np.flatnonzero(acc == acc.max())
    # contiguous best runs: pick the median candidate of the first widest run
    mid = best[len(best) // 2]
    return float(cands[mid]), float(acc[mid])


@dataclass(frozen=True)
class FarPoint:
    """The verification operating point for a target FAR (see :func:`tar_at_far`).

    ``far`` is the FAR actually reached on the data (at most ``target``). When the target
    is below 1/``n_impostors``, or a class is empty, ``reachable`` is False and ``tar``,
    ``threshold`` and ``far`` are ``None``.
    """

    target: float
    tar: float | None
    threshold: float | None
    far: float | None
    n_genuine: int
    n_impostors: int
    reachable: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Roc:
    """ROC curve: one vertex per distinct score, from "accept nothing" to "accept all".

    ``far[i]``/``tar[i]`` are the rates when accepting ``score >= thresholds[i]``;
    ``thresholds[0]`` is ``+inf`` (the (0, 0) vertex). With an empty class its rate is
    0 throughout, and :attr:`auc`, :attr:`eer` and :meth:`tar_at_far` say undefined.
    """

    far: NDArray[np.float64]
    tar: NDArray[np.float64]
    thresholds: NDArray[np.float64]
    n_genuine: int
    n_impostors: int

    @property
    def defined(self) -> bool:
        """Whether both classes have pairs (else AUC, EER and TAR@FAR are undefined)."""
        return self.n_genuine > 0 and self.n_impostors > 0

    @property
    def far_resolution(self) -> float | None:
        """1/n_impostors: the smallest non-zero FAR the data can show."""
        return 1.0 / self.n_impostors if self.n_impostors else None

    @property
    def auc(self) -> float | None:
        """Area under the curve (trapezoids; ties count one half, as in the Mann-Whitney U)."""
        if not self.defined:
            return None
        return float(np.trapezoid(self.tar, self.far))

    @property
    def eer(self) -> tuple[float, float] | None:
        """(equal error rate, threshold): where FAR = 1 - TAR on the curve.

        The curve's vertices are joined by straight lines (each segment is a mix of its
        two end thresholds), and the crossing is found on the first segment where
        FAR - (1 - TAR) changes sign. The threshold is interpolated linearly between the
        segment's end thresholds (the end's own threshold when the segment starts at the
        +inf vertex). With every score equal this gives EER 0.5 at that score.
        """
        if not self.defined:
            return None
        gap = self.far + self.tar - 1.0  # FAR - FRR, from -1 up to +1
        i = int(np.argmax(gap >= 0.0))  # >= 1: gap[0] is -1
        if gap[i] == 0.0:
            return float(self.far[i]), float(self.thresholds[i])
        a = -gap[i - 1] / (gap[i] - gap[i - 1])
        rate = float(self.far[i - 1] + a * (self.far[i] - self.far[i - 1]))
        if i == 1:
            return rate, float(self.thresholds[1])
        t0, t1 = self.thresholds[i - 1], self.thresholds[i]
        return rate, float(t0 + a * (t1 - t0))

    def tar_at_far(self, target: float) -> FarPoint:
        """The point of highest TAR with FAR <= ``target`` (see :func:`tar_at_far`)."""
        k = allowed(target, self.n_impostors) if self.n_genuine else None
        if k is None:
            return FarPoint(target, None, None, None, self.n_genuine, self.n_impostors, False)
        fp = np.rint(self.far * self.n_impostors)
        i = int(np.flatnonzero(fp <= k)[-1])
        if i + 1 < len(self.thresholds):
            # thresholds[i + 1] is the highest impostor score that must be rejected
            thr = just_above(self.thresholds[i + 1], self.thresholds[i])
        else:  # every impostor may be accepted: the lowest score accepts all pairs
            thr = float(self.thresholds[i])
        return FarPoint(
            target, float(self.tar[i]), thr, float(self.far[i]), self.n_genuine, self.n_impostors, True
        )


def roc(scores: Scores, labels: Labels) -> Roc:
    """ROC over all distinct thresholds (accept when ``score >= threshold``).

    The vertices are those of ``sklearn.metrics.roc_curve(labels, scores,
    drop_intermediate=False)``.
    """
    s = check_scores(scores)
    y = check_labels(labels, len(s))
    order = np.argsort(-s, kind="stable")
    ss, yy = s[order], y[order]
    distinct = np.flatnonzero(np.diff(ss)) if len(ss) > 1 else np.array([], dtype=int)
    cut = np.concatenate([distinct, [len(ss) - 1]]) if len(ss) else np.array([], dtype=int)
    tp = np.cumsum(yy)[cut]
    fp = np.cumsum(~yy)[cut]
    npos, nneg = int(yy.sum()), int((~yy).sum())
    far = np.concatenate([[0.0], fp / max(nneg, 1)])
    tar = np.concatenate([[0.0], tp / max(npos, 1)])
    thr = np.concatenate([[np.inf], ss[cut]])
    return Roc(far, tar, thr, npos, nneg)


def tar_at_far(scores: ArrayLike, labels: ArrayLike, target: float) -> FarPoint:
    """The operating point with the highest TAR whose FAR is at most ``target``.

    Its threshold is the lowest meeting the target, so it equals
    ``threshold_at_far(impostor scores, target)`` (except when ``target >= 1``, where it
    is the lowest score of all). Unreachable (``reachable=False``, ``None`` values) when
    ``target < 1 / n_impostors`` or either class is empty.
    """
    return roc(check_scores(scores), np.asarray(labels, dtype=bool)).tar_at_far(target)


def threshold_at_far(impostor_scores: ArrayLike, target: float) -> float | None:
    """The smallest threshold at which at most a fraction ``target`` of the impostor
    scores is accepted (``score >= threshold``); ``None`` when ``target`` is below
    1/len(impostor_scores) or there are none. This is what ``faceprint calibrate`` stores.

    When every impostor may be accepted (``target >= 1``), the lowest impostor score is
    returned: any lower threshold accepts the same impostors.
    """
    s = np.sort(check_scores(impostor_scores, "impostor scores"))[::-1]
    k = allowed(target, len(s))
    if k is None:
        return None
    if k >= len(s):
        return float(s[-1])
    return just_above(s[k], next_higher(s, k))


def eer(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float] | None:
    """(equal error rate, threshold), interpolated on the ROC (see :attr:`Roc.eer`);
    ``None`` when either class is empty."""
    return roc(check_scores(scores), np.asarray(labels, dtype=bool)).eer


def _counts(
    s: Scores, y: Labels, thresholds: Scores
) -> tuple[NDArray[np.int64], NDArray[np.int64], int, int]:
    """(true accepts, false accepts) per threshold, and the class sizes."""
    gen, imp = np.sort(s[y]), np.sort(s[~y])
    tp = len(gen) - np.searchsorted(gen, thresholds, side="left")
    fp = len(imp) - np.searchsorted(imp, thresholds, side="left")
    return tp.astype(np.int64), fp.astype(np.int64), len(gen), len(imp)


def _f1(tp: NDArray[np.int64], fp: NDArray[np.int64], n_gen: int) -> NDArray[np.float64]:
    den = 2 * tp + fp + (n_gen - tp)
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)


def f1(scores: ArrayLike, labels: ArrayLike, threshold: float) -> float:
    """F1 of "same person" at ``threshold``: 2TP / (2TP + FP + FN).

    0.0 when there is nothing to find and nothing is accepted (no genuines, no false
    accepts), as scikit-learn's ``f1_score`` gives by default.
    """
    s = check_scores(scores)
    tp, fp, n_gen, _ = _counts(s, check_labels(labels, len(s)), np.array([threshold], dtype=np.float64))
    return float(_f1(tp, fp, n_gen)[0])


@dataclass
class Sweep:
    """Accuracy, F1, TAR and FAR at each of a grid of thresholds (same length arrays).

    In the arrays an undefined rate (TAR with no genuines, FAR with no impostors,
    accuracy with no pairs) is NaN; :meth:`to_dict` turns it into ``None``.
    """

    thresholds: NDArray[np.float64]
    accuracy: NDArray[np.float64]
    f1: NDArray[np.float64]
    tar: NDArray[np.float64]
    far: NDArray[np.float64]

    def to_dict(self) -> dict[str, list[float | None]]:
        return {k: nan_to_none(getattr(self, k)) for k in ("thresholds", "accuracy", "f1", "tar", "far")}


def threshold_sweep(scores: ArrayLike, labels: ArrayLike, thresholds: ArrayLike | None = None) -> Sweep:
    """Rates at each threshold of ``thresholds``; by default :data:`DEFAULT_SWEEP_GRID`
    (-1 to 1 in steps of 0.001), the same grid for every run so that runs compare."""
    s = check_scores(scores)
    y = check_labels(labels, len(s))
    t = DEFAULT_SWEEP_GRID if thresholds is None else np.asarray(thresholds, dtype=np.float64).ravel()
    tp, fp, n_gen, n_imp = _counts(s, y, t)
    nan = np.full(len(t), np.nan)
    acc = (tp + (n_imp - fp)) / len(s) if len(s) else nan
    tar = tp / n_gen if n_gen else nan
    far = fp / n_imp if n_imp else nan
    return Sweep(t.copy(), acc, _f1(tp, fp, n_gen), tar, far)


def fold_summary(values: Sequence[float]) -> tuple[float | None, float | None]:
    """(mean, standard deviation) over folds; the deviation is the population one (ddof
    0), as :func:`faceprint.evaluation.pairs.score_protocol` reports. ``(None, None)``
    for no values."""
    if len(values) == 0:
        return None, None
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std())
