"""The MTCNN detector (facenet-pytorch's weights, run on onnxruntime) on real photos.

The weights come from ../shared/models/mtcnn_facenet_pytorch; tests that need them skip,
saying so, when they are missing. The helpers' tests (resampling, NMS) need no weights.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import MODELS, need
from faceprint import models
from faceprint.detection import Detector
from faceprint.detection import mtcnn as mt
from faceprint.errors import InvalidImageError, ModelUnavailableError
from faceprint.io import load_image
from faceprint.types import Face
from golden import check_faces, reference

_DETECTOR: list[mt.MtcnnDetector] = []


@pytest.fixture
def weights() -> Path:
    return need(MODELS / "mtcnn_facenet_pytorch" / "onet.pt").parent


@pytest.fixture
def det(weights: Path) -> mt.MtcnnDetector:
    if not _DETECTOR:  # one instance for the module: building three sessions takes a moment
        _DETECTOR.append(mt.MtcnnDetector(model_dir=str(weights)))
    return _DETECTOR[0]


def _lfw_people(lfw: Path) -> list[Path]:
    people = sorted(p for p in lfw.iterdir() if p.is_dir())[::150][:12]
    return [sorted(person.glob("*.jpg"))[0] for person in people]


def _check_std5(f: Face) -> None:
    lm, b = f.landmarks, f.box
    assert lm is not None and lm.shape == (5, 2) and lm.dtype == np.float32
    assert f.landmark_scheme == "std5"
    assert ((lm[:, 0] >= b.x1) & (lm[:, 0] <= b.x2) & (lm[:, 1] >= b.y1) & (lm[:, 1] <= b.y2)).all()
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0], "viewer's left eye / mouth corner first"
    assert lm[:2, 1].max() < lm[2, 1] < lm[3:, 1].min(), "eyes above the nose above the mouth"


def test_finds_the_central_face_on_lfw(det: mt.MtcnnDetector, lfw: Path) -> None:
    assert isinstance(det, Detector) and det.name == "mtcnn"
    found = 0
    for path in _lfw_people(lfw):
        faces = det.detect(load_image(path))
        assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
        central = [f for f in faces if abs(f.box.center[0] - 125) < 30 and abs(f.box.center[1] - 125) < 30]
        if central:
            found += 1
            assert 0.7 < central[0].score <= 1.0
            _check_std5(central[0])
    assert found >= 11, f"central LFW face found in only {found}/12 images"


def test_matches_facenet_pytorchs_own_mtcnn(weights: Path) -> None:
    """Boxes (IoU >= 0.95), landmarks (<= 1 px) and scores against outputs recorded from
    facenet-pytorch's MTCNN (fixtures/mtcnn_reference.json says how)."""
    ref = reference("mtcnn_reference.json")
    det = mt.MtcnnDetector(model_dir=str(weights), **ref["options"])
    assert check_faces(det.detect, ref["images"]) >= 20


def test_batch_matches_single_images(det: mt.MtcnnDetector, lfw: Path) -> None:
    images = [load_image(p) for p in _lfw_people(lfw)[:4]]
    images.append(images[0][:180, :200].copy())  # another size: its own P-Net batch
    batched = det.detect_batch(images)
    for img, got in zip(images, batched, strict=True):
        want = det.detect(img)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g.box == w.box and g.score == pytest.approx(w.score, abs=1e-6)
            assert np.allclose(g.landmarks, w.landmarks, atol=1e-3)  # type: ignore[arg-type]


def test_solvay_group_photo(det: mt.MtcnnDetector, group: Path) -> None:
    img = load_image(group / "solvay_conference_1927.png")
    faces = det.detect(img)
    assert 24 <= len(faces) <= 32, f"{len(faces)} faces in the Solvay photo (29 people)"
    for f in faces:
        assert f.score > 0.7 and f.box.width > 10
        _check_std5(f)


def test_nothing_on_blank_tiny_or_empty_input(det: mt.MtcnnDetector) -> None:
    assert det.detect(np.full((300, 400, 3), 127, np.uint8)) == []
    assert det.detect(np.zeros((1, 1, 3), np.uint8)) == []
    assert det.detect(np.zeros((5, 300, 3), np.uint8)) == []
    assert det.detect_batch([np.zeros((40, 40, 3), np.uint8)] * 2) == [[], []]
    assert det.detect_batch([]) == []


def test_rejects_non_rgb_arrays(det: mt.MtcnnDetector) -> None:
    with pytest.raises(InvalidImageError, match="RGB uint8"):
        det.detect(np.zeros((50, 50), np.uint8))
    with pytest.raises(InvalidImageError, match="float32"):
        det.detect(np.zeros((50, 50, 3), np.float32))


def test_pnet_takes_any_input_size(det: mt.MtcnnDetector) -> None:
    for h, w in ((12, 12), (13, 29), (101, 64)):
        reg, prob = det._run("pnet", np.zeros((2, 3, h, w), np.float32))
        # conv 3x3, max-pool 2/2 with ceil, two more conv 3x3
        oh, ow = math.ceil((h - 4) / 2) - 3, math.ceil((w - 4) / 2) - 3
        assert reg.shape == (2, 4, oh, ow) and prob.shape == (2, 2, oh, ow)
        assert np.allclose(prob.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_weights_raise_model_unavailable(weights: Path, tmp_path: Path, damage: str) -> None:
    for f in weights.glob("*.pt"):
        shutil.copy(f, tmp_path / f.name)
    onet = tmp_path / "onet.pt"
    data = onet.read_bytes()
    bad = {"truncated": data[: len(data) // 2], "garbage": b"\x00not a pickle" * 50, "empty": b""}
    onet.write_bytes(bad[damage])
    with pytest.raises(ModelUnavailableError, match=r"onet\.pt"):
        mt.MtcnnDetector(model_dir=str(tmp_path))


def test_swapped_weights_raise_model_unavailable(weights: Path, tmp_path: Path) -> None:
    for f in weights.glob("*.pt"):
        shutil.copy(f, tmp_path / f.name)
    shutil.copy(weights / "pnet.pt", tmp_path / "onet.pt")  # a valid file, but not O-Net's
    with pytest.raises(ModelUnavailableError, match="onet"):
        mt.MtcnnDetector(model_dir=str(tmp_path))


def test_missing_weights_raise_model_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match=r"pnet\.pt"):
        mt.MtcnnDetector(model_dir=str(tmp_path))


def test_found_through_the_model_catalogue(weights: Path) -> None:
    assert "mtcnn" in models.CATALOG
    det = mt.MtcnnDetector()
    assert det.detect(np.zeros((1, 1, 3), np.uint8)) == []


# ------------------------------------------------------------- helpers (no weights needed)


def _adaptive_avg_pool(img: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """torch's ``interpolate(mode="area")``, written naively, HWC in and out."""
    h, w, _ = img.shape
    out = np.zeros((oh, ow, 3))
    for i in range(oh):
        r0, r1 = math.floor(i * h / oh), math.ceil((i + 1) * h / oh)
        for j in range(ow):
            c0, c1 = math.floor(j * w / ow), math.ceil((j + 1) * w / ow)
            out[i, j] = img[r0:r1, c0:c1].reshape(-1, 3).mean(axis=0)
    return out


@pytest.mark.parametrize(("h", "w", "oh", "ow"), [(250, 250, 151, 151), (37, 53, 24, 24), (13, 9, 24, 24)])
def test_area_resample_is_torchs_area_mode(h: int, w: int, oh: int, ow: int) -> None:
    img = np.random.default_rng(h).integers(0, 256, (h, w, 3), dtype=np.uint8)
    sat = mt.summed_area_table(img)
    zero = np.zeros(1, np.int64)
    r0, r1 = mt._windows(zero, np.array([h]), oh)
    c0, c1 = mt._windows(zero, np.array([w]), ow)
    got = mt.area_resample(sat, r0[0], r1[0], c0[0], c1[0])
    want = (_adaptive_avg_pool(img, oh, ow) - 127.5) / 128.0
    assert got.shape == (3, oh, ow)
    assert np.abs(got - want.transpose(2, 0, 1)).max() < 1e-6


def test_summed_area_table_wraps_exactly() -> None:
    img = np.full((3000, 2500, 3), 255, np.uint8)  # total sum 5.7e9 overflows uint32
    sat = mt.summed_area_table(img)
    r0, r1 = mt._windows(np.array([2900]), np.array([100]), 24)
    c0, c1 = mt._windows(np.array([2400]), np.array([100]), 24)
    assert np.allclose(mt.area_resample(sat, r0, r1, c0, c1), (255 - 127.5) / 128)


def _naive_nms(boxes: np.ndarray, scores: np.ndarray, thr: float, mode: str, plus_one: bool) -> list[int]:
    off = 1.0 if plus_one else 0.0
    area = (boxes[:, 2] - boxes[:, 0] + off) * (boxes[:, 3] - boxes[:, 1] + off)
    keep: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        ok = True
        for k in keep:
            iw = max(0.0, min(boxes[i, 2], boxes[k, 2]) - max(boxes[i, 0], boxes[k, 0]) + off)
            ih = max(0.0, min(boxes[i, 3], boxes[k, 3]) - max(boxes[i, 1], boxes[k, 1]) + off)
            den = min(area[i], area[k]) if mode == "min" else area[i] + area[k] - iw * ih
            ok &= not (den > 0 and iw * ih / den > thr)
        if ok:
            keep.append(int(i))
    return keep


@pytest.mark.parametrize(("mode", "plus_one"), [("union", False), ("min", True)])
def test_nms_is_greedy_nms(mode: str, plus_one: bool) -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = int(rng.integers(0, 120))
        xy, wh = rng.uniform(-20, 300, (n, 2)), rng.uniform(1, 80, (n, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
        scores = rng.permutation(n).astype(np.float32) / max(n, 1)  # distinct: no tie rules
        got = mt.nms(boxes, scores, 0.5, mode=mode, plus_one=plus_one).tolist()
        assert got == _naive_nms(boxes.astype(np.float64), scores, 0.5, mode, plus_one)
