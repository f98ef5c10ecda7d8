"""Person-level scoring and the open-set threshold (no model weights needed: the shipped
impostor distributions are package data)."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from faceprint.errors import GalleryError
from faceprint.gallery import scoring
from faceprint.gallery.scoring import (
    ImpostorDistribution,
    expected_far,
    impostor_distribution,
    open_set_threshold,
    person_centroids,
    person_score_matrix,
    person_scores,
    views_id,
)

#: The shipped model ids: dlib's published weights (shared by the dlib and dlib-onnx
#: embedders), without and with flip TTA.
MODELS = (
    "dlib@resnet_v1+55533b28",
    "dlib@resnet_v1+55533b28+flip",
    "dlib@resnet_v1+55533b28+flip+views",  # probes with flip against faces enrolled with views
    "dlib@resnet_v1+55533b28+views",
)
#: The int8 dlib embedder's ids (bench/identification.py --embedder dlib-onnx-int8
#: --fit-impostors [--flip] [--views]): the same weights quantised, vectors of their own.
INT8_MODELS = (
    "dlib@resnet_v1-int8+55533b28",
    "dlib@resnet_v1-int8+55533b28+flip",
    "dlib@resnet_v1-int8+55533b28+flip+views",
    "dlib@resnet_v1-int8+55533b28+views",
)
#: The optional embedders' and the fusions' ids (bench/identification.py --embedder NAME
#: --fit-impostors [--flip] [--views]): licences not established, shipped all the same.
OPTIONAL_MODELS = (
    "faceplugin@0.0.1+87aacdfe",
    "faceplugin@0.0.1+87aacdfe+flip",
    "fuse(dlib@resnet_v1+55533b28=0.65,mobilefacenet@expo-1.0.24+d8ba40c0=0.35)",
    "fuse(dlib@resnet_v1+55533b28=0.65,mobilefacenet@expo-1.0.24+d8ba40c0=0.35)+flip",
    "fuse(dlib@resnet_v1+55533b28=0.65,mobilefacenet@expo-1.0.24+d8ba40c0=0.35)+flip+views",
    "fuse(dlib@resnet_v1+55533b28=0.65,mobilefacenet@expo-1.0.24+d8ba40c0=0.35)+views",
    "fuse(dlib@resnet_v1+55533b28=0.7,faceplugin@0.0.1+87aacdfe=0.3)",
    "fuse(dlib@resnet_v1+55533b28=0.7,faceplugin@0.0.1+87aacdfe=0.3)+flip",
    "fuse(dlib@resnet_v1+55533b28=0.8,mobilefacenet@expo-1.0.24+d8ba40c0=0.1,faceplugin@0.0.1+87aacdfe=0.1)",
    "fuse(dlib@resnet_v1+55533b28=0.8,mobilefacenet@expo-1.0.24+d8ba40c0=0.1,faceplugin@0.0.1+87aacdfe=0.1)+flip",
    "fuse(mobilefacenet@expo-1.0.24+d8ba40c0=0.6,faceplugin@0.0.1+87aacdfe=0.4)",
    "fuse(mobilefacenet@expo-1.0.24+d8ba40c0=0.6,faceplugin@0.0.1+87aacdfe=0.4)+flip",
    "mobilefacenet@expo-1.0.24+d8ba40c0",
    "mobilefacenet@expo-1.0.24+d8ba40c0+flip",
    "mobilefacenet@expo-1.0.24+d8ba40c0+flip+views",
    "mobilefacenet@expo-1.0.24+d8ba40c0+views",
)


@pytest.fixture
def tmp_impostors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private impostors directory (for files the tests write themselves)."""
    monkeypatch.setattr(scoring, "IMPOSTOR_DIR", tmp_path)
    scoring.shipped_distribution.cache_clear()
    yield tmp_path
    scoring.shipped_distribution.cache_clear()


def _gaussian_table(mu: float = 0.0, sd: float = 0.1) -> dict[str, object]:
    """A valid distribution file for a Gaussian tail (exact quantiles via bisection)."""
    ps = np.geomspace(0.5, 1e-4, 60)

    def q(p: float) -> float:
        lo, hi = -10.0, 10.0
        for _ in range(100):
            mid = (lo + hi) / 2
            if 0.5 * math.erfc(mid / math.sqrt(2)) > p:
                lo = mid
            else:
                hi = mid
        return mu + sd * lo

    return {
        "format": scoring.IMPOSTOR_FORMAT_VERSION,
        "model": "toy@1",
        "exceedance": ps.tolist(),
        "score": [q(float(p)) for p in ps],
        "tail_fit": {"u": q(1e-3), "p_u": 1e-3, "xi": -0.1, "sigma": 0.03},
    }


# -- aggregation ------------------------------------------------------------------------
def test_methods_on_hand_made_scores() -> None:
    sims = np.array([0.1, 0.5, 0.3, 0.9, 0.2, 0.4], np.float32)
    who = ["a", "b", "a", "c", "b", "a"]
    best = person_scores(sims, who, "max")
    assert [n for n, _ in best] == ["c", "b", "a"]
    assert [v for _, v in best] == pytest.approx([0.9, 0.5, 0.4])
    mean = dict(person_scores(sims, who, "mean"))
    assert mean == pytest.approx({"a": 0.8 / 3, "b": 0.35, "c": 0.9})
    top2 = dict(person_scores(sims, who, "top2"))
    assert top2 == pytest.approx({"a": 0.35, "b": 0.35, "c": 0.9})  # c has one face: its best
    assert person_scores(sims, who) == person_scores(sims, who, scoring.DEFAULT_METHOD)


def test_sorted_descending_ties_by_name() -> None:
    out = person_scores(np.array([0.5, 0.7, 0.5]), ["z", "m", "a"])
    assert [n for n, _ in out] == ["m", "a", "z"]


def test_top2_with_a_tied_best_uses_it_twice() -> None:
    ((name, score),) = person_scores(np.array([0.6, 0.6, 0.1]), ["p", "p", "p"], "top2")
    assert name == "p" and score == pytest.approx(0.6)


def test_matrix_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    who = [str(x) for x in rng.integers(0, 7, 40)]
    sims = rng.uniform(-1, 1, (5, 40))
    for method in scoring.METHODS:
        names, mat = person_score_matrix(sims, who, method)
        for q in range(5):
            want = {}
            for n in set(who):
                v = sorted((s for s, w in zip(sims[q], who, strict=True) if w == n), reverse=True)
                want[n] = {"max": v[0], "mean": float(np.mean(v)), "top2": float(np.mean(v[:2]))}[method]
            assert dict(zip(names, mat[q], strict=True)) == pytest.approx(want)


def test_centroids_are_unit_mean_vectors() -> None:
    v = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    names, c = person_centroids(v, ["x", "x", "y"])
    assert names == ["x", "y"]
    np.testing.assert_allclose(c, [[2**-0.5, 2**-0.5, 0], [0, 0, 1]], atol=1e-6)


def test_bad_aggregation_input() -> None:
    with pytest.raises(ValueError, match="unknown person-level method 'median'"):
        person_scores(np.array([0.1]), ["a"], "median")
    with pytest.raises(ValueError, match="2 similarities but 1 person"):
        person_scores(np.array([0.1, 0.2]), ["a"])


# -- the threshold ----------------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS + INT8_MODELS)
def test_shipped_distribution_loads_and_is_monotone(model: str) -> None:
    d = impostor_distribution(model)
    assert d.model == model
    assert np.all(np.diff(d.exceedance) < 0) and np.all(np.diff(d.score) >= 0)
    assert d.gpd_xi < 0.5 and d.gpd_sigma > 0
    assert -1.0 < d.score[0] < d.score[-1] <= 1.0


def test_flip_has_its_own_distribution_fitted_on_train_people_only() -> None:
    plain, flip = (impostor_distribution(m) for m in MODELS[:2])
    assert "pairsDevTrain people only" in flip.raw["source"] and "--flip" in flip.raw["source"]
    assert flip.raw["people"] == plain.raw["people"] and flip.raw["pairs"] == plain.raw["pairs"]
    assert not np.array_equal(plain.score, flip.score)  # flip TTA moves impostor scores
    assert open_set_threshold(MODELS[1], 1000) != open_set_threshold(MODELS[0], 1000)


@pytest.mark.parametrize("probe", MODELS[:2])
def test_faces_enrolled_with_views_have_their_own_stricter_distribution(probe: str) -> None:
    """A view-averaged enrolled vector scores strangers higher than one crop does: its
    distribution (fitted on the same train people, pairs scored both ways) sits above."""
    one, views = impostor_distribution(probe), impostor_distribution(views_id(probe))
    assert "pairsDevTrain people only" in views.raw["source"] and "--views" in views.raw["source"]
    assert views.raw["people"] == one.raw["people"] and views.raw["pairs"] == 2 * one.raw["pairs"]
    for k in (1, 100, 10_000):
        assert open_set_threshold(views_id(probe), k) > open_set_threshold(probe, k)


def test_only_the_shipped_weights_have_a_distribution() -> None:
    assert scoring.shipped_models() == sorted(MODELS + INT8_MODELS + OPTIONAL_MODELS)
    assert scoring.shipped_distribution("dlib@resnet_v1+deadbeef") is None  # fine-tuned weights
    assert scoring.shipped_distribution("dlib-onnx@resnet_v1") is None  # an id of older releases


@pytest.mark.parametrize("model", MODELS)
def test_threshold_grows_with_gallery_and_falls_with_far(model: str) -> None:
    sizes = [1, 2, 10, 100, 1_000, 10_000, 100_000, 1_000_000]
    ts = [open_set_threshold(model, k, 0.01) for k in sizes]
    assert all(b > a for a, b in itertools.pairwise(ts)), ts
    assert ts[-1] <= 1.0
    fars = [0.3, 0.1, 0.01, 0.001]
    tf = [open_set_threshold(model, 1000, f) for f in fars]
    assert all(b > a for a, b in itertools.pairwise(tf)), tf


def test_at_one_person_it_is_the_impostor_quantile() -> None:
    d = impostor_distribution(MODELS[0])
    for i in (5, 50, 150, len(d.exceedance) - 1):
        p = float(d.exceedance[i])
        assert open_set_threshold(MODELS[0], 1, p) == pytest.approx(d.score[i], abs=1e-9)
    assert open_set_threshold(MODELS[0], 0, 0.01) == open_set_threshold(MODELS[0], 1, 0.01)


def test_expected_far_inverts_the_threshold() -> None:
    for k in (1, 30, 1000, 100_000):
        t = open_set_threshold(MODELS[0], k, 0.05)
        assert expected_far(MODELS[0], k, t) == pytest.approx(0.05, rel=1e-3)


def test_unknown_model_is_a_gallery_error() -> None:
    with pytest.raises(GalleryError, match="no impostor score distribution is shipped for model"):
        open_set_threshold("arcface@r100", 10)
    with pytest.raises(GalleryError):
        open_set_threshold("../../etc/passwd", 10)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="far must be in"):
        open_set_threshold(MODELS[0], 10, 0.0)
    with pytest.raises(ValueError, match="gallery_size"):
        open_set_threshold(MODELS[0], -1)


def test_table_and_tail_on_a_known_distribution(tmp_impostors: Path) -> None:
    data = _gaussian_table()
    (tmp_impostors / "toy@1.json").write_text(json.dumps(data))
    d = impostor_distribution("toy@1")
    # inside the table: exact at the grid points, and exceedance_at inverts it
    assert d.quantile_exceedance(float(d.exceedance[10])) == pytest.approx(d.score[10])
    assert d.exceedance_at(d.quantile_exceedance(3e-3)) == pytest.approx(3e-3, rel=1e-6)
    # beyond the table: the GPD tail, still increasing, bounded by xi < 0
    deep = [d.quantile_exceedance(p) for p in (1e-5, 1e-7, 1e-9)]
    assert d.score[-1] < deep[0] < deep[1] < deep[2] <= 1.0
    assert d.exceedance_at(deep[1]) == pytest.approx(1e-7, rel=1e-6)


def test_malformed_files_are_gallery_errors(tmp_impostors: Path) -> None:
    (tmp_impostors / "bad@1.json").write_text("{not json")
    with pytest.raises(GalleryError, match=r"bad@1\.json is corrupt"):
        scoring.shipped_distribution("bad@1")  # corrupt is an error, not "none shipped"
    (tmp_impostors / "future@1.json").write_text(json.dumps({**_gaussian_table(), "format": 99}))
    with pytest.raises(GalleryError, match="is corrupt: expected format 1, found 99"):
        impostor_distribution("future@1")
    (tmp_impostors / "other@1.json").write_text(json.dumps(_gaussian_table()))  # fitted for toy@1
    with pytest.raises(GalleryError, match="fitted for 'toy@1', not 'other@1'"):
        scoring.shipped_distribution("other@1")
    rev = _gaussian_table()
    rev["score"] = list(reversed(rev["score"]))  # type: ignore[call-overload]
    with pytest.raises(GalleryError, match="non-decreasing"):
        ImpostorDistribution(rev, "reversed")


@pytest.mark.parametrize("model", OPTIONAL_MODELS)
def test_optional_models_distributions_are_fitted_on_train_people(model: str) -> None:
    d = impostor_distribution(model)
    assert "pairsDevTrain people only" in d.raw["source"] and "--embedder" in d.raw["source"]
    assert ("--flip" in d.raw["source"]) == ("+flip" in model)
    assert ("--views" in d.raw["source"]) == model.endswith("+views")
    for check in d.raw["independence_check"]:  # random galleries of train people: FAR near its target
        assert check["measured_far"] <= 1.25 * check["target_far"]
    assert open_set_threshold(model, 1000, 0.01) > open_set_threshold(model, 10, 0.01)
