"""Verification metrics on similarity scores (cosine similarity: higher = more alike).

``labels`` are booleans: True for a same-person pair. A pair whose images had no face
carries the score :data:`NO_FACE_SCORE`, below any cosine similarity, so it is always
judged "different" whatever the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

NO_FACE_SCORE = -2.0

Scores = NDArray[np.float64]
Labels = NDArray[np.bool_]


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
class Roc:
    """ROC curve: false-accept rate, true-accept rate, and the thresholds giving them."""

    far: NDArray[np.float64]
    tar: NDArray[np.float64]
    thresholds: NDArray[np.float64]

    @property
    def auc(self) -> float:
        return float(np.trapezoid(self.tar, self.far))

    def tar_at_far(self, target: float) -> tuple[float, float]:
        """(TAR, threshold) at the largest FAR not above ``target``."""
        ok = np.flatnonzero(self.far <= target)
        i = ok[-1] if len(ok) else 0
        return float(self.tar[i]), float(self.thresholds[i])


def roc(scores: Scores, labels: Labels) -> Roc:
    """ROC over all distinct thresholds (accept when ``score >= threshold``)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    order = np.argsort(-s, kind="stable")
    ss, yy = s[order], y[order]
    distinct = np.flatnonzero(np.diff(ss)) if len(ss) > 1 else np.array([], dtype=int)
    cut = np.concatenate([distinct, [len(ss) - 1]])
    tp = np.cumsum(yy)[cut]
    fp = np.cumsum(~yy)[cut]
    npos, nneg = max(int(yy.sum()), 1), max(int((~yy).sum()), 1)
    far = np.concatenate([[0.0], fp / nneg])
    tar = np.concatenate([[0.0], tp / npos])
    thr = np.concatenate([[np.inf], ss[cut]])
    return Roc(far, tar, thr)
