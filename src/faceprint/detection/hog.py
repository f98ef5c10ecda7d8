"""dlib's HOG + linear SVM frontal face detector, with dlib's 5-point landmarks.

Landmarks are kept as dlib's own 5 points (``landmark_scheme="dlib5"``: the eye on the
viewer's right as outer/inner corner, the eye on the viewer's left as outer/inner corner,
then the base of the nose), not mapped to ``std5``: the dlib embedder's chip is defined
on exactly these points, and ``std5`` would need mouth corners that this predictor does
not give. Boxes are dlib's inclusive rectangles turned into xyxy with exclusive edges.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import models
from ..errors import InvalidArgumentError
from ..types import Box, Face, Image
from . import too_small


class HogDetector:
    """HOG face detector. ``upsample`` doubles the image that many times first (finds
    faces down to ~40 px at 1, ~20 px at 2, ~10 px at 3, at 4x the time and memory per
    level); at most :attr:`MAX_UPSAMPLE`, beyond which a photo's pixels would not fit in
    memory and faces would be smaller than anything an embedder can use."""

    name = "hog"
    MAX_UPSAMPLE = 3

    def __init__(
        self,
        upsample: int = 1,
        threshold: float = 0.0,
        landmarks: bool = True,
        model_path: str | None = None,
    ) -> None:
        if (
            isinstance(upsample, bool)
            or not isinstance(upsample, int)
            or not 0 <= upsample <= self.MAX_UPSAMPLE
        ):
            raise InvalidArgumentError(
                f"upsample must be an integer from 0 to {self.MAX_UPSAMPLE}, got {upsample!r}"
            )
        import dlib

        self.upsample = upsample
        self.threshold = threshold
        self._detector = dlib.get_frontal_face_detector()
        self._predictor: Any = None
        if landmarks:
            self._predictor = dlib.shape_predictor(str(models.resolve("dlib5", path=model_path)))
        self._lock = threading.Lock()

    def detect(self, image: Image) -> list[Face]:
        """Faces in an RGB uint8 image, highest score first."""
        import dlib

        if too_small(image):
            return []
        img = np.ascontiguousarray(image)
        with self._lock:
            rects, scores, _ = self._detector.run(img, self.upsample, self.threshold)
            shapes = [self._predictor(img, r) for r in rects] if self._predictor else []
        faces = []
        for i, (r, s) in enumerate(zip(rects, scores, strict=True)):
            lm = None
            if shapes:
                sh: dlib.full_object_detection = shapes[i]
                lm = np.array([[p.x, p.y] for p in sh.parts()], dtype=np.float32)
            box = Box(float(r.left()), float(r.top()), float(r.right() + 1), float(r.bottom() + 1))
            faces.append(Face(box=box, score=float(s), landmarks=lm, landmark_scheme="dlib5"))
        faces.sort(key=lambda f: -f.score)
        return faces

    def detect_batch(self, images: Sequence[Image]) -> list[list[Face]]:
        return [self.detect(im) for im in images]
