"""YuNet (OpenCV ``FaceDetectorYN``): a 75k-parameter CNN detector with 5 landmarks.

YuNet returns the subject's right eye first; as seen by the viewer that is the left one,
so its order already is ``std5`` (viewer's left eye, right eye, nose tip, left mouth
corner, right mouth corner). Boxes are xyxy pixels. Images of any size are accepted:
the network input is resized to each image (and images larger than ``max_side`` are
shrunk for detection, with results mapped back to the original pixels).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from .. import models
from ..errors import ModelUnavailableError
from ..types import Box, Face, Image
from . import too_small


class YuNetDetector:
    """OpenCV's YuNet. ``score_threshold`` is YuNet's face confidence (0..1)."""

    name = "yunet"

    def __init__(
        self,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        max_side: int | None = 2560,
        model_path: str | None = None,
    ) -> None:
        import cv2

        self.model_path = models.resolve("yunet", path=model_path)
        self.score_threshold = score_threshold
        self.max_side = max_side
        try:
            self._net = cv2.FaceDetectorYN.create(
                str(self.model_path), "", (320, 320), score_threshold, nms_threshold, top_k
            )
        except cv2.error as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise ModelUnavailableError(
                f"could not load {self.model_path} as the YuNet model: expected "
                f"face_detection_yunet_2023mar.onnx, found a file OpenCV rejects ({reason}); "
                "run faceprint models download yunet"
            ) from None
        self._lock = threading.Lock()

    def detect(self, image: Image) -> list[Face]:
        """Faces in an RGB uint8 image, highest score first."""
        import cv2

        if too_small(image):
            return []
        h, w = image.shape[:2]
        scale = 1.0
        if self.max_side and max(h, w) > self.max_side:
            scale = self.max_side / max(h, w)
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        if scale != 1.0:
            bgr = cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        with self._lock:
            self._net.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, out = self._net.detect(bgr)
        if out is None:
            return []
        faces = []
        for row in np.asarray(out, dtype=np.float64) / np.r_[[scale] * 14, 1.0]:
            x, y, bw, bh = row[:4]
            lm = row[4:14].reshape(5, 2).astype(np.float32)
            box = Box(float(x), float(y), float(x + bw), float(y + bh))
            faces.append(Face(box=box, score=float(row[14]), landmarks=lm, landmark_scheme="std5"))
        faces.sort(key=lambda f: -f.score)
        return faces

    def detect_batch(self, images: Sequence[Image]) -> list[list[Face]]:
        return [self.detect(im) for im in images]
