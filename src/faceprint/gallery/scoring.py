"""Person-level scoring and the open-set (1:N) threshold.

Conventions: similarities are cosine similarities of unit vectors (higher = more alike);
a *stranger* is a probe whose person is not enrolled; FAR is the probability that a
stranger's best person score reaches the threshold, i.e. that a stranger is named.

**Person-level scores.** A person may own several faces. The :class:`~.gallery.Gallery`
scores a person by the probe's cosine similarity with the person's *centroid*: the mean of
their face vectors re-normalised to unit length (over the people owning the faces nearest
the probe; on PostgreSQL the server averages the vectors). The alternatives, which need
only face similarities, are kept here for measurement (:func:`person_scores`):

* ``"max"``: the best face;
* ``"mean"``: the mean of the person's face similarities, which equals the probe's
  similarity with the person's *un-normalised* mean vector;
* ``"top2"``: the mean of the two best faces (the best alone for a one-face person).

Measured on LFW dev with up to two enrolled faces per person (``bench/identification.py``,
1,165 people, 1,493 known and 1,930 stranger probes), DIR at a 1% stranger false-alarm
rate was: centroid 65.4%, max 63.2%, mean = top2 58.6% (on the 732 probes of people with
two faces: 77.9%, 69.0%, 55.2%). Hence centroids. The open-set threshold below is fitted
on single-face impostor scores; a centroid of several faces of one person scores a
stranger no higher than its best face does (to within about 1% for faces ~0.9 apart), so
the threshold stays on the safe side. Cohort score normalisation (z-scoring the top score
against the probe's scores with the other people) did not raise DIR@FAR=1% (all: 18.5%,
top-200: 57.1%, top-50: 52.5%, none: 57.0%) and is not used.

**Why the threshold grows with the gallery.** Compared with K enrolled people, a
stranger is named when the best of K impostor scores reaches t. With F the CDF of one
impostor comparison and independent comparisons, P(named) = 1 - F(t)^K, so the
threshold for a target FAR is t = F⁻¹((1 - far)^(1/K)). F is the embedder's impostor
distribution measured on LFW dev (pairsDevTrain people only, so the pairsDevTest people
stay held out) and shipped as package data in ``impostors/<model id>.json``, one per model
id (the weights' sha256 is part of the id, and flip TTA, which shifts the scores, has a
file of its own; ``dlib`` and ``dlib-onnx`` share theirs): a dense table of upper
quantiles (score at exceedance p, log-spaced in p down to about 10/n_pairs), plus a
generalized Pareto fit to the far tail that extrapolates beyond what the data resolves
(large K or small FAR) (:func:`fit_distribution`). ``bench/identification.py
--fit-impostors [--flip]`` rebuilds the files. A model fine-tuned by ``faceprint train``
brings its own: its MODEL_DIR holds ``impostors.json`` (and ``impostors+flip.json``)
fitted the same way on its training data, which loading the model registers for its
model id (:func:`register_distribution`); :func:`find_distribution` answers registered
ones first, then shipped ones. Other weights (swapped, or a MODEL_DIR not loaded) get
their F from the user's own faces: ``faceprint calibrate --gallery`` fits it the same
way and stores it with the gallery. A shipped file that is corrupt is an error, never a
silent fallback. Independence is an approximation: one probe's scores against a gallery are
correlated. Measured with random galleries of pairsDevTrain people, the formula is
calibrated to slightly conservative (target 1%: 0.79% at K=10, 1.04% at K=100, 0.86% at
K=1000; target 10%: 9.4%, 8.6%, 6.1%), and on the full LFW dev benchmark (K=1,165, all
strangers) the default point named 0.52% of strangers for a 1% target, so no correction
is applied.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import GalleryError, InvalidArgumentError

#: Aggregation of :func:`person_scores` when none is named: the best, on LFW dev, of the
#: methods that need only face similarities (the Gallery itself uses centroids).
DEFAULT_METHOD = "max"
METHODS = ("max", "mean", "top2")
#: Default target stranger false-alarm rate of a gallery's open-set threshold.
DEFAULT_FAR = 0.01
#: Version of the impostor-distribution file format.
IMPOSTOR_FORMAT_VERSION = 1
#: Fewest different-person scores :func:`fit_distribution` fits (50 of them shape the tail).
MIN_FIT_SCORES = 1000

IMPOSTOR_DIR = Path(__file__).resolve().parent / "impostors"
#: The store setting that says some faces were enrolled with views (:data:`faceprint.recognizer.VIEW_ZOOMS`).
VIEWS_SETTING = "enrol_views"


def views_id(model: str) -> str:
    """The distribution key of a probe of ``model`` against faces enrolled with views
    (their mean vector scores strangers slightly higher than one crop's)."""
    return model + "+views"


def person_score_matrix(
    sims: NDArray[np.float32] | NDArray[np.float64],
    persons: Sequence[str],
    method: str | None = None,
) -> tuple[list[str], NDArray[np.float64]]:
    """Person-level scores of many probes at once.

    ``sims`` is (Q, N): probe q's cosine similarity with face i of ``persons[i]``.
    Returns (names in first-seen order, (Q, P) scores). ``method`` as in
    :func:`person_scores`. Raises ``ValueError`` on an unknown method or mismatched shapes.
    """
    m = method or DEFAULT_METHOD
    if m not in METHODS:
        raise InvalidArgumentError(f"unknown person-level method {m!r}; expected one of {', '.join(METHODS)}")
    s = np.asarray(sims, dtype=np.float64)
    if s.ndim == 1:
        s = s[None, :]
    if s.ndim != 2 or s.shape[1] != len(persons):
        raise ValueError(f"expected (probes, {len(persons)}) similarities, got shape {s.shape}")
    index: dict[str, int] = {}
    for name in persons:
        index.setdefault(name, len(index))
    names = list(index)
    if not names:
        return names, np.zeros((s.shape[0], 0))
    gid = np.fromiter((index[n] for n in persons), dtype=np.int64, count=len(persons))
    order = np.argsort(gid, kind="stable")
    ss = s[:, order]
    counts = np.bincount(gid, minlength=len(names))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    if m == "mean":
        return names, np.add.reduceat(ss, starts, axis=1) / counts
    best = np.maximum.reduceat(ss, starts, axis=1)
    if m == "max":
        return names, best
    # top2: the second best is the best again when the best value occurs twice in the
    # group, else the best of the values below it
    is_best = ss == best[:, gid[order]]
    ties = np.add.reduceat(is_best.astype(np.int64), starts, axis=1)
    below = np.maximum.reduceat(np.where(is_best, -np.inf, ss), starts, axis=1)
    second = np.where(ties >= 2, best, below)
    return names, np.where(counts >= 2, (best + second) / 2.0, best)


def person_scores(
    sims: NDArray[np.float32] | NDArray[np.float64],
    persons: Sequence[str],
    method: str | None = None,
) -> list[tuple[str, float]]:
    """One score per person from one probe's similarities to candidate faces.

    ``sims[i]`` is the probe's cosine similarity with a face of ``persons[i]`` (the faces
    may be all of a gallery, or only the candidates a search returned). Returns
    ``(person, score)`` sorted by score, highest first (ties by name, for stable output).
    ``method`` is ``"max"``, ``"mean"`` (mean of similarities) or ``"top2"``; ``None``
    means :data:`DEFAULT_METHOD`. Raises ``ValueError`` on an unknown method or when
    ``sims`` and ``persons`` differ in length.
    """
    s = np.asarray(sims, dtype=np.float64).reshape(-1)
    if len(s) != len(persons):
        raise ValueError(f"{len(s)} similarities but {len(persons)} person names")
    names, scores = person_score_matrix(s[None, :], persons, method)
    out = [(n, float(v)) for n, v in zip(names, scores[0].tolist(), strict=True)]
    out.sort(key=lambda t: (-t[1], t[0]))
    return out


def person_centroids(
    vectors: NDArray[np.float32], persons: Sequence[str]
) -> tuple[list[str], NDArray[np.float32]]:
    """The re-normalised mean vector of each person: (names in first-seen order, (P, dim)
    unit rows). Score a probe against them with ``centroids @ probe`` and ``"max"``."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2 or len(v) != len(persons):
        raise ValueError(f"expected ({len(persons)}, dim) vectors, got shape {v.shape}")
    index: dict[str, int] = {}
    for name in persons:
        index.setdefault(name, len(index))
    rows = np.fromiter((index[n] for n in persons), dtype=np.int64, count=len(persons))
    sums = np.zeros((len(index), v.shape[1]), dtype=np.float64)
    np.add.at(sums, rows, v)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return list(index), (sums / np.maximum(norms, 1e-12)).astype(np.float32)


# -- the impostor distribution and the open-set threshold ---------------------------------
class ImpostorDistribution:
    """The upper tail of one embedder's impostor (different-person) score distribution.

    ``exceedance[i]`` = P(score > ``score[i]``) for one comparison, with exceedance
    decreasing and score increasing; between grid points the score is linear in
    log(exceedance). Below the smallest tabulated exceedance the tail is the generalized
    Pareto distribution fitted above ``gpd_u`` (P(S > x) = p_u (1 + xi (x - u) / sigma)^(-1/xi)),
    continued from the table's last point.
    """

    def __init__(self, data: dict[str, Any], source: str = "") -> None:
        try:
            self.model = str(data["model"])
            self.exceedance = np.asarray(data["exceedance"], dtype=np.float64)
            self.score = np.asarray(data["score"], dtype=np.float64)
            gpd = data["tail_fit"]
            self.gpd_u, self.gpd_p_u = float(gpd["u"]), float(gpd["p_u"])
            self.gpd_xi, self.gpd_sigma = float(gpd["xi"]), float(gpd["sigma"])
        except (KeyError, TypeError, ValueError) as exc:
            raise GalleryError(f"impostor distribution {source or '?'}: malformed ({exc})") from None
        ok = (
            len(self.exceedance) == len(self.score) >= 2
            and bool(np.all(np.diff(self.exceedance) < 0))
            and bool(np.all(np.diff(self.score) >= 0))
            and self.gpd_sigma > 0
            and 0 < self.gpd_p_u < 1
        )
        if not ok:
            raise GalleryError(
                f"impostor distribution {source or self.model}: expected exceedances decreasing, "
                "scores non-decreasing and a valid tail fit"
            )
        self.raw = data
        #: where the distribution came from (a file, a MODEL_DIR, a calibration), for messages
        self.source = source or self.model
        # The GPD fitted above u is continued from the table's last point, so the curve is
        # continuous: a GPD conditioned on exceeding a higher u' is a GPD with the same xi
        # and scale sigma + xi (u' - u).
        u_end, p_end = float(self.score[-1]), float(self.exceedance[-1])
        sigma_end = self.gpd_sigma + self.gpd_xi * (u_end - self.gpd_u)
        if sigma_end <= 0:
            raise GalleryError(
                f"impostor distribution {source or self.model}: the tail fit ends below the table's "
                f"last score {u_end:.4f}"
            )
        self._anchor = (u_end, p_end, sigma_end)

    def quantile_exceedance(self, p: float) -> float:
        """The score s with P(one impostor comparison > s) = ``p`` (0 < p < 1)."""
        if not 0.0 < p < 1.0:
            raise InvalidArgumentError(f"exceedance must be in (0, 1), got {p}")
        ex, sc = self.exceedance, self.score
        if p >= ex[0]:  # the body of the distribution is not tabulated: clamp to its median
            return float(sc[0])
        if p >= ex[-1]:
            # interpolate score linearly in log(exceedance); np.interp wants increasing x
            return float(np.interp(math.log(p), np.log(ex[::-1]), sc[::-1]))
        return self._gpd_quantile(p)

    def _gpd_quantile(self, p: float) -> float:
        u, p_u, sigma = self._anchor
        xi, r = self.gpd_xi, p / p_u
        excess = -sigma * math.log(r) if abs(xi) < 1e-9 else sigma / xi * (r ** (-xi) - 1.0)
        return min(u + excess, 1.0)

    def exceedance_at(self, s: float) -> float:
        """P(one impostor comparison > ``s``) (the tabulated tail, then the GPD fit)."""
        ex, sc = self.exceedance, self.score
        if s <= sc[0]:
            return float(ex[0])
        if s <= sc[-1]:
            return float(math.exp(np.interp(s, sc, np.log(ex))))
        u, p_u, sigma = self._anchor
        z = 1.0 + self.gpd_xi * (s - u) / sigma
        if z <= 0:
            return 0.0
        if abs(self.gpd_xi) < 1e-9:
            return float(p_u * math.exp(-(s - u) / sigma))
        return float(p_u * z ** (-1.0 / self.gpd_xi))


def _file_for(model: str) -> Path:
    return IMPOSTOR_DIR / f"{model}.json"


def shipped_models() -> list[str]:
    """The model ids that have a shipped impostor distribution."""
    return sorted(p.stem for p in IMPOSTOR_DIR.glob("*.json")) if IMPOSTOR_DIR.is_dir() else []


def check_distribution(data: Any, model: str, source: str, label: str = "") -> ImpostorDistribution:
    """``data`` (a parsed impostor-distribution file) as the distribution of ``model``;
    raises :class:`GalleryError` saying what was expected and found when it is not a JSON
    object of format :data:`IMPOSTOR_FORMAT_VERSION`, was fitted for another model id, or
    is malformed. ``source`` says where it came from (kept as its ``source``); ``label``
    names it in messages (default ``impostor distribution <source>``)."""
    what = label or f"impostor distribution {source}"
    if not isinstance(data, dict) or data.get("format") != IMPOSTOR_FORMAT_VERSION:
        raise GalleryError(
            f"{what} is corrupt: expected format {IMPOSTOR_FORMAT_VERSION}, "
            f"found {data.get('format') if isinstance(data, dict) else type(data).__name__}"
        )
    if data.get("model") != model:
        raise GalleryError(f"{what} is corrupt: it was fitted for {data.get('model')!r}, not {model!r}")
    return ImpostorDistribution(data, source)


@lru_cache(maxsize=16)
def shipped_distribution(model: str) -> ImpostorDistribution | None:
    """The impostor distribution shipped for ``model`` (a full model id, ``network@version+
    <sha8>`` with ``+flip`` when flipped: other weights have none), or ``None`` when none
    is shipped. A shipped file that cannot be read, or is malformed, or was fitted for
    another model, raises :class:`GalleryError`: it is never silently replaced by a
    fallback. Most callers want :func:`find_distribution` (registered ones too)."""
    path = _file_for(model)
    if "/" in model or "\\" in model or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GalleryError(f"shipped impostor distribution {path} is corrupt: {exc}") from None
    return check_distribution(data, model, str(path), f"shipped impostor distribution {path}")


#: Distributions registered at run time, by model id (:func:`register_distribution`).
_REGISTERED: dict[str, ImpostorDistribution] = {}


def register_distribution(data: Any, model: str, source: str) -> ImpostorDistribution:
    """Make ``data`` (a dict :func:`fit_distribution` made) the impostor distribution of
    ``model`` for this process, checked like a shipped file (:func:`check_distribution`:
    its ``model`` must be ``model``). Loading a MODEL_DIR calls this with the
    distributions fitted on its training data
    (:class:`~faceprint.embedding.model_dir.ModelDirEmbedder`), so a gallery bound to that
    model gets its open-set threshold from them. ``source`` (e.g. ``MODEL_DIR /m/lowres``)
    appears in the operating point's note. Registering a model id again replaces it."""
    dist = check_distribution(data, model, source)
    _REGISTERED[model] = dist
    return dist


def registered_distribution(model: str) -> ImpostorDistribution | None:
    """The distribution registered for ``model`` in this process, if any."""
    return _REGISTERED.get(model)


def find_distribution(model: str) -> ImpostorDistribution | None:
    """The impostor distribution of ``model``: the one registered for it (a loaded
    MODEL_DIR's), else the one shipped with faceprint, else ``None``."""
    return _REGISTERED.get(model) or shipped_distribution(model)


def missing_reason(model: str) -> str:
    """Why ``model`` has no distribution (:func:`find_distribution`), for the operating
    point's note."""
    return (
        f"no impostor score distribution is shipped for model {model} (shipped: "
        f"{', '.join(shipped_models()) or 'none'}; a MODEL_DIR brings its own when it is the embedder; "
        "other weights need their own: run faceprint calibrate --gallery on your faces)"
    )


def impostor_distribution(model: str) -> ImpostorDistribution:
    """The registered or shipped impostor distribution of ``model`` (:func:`find_distribution`);
    raises :class:`GalleryError` when there is none (:func:`missing_reason`) or when the
    file is corrupt."""
    dist = find_distribution(model)
    if dist is None:
        raise GalleryError(missing_reason(model) + "; use an explicit threshold")
    return dist


def fit_distribution(scores: NDArray[np.floating], model: str, source: str) -> dict[str, Any]:
    """An impostor distribution (the JSON-ready dict :class:`ImpostorDistribution` reads)
    fitted to different-person cosine similarities ``scores``, the way the shipped ones
    are fitted (``bench/identification.py --fit-impostors`` calls this): upper quantiles
    at exceedances log-spaced from 0.5 down to 10/n, and a generalized Pareto tail fitted
    by probability-weighted moments to the scores above the (1 - p_u) quantile, with
    p_u = max(1e-3, 50/n) so at least 50 scores shape the tail. Needs at least
    :data:`MIN_FIT_SCORES` scores; raises :class:`GalleryError` otherwise."""
    s = np.sort(np.asarray(scores, dtype=np.float64).reshape(-1))
    s = s[np.isfinite(s)]
    n = len(s)
    if n < MIN_FIT_SCORES:
        raise GalleryError(
            f"{n} different-person pairs are too few to fit an impostor distribution "
            f"(need {MIN_FIT_SCORES}): add people or images"
        )
    p_grid = np.geomspace(0.5, 10.0 / n, 240)
    q = np.maximum.accumulate(s[np.minimum((n * (1 - p_grid)).astype(np.int64), n - 1)])
    p_u = max(1e-3, 50.0 / n)
    u = float(s[int(n * (1 - p_u))])
    xi, sigma = gpd_pwm(s[u < s] - u)
    return {
        "format": IMPOSTOR_FORMAT_VERSION,
        "model": model,
        "source": source,
        "pairs": n,
        "mean": float(s.mean()),
        "std": float(s.std()),
        "exceedance": [float(x) for x in p_grid],
        "score": [round(float(x), 6) for x in q],
        "tail_fit": {
            "kind": "generalized Pareto (PWM) above u",
            "u": u,
            "p_u": p_u,
            "xi": xi,
            "sigma": sigma,
        },
    }


def gpd_pwm(excess: NDArray[np.floating]) -> tuple[float, float]:
    """(xi, sigma) of a generalized Pareto fit to positive excesses by probability-weighted
    moments (Hosking & Wallis 1987), robust for the bounded (xi < 0) tails of cosine scores."""
    y = np.sort(np.asarray(excess, dtype=np.float64))
    n = len(y)
    a0 = float(y.mean())
    a1 = float(np.mean((1.0 - (np.arange(1, n + 1) - 0.35) / n) * y))
    k = a0 / (a0 - 2 * a1) - 2.0
    sigma = 2 * a0 * a1 / (a0 - 2 * a1)
    return -k, sigma


def per_comparison_far(far: float, gallery_size: int) -> float:
    """The one-comparison exceedance p with 1 - (1 - p)^K = ``far`` (independent
    comparisons), computed without cancellation for large K."""
    return -math.expm1(math.log1p(-far) / gallery_size)


def open_set_threshold(
    model: str | ImpostorDistribution, gallery_size: int, far: float = DEFAULT_FAR
) -> float:
    """The cosine threshold at which a stranger compared with ``gallery_size`` enrolled
    people is named with probability ``far``: t = F⁻¹((1 - far)^(1/K)), with F the
    distribution given, or the one shipped for the model id given.

    ``gallery_size`` counts independent comparisons: the number of people when each
    has one face or scores are aggregated per person (a person scored by ``"max"`` over
    m faces is up to m comparisons, so passing the face count is the conservative
    choice). K = 0 is treated as 1. Raises :class:`GalleryError` when no distribution is
    shipped for ``model``, :class:`InvalidArgumentError` (a ValueError) for ``far``
    outside (0, 1) or K < 0.
    """
    if not 0.0 < far < 1.0:
        raise InvalidArgumentError(f"far must be in (0, 1), got {far}")
    if gallery_size < 0:
        raise InvalidArgumentError(f"gallery_size must be >= 0, got {gallery_size}")
    dist = model if isinstance(model, ImpostorDistribution) else impostor_distribution(model)
    return dist.quantile_exceedance(per_comparison_far(far, max(gallery_size, 1)))


def expected_far(model: str, gallery_size: int, threshold: float) -> float:
    """The stranger false-alarm rate the shipped distribution predicts at ``threshold``
    for a gallery of ``gallery_size`` people (the inverse of :func:`open_set_threshold`);
    ``identify`` can report it as its operating point."""
    p = impostor_distribution(model).exceedance_at(threshold)
    return float(-math.expm1(max(gallery_size, 1) * math.log1p(-min(p, 1.0 - 1e-15))))
