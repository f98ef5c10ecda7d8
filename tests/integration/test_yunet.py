"""YuNet on faces that fill the frame: selfies, ID photos and pre-cropped faces.

facenet-pytorch's ``paul_rudd/1.jpg`` (1638x2048, a face about 1000 px tall) was missed
by YuNet while hog and mtcnn found it; its ``test_images_aligned`` are 160x160 crops of
the same people.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import GALLERY, need
from faceprint.detection.yunet import YuNetDetector
from faceprint.io import load_image

FACENET = GALLERY / "facenet_pytorch"


@pytest.fixture(scope="module")
def yunet() -> YuNetDetector:
    from conftest import MODELS

    return YuNetDetector(model_path=str(need(MODELS / "face_detection_yunet_2023mar.onnx")))


def _one_frontal_face(det: YuNetDetector, img: np.ndarray) -> None:
    faces = det.detect(img)
    assert len(faces) == 1, [f.box for f in faces]
    f = faces[0]
    h, w = img.shape[:2]
    assert f.landmarks is not None and f.landmark_scheme == "std5"
    le, re, nose, lm, rm = f.landmarks
    assert le[0] < nose[0] < re[0] and lm[0] < rm[0]
    assert max(le[1], re[1]) < nose[1] < min(lm[1], rm[1])
    # the face fills the frame: in the original pixels, not the shrunken copy's
    assert f.box.height > 0.35 * h and f.box.width > 0.35 * w
    assert f.box.x1 < nose[0] < f.box.x2 and f.box.y1 < nose[1] < f.box.y2


def test_frame_filling_photo(yunet: YuNetDetector) -> None:
    img = load_image(need(FACENET / "test_images" / "paul_rudd" / "1.jpg"))
    _one_frontal_face(yunet, img)


def test_yunet_agrees_with_mtcnn_on_the_frame_filling_face(yunet: YuNetDetector) -> None:
    from faceprint.errors import FaceprintError
    from faceprint.registry import detectors

    try:
        mtcnn = detectors.create("mtcnn")
    except FaceprintError as exc:
        pytest.skip(f"mtcnn unavailable: {exc}")
    img = load_image(need(FACENET / "test_images" / "paul_rudd" / "1.jpg"))
    (a,), (b, *_) = yunet.detect(img), mtcnn.detect(img)
    assert a.landmarks is not None and b.landmarks is not None
    eyes = float(np.linalg.norm(b.landmarks[1] - b.landmarks[0]))
    # the same five points, to within a tenth of the eye distance (about 40 px here)
    assert np.linalg.norm(a.landmarks - b.landmarks, axis=1).max() < 0.1 * eyes


@pytest.mark.parametrize(
    "person", ["angelina_jolie", "bradley_cooper", "kate_siegel", "paul_rudd", "shea_whigham"]
)
def test_pre_cropped_faces_small_and_large(yunet: YuNetDetector, person: str) -> None:
    import cv2

    crop = load_image(need(FACENET / "test_images_aligned" / person / "1.png"))
    _one_frontal_face(yunet, crop)
    # the same crop as a high-resolution ID photo: a face about 900 px across
    big = cv2.resize(crop, (960, 960), interpolation=cv2.INTER_CUBIC)
    _one_frontal_face(yunet, big)


def test_verify_the_issue_pair_with_the_default_detector(tmp_path: Path) -> None:
    """`faceprint verify` on the pair from the issue: both faces found, the same person."""
    import json

    from typer.testing import CliRunner

    from faceprint.cli.main import app

    a = need(FACENET / "test_images" / "paul_rudd" / "1.jpg")
    b = need(FACENET / "test_images_aligned" / "paul_rudd" / "1.png")
    need(GALLERY.parent.parent / "models" / "face_detection_yunet_2023mar.onnx")
    res = CliRunner().invoke(app, ["verify", str(a), str(b), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["same"] is True, out


def test_refining_oversized_faces_adds_no_new_ones(yunet: YuNetDetector) -> None:
    """biden2.jpg's face (about 500 px) is refined on a smaller copy, where YuNet also
    sees two "faces" in the painting behind him; only the real one is kept."""
    img = load_image(need(GALLERY / "face_recognition_knn" / "train" / "biden" / "biden2.jpg"))
    (face,) = yunet.detect(img)
    assert face.score > 0.9 and face.box.x1 > 300


def test_detect_works_offline_with_no_model_dirs(tmp_path: Path) -> None:
    """The README's first command on a fresh install: no FACEPRINT_MODELS, an empty cache,
    no network; the default detector is YuNet, from the file inside the package."""
    import json
    import os
    import subprocess
    import sys

    img = need(GALLERY / "face_recognition_knn" / "train" / "obama" / "obama.jpg")
    env = {k: v for k, v in os.environ.items() if k != "FACEPRINT_MODELS"}
    env.update(FACEPRINT_OFFLINE="1", FACEPRINT_HOME=str(tmp_path / "home"))
    res = subprocess.run(
        [sys.executable, "-m", "faceprint.cli.main", "detect", str(img), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["detector"] == "yunet" and len(out["images"][0]["faces"]) == 1
    # nothing fetched into the cache: the only YuNet file there is the graph built from the shipped one
    from faceprint.detection.yunet_onnx import BUILT_FILE

    fetched = [p.name for p in tmp_path.rglob("face_detection_yunet*") if not p.name.startswith(BUILT_FILE)]
    assert not fetched, fetched
