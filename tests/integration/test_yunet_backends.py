"""YuNet on ONNX Runtime against YuNet on OpenCV: the same network, the same faces.

The ONNX Runtime backend runs the shipped graph made size-dynamic
(:mod:`faceprint.detection.yunet_onnx`); OpenCV's ``FaceDetectorYN`` is the reference. On
LFW dev images and the group photos both find the same faces: as many, boxes and
landmarks within 0.5 px, scores within 1e-3 (measured here: 1.2e-4 px and 9e-7 on 308
images, the rounding of two float32 convolution engines).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import GROUP, LFW, MODELS, need
from faceprint.detection import yunet_onnx
from faceprint.detection.yunet import YuNetDetector
from faceprint.errors import ModelUnavailableError
from faceprint.io import load_image
from faceprint.types import Face, Image

#: ~30 LFW dev images spread over the alphabet, and every group photo.
N_LFW = 30


def _lfw_images() -> list[Path]:
    paths = sorted(need(LFW).glob("*/*.jpg"))
    return paths[:: max(1, len(paths) // N_LFW)][:N_LFW]


def _group_images() -> list[Path]:
    return sorted(need(GROUP).glob("*.jpg"))


@pytest.fixture(scope="module")
def source() -> Path:
    return need(MODELS / "face_detection_yunet_2023mar.onnx")


@pytest.fixture(scope="module")
def pair(source: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[YuNetDetector, YuNetDetector]:
    """Both backends on the same file (module-scoped: built once for all tests here). The
    ONNX Runtime one runs single images in ``detect`` and up to 8 in ``detect_batch``."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FACEPRINT_CACHE", str(tmp_path_factory.mktemp("yunet_cache")))
    try:
        ort = YuNetDetector(model_path=str(source), backend="onnxruntime", intra_op_threads=1, max_batch=8)
    finally:
        mp.undo()
    return ort, YuNetDetector(model_path=str(source), backend="opencv")


def _rows(faces: list[Face]) -> list[tuple[Any, ...]]:
    """Faces as comparable tuples (a Face holds a landmark array, which ``==`` cannot compare)."""
    return [(f.box, f.score, None if f.landmarks is None else f.landmarks.tolist()) for f in faces]


def _blob(images: list[Image], height: int, width: int) -> np.ndarray:
    """Real images resized to ``width`` x ``height``: BGR float32 NCHW 0..255, as OpenCV feeds YuNet."""
    import cv2

    return np.stack(
        [cv2.resize(im, (width, height)).transpose(2, 0, 1)[::-1].astype(np.float32) for im in images]
    )


def test_converted_graph_equals_the_source_at_640_and_runs_other_sizes(source: Path) -> None:
    import onnx

    from faceprint.embedding.onnx_session import new_session

    dynamic = yunet_onnx.convert(source)
    original = new_session(source, 1, None, "test")
    converted = new_session(dynamic.SerializeToString(), 1, None, "test")
    images = [load_image(p) for p in _lfw_images()[:3]]
    x = _blob(images[:1], 640, 640)
    for want, got in zip(original.run(None, {"input": x}), converted.run(None, {"input": x}), strict=True):
        np.testing.assert_array_equal(got, want)  # bit for bit: the same ops, only the shapes differ
    with pytest.raises(Exception, match="input"):  # the source itself takes 640x640 only
        original.run(None, {"input": _blob(images[:1], 256, 256)})
    for height, width in ((256, 256), (320, 480), (608, 416)):
        batch = _blob(images, height, width)
        outs = dict(
            zip(yunet_onnx.OUTPUTS, converted.run(list(yunet_onnx.OUTPUTS), {"input": batch}), strict=True)
        )
        for s in yunet_onnx.STRIDES:
            assert outs[f"bbox_{s}"].shape == (3, (height // s) * (width // s), 4)
        for i in range(3):
            alone = converted.run(list(yunet_onnx.OUTPUTS), {"input": batch[i : i + 1]})
            for name, out in zip(yunet_onnx.OUTPUTS, alone, strict=True):
                np.testing.assert_allclose(outs[name][i], out[0], rtol=1e-5, atol=1e-5)
    dims = [d.dim_param or d.dim_value for d in dynamic.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert onnx.load(str(source)).graph.input[0].type.tensor_type.shape.dim[2].dim_value == 640


def _assert_same_faces(a: list[Face], b: list[Face], where: str) -> None:
    """As many faces, boxes and landmarks within 0.5 px, scores within 1e-3."""
    assert len(a) == len(b), f"{where}: {len(a)} faces on onnxruntime, {len(b)} on OpenCV"
    for fa, fb in zip(a, b, strict=True):
        assert fa.landmarks is not None and fb.landmarks is not None
        box_a = [fa.box.x1, fa.box.y1, fa.box.x2, fa.box.y2]
        box_b = [fb.box.x1, fb.box.y1, fb.box.x2, fb.box.y2]
        assert np.abs(np.subtract(box_a, box_b)).max() <= 0.5, (where, box_a, box_b)
        assert np.abs(fa.landmarks - fb.landmarks).max() <= 0.5, where
        assert abs(fa.score - fb.score) <= 1e-3, (where, fa.score, fb.score)
        assert fa.landmark_scheme == fb.landmark_scheme == "std5"


@pytest.mark.parametrize("which", ["lfw", "group"])
def test_both_backends_find_the_same_faces(pair: tuple[YuNetDetector, YuNetDetector], which: str) -> None:
    """``detect`` one image at a time, and ``detect_batch`` (LFW's same-size images in
    batches of 8), against OpenCV."""
    ort, cv = pair
    paths = _lfw_images() if which == "lfw" else _group_images()
    images = [load_image(p) for p in paths]
    reference = [cv.detect(im) for im in images]
    batched = ort.detect_batch(images)
    for path, image, want, got in zip(paths, images, reference, batched, strict=True):
        _assert_same_faces(ort.detect(image), want, path.name)
        _assert_same_faces(got, want, f"{path.name} (batched)")
    total = sum(len(f) for f in reference)
    assert total >= (len(paths) if which == "lfw" else 20), "the images hold faces to compare"


def test_the_built_graph_is_cached_and_rebuilt_when_damaged(
    source: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FACEPRINT_CACHE", str(tmp_path))
    image = load_image(_lfw_images()[0])
    first = YuNetDetector(model_path=str(source))
    built = tmp_path / yunet_onnx.BUILT_FILE
    assert built.is_file()
    import onnx

    props = {p.key: p.value for p in onnx.load(str(built)).metadata_props}
    assert props["converter_version"] == yunet_onnx.CONVERTER_VERSION
    assert props["source_sha256"] == "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"

    def no_build(_: Path) -> Any:
        raise AssertionError("a current cached graph is not converted again")

    monkeypatch.setattr(yunet_onnx, "convert", no_build)
    assert _rows(YuNetDetector(model_path=str(source)).detect(image)) == _rows(first.detect(image))
    monkeypatch.undo()
    monkeypatch.setenv("FACEPRINT_CACHE", str(tmp_path))
    built.write_bytes(b"damaged")
    assert _rows(YuNetDetector(model_path=str(source)).detect(image)) == _rows(first.detect(image))
    assert built.stat().st_size > 100_000


def test_an_unwritable_cache_converts_in_memory(
    source: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The default detector must not fail for want of a writable cache: it converts the
    shipped graph in memory, and says so."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("FACEPRINT_CACHE", str(blocker / "cache"))
    with caplog.at_level(logging.WARNING, logger="faceprint.detection.yunet_onnx"):
        det = YuNetDetector(model_path=str(source))
    assert "in memory" in caplog.text
    (face,) = det.detect(load_image(_lfw_images()[0]))
    assert face.score > 0.9


def test_a_file_that_is_not_yunet_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    scrfd = need(MODELS / "scrfd_500m_bnkps.onnx")
    monkeypatch.setenv("FACEPRINT_CACHE", str(tmp_path))
    with pytest.raises(ModelUnavailableError, match="is not YuNet: expected input 'input' and outputs cls_8"):
        YuNetDetector(model_path=str(scrfd))
