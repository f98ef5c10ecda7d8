"""Verification and identification metrics on similarity scores.

Conventions shared by every function here:

* Scores are cosine similarities: higher = more alike. A pair or probe is *accepted*
  when ``score >= threshold``.
* ``labels`` are booleans: True for a same-person (*genuine*) pair, False for a
  different-person (*impostor*) pair. TAR = accepted genuines / genuines, FAR = accepted
  impostors / impostors.
* A pair whose images had no face carries :data:`NO_FACE_SCORE`, below any cosine
  similarity, so any cosine threshold judges it "different"; only an "accept every pair"
  point (the ROC's end, a target FAR of 1) includes it. Verification scores must be
  finite. The identification metrics go one step further: a probe whose top score is
  at or below :data:`NO_FACE_SCORE` (``-inf`` included) is never accepted, whatever the
  threshold.
* Undefined values are ``None``, never NaN, because results are written as JSON.
* **Resolution.** With N impostors, the smallest non-zero FAR a data set can show is 1/N.
  A target FAR below 1/N is *unreachable*: a measured FAR of 0 over 500 impostors says
  nothing about whether the FAR is below 1e-3. Such points are reported with
  ``reachable=False`` and ``None`` values, never as a TAR of 0 or 1.
* **Thresholds for a target FAR** are the lowest that meet it (the most genuines
  accepted): just above the highest impostor score that must be rejected. "Just above"
  is the next float32 value when that score is a float32 value (similarities of float32
  vectors are), so that the threshold still rejects it when scores are compared in
  float32; otherwise the next float64 value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

NO_FACE_SCORE = -2.0

Scores = NDArray[np.float64]
Labels = NDArray[np.bool_]

#: The fixed threshold grid of :func:`threshold_sweep`, so sweeps of different runs line up.
DEFAULT_SWEEP_GRID: NDArray[np.float64] = np.round(np.linspace(-1.0, 1.0, 2001), 3)

# Slack on ``target * n`` so that e.g. 0.29 * 100 (28.999999999999996) allows 29.
_EPS = 1e-9


# -- helpers ------------------------------------------------------------------------------
def _scores(values: ArrayLike, what: str = "scores", allow_neginf: bool = False) -> Scores:
    s = np.asarray(values, dtype=np.float64).ravel()
    bad = ~(np.isfinite(s) | (allow_neginf & np.isneginf(s)))
    if bad.any():
        need = (
            "real numbers or -inf" if allow_neginf else f"finite (NO_FACE_SCORE={NO_FACE_SCORE} for no face)"
        )
        raise ValueError(f"{what} must be {need}, found {s[bad][0]}")
    return s


def _labels(values: ArrayLike, n: int) -> Labels:
    y = np.asarray(values, dtype=bool).ravel()
    if len(y) != n:
        raise ValueError(f"expected {n} labels (one per score), found {len(y)}")
    return y


def _allowed(target: float, n: int) -> int | None:
    """How many of ``n`` negatives may be accepted at a rate <= ``target``; ``None`` when
    the target is below the data's resolution 1/n (or there are no negatives)."""
    if n == 0 or not math.isfinite(target) or target < 0:
        return None
    k = math.floor(target * n + _EPS)
    return k if k >= 1 else None


def _just_above(x: float, upper: float = math.inf) -> float:
    """The lowest threshold that rejects score ``x`` but accepts anything from ``upper``
    (the next higher score, when known) up: the next float32 value when ``x`` is a float32
    value and that stays at or below ``upper``, else the next float64 value."""
    if np.float32(x) == x:
        t = float(np.nextafter(np.float32(x), np.float32(np.inf)))
        if t <= upper:
            return t
    return float(np.nextafter(x, np.inf))


def _next_higher(desc: Scores, k: int) -> float:
    """The lowest of the descending scores ``desc`` above ``desc[k]`` (+inf if none)."""
    above = desc[:k][desc[:k] > desc[k]]
    return float(above[-1]) if len(above) else math.inf


def _nan_to_none(a: NDArray[np.float64]) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in a.tolist()]


# -- verification -------------------------------------------------------------------------
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
        k = _allowed(target, self.n_impostors) if self.n_genuine else None
        if k is None:
            return FarPoint(target, None, None, None, self.n_genuine, self.n_impostors, False)
        fp = np.rint(self.far * self.n_impostors)
        i = int(np.flatnonzero(fp <= k)[-1])
        if i + 1 < len(self.thresholds):
            # thresholds[i + 1] is the highest impostor score that must be rejected
            thr = _just_above(self.thresholds[i + 1], self.thresholds[i])
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
    s = _scores(scores)
    y = _labels(labels, len(s))
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
    return roc(_scores(scores), np.asarray(labels, dtype=bool)).tar_at_far(target)


def threshold_at_far(impostor_scores: ArrayLike, target: float) -> float | None:
    """The smallest threshold at which at most a fraction ``target`` of the impostor
    scores is accepted (``score >= threshold``); ``None`` when ``target`` is below
    1/len(impostor_scores) or there are none. This is what ``faceprint calibrate`` stores.

    When every impostor may be accepted (``target >= 1``), the lowest impostor score is
    returned: any lower threshold accepts the same impostors.
    """
    s = np.sort(_scores(impostor_scores, "impostor scores"))[::-1]
    k = _allowed(target, len(s))
    if k is None:
        return None
    if k >= len(s):
        return float(s[-1])
    return _just_above(s[k], _next_higher(s, k))


def eer(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float] | None:
    """(equal error rate, threshold), interpolated on the ROC (see :attr:`Roc.eer`);
    ``None`` when either class is empty."""
    return roc(_scores(scores), np.asarray(labels, dtype=bool)).eer


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
    s = _scores(scores)
    tp, fp, n_gen, _ = _counts(s, _labels(labels, len(s)), np.array([threshold], dtype=np.float64))
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
        return {k: _nan_to_none(getattr(self, k)) for k in ("thresholds", "accuracy", "f1", "tar", "far")}


def threshold_sweep(scores: ArrayLike, labels: ArrayLike, thresholds: ArrayLike | None = None) -> Sweep:
    """Rates at each threshold of ``thresholds``; by default :data:`DEFAULT_SWEEP_GRID`
    (-1 to 1 in steps of 0.001), the same grid for every run so that runs compare."""
    s = _scores(scores)
    y = _labels(labels, len(s))
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


# -- identification -----------------------------------------------------------------------
def cmc(true_ranks: ArrayLike, max_rank: int = 20) -> NDArray[np.float64]:
    """Cumulative match characteristic: identification rate at ranks 1..``max_rank``.

    ``true_ranks`` holds, per known probe (a probe whose person is enrolled), the 1-based
    rank of the true person in its candidate list, or 0 when the true person is absent
    from the list or the probe has no face: such a probe is never a hit. The rates are
    over all known probes, absent ones included.
    """
    r = np.asarray(true_ranks).ravel()
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    if len(r) == 0:
        raise ValueError("cmc needs at least one known probe, got none")
    if not np.issubdtype(r.dtype, np.integer) or (r < 0).any():
        raise ValueError("true_ranks must be integers >= 0 (0 = true person not found)")
    hits = np.bincount(r[r > 0].clip(max=max_rank + 1), minlength=max_rank + 2)[1 : max_rank + 1]
    return np.asarray(np.cumsum(hits) / len(r), dtype=np.float64)


@dataclass(frozen=True)
class DirPoint:
    """Open-set identification at a target stranger false-alarm rate (see :func:`dir_at_far`).

    ``far`` is the fraction of strangers actually named at ``threshold``. Unreachable
    (``reachable=False``, ``None`` values) when ``target_far < 1/n_strangers`` or there are
    no strangers. ``dir`` is ``None`` when there are no known probes.
    """

    target_far: float
    dir: float | None
    threshold: float | None
    far: float | None
    n_known: int
    n_strangers: int
    reachable: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _accepted(top: Scores, threshold: float) -> NDArray[np.bool_]:
    return np.asarray((top >= threshold) & (top > NO_FACE_SCORE), dtype=bool)


def false_alarm_rate(stranger_top_scores: ArrayLike, threshold: float) -> float | None:
    """Fraction of strangers (probes whose person is not enrolled) whose top score reaches
    ``threshold``, i.e. who are named; ``None`` with no strangers."""
    s = _scores(stranger_top_scores, "stranger top scores", allow_neginf=True)
    return float(np.mean(_accepted(s, threshold))) if len(s) else None


def dir_at_threshold(
    known_top_scores: ArrayLike, known_top_correct: ArrayLike, threshold: float
) -> float | None:
    """Detection and identification rate: the fraction of known probes whose top person is
    the right one AND whose top score reaches ``threshold``; ``None`` with no known probes."""
    s = _scores(known_top_scores, "known top scores", allow_neginf=True)
    ok = _labels(known_top_correct, len(s))
    return float(np.mean(ok & _accepted(s, threshold))) if len(s) else None


def dir_at_far(
    known_top_scores: ArrayLike,
    known_top_correct: ArrayLike,
    stranger_top_scores: ArrayLike,
    far: float,
) -> DirPoint:
    """DIR at the lowest threshold that names at most a fraction ``far`` of the strangers.

    ``known_top_scores``/``known_top_correct``: per known probe, its best person's score
    and whether that person is the right one. ``stranger_top_scores``: per stranger, its
    best person's score. A probe without a face has a top score of ``-inf`` or
    :data:`NO_FACE_SCORE` and is never accepted (it still counts in the rates). When the
    target allows every stranger with a face to be named, the threshold is the lowest
    top score of all probes with a face, so each of them is accepted.
    """
    known = _scores(known_top_scores, "known top scores", allow_neginf=True)
    correct = _labels(known_top_correct, len(known))
    strangers = _scores(stranger_top_scores, "stranger top scores", allow_neginf=True)
    k = _allowed(far, len(strangers))
    if k is None:
        return DirPoint(far, None, None, None, len(known), len(strangers), False)
    named = np.sort(strangers[strangers > NO_FACE_SCORE])[::-1]  # the strangers with a face
    if k < len(named):
        t = _just_above(named[k], _next_higher(named, k))
    else:  # every stranger with a face may be named: accept every probe with a face
        both = np.concatenate([known, strangers])
        with_face = both[both > NO_FACE_SCORE]
        t = float(with_face.min()) if len(with_face) else _just_above(NO_FACE_SCORE)
    return DirPoint(
        far,
        dir_at_threshold(known, correct, t),
        t,
        false_alarm_rate(strangers, t),
        len(known),
        len(strangers),
        True,
    )
