"""One contract for every registered detector, on real photos."""

from pathlib import Path

import numpy as np
import pytest

from conftest import missing_data
from faceprint.detection import Detector
from faceprint.errors import ModelUnavailableError
from faceprint.io import load_image
from faceprint.registry import detectors
from faceprint.types import Face

_CACHE: dict[str, Detector] = {}


def make(name: str) -> Detector:
    if name not in _CACHE:
        try:
            _CACHE[name] = detectors.create(name)
        except ModelUnavailableError as exc:
            missing_data(f"model for {name} not available: {exc}")
    return _CACHE[name]


def _check_face(f: Face, w: int, h: int) -> None:
    b = f.box
    assert b.x2 > b.x1 and b.y2 > b.y1
    assert -0.2 * b.width <= b.x1 and b.x2 <= w + 0.2 * b.width
    assert np.isfinite(f.score)
    assert f.landmarks is not None and f.landmarks.shape == (5, 2) and f.landmarks.dtype == np.float32
    assert f.landmark_scheme in ("std5", "dlib5")
    # landmarks sit on the face: inside the box grown by a quarter
    gx, gy = 0.25 * b.width, 0.25 * b.height
    assert (f.landmarks[:, 0] >= b.x1 - gx).all() and (f.landmarks[:, 0] <= b.x2 + gx).all()
    assert (f.landmarks[:, 1] >= b.y1 - gy).all() and (f.landmarks[:, 1] <= b.y2 + gy).all()
    if f.landmark_scheme == "std5":
        assert f.landmarks[0, 0] < f.landmarks[1, 0], "std5: viewer's left eye comes first"
        assert f.landmarks[3, 0] < f.landmarks[4, 0]
        assert f.landmarks[:2, 1].mean() < f.landmarks[2, 1] < f.landmarks[3:, 1].mean()


@pytest.mark.parametrize("name", detectors.names())
def test_detector_contract_on_lfw(name: str, lfw: Path) -> None:
    det = make(name)
    assert isinstance(det, Detector) and det.name == name
    people = sorted(p for p in lfw.iterdir() if p.is_dir())[::150][:12]
    found = 0
    for person in people:
        img = load_image(sorted(person.glob("*.jpg"))[0])
        faces = det.detect(img)
        assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
        for f in faces:
            _check_face(f, img.shape[1], img.shape[0])
        found += any(abs(f.box.center[0] - 125) < 40 and abs(f.box.center[1] - 125) < 40 for f in faces)
    assert found >= 10, f"{name} found the central LFW face in only {found}/12 images"


@pytest.mark.parametrize("name", detectors.names())
def test_detector_contract_on_a_group_photo(name: str, group: Path) -> None:
    det = make(name)
    img = load_image(group / "solvay_conference_1927.png")
    faces = det.detect(img)
    for f in faces:
        _check_face(f, img.shape[1], img.shape[0])
    assert 24 <= len(faces) <= 32, f"{name}: {len(faces)} faces in the Solvay photo (29 people)"


@pytest.mark.parametrize("name", detectors.names())
def test_detector_edge_inputs(name: str) -> None:
    det = make(name)
    assert det.detect(np.zeros((1, 1, 3), np.uint8)) == []
    assert det.detect(np.zeros((5, 300, 3), np.uint8)) == []
    assert det.detect(np.full((200, 200, 3), 127, np.uint8)) == []
    assert det.detect_batch([np.zeros((40, 40, 3), np.uint8)] * 2) == [[], []]
