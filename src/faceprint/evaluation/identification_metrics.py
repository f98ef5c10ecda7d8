"""Open-set identification (1:N) metrics: CMC, DIR at a threshold or a target FAR.

Why a module of its own: identification is scored per *probe* against a gallery, not per
pair: a *known* probe (its person is enrolled) counts by the rank of its true person and
by whether its top person is right and accepted; a *stranger* (not enrolled) counts as a
false alarm when its top score is accepted. Import these through :mod:`.metrics`, which
states the conventions; in particular a probe whose top score is at or below
:data:`~.scores.NO_FACE_SCORE` (``-inf`` included) had no face and is never accepted,
whatever the threshold, while still counting in the rates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InvalidArgumentError
from .scores import NO_FACE_SCORE, Scores, allowed, check_labels, check_scores, just_above, next_higher


def cmc(true_ranks: ArrayLike, max_rank: int = 20) -> NDArray[np.float64]:
    """Cumulative match characteristic: identification rate at ranks 1..``max_rank``.

    ``true_ranks`` holds, per known probe (a probe whose person is enrolled), the 1-based
    rank of the true person in its candidate list, or 0 when the true person is absent
    from the list or the probe has no face: such a probe is never a hit. The rates are
    over all known probes, absent ones included.
    """
    r = np.asarray(true_ranks).ravel()
    if max_rank < 1:
        raise InvalidArgumentError(f"max_rank must be >= 1, got {max_rank}")
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
    s = check_scores(stranger_top_scores, "stranger top scores", allow_neginf=True)
    return float(np.mean(_accepted(s, threshold))) if len(s) else None


def dir_at_threshold(
    known_top_scores: ArrayLike, known_top_correct: ArrayLike, threshold: float
) -> float | None:
    """Detection and identification rate: the fraction of known probes whose top person is
    the right one AND whose top score reaches ``threshold``; ``None`` with no known probes."""
    s = check_scores(known_top_scores, "known top scores", allow_neginf=True)
    ok = check_labels(known_top_correct, len(s))
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
    known = check_scores(known_top_scores, "known top scores", allow_neginf=True)
    correct = check_labels(known_top_correct, len(known))
    strangers = check_scores(stranger_top_scores, "stranger top scores", allow_neginf=True)
    k = allowed(far, len(strangers))
    if k is None:
        return DirPoint(far, None, None, None, len(known), len(strangers), False)
    named = np.sort(strangers[strangers > NO_FACE_SCORE])[::-1]  # the strangers with a face
    if k < len(named):
        t = just_above(named[k], next_higher(named, k))
    else:  # every stranger with a face may be named: accept every probe with a face
        both = np.concatenate([known, strangers])
        with_face = both[both > NO_FACE_SCORE]
        t = float(with_face.min()) if len(with_face) else just_above(NO_FACE_SCORE)
    return DirPoint(
        far,
        dir_at_threshold(known, correct, t),
        t,
        false_alarm_rate(strangers, t),
        len(known),
        len(strangers),
        True,
    )
