"""Face quality, and the one gate that decides whether a face is evidence of anyone.

Why: the open-set threshold is calibrated on LFW faces (about 80-120 px, sharp, mostly
frontal). A 15 px face in a crowd, upsampled ten times to the embedder's 150 px chip, is
mostly interpolation, and its vector lands near *someone*: issue 10 saw 25 of the Oscars
selfie's 601 detections named against a 180-person LFW gallery, none of them enrolled, 18
of them under 20 px (bench/quality_gate.py measures it). The same happened to blurred
audience faces in video. So every path
that turns a face into an identity (``identify``, ``lookalike``, enrolment, ``watch``)
asks the same :class:`QualityGate` first; a face it rejects keeps its box and is reported
``unknown`` with the reason, so nothing vanishes silently.

**Quality** of a face, in [0, 1]: detector score × size × frontality × sharpness, where
size = min(1, shorter box side / :data:`FULL_SIZE_PX`); frontality = 1 - |eye-nose
distance asymmetry| from the 5 landmarks (a turned head puts the nose near one eye);
sharpness = min(1, variance of the Laplacian of the grey face crop, scaled down to a
shorter side of :data:`FULL_SIZE_PX` when larger, / :data:`SHARP_VARIANCE`). The scaling
makes sharpness a property of the face, not of its size in pixels: measured at full size,
a sharp 261 px portrait (the reference photo of Lin-Manuel Miranda) scored 0.16, since its
per-pixel gradients are gentle, and the embedder sees it at 150 px anyway. It ranks
faces; it is not a calibrated probability.

**The gate** rejects a face whose shorter box side is under ``min_face_px`` (reason
``"too small"``) or whose quality is under ``min_quality`` (reason ``"low quality"``
plus its weakest factor, e.g. ``"low quality: blurred"``). Either limit at 0 disables
that test. Boxes are xyxy pixels and images RGB uint8.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .types import Face, Image

#: Faces whose shorter box side is below this many pixels are not evidence: the threshold
#: is calibrated on LFW faces (~80-120 px), and 20-35 px faces, upsampled 5x to the
#: embedder's 150 px chip, scored strangers above it on the 1080p crowd clip. On LFW dev
#: no central face is under it, while 486 of the 563 group-photo faces named (all strangers)
#: at the 1:1 threshold were (bench/results/quality_gate.json).
MIN_FACE_PX = 40.0
#: Faces of lower quality are not evidence either (blurred, dark, turned away).
MIN_QUALITY = 0.2
#: Shorter box side (pixels) at which size stops limiting quality.
FULL_SIZE_PX = 80.0
#: Laplacian variance at which sharpness stops limiting quality.
SHARP_VARIANCE = 100.0

TOO_SMALL = "too small"


@dataclass(frozen=True, slots=True)
class Quality:
    """The factors of a face's quality (each in [0, 1]) and their product ``value``."""

    score: float
    size: float
    frontal: float
    sharp: float
    side: float  # shorter side of the (clipped) box, pixels

    @property
    def value(self) -> float:
        return self.score * self.size * self.frontal * self.sharp

    @property
    def weakest(self) -> str:
        """What limits the quality most, in words."""
        factors = {
            "weak detection": self.score,
            "small face": self.size,
            "turned away": self.frontal,
            "blurred": self.sharp,
        }
        return min(factors, key=lambda k: factors[k])


def assess(image: Image, face: Face) -> Quality:
    """The quality factors of ``face`` (xyxy box, optional 5 landmarks) in RGB ``image``."""
    import cv2

    b = face.box.clip(image.shape[1], image.shape[0])
    side = max(0.0, min(b.width, b.height))
    size = min(1.0, side / FULL_SIZE_PX)
    frontal = 1.0
    if face.landmarks is not None and len(face.landmarks) >= 3:
        lm = np.asarray(face.landmarks, dtype=np.float64)
        left, right, nose = lm[0], lm[1], lm[2]
        dl, dr = float(np.linalg.norm(nose - left)), float(np.linalg.norm(nose - right))
        frontal = 1.0 - abs(dl - dr) / max(dl + dr, 1e-6)
    crop = image[int(b.y1) : int(b.y2), int(b.x1) : int(b.x2)]
    sharp = 0.0
    if crop.size:
        grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
        scale = FULL_SIZE_PX / min(grey.shape)
        if scale < 1.0:
            size_px = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
            grey = cv2.resize(grey, size_px, interpolation=cv2.INTER_AREA)
        sharp = min(1.0, float(cv2.Laplacian(grey, cv2.CV_64F).var()) / SHARP_VARIANCE)
    score = max(0.0, min(1.0, float(face.score)))
    return Quality(score, size, frontal, sharp, side)


def face_quality(image: Image, face: Face) -> float:
    """The quality of ``face`` in ``image``, in [0, 1] (module doc)."""
    return assess(image, face).value


@dataclass(frozen=True, slots=True)
class QualityGate:
    """Which faces count as evidence: shorter box side >= ``min_face_px`` and quality >=
    ``min_quality`` (0 disables either test). :data:`DEFAULT_GATE` is the default of every
    path; :data:`NO_GATE` lets every face through."""

    min_face_px: float = MIN_FACE_PX
    min_quality: float = MIN_QUALITY

    def __post_init__(self) -> None:
        if not self.min_face_px >= 0:
            raise ValueError(f"min_face_px is a number of pixels >= 0, got {self.min_face_px}")
        if not 0 <= self.min_quality <= 1:
            raise ValueError(f"min_quality is a quality in [0, 1], got {self.min_quality}")

    @property
    def active(self) -> bool:
        return self.min_face_px > 0 or self.min_quality > 0

    def check(self, image: Image, face: Face) -> tuple[float, str | None]:
        """``(quality, reason)``: ``reason`` is None when the face passes, else why not
        (``"too small"``, or ``"low quality: <weakest factor>"``)."""
        q = assess(image, face)
        if q.side < self.min_face_px:
            return q.value, TOO_SMALL
        if q.value < self.min_quality:
            return q.value, f"low quality: {q.weakest}"
        return q.value, None

    def reason(self, image: Image, face: Face) -> str | None:
        """Why ``face`` fails the gate, or None when it passes (or the gate is off)."""
        if not self.active:
            return None
        return self.check(image, face)[1]


DEFAULT_GATE = QualityGate()
NO_GATE = QualityGate(0.0, 0.0)
