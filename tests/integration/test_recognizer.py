"""The pipeline end to end on real photos of known people."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceprint import models
from faceprint.errors import MultipleFacesError, NoFaceError
from faceprint.recognizer import Recognizer, default_detector_name


@pytest.fixture(scope="module")
def rec() -> Recognizer:
    return Recognizer()


def test_default_detector_is_the_best_available(
    yunet_model: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert default_detector_name() == "yunet"
    monkeypatch.setenv("FACEPRINT_MODELS", str(tmp_path))
    assert default_detector_name() == "yunet"  # shipped inside the package
    monkeypatch.setattr(models, "bundled_dir", lambda: tmp_path / "stripped")
    assert default_detector_name() == "hog"  # a package with its data stripped
    monkeypatch.setenv("FACEPRINT_DETECTOR", "yunet")
    assert default_detector_name() == "yunet"


@pytest.mark.parametrize(
    "detector, embedder", [("hog", "dlib-onnx"), ("yunet", "dlib-onnx"), ("yunet", "dlib")]
)
def test_verify_same_and_different(knn: Path, detector: str, embedder: str) -> None:
    r = Recognizer(detector=detector, embedder=embedder)
    same = r.verify(knn / "train/obama/obama.jpg", knn / "train/obama/obama2.jpg")
    diff = r.verify(knn / "train/obama/obama.jpg", knn / "train/biden/biden.jpg")
    assert same.same and not diff.same
    assert same.similarity > diff.similarity
    assert same.detector == detector and same.embedder == embedder
    assert same.threshold == r.embedder.default_threshold


def test_several_faces_use_the_largest_or_fail_in_strict_mode(rec: Recognizer, knn: Path) -> None:
    v = rec.verify(knn / "test/obama_and_biden.jpg", knn / "train/biden/biden.jpg")
    assert any("used the largest" in n for n in v.notes)
    with pytest.raises(MultipleFacesError, match="expected one face"):
        rec.verify(knn / "test/obama_and_biden.jpg", knn / "train/biden/biden.jpg", strict=True)


def test_no_face(rec: Recognizer, knn: Path, tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    Image.new("RGB", (300, 300), (90, 140, 90)).save(blank)
    with pytest.raises(NoFaceError, match=r"blank\.png"):
        rec.verify(blank, knn / "train/obama/obama.jpg")


def test_embeddings_are_unit_vectors_and_batches_agree(rec: Recognizer, knn: Path) -> None:
    paths = [knn / "test/kit_with_rose.jpg", knn / "train/obama/obama.jpg"]
    batch = rec.process_batch([str(p) for p in paths])
    assert [len(fs) for fs in batch] == [2, 1]
    for fs, p in zip(batch, paths, strict=True):
        single = rec.process(p)
        for a, b in zip(fs, single, strict=True):
            assert a.embedding is not None and b.embedding is not None
            assert abs(np.linalg.norm(a.embedding) - 1) < 1e-5
            assert a.embedding_model == "dlib@resnet_v1+55533b28"  # the stock weights' id
            assert np.allclose(a.embedding, b.embedding, atol=1e-5)


def test_detect_then_embed_api(rec: Recognizer, knn: Path) -> None:
    img_path = knn / "test/obama_and_biden.jpg"
    faces = rec.detect(img_path)
    assert len(faces) >= 2 and all(f.embedding is None for f in faces)
    embedded = rec.embed(img_path, faces)
    assert [f.box for f in embedded] == [f.box for f in faces]
    assert all(f.embedding is not None for f in embedded)


def test_flip_tta_changes_vectors_but_not_identity(knn: Path) -> None:
    r = Recognizer(detector="yunet", flip=True)
    v = r.verify(knn / "train/obama/obama.jpg", knn / "train/obama/obama2.jpg")
    assert v.same and v.embedder == "dlib-onnx+flip"
    assert v.threshold == r.embedder.flip_threshold  # type: ignore[attr-defined]


def test_default_embedder_is_the_onnx_port_and_threads_reach_it() -> None:
    r = Recognizer(detector="hog", threads=1)
    assert r.embedder.name == "dlib-onnx"
    assert r.embedder._session.get_session_options().intra_op_num_threads == 1  # type: ignore[attr-defined]
