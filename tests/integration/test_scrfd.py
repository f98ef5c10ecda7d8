"""SCRFD (InsightFace) on onnxruntime: both published files, real photos, edge inputs.

The model files come from ../shared/models (see its SOURCES.md); a missing file skips the
test with the reason. The detector is built from an explicit ``model_path`` so these tests
run whether or not the catalogue already has an "scrfd" entry.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from conftest import MODELS, need
from faceprint.detection import Detector
from faceprint.detection.scrfd import MODEL_FILES, ScrfdDetector
from faceprint.errors import InvalidImageError, ModelUnavailableError, UnknownComponentError
from faceprint.io import load_image
from faceprint.types import Face
from golden import check_faces, reference

VARIANTS = sorted(MODEL_FILES)
_CACHE: dict[str, ScrfdDetector] = {}


def make(variant: str) -> ScrfdDetector:
    """One detector per variant for the whole module (sessions are immutable)."""
    if variant not in _CACHE:
        path = need(MODELS / MODEL_FILES[variant])
        _CACHE[variant] = ScrfdDetector(model=variant, model_path=str(path))
    return _CACHE[variant]


def _assert_std5_inside(face: Face) -> None:
    """Landmarks lie inside the box, in std5 order (viewer's left before right)."""
    lm, b = face.landmarks, face.box
    assert lm is not None and lm.shape == (5, 2) and lm.dtype == np.float32
    assert face.landmark_scheme == "std5"
    assert (lm[:, 0] > b.x1).all() and (lm[:, 0] < b.x2).all(), (lm, b)
    assert (lm[:, 1] > b.y1).all() and (lm[:, 1] < b.y2).all(), (lm, b)
    assert lm[0, 0] < lm[1, 0], "viewer's left eye comes first"
    assert lm[3, 0] < lm[4, 0], "viewer's left mouth corner comes before the right one"
    assert lm[:2, 1].mean() < lm[2, 1] < lm[3:, 1].mean(), "eyes above nose above mouth"


def _lfw_sample(lfw: Path) -> list[Path]:
    people = sorted(p for p in lfw.iterdir() if p.is_dir())[::150][:12]
    return [sorted(p.glob("*.jpg"))[0] for p in people]


@pytest.mark.parametrize("variant", VARIANTS)
def test_finds_the_central_lfw_face_with_std5_landmarks(variant: str, lfw: Path) -> None:
    det = make(variant)
    assert isinstance(det, Detector) and det.name == "scrfd"
    found = 0
    for path in _lfw_sample(lfw):
        img = load_image(path)
        faces = det.detect(img)
        assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
        central = [f for f in faces if abs(f.box.center[0] - 125) < 40 and abs(f.box.center[1] - 125) < 40]
        if central:
            found += 1
            _assert_std5_inside(central[0])
            assert 0.5 <= central[0].score <= 1.0
    assert found >= 11, f"scrfd {variant} found the central LFW face in only {found}/12 images"


@pytest.mark.parametrize("variant", VARIANTS)
def test_matches_insightfaces_own_scrfd(variant: str) -> None:
    """Boxes (IoU >= 0.95), landmarks (<= 1 px) and scores against outputs recorded from
    InsightFace's SCRFD class (fixtures/scrfd_reference.json says how)."""
    ref = reference("scrfd_reference.json")
    opts = ref["options"]
    det = ScrfdDetector(
        model=variant, model_path=str(need(MODELS / MODEL_FILES[variant])),
        score_threshold=opts["score_threshold"], nms_threshold=opts["nms_threshold"],
        input_size=tuple(opts["input_size"]),
    )  # fmt: skip
    assert check_faces(det.detect, ref["variants"][variant]) >= 20


@pytest.mark.parametrize("variant", VARIANTS)
def test_solvay_group_photo(variant: str, group: Path) -> None:
    img = load_image(group / "solvay_conference_1927.png")
    faces = make(variant).detect(img)
    assert 24 <= len(faces) <= 32, f"scrfd {variant}: {len(faces)} faces in the Solvay photo (29 people)"
    h, w = img.shape[:2]
    for f in faces:
        assert 0 <= f.box.center[0] <= w and 0 <= f.box.center[1] <= h
        assert 10 < f.box.width < 400, "faces in the Solvay photo are small"


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_faces_in_blank_or_tiny_images(variant: str) -> None:
    det = make(variant)
    assert det.detect(np.full((480, 640, 3), 127, np.uint8)) == []
    assert det.detect(np.zeros((1, 1, 3), np.uint8)) == []
    assert det.detect(np.zeros((5, 300, 3), np.uint8)) == []
    assert det.detect_batch([np.zeros((40, 40, 3), np.uint8)] * 2) == [[], []]
    assert det.detect_batch([]) == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_rejects_non_rgb_arrays(variant: str) -> None:
    with pytest.raises(InvalidImageError, match=r"\(H, W, 3\)"):
        make(variant).detect(np.zeros((64, 64), np.uint8))


@pytest.mark.parametrize("variant", VARIANTS)
def test_batch_equals_single(variant: str, lfw: Path, group: Path) -> None:
    det = make(variant)
    images = [load_image(p) for p in _lfw_sample(lfw)[:5]]
    images.insert(2, np.zeros((3, 3, 3), np.uint8))
    images.append(load_image(group / "face_recognition_two_people.jpg"))
    batched = det.detect_batch(images)
    single = [det.detect(im) for im in images]
    assert len(batched) == len(images)
    for b, s in zip(batched, single, strict=True):
        assert len(b) == len(s)
        for fb, fs in zip(b, s, strict=True):
            assert fb.score == pytest.approx(fs.score, abs=1e-4)
            assert [fb.box.x1, fb.box.y1, fb.box.x2, fb.box.y2] == pytest.approx(
                [fs.box.x1, fs.box.y1, fs.box.x2, fs.box.y2], abs=0.05
            )
            assert fb.landmarks is not None and fs.landmarks is not None
            np.testing.assert_allclose(fb.landmarks, fs.landmarks, atol=0.05)


def test_the_500m_model_batches_and_the_2_5g_model_loops() -> None:
    assert make("500m").batched
    assert not make("2.5g").batched


def test_garbage_model_file_is_unavailable(tmp_path: Path) -> None:
    bad = tmp_path / "scrfd_500m_bnkps.onnx"
    bad.write_bytes(b"this is not an onnx model\x00\x01\x02" * 50)
    with pytest.raises(ModelUnavailableError, match="SCRFD") as info:
        ScrfdDetector(model_path=str(bad))
    assert str(bad) in str(info.value)


def test_missing_model_file_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="not found"):
        ScrfdDetector(model_path=str(tmp_path / "nope.onnx"))


def test_another_onnx_model_is_rejected_with_the_reason() -> None:
    yunet = need(MODELS / "face_detection_yunet_s_dynamic.onnx")
    with pytest.raises(ModelUnavailableError, match="SCRFD"):
        ScrfdDetector(model_path=str(yunet))


def test_bad_arguments() -> None:
    with pytest.raises(UnknownComponentError, match="500m"):
        ScrfdDetector(model="10g")
    with pytest.raises(ValueError, match="multiples of 32"):
        ScrfdDetector(input_size=(600, 640))


def test_licence_warning_is_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(need(MODELS / MODEL_FILES["500m"]))
    from faceprint import models

    monkeypatch.setattr(models, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="faceprint.models"):
        ScrfdDetector(model_path=path)
        ScrfdDetector(model_path=path, input_size=(320, 320))
    hits = [r for r in caplog.records if "non-commercial" in r.getMessage()]
    assert len(hits) == 1


def test_smaller_input_size_still_finds_lfw_faces(lfw: Path) -> None:
    det = ScrfdDetector(model_path=str(need(MODELS / MODEL_FILES["500m"])), input_size=(320, 256))
    img = load_image(_lfw_sample(lfw)[0])
    faces = det.detect(img)
    assert faces and abs(faces[0].box.center[0] - 125) < 40
    _assert_std5_inside(faces[0])


@pytest.mark.parametrize("variant", VARIANTS)
def test_catalogue_lookup(variant: str) -> None:
    """Without ``model_path`` the file comes from the catalogue (FACEPRINT_MODELS here)."""
    from faceprint import models

    assert "scrfd" in models.CATALOG
    need(MODELS / MODEL_FILES[variant])
    det = ScrfdDetector(model=variant)
    assert det.model_path.name == MODEL_FILES[variant]
