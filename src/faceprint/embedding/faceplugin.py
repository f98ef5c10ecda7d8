"""Faceplugin's face feature network (512-D) from the npm package
faceplugin-face-recognition-js, run by ONNX Runtime.

**Licence: not established.** The npm package and its repository carry an MIT licence
file, but the vendor sells a commercial SDK and states no training data or accuracy. It
is never a default; the first use in a process logs a warning that says so
(:func:`faceprint.models.warn_licence_once`).

The file (``fr_feature.onnx``, exported from PyTorch 1.10) takes float32 NCHW ``[1, 3,
112, 112]``: its batch is fixed at 1. :mod:`.onnx_rebatch` rewrites it into the embedder
graph contract (uint8 RGB NHWC 112x112 crops, dynamic batch, ``(x - 127) / 128`` inside;
raw 512-D descriptors out), cached by :mod:`.converted` with the source's sha256, so the
vectors' id is ``faceplugin@0.0.1+87aacdfe``.

**Crop.** The standard 112x112 five-point template (:mod:`.crop112`), unshrunk (chosen on
LFW View 1, ``../shared/models/SOURCES.md``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..alignment import AlignmentTemplate
from . import crop112
from .converted import ConvertedEmbedder

if TYPE_CHECKING:
    import onnx

#: Verification threshold (cosine similarity): the maximum-accuracy threshold on LFW
#: pairsDevTrain (yunet landmarks), fitted by ``bench/fusion.py``.
DEFAULT_THRESHOLD = 0.271
#: The same fit with flip TTA.
FLIP_THRESHOLD = 0.282


class FacepluginEmbedder(ConvertedEmbedder):
    """Faceplugin's fr_feature (module doc): 112x112 RGB uint8 crops in, 512-D unit vectors
    out. Options as for every converted embedder (:class:`.converted.ConvertedEmbedder`)."""

    name = "faceplugin"
    network = "faceplugin"
    version = "0.0.1"
    dim = 512
    size = crop112.SIZE
    default_threshold = DEFAULT_THRESHOLD
    flip_threshold = FLIP_THRESHOLD
    source_model = "faceplugin"
    strict_source = True  # only the published file: its licence and accuracy are what we state
    converter_version = "1"
    # ONNX Runtime's "all" level re-lays out the 1x1 convolutions and runs them 3x slower
    # here (65 vs 22 ms per face, 1 thread, same vectors): measured with this graph.
    graph_optimization = "extended"

    @classmethod
    def templates(cls) -> dict[str, AlignmentTemplate]:
        return crop112.templates()

    @classmethod
    def convert(cls, source: Path) -> onnx.ModelProto:
        import onnx

        from .onnx_rebatch import to_contract

        try:
            model = onnx.load(str(source))
        except Exception as exc:  # a protobuf that does not parse
            from ..errors import ModelUnavailableError

            raise ModelUnavailableError(f"{source} is not a readable ONNX model ({exc})") from None
        return to_contract(
            model,
            size=crop112.SIZE,
            mean=127.0,
            scale=1 / 128,
            metadata=None,
            doc="Faceplugin fr_feature (faceplugin-face-recognition-js 0.0.1; licence not established). "
            "Input uint8 RGB NHWC 112x112 crops; output raw 512-D descriptors (L2-normalise, compare "
            "by cosine).",
        )
