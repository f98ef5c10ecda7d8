"""The face-quality gate (faceprint.quality) and its use by identify, lookalike and enrolment,
with a fake detector and embedder (no weights): a tiny face is reported ``unknown`` with
its reason, never named; a tiny enrolment face is refused, unless the gate is lowered."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from faceprint.alignment import AlignmentTemplate
from faceprint.gallery.gallery import Gallery
from faceprint.gallery.sqlite import SqliteStore
from faceprint.quality import DEFAULT_GATE, NO_GATE, TOO_SMALL, QualityGate, assess, face_quality
from faceprint.recognizer import Recognizer
from faceprint.types import UNKNOWN, Box, Face

RNG = np.random.default_rng(0)
#: A textured (sharp) RGB image: its Laplacian variance is far above SHARP_VARIANCE.
IMAGE = RNG.integers(0, 256, (300, 300, 3), dtype=np.uint8)


def _face(x: float, y: float, side: float, score: float = 0.9) -> Face:
    """A frontal face: eyes level, nose midway (frontality 1)."""
    lm = np.array(
        [[x + 0.3 * side, y + 0.4 * side], [x + 0.7 * side, y + 0.4 * side], [x + 0.5 * side, y + 0.6 * side],
         [x + 0.35 * side, y + 0.8 * side], [x + 0.65 * side, y + 0.8 * side]],
        dtype=np.float32,
    )  # fmt: skip
    return Face(Box(x, y, x + side, y + side), score, lm)


BIG = _face(20, 20, 120)
TINY = _face(200, 200, 15)


class FakeDetector:
    name = "fake"

    def __init__(self, faces: list[Face]) -> None:
        self.faces = faces

    def detect(self, image: NDArray[np.uint8]) -> list[Face]:
        return list(self.faces)

    def detect_batch(self, images: Sequence[NDArray[np.uint8]]) -> list[list[Face]]:
        return [self.detect(im) for im in images]


class FakeEmbedder:
    """Every crop is the same person: any face that gets searched is named."""

    name = "fake"
    network = "fake"
    version = "1"
    weights_sha256 = "0" * 64
    dim = 4
    default_threshold = 0.5

    def __init__(self) -> None:
        points = ((10.0, 12.0), (22.0, 12.0), (16.0, 18.0), (11.0, 24.0), (21.0, 24.0))
        self.crop_templates = ({"std5": AlignmentTemplate("std5", points, 32)},)

    def embed(self, crops: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
        return np.tile(np.array([1, 0, 0, 0], np.float32), (len(crops), 1))


def _gallery(tmp_path: Path, faces: list[Face]) -> Gallery:
    rec = Recognizer(detector=FakeDetector(faces), embedder=FakeEmbedder())  # type: ignore[arg-type]
    return Gallery(SqliteStore(tmp_path / "g.sqlite"), rec)


def _enrol_ann(tmp_path: Path) -> Gallery:
    g = _gallery(tmp_path, [BIG])
    assert g.enroll("ann", [IMAGE]).added
    return g


def test_quality_factors_and_gate() -> None:
    q = assess(IMAGE, BIG)
    assert q.size == 1.0 and q.frontal == pytest.approx(1.0) and q.sharp == 1.0
    assert face_quality(IMAGE, BIG) == pytest.approx(0.9)
    assert DEFAULT_GATE.reason(IMAGE, BIG) is None
    assert DEFAULT_GATE.reason(IMAGE, TINY) == TOO_SMALL
    assert QualityGate(min_face_px=10).reason(IMAGE, TINY) == "low quality: small face"
    assert QualityGate(10, 0.1).reason(IMAGE, TINY) is None
    flat = np.full_like(IMAGE, 128)  # no texture at all: blurred
    assert DEFAULT_GATE.reason(flat, BIG) == "low quality: blurred"
    assert NO_GATE.reason(flat, TINY) is None
    with pytest.raises(ValueError, match="min_quality"):
        QualityGate(40, 2.0)


def test_identify_reports_a_tiny_face_unknown_with_its_reason(tmp_path: Path) -> None:
    g = _enrol_ann(tmp_path)
    g.recognizer.detector = FakeDetector([BIG, TINY])
    (recs,) = g.identify([IMAGE])
    assert [r.label for r in recs] == ["ann", UNKNOWN]  # both kept, in detector order
    assert recs[1].reason == TOO_SMALL and recs[1].matches == () and recs[1].face.box == TINY.box
    d = recs[1].to_dict()
    assert d["label"] == UNKNOWN and d["reason"] == TOO_SMALL
    assert "reason" not in recs[0].to_dict()
    (open_,) = g.identify([IMAGE], gate=NO_GATE)  # the gate off: the tiny face is named too
    assert [r.label for r in open_] == ["ann", "ann"]


def test_lookalike_searches_nobody_for_a_face_below_the_gate(tmp_path: Path) -> None:
    g = _enrol_ann(tmp_path)
    g.recognizer.detector = FakeDetector([TINY])
    r = g.lookalike(IMAGE)
    assert r.matches == () and r.reason == TOO_SMALL and r.label == UNKNOWN
    assert g.lookalike(IMAGE, gate=QualityGate(10, 0.1)).best is not None


def test_enrolment_refuses_a_tiny_face_naming_the_reason_and_the_option(tmp_path: Path) -> None:
    g = _gallery(tmp_path, [TINY])
    r = g.enroll("bob", [IMAGE])
    assert not r.added and len(r.refused) == 1
    assert "too small: 15 px" in r.refused[0].reason and "--min-face-size" in r.refused[0].reason
    assert g.enroll("bob", [IMAGE], gate=QualityGate(10, 0.1)).added


def test_sharpness_does_not_punish_a_large_face() -> None:
    """A sharp portrait has gentle gradients per pixel: measured at full size, the 261 px
    reference photo of Lin-Manuel Miranda scored sharpness 0.16 and was refused. Sharpness
    is measured at FULL_SIZE_PX, where the texture of this face is crisp."""
    import cv2

    texture = RNG.integers(0, 256, (50, 50, 3), dtype=np.uint8)
    big = cv2.resize(texture, (400, 400), interpolation=cv2.INTER_CUBIC)  # 8x: smooth per pixel
    face = _face(0, 0, 400)
    assert float(cv2.Laplacian(cv2.cvtColor(big, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()) < 100
    assert assess(big, face).sharp == 1.0 and DEFAULT_GATE.reason(big, face) is None
    blurred = cv2.GaussianBlur(big, (0, 0), 12)  # really blurred stays blurred
    assert DEFAULT_GATE.reason(blurred, face) == "low quality: blurred"
