"""Scores and labels as the evaluation metrics take them, and the rules they share.

Why a module of its own: verification (:mod:`.verification_metrics`) and identification
(:mod:`.identification_metrics`) metrics check their inputs, mark a missing face and pick
thresholds for a target false-accept rate the same way; those rules live here once. The
conventions (stated in full in :mod:`.metrics`, the public entry point):

* scores are cosine similarities, higher = more alike; accepted when ``score >= threshold``;
* a pair or probe whose image had no face carries :data:`NO_FACE_SCORE`, below any cosine
  similarity; verification scores must be finite, identification top scores may be
  ``-inf`` (no face either);
* undefined values are ``None``, never NaN (:func:`nan_to_none`), because results are
  written as JSON;
* with ``n`` negatives the smallest non-zero rate a data set can show is ``1/n``: a target
  below it is unreachable (:func:`allowed` returns ``None``);
* the threshold for a target rate is the lowest that meets it: just above the highest
  negative score that must be rejected (:func:`just_above`), in float32 steps when that
  score is a float32 value.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

NO_FACE_SCORE = -2.0

Scores = NDArray[np.float64]
Labels = NDArray[np.bool_]

# Slack on ``target * n`` so that e.g. 0.29 * 100 (28.999999999999996) allows 29.
_EPS = 1e-9


def check_scores(values: ArrayLike, what: str = "scores", allow_neginf: bool = False) -> Scores:
    s = np.asarray(values, dtype=np.float64).ravel()
    bad = ~(np.isfinite(s) | (allow_neginf & np.isneginf(s)))
    if bad.any():
        need = (
            "real numbers or -inf" if allow_neginf else f"finite (NO_FACE_SCORE={NO_FACE_SCORE} for no face)"
        )
        raise ValueError(f"{what} must be {need}, found {s[bad][0]}")
    return s


def check_labels(values: ArrayLike, n: int) -> Labels:
    y = np.asarray(values, dtype=bool).ravel()
    if len(y) != n:
        raise ValueError(f"expected {n} labels (one per score), found {len(y)}")
    return y


def allowed(target: float, n: int) -> int | None:
    """How many of ``n`` negatives may be accepted at a rate <= ``target``; ``None`` when
    the target is below the data's resolution 1/n (or there are no negatives)."""
    if n == 0 or not math.isfinite(target) or target < 0:
        return None
    k = math.floor(target * n + _EPS)
    return k if k >= 1 else None


def just_above(x: float, upper: float = math.inf) -> float:
    """The lowest threshold that rejects score ``x`` but accepts anything from ``upper``
    (the next higher score, when known) up: the next float32 value when ``x`` is a float32
    value and that stays at or below ``upper``, else the next float64 value."""
    if np.float32(x) == x:
        t = float(np.nextafter(np.float32(x), np.float32(np.inf)))
        if t <= upper:
            return t
    return float(np.nextafter(x, np.inf))


def next_higher(desc: Scores, k: int) -> float:
    """The lowest of the descending scores ``desc`` above ``desc[k]`` (+inf if none)."""
    above = desc[:k][desc[:k] > desc[k]]
    return float(above[-1]) if len(above) else math.inf


def nan_to_none(a: NDArray[np.float64]) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in a.tolist()]
