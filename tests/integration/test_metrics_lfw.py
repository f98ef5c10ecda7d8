"""The metrics on real similarities, against scikit-learn: the first 100 same-person and
100 different-person pairs of LFW pairsDevTrain, embedded with the default pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.metrics import roc_auc_score, roc_curve

from conftest import LFW, MODELS, need
from faceprint.evaluation import metrics

PER_CLASS = 100


@pytest.fixture(scope="module")
def lfw_scores(tmp_path_factory: pytest.TempPathFactory) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    from faceprint import Recognizer
    from faceprint.evaluation.pairs import central_face, read_pairs
    from faceprint.types import Face, Image

    pairs_file = need(LFW / "pairsDevTrain.txt")
    pf = read_pairs(pairs_file)
    same = [p for p in pf.pairs if p.same][:PER_CLASS]
    diff = [p for p in pf.pairs if not p.same][:PER_CLASS]
    chosen = same + diff
    paths = sorted({path for p in chosen for path in p.paths(pairs_file.parent)})

    def pick(faces: list[Face], img: Image) -> list[Face]:
        c = central_face(faces, img.shape)
        return [c] if c is not None else []

    # the autouse settings fixture is per test; this one is per module, so isolate here too
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEPRINT_HOME", str(tmp_path_factory.mktemp("fphome")))
        mp.setenv("FACEPRINT_MODELS", str(need(MODELS)))
        mp.setenv("FACEPRINT_OFFLINE", "1")
        for name in ("FACEPRINT_CACHE", "FACEPRINT_DETECTOR", "FACEPRINT_EMBEDDER"):
            mp.delenv(name, raising=False)
        rec = Recognizer()
        found = rec.process_batch([str(p) for p in paths], select=pick)
    vec: dict[Path, NDArray[np.float32] | None] = {
        p: (fs[0].embedding if fs else None) for p, fs in zip(paths, found, strict=True)
    }
    scores = []
    for pr in chosen:
        a, b = (vec[p] for p in pr.paths(pairs_file.parent))
        scores.append(metrics.NO_FACE_SCORE if a is None or b is None else float(np.dot(a, b)))
    labels = np.array([p.same for p in chosen])
    return np.array(scores, dtype=np.float64), labels


def test_roc_and_auc_match_sklearn(lfw_scores: tuple[NDArray[np.float64], NDArray[np.bool_]]) -> None:
    s, y = lfw_scores
    r = metrics.roc(s, y)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(r.far, fpr)
    np.testing.assert_allclose(r.tar, tpr)
    np.testing.assert_array_equal(r.thresholds[1:], thr[1:])
    assert r.auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert r.auc is not None and r.auc > 0.95  # dlib's model on LFW: a sanity bound, not a benchmark


def test_tar_at_far_matches_sklearn(lfw_scores: tuple[NDArray[np.float64], NDArray[np.bool_]]) -> None:
    s, y = lfw_scores
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    for target in (0.01, 0.05, 0.1):  # 100 different pairs resolve FAR down to 0.01
        p = metrics.tar_at_far(s, y, target)
        assert p.reachable and p.n_impostors == PER_CLASS
        assert p.tar == pytest.approx(tpr[fpr <= target + 1e-12].max(), abs=1e-12)
        assert p.threshold == metrics.threshold_at_far(s[~y], target)
        # the real scores are float32 values: the threshold holds in float32 too
        s32 = s.astype(np.float32)
        assert np.mean(s32[~y] >= p.threshold) == p.far and np.mean(s32[y] >= p.threshold) == p.tar
    assert not metrics.tar_at_far(s, y, 1e-3).reachable


def test_eer_sits_between_the_rates(lfw_scores: tuple[NDArray[np.float64], NDArray[np.bool_]]) -> None:
    s, y = lfw_scores
    e = metrics.eer(s, y)
    assert e is not None
    rate, thr = e
    far, frr = np.mean(s[~y] >= thr), 1 - np.mean(s[y] >= thr)
    assert 0.0 <= rate < 0.1
    assert min(far, frr) - 0.02 <= rate <= max(far, frr) + 0.02
