"""Our alignment reproduces dlib.get_face_chip, and so dlib's own embeddings."""

from pathlib import Path

import numpy as np
import pytest

from faceprint import models
from faceprint.alignment import align, dlib_template
from faceprint.io import load_image

dlib = pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def dlib_parts() -> tuple[object, object]:
    sp = dlib.shape_predictor(str(models.resolve("dlib5")))
    return dlib.get_frontal_face_detector(), sp


def _images(lfw: Path, group: Path) -> list[Path]:
    people = sorted(p for p in lfw.iterdir() if p.is_dir())[::97][:25]
    lfw_imgs = [sorted(p.glob("*.jpg"))[0] for p in people]
    # large photos exercise dlib's image-pyramid path (faces > 2x the chip)
    return [*lfw_imgs, group / "deepface_couple.jpg", group / "face_recognition_obama_and_biden.jpg"]


def test_chip_matches_dlib_within_one_level(
    lfw: Path, group: Path, dlib_parts: tuple[object, object]
) -> None:
    det, sp = dlib_parts
    tpl = dlib_template(150, 0.25)
    checked = 0
    for path in _images(lfw, group):
        img = load_image(path)
        for rect in det(img, 1)[:2]:  # type: ignore[operator]
            shape = sp(img, rect)  # type: ignore[operator]
            ref = dlib.get_face_chip(img, shape, size=150, padding=0.25)
            pts = np.array([[p.x, p.y] for p in shape.parts()], np.float32)
            ours = align(img, pts, tpl)
            mad = np.abs(ref.astype(int) - ours.astype(int)).mean()
            assert mad < 1.0, f"{path.name}: mean abs diff {mad:.3f} vs dlib.get_face_chip"
            checked += 1
    assert checked >= 20


def test_embeddings_equal_dlibs_own_pipeline(
    lfw: Path, group: Path, dlib_parts: tuple[object, object]
) -> None:
    """hog+dlib through faceprint == dlib.compute_face_descriptor(img, shape) (cos >= 0.9999),
    face by face: each dlib detection is paired with our face of best IoU (>= 0.9)."""
    from faceprint.recognizer import Recognizer
    from faceprint.types import Box

    det, sp = dlib_parts
    net = dlib.face_recognition_model_v1(str(models.resolve("dlib")))
    rec = Recognizer(detector="hog", embedder="dlib")
    people = sorted(p for p in lfw.iterdir() if p.is_dir())[5::211][:8]
    paths = [sorted(person.glob("*.jpg"))[0] for person in people]
    paths.append(group / "face_recognition_two_people.jpg")  # two faces in one photo
    checked = 0
    for path in paths:
        img = load_image(path)
        faces = rec.process(img)
        for rect in det(img, 1):  # type: ignore[operator]
            ref = np.asarray(net.compute_face_descriptor(img, sp(img, rect)))  # type: ignore[operator]
            ref /= np.linalg.norm(ref)
            box = Box(rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1)
            ours = max(faces, key=lambda f: f.box.iou(box), default=None)
            assert ours is not None and ours.box.iou(box) >= 0.9, f"{path.name}: none of ours at {box}"
            assert ours.embedding is not None
            assert float(np.dot(ref, ours.embedding)) >= 0.9999, path.name
            checked += 1
    assert checked >= 6, f"only {checked} faces compared"
