"""Verification and identification metrics on similarity scores: the one entry point.

Callers import ``metrics`` and use ``metrics.roc``, ``metrics.dir_at_far`` and so on. The
functions live in :mod:`.verification_metrics` (pairs: accuracy, ROC, AUC, EER, TAR@FAR,
F1, threshold sweeps) and :mod:`.identification_metrics` (probes: CMC, DIR, false-alarm
rate), on the shared rules of :mod:`.scores`.

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

from .identification_metrics import DirPoint, cmc, dir_at_far, dir_at_threshold, false_alarm_rate
from .scores import NO_FACE_SCORE, Labels, Scores
from .verification_metrics import (
    DEFAULT_SWEEP_GRID,
    FarPoint,
    Roc,
    Sweep,
    accuracy,
    best_threshold,
    eer,
    f1,
    fold_summary,
    roc,
    tar_at_far,
    threshold_at_far,
    threshold_sweep,
)

__all__ = [
    "DEFAULT_SWEEP_GRID",
    "NO_FACE_SCORE",
    "DirPoint",
    "FarPoint",
    "Labels",
    "Roc",
    "Scores",
    "Sweep",
    "accuracy",
    "best_threshold",
    "cmc",
    "dir_at_far",
    "dir_at_threshold",
    "eer",
    "f1",
    "false_alarm_rate",
    "fold_summary",
    "roc",
    "tar_at_far",
    "threshold_at_far",
    "threshold_sweep",
]
