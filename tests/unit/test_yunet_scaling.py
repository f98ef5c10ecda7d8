"""YuNet's input scaling, with a stand-in for the network (no weights needed).

The stand-in "sees" a face only when the network input is small enough, as the real YuNet
does: a face much larger than about 400 px in its input scores low or not at all. Its
face covers a fixed fraction of whatever it is given, so the test can check that boxes and
landmarks found on a shrunken copy come back in the original image's pixels. Every test
runs with both backends: the stand-in replaces OpenCV's ``FaceDetectorYN`` or the ONNX
Runtime network (:class:`faceprint.detection.yunet_onnx.YuNetOnnx`), which return the
same rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

# fractions of the input: box x1, y1, x2, y2 and five landmarks (x, y)
BOX = (0.1, 0.05, 0.9, 0.95)
LMS = ((0.35, 0.4), (0.65, 0.4), (0.5, 0.55), (0.38, 0.75), (0.62, 0.75))


class FakeNet:
    """Finds one face filling the frame when the input's long side is at most ``sees_below``.

    Above that it finds, like YuNet on an oversized face, only part of it: a box about
    500 px across (given ``part_above``). At ``texture_below`` and smaller it also sees a
    small "face" in the top-left corner, as YuNet does in textures of shrunken images.
    """

    def __init__(self, sees_below: int, part_above: bool = False, texture_below: int = 0) -> None:
        self.sees_below = sees_below
        self.part_above = part_above
        self.texture_below = texture_below
        self.sizes: list[tuple[int, int]] = []
        self._size = (0, 0)

    def setInputSize(self, size: tuple[int, int]) -> None:  # OpenCV's name
        self._size = size

    def detect(self, bgr: np.ndarray) -> tuple[int, np.ndarray | None]:
        h, w = bgr.shape[:2]
        assert self._size == (w, h), "the input size is set to the image's size before each pass"
        self.sizes.append((w, h))
        lm = [c for x, y in LMS for c in (x * w, y * h)]
        rows = []
        if max(w, h) <= self.sees_below:
            x1, y1, x2, y2 = BOX[0] * w, BOX[1] * h, BOX[2] * w, BOX[3] * h
            rows.append([x1, y1, x2 - x1, y2 - y1, *lm, 0.9])
        elif self.part_above:
            rows.append([0.3 * w, 0.2 * h, 500, 520, *lm, 0.65])
        if max(w, h) <= self.texture_below:
            rows.append([1, 1, 12, 14, *[5.0] * 10, 0.7])
        return len(rows), (np.array(rows, np.float32) if rows else None)


class FakeOnnx:
    """The stand-in behind the ONNX Runtime backend's interface: rows for RGB images."""

    def __init__(self, net: FakeNet) -> None:
        self.net = net

    def run(self, images: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for image in images:
            h, w = image.shape[:2]
            self.net.setInputSize((w, h))
            _, rows = self.net.detect(image[:, :, ::-1])
            out.append(np.zeros((0, 15), np.float32) if rows is None else rows)
        return out


@pytest.fixture(params=["onnxruntime", "opencv"])
def make(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    import cv2

    from faceprint.detection import yunet_onnx
    from faceprint.detection.yunet import YuNetDetector

    model = tmp_path / "stand-in.onnx"
    model.write_bytes(b"not used")

    def _make(sees_below: int, part_above: bool = False, texture_below: int = 0, **kw: Any) -> Any:
        net = FakeNet(sees_below, part_above, texture_below)
        monkeypatch.setattr(cv2.FaceDetectorYN, "create", lambda *a, **k: net)
        monkeypatch.setattr(yunet_onnx, "YuNetOnnx", lambda *a, **k: FakeOnnx(net))
        return YuNetDetector(model_path=str(model), backend=request.param, **kw), net

    return _make


def _image(w: int, h: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_a_face_too_large_for_the_network_is_found_on_a_smaller_copy(make: Any) -> None:
    det, net = make(sees_below=400)
    w, h = 1638, 2048  # the size of facenet-pytorch's paul_rudd/1.jpg
    faces = det.detect(_image(w, h))
    assert net.sizes[0] == (w, h), "the first pass runs at the image's own size, as before"
    assert len(faces) == 1 and max(net.sizes[-1]) <= 320
    b = faces[0].box
    # back in the original pixels, to within the rounding of the shrunken size
    tol = 2 * max(w, h) / max(net.sizes[-1])
    assert b.x1 == pytest.approx(BOX[0] * w, abs=tol) and b.x2 == pytest.approx(BOX[2] * w, abs=tol)
    assert b.y1 == pytest.approx(BOX[1] * h, abs=tol) and b.y2 == pytest.approx(BOX[3] * h, abs=tol)
    assert faces[0].landmarks is not None
    want = np.array(LMS) * [w, h]
    assert np.abs(faces[0].landmarks - want).max() <= tol


def test_a_face_found_at_full_size_is_not_searched_again(make: Any) -> None:
    det, net = make(sees_below=10_000, texture_below=10_000)
    faces = det.detect(_image(440, 400))  # a face 352x360 px: in YuNet's range
    assert net.sizes == [(440, 400)] and len(faces) == 2
    assert faces[0].box.x1 == pytest.approx(44, abs=1e-3) and faces[0].box.y2 == pytest.approx(380, abs=1e-3)


def test_small_images_get_no_second_pass_and_an_empty_large_one_gets_one(make: Any) -> None:
    det, net = make(sees_below=0)
    assert det.detect(_image(250, 250)) == []  # LFW's size: nothing to shrink
    assert net.sizes == [(250, 250)]
    net.sizes.clear()
    assert det.detect(_image(2000, 1000)) == []
    assert net.sizes == [(2000, 1000), (320, 160)]


def test_max_side_shrink_maps_back_per_axis(make: Any) -> None:
    det, net = make(sees_below=10_000, max_side=1000)
    w, h = 3001, 1999
    (face,) = det.detect(_image(w, h))
    assert net.sizes[0] == (1000, 666)
    assert face.box.x2 == pytest.approx(BOX[2] * w, abs=1e-3)
    assert face.box.y2 == pytest.approx(BOX[3] * h, abs=1e-3)


def test_an_oversized_face_is_refined_on_halving_copies_ignoring_new_faces_elsewhere(make: Any) -> None:
    """A 960x960 ID photo: YuNet finds only part of the face at full size; the face is
    taken from the first smaller copy where it is in range, and the corner "face" that
    the copies also show, which the full-size pass did not, is left out."""
    det, net = make(sees_below=400, part_above=True, texture_below=480)
    (face,) = det.detect(_image(960, 960))
    assert net.sizes == [(960, 960), (480, 480), (320, 320)]
    assert face.score == pytest.approx(0.9) and face.box.x1 == pytest.approx(96, abs=3)
    assert face.box.y2 == pytest.approx(912, abs=3)


def test_oversized_faces_are_kept_when_no_copy_does_better(make: Any) -> None:
    det, net = make(sees_below=0, part_above=True)
    (face,) = det.detect(_image(960, 960))
    assert face.score == pytest.approx(0.65) and face.box.width == pytest.approx(500)
    assert net.sizes == [(960, 960), (480, 480), (320, 320)]


def test_unknown_backend_and_negative_threads_are_refused(tmp_path: Path) -> None:
    from faceprint.detection.yunet import YuNetDetector
    from faceprint.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="onnxruntime, opencv"):
        YuNetDetector(backend="tensorrt")
    with pytest.raises(InvalidArgumentError, match="intra_op_threads"):
        YuNetDetector(intra_op_threads=-1)


def test_threads_reach_the_onnxruntime_backend(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A pipeline's ``threads`` (registry.instantiate) becomes YuNet's ``intra_op_threads``."""
    from faceprint.detection import yunet_onnx
    from faceprint.detection.yunet import YuNetDetector
    from faceprint.registry import instantiate

    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(yunet_onnx, "YuNetOnnx", lambda *a, **k: seen.append(k) or FakeOnnx(FakeNet(0)))
    model = tmp_path / "stand-in.onnx"
    model.write_bytes(b"not used")
    instantiate(YuNetDetector, {"model_path": str(model)}, 3)
    assert seen[0]["intra_op_threads"] == 3


def test_detect_batch_runs_same_size_first_passes_together(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Up to ``max_batch`` first passes of one size share a network call; other sizes, and
    the searches of smaller copies, get calls of their own; results keep the input order."""
    from faceprint.detection import yunet_onnx
    from faceprint.detection.yunet import YuNetDetector

    net = FakeNet(sees_below=400)
    calls: list[list[tuple[int, int]]] = []

    class Recording(FakeOnnx):
        def run(self, images: list[np.ndarray]) -> list[np.ndarray]:
            calls.append([(im.shape[1], im.shape[0]) for im in images])
            return super().run(images)

    monkeypatch.setattr(yunet_onnx, "YuNetOnnx", lambda *a, **k: Recording(net))
    model = tmp_path / "stand-in.onnx"
    model.write_bytes(b"not used")
    det = YuNetDetector(model_path=str(model), max_batch=2)
    images = [_image(250, 250)] * 3 + [_image(4, 4), _image(300, 200), _image(960, 960), _image(250, 250)]
    found = det.detect_batch(images)
    assert calls == [
        [(250, 250)] * 2,
        [(250, 250)] * 2,
        [(300, 200)],
        [(960, 960)],
        [(320, 320)],  # the 960 px image's face is too large on its first pass: a smaller copy
    ]
    assert [len(f) for f in found] == [1, 1, 1, 0, 1, 1, 1]
    assert found[5][0].box.x2 == pytest.approx(0.9 * 960, abs=3)


def test_one_thread_runs_one_image_per_call_and_more_threads_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cv2

    from faceprint.detection import yunet_onnx
    from faceprint.detection.yunet import YuNetDetector

    monkeypatch.setattr(yunet_onnx, "YuNetOnnx", lambda *a, **k: FakeOnnx(FakeNet(0)))
    monkeypatch.setattr(cv2.FaceDetectorYN, "create", lambda *a, **k: FakeNet(0))
    model = tmp_path / "stand-in.onnx"
    model.write_bytes(b"not used")
    assert YuNetDetector(model_path=str(model), intra_op_threads=1).max_batch == 1
    assert YuNetDetector(model_path=str(model)).max_batch == 8
    assert YuNetDetector(model_path=str(model), intra_op_threads=1, max_batch=4).max_batch == 4
    assert YuNetDetector(model_path=str(model), backend="opencv", max_batch=4).max_batch == 1
