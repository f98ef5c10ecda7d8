"""Verification and identification metrics: against scikit-learn on random scores with
ties, and on the edge cases where a rate is undefined or the data cannot resolve it.
(The same checks on real LFW similarities: tests/integration/test_metrics_lfw.py.)"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.metrics import f1_score, roc_auc_score, roc_curve

from faceprint.evaluation import metrics
from faceprint.evaluation.metrics import NO_FACE_SCORE


def _random(
    seed: int, n: int = 80, dtype: type = np.float64
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Overlapping classes on a coarse grid, so that many scores tie (also across classes)."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    y[:2] = [True, False]
    s = np.round(np.where(y, rng.normal(0.6, 0.2, n), rng.normal(0.3, 0.2, n)) * 20) / 20
    return s.astype(dtype).astype(np.float64), y


def _sklearn_tar_at_far(s: NDArray[np.float64], y: NDArray[np.bool_], target: float) -> float:
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return float(tpr[fpr <= target + 1e-12].max())


@pytest.mark.parametrize("seed", range(8))
def test_roc_auc_and_tar_at_far_match_sklearn_with_ties(seed: int) -> None:
    s, y = _random(seed, dtype=np.float32 if seed % 2 else np.float64)
    r = metrics.roc(s, y)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(r.far, fpr)
    np.testing.assert_allclose(r.tar, tpr)
    np.testing.assert_array_equal(r.thresholds[1:], thr[1:])
    assert r.auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    n_imp = int((~y).sum())
    for target in (1 / n_imp, 0.05, 0.1, 0.3, 0.5, 1.0):
        p = metrics.tar_at_far(s, y, target)
        assert p.reachable and p.n_impostors == n_imp and p.n_genuine == int(y.sum())
        assert p.tar == pytest.approx(_sklearn_tar_at_far(s, y, target), abs=1e-12)
        assert p.threshold is not None and p.far is not None and p.far <= target
        # the reported threshold gives exactly the reported point
        assert np.mean(s[y] >= p.threshold) == pytest.approx(p.tar)
        assert np.mean(s[~y] >= p.threshold) == pytest.approx(p.far)
        assert r.tar_at_far(target) == p
        if target < 1:
            assert p.threshold == metrics.threshold_at_far(s[~y], target)


@pytest.mark.parametrize("seed", range(4))
def test_f1_and_sweep_match_sklearn(seed: int) -> None:
    s, y = _random(seed)
    for t in (-0.2, 0.25, 0.45, 0.8, 2.0):
        assert metrics.f1(s, y, t) == pytest.approx(f1_score(y, s >= t, zero_division=0.0), abs=1e-12)
    sw = metrics.threshold_sweep(s, y)
    assert len(sw.thresholds) == 2001 and sw.thresholds[0] == -1.0 and sw.thresholds[-1] == 1.0
    for i in (0, 1200, 1400, 1650, 2000):
        t = float(sw.thresholds[i])
        assert sw.accuracy[i] == pytest.approx(metrics.accuracy(s, y, t))
        assert sw.f1[i] == pytest.approx(metrics.f1(s, y, t))
        assert sw.tar[i] == pytest.approx(np.mean(s[y] >= t))
        assert sw.far[i] == pytest.approx(np.mean(s[~y] >= t))
    own = metrics.threshold_sweep(s, y, [0.5])
    assert own.thresholds.tolist() == [0.5] and own.f1[0] == pytest.approx(metrics.f1(s, y, 0.5))


def test_eer_is_where_false_accepts_equal_false_rejects() -> None:
    # separable: EER 0 at the lowest genuine score
    assert metrics.eer([0.8, 0.9, 0.1, 0.2], [1, 1, 0, 0]) == (0.0, 0.8)
    # a vertex with FAR = FRR = 0.5
    assert metrics.eer([0.6, 0.8, 0.4, 0.7], [1, 1, 0, 0]) == (0.5, 0.7)
    for seed in range(6):
        s, y = _random(seed)
        e = metrics.eer(s, y)
        assert e is not None
        rate, thr = e
        # the crossing lies between the rates of the thresholds around it
        above = np.mean(s[~y] >= thr + 0.05), 1 - np.mean(s[y] >= thr + 0.05)
        below = np.mean(s[~y] >= thr - 0.05), 1 - np.mean(s[y] >= thr - 0.05)
        assert min(above) - 1e-9 <= rate <= max(below) + 1e-9
        assert metrics.roc(s, y).eer == e


def test_every_score_equal() -> None:
    s, y = np.full(6, 0.5), np.array([1, 0, 1, 0, 1, 0], bool)
    r = metrics.roc(s, y)
    assert r.auc == 0.5 == roc_auc_score(y, s)
    assert r.eer == (0.5, 0.5)
    p = r.tar_at_far(1 / 3)  # no threshold splits the tie: accept nothing
    assert p.reachable and p.tar == 0.0 and p.far == 0.0 and p.threshold is not None and p.threshold > 0.5
    assert r.tar_at_far(1.0).tar == 1.0


@pytest.mark.parametrize("genuine", [True, False])
def test_an_empty_class_leaves_the_rates_undefined(genuine: bool) -> None:
    s = np.array([0.9, 0.4, 0.7])
    y = np.full(3, genuine)
    r = metrics.roc(s, y)
    assert r.auc is None and r.eer is None and metrics.eer(s, y) is None
    for target in (1e-3, 0.5, 1.0):
        p = metrics.tar_at_far(s, y, target)
        assert not p.reachable and p.tar is None and p.threshold is None and p.far is None
    sw = metrics.threshold_sweep(s, y).to_dict()
    assert sw["tar" if not genuine else "far"][0] is None
    json.dumps(sw, allow_nan=False)
    assert metrics.threshold_at_far([], 0.1) is None


def test_far_below_resolution_is_unreachable_never_zero_or_one() -> None:
    s, y = _random(0, n=300)
    n_imp = int((~y).sum())
    for target in (1e-3, 0.99 / n_imp, 0.0):
        p = metrics.tar_at_far(s, y, target)
        assert p.to_dict() == {
            "target": target,
            "tar": None,
            "threshold": None,
            "far": None,
            "n_genuine": int(y.sum()),
            "n_impostors": n_imp,
            "reachable": False,
        }
        assert metrics.threshold_at_far(s[~y], target) is None
    assert metrics.tar_at_far(s, y, 1 / n_imp).reachable
    json.dumps(metrics.tar_at_far(s, y, 1e-3).to_dict(), allow_nan=False)


def test_threshold_at_far() -> None:
    imp = [0.1, 0.5, 0.5, 0.9, 0.3]
    t = metrics.threshold_at_far(imp, 0.2)  # one of five may pass: just above 0.5
    assert t is not None and 0.5 < t < 0.5 + 1e-6 and np.mean(np.array(imp) >= t) == 0.2
    t = metrics.threshold_at_far(imp, 0.4)  # two may pass, but 0.5 ties: still only 0.9
    assert t is not None and 0.5 < t < 0.5 + 1e-6
    assert metrics.threshold_at_far(imp, 0.6) == pytest.approx(0.3, abs=1e-6)
    assert metrics.threshold_at_far(imp, 1.0) == 0.1
    assert metrics.threshold_at_far(imp, 0.19) is None
    # 0.29 * 100 is 28.999999999999996 in floating point: 29 impostors may still pass
    t = metrics.threshold_at_far(np.arange(100) / 100, 0.29)
    assert t is not None and np.sum(np.arange(100) / 100 >= t) == 29


def test_threshold_at_far_holds_when_scores_are_compared_in_float32() -> None:
    rng = np.random.default_rng(3)
    imp = rng.normal(0.5, 0.1, 1000).astype(np.float32)
    t = metrics.threshold_at_far(imp, 0.01)
    assert t is not None
    assert np.sum(imp >= t) == 10  # float32 compare (NumPy 2 keeps the array's dtype)
    assert np.sum(imp.astype(np.float64) >= t) == 10


def test_scores_must_be_finite() -> None:
    with pytest.raises(ValueError, match="finite"):
        metrics.roc([0.5, float("nan")], [True, False])
    with pytest.raises(ValueError, match="labels"):
        metrics.roc([0.5, 0.4], [True])


def test_fold_summary() -> None:
    assert metrics.fold_summary([0.9, 1.0]) == (pytest.approx(0.95), pytest.approx(0.05))
    assert metrics.fold_summary([]) == (None, None)


# -- identification ------------------------------------------------------------------------
def test_cmc_counts_absent_people_as_misses() -> None:
    # ranks: 1, 1, 2, 5, absent, beyond max_rank
    rates = metrics.cmc([1, 1, 2, 5, 0, 30], max_rank=5)
    np.testing.assert_allclose(rates, [2 / 6, 3 / 6, 3 / 6, 3 / 6, 4 / 6])
    assert len(metrics.cmc([0, 0])) == 20 and metrics.cmc([0, 0]).max() == 0.0
    with pytest.raises(ValueError, match="known probe"):
        metrics.cmc([])
    with pytest.raises(ValueError, match=">= 0"):
        metrics.cmc([1, -1])
    with pytest.raises(ValueError, match="max_rank"):
        metrics.cmc([1], max_rank=0)


def test_dir_at_far_by_hand() -> None:
    known = [0.9, 0.8, 0.7, 0.95, -np.inf]
    correct = [True, True, True, False, False]
    strangers = [0.85, 0.6, 0.5, 0.4, NO_FACE_SCORE]
    p = metrics.dir_at_far(known, correct, strangers, 0.2)  # 1 of 5 strangers may be named
    assert p.reachable and p.n_known == 5 and p.n_strangers == 5
    assert p.threshold is not None and 0.6 < p.threshold < 0.6 + 1e-6
    assert p.far == 0.2 and p.dir == pytest.approx(3 / 5)
    assert metrics.false_alarm_rate(strangers, p.threshold) == p.far
    assert metrics.dir_at_threshold(known, correct, p.threshold) == p.dir
    json.dumps(p.to_dict(), allow_nan=False)
    # every stranger with a face may be named: every probe with a face is accepted, the
    # faceless ones (-inf, NO_FACE_SCORE) never are
    p = metrics.dir_at_far(known, correct, strangers, 0.8)
    assert p.threshold == 0.4 and p.far == 0.8 and p.dir == pytest.approx(3 / 5)
    assert metrics.dir_at_far(known, correct, strangers, 1.0).far == 0.8


def test_dir_at_far_unreachable_and_undefined() -> None:
    p = metrics.dir_at_far([0.9], [True], [], 0.1)
    assert not p.reachable and p.dir is None and p.threshold is None and p.far is None
    p = metrics.dir_at_far([0.9], [True], [0.5] * 50, 0.01)  # 0.01 < 1/50
    assert not p.reachable and p.dir is None and p.n_strangers == 50
    p = metrics.dir_at_far([], [], [0.5, 0.7], 0.5)
    assert p.reachable and p.dir is None and p.far == 0.5
    assert metrics.false_alarm_rate([], 0.5) is None and metrics.dir_at_threshold([], [], 0.5) is None


def _old_bench_dir_at_far(
    known: NDArray[np.float64], ok: NDArray[np.bool_], strangers: NDArray[np.float64], far: float
) -> dict[str, float]:
    """bench/identification.py's private version before it moved here."""
    u = np.sort(strangers[np.isfinite(strangers)])[::-1]
    k = int(np.floor(far * len(strangers)))
    t = float(np.nextafter(u[k], np.inf)) if k < len(u) else -np.inf
    return {"threshold": t, "far": float(np.mean(strangers >= t)), "dir": float(np.mean(ok & (known >= t)))}


@pytest.mark.parametrize("seed", range(5))
def test_dir_at_far_agrees_with_the_old_bench_version(seed: int) -> None:
    rng = np.random.default_rng(seed)
    known = rng.normal(0.7, 0.1, 400)
    ok = rng.random(400) < 0.8
    strangers = rng.normal(0.5, 0.1, 700)
    known[::37] = -np.inf  # no face
    ok[::37] = False
    strangers[::41] = -np.inf
    for far in (0.01, 0.05, 0.1):
        p = metrics.dir_at_far(known, ok, strangers, far)
        old = _old_bench_dir_at_far(known, ok, strangers, far)
        assert (p.threshold, p.far, p.dir) == (old["threshold"], old["far"], old["dir"])


def test_dir_at_far_threshold_rejects_the_tie_in_float32() -> None:
    strangers = np.array([0.8, 0.7, 0.7, 0.1], dtype=np.float32)
    p = metrics.dir_at_far(np.array([0.7], np.float32), [True], strangers, 0.25)
    assert p.threshold is not None and p.far == 0.25 and p.dir == 0.0
    assert np.sum(strangers >= p.threshold) == 1
    assert not math.isnan(p.threshold)
