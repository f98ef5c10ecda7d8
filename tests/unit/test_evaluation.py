import re
from pathlib import Path

import numpy as np
import pytest

from faceprint.errors import EvaluationError
from faceprint.evaluation import metrics
from faceprint.evaluation.pairs import central_face, read_pairs, score_protocol
from faceprint.types import Box, Face


def test_best_threshold_separates_clean_data() -> None:
    s = np.array([0.1, 0.2, 0.3, 0.8, 0.9, 0.95])
    y = np.array([0, 0, 0, 1, 1, 1], bool)
    thr, acc = metrics.best_threshold(s, y)
    assert acc == 1.0 and 0.3 < thr < 0.8


def test_best_threshold_with_overlap() -> None:
    s = np.array([0.1, 0.6, 0.4, 0.9])
    y = np.array([0, 0, 1, 1], bool)
    thr, acc = metrics.best_threshold(s, y)
    assert acc == 0.75
    assert metrics.accuracy(s, y, thr) == 0.75


def test_roc_auc_and_tar() -> None:
    s = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    y = np.array([1, 1, 1, 0, 0, 0], bool)
    r = metrics.roc(s, y)
    assert r.auc == pytest.approx(1.0)
    point = r.tar_at_far(1 / 3)  # the smallest FAR that 3 impostors resolve
    assert point.reachable and point.tar == 1.0
    assert not r.tar_at_far(0.0).reachable
    r2 = metrics.roc(s, ~y)
    assert r2.auc == pytest.approx(0.0)


def test_no_face_pairs_always_count_as_different() -> None:
    s = np.array([metrics.NO_FACE_SCORE, 0.9, 0.2])
    y = np.array([1, 1, 0], bool)
    thr, acc = metrics.best_threshold(s, y)
    assert acc == pytest.approx(2 / 3) and thr > metrics.NO_FACE_SCORE


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_read_view1_and_view2(tmp_path: Path) -> None:
    v1 = read_pairs(_write(tmp_path / "a.txt", "2\nA 1 2\nB 1 3\nA 1 C 2\nD 4 E 1\n"))
    assert v1.folds == 1 and [p.same for p in v1.pairs] == [True, True, False, False]
    assert v1.pairs[2].name_b == "C" and v1.pairs[2].index_b == 2
    root = tmp_path
    assert v1.pairs[0].paths(root)[1] == root / "A" / "A_0002.jpg"
    v2 = read_pairs(_write(tmp_path / "b.txt", "2 1\nA 1 2\nA 1 B 1\nC 1 2\nC 1 D 1\n"))
    assert v2.folds == 2 and [p.fold for p in v2.pairs] == [0, 0, 1, 1]


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty"),
        ("x\nA 1 2\n", "first line"),
        ("2\nA 1 2\n", "header promises"),
        ("1\nA 1 B 2\nA 1 2\n", "line 2"),
    ],
)
def test_malformed_pairs_files(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(EvaluationError, match=match):
        read_pairs(_write(tmp_path / "p.txt", text))
    with pytest.raises(EvaluationError, match="cannot read"):
        read_pairs(tmp_path / "missing.txt")


def test_protocols() -> None:
    rng = np.random.default_rng(0)
    y = np.array([True] * 100 + [False] * 100)
    s = np.where(y, rng.normal(0.8, 0.1, 200), rng.normal(0.4, 0.1, 200))
    cv = score_protocol(s, y)
    assert cv.protocol == "cv" and len(cv.fold_accuracies) == 10 and cv.accuracy_mean > 0.95
    folds = np.repeat(np.arange(10), 20)
    assert score_protocol(s, y, folds=folds).protocol == "folds"
    tt = score_protocol(s, y, train=(s, y))
    assert tt.protocol == "train/test" and tt.fold_thresholds == (tt.threshold,)


def test_cv_never_fits_on_one_class_alone() -> None:
    # A file with all same pairs first: contiguous folds would hold a single class.
    y = np.array([True] * 50 + [False] * 50)
    s = np.where(y, 0.9, 0.1)
    res = score_protocol(s, y)
    assert res.accuracy_mean == 1.0


def test_central_face_is_not_the_largest() -> None:
    big = Face(Box(0, 0, 120, 120), 0.9)
    centred = Face(Box(100, 100, 150, 150), 0.8)
    assert central_face([big, centred], (250, 250, 3)) is centred
    assert central_face([], (250, 250, 3)) is None


def test_view2_folds_never_see_their_own_pairs() -> None:
    """The threshold applied to fold k is fitted on the other folds only: making fold k's
    scores all wrong leaves its threshold as it was, and its accuracy drops to 0."""
    rng = np.random.default_rng(1)
    folds = np.repeat(np.arange(10), 40)
    y = np.tile(np.array([True] * 20 + [False] * 20), 10)
    s = np.where(y, rng.normal(0.8, 0.1, 400), rng.normal(0.4, 0.1, 400))
    base = score_protocol(s, y, folds=folds)
    s2 = s.copy()
    s2[folds == 3] = np.where(y[folds == 3], 0.1, 0.99)  # fold 3 becomes all wrong
    moved = score_protocol(s2, y, folds=folds)
    assert moved.fold_thresholds[3] == base.fold_thresholds[3]  # fitted without fold 3
    assert moved.fold_accuracies[3] == 0.0


def test_the_report_names_the_detector_and_embedder_actually_used() -> None:
    """A pipeline left at its defaults was described as detector "default", embedder
    "default": the report must say which ones ran."""
    from faceprint.evaluation.embedset import PipelineSpec
    from faceprint.evaluation.verification import describe
    from faceprint.recognizer import DEFAULT_EMBEDDER, default_detector_name

    d = describe(PipelineSpec(), [("dataset", "x")])
    assert d["detector"] == default_detector_name() and d["embedder"] == DEFAULT_EMBEDDER
    # the id of the weights that made the vectors (dlib and dlib-onnx share dlib's)
    assert re.fullmatch(r"dlib@resnet_v1\+[0-9a-f]{8}", d["model"]) and d["dataset"] == "x"
    assert describe(PipelineSpec("yunet", "dlib", flip=True))["embedder"] == "dlib+flip"
