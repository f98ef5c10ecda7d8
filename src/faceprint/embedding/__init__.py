"""Face embedders. One module per embedder; each maps aligned crops to unit vectors.

An :class:`Embedder` declares how it crops a face (``crop_templates``: one entry per crop
it takes of each face, each mapping a landmark scheme to its template); the pipeline cuts
the crops, so embedders never see whole images. A plain embedder takes one crop per face;
a fused one (:mod:`.fused`) one per part, each part with its own template, all from one
detection's landmarks. ``embed`` takes the crops face-major: face 0's crops in
``crop_templates`` order, then face 1's.

**Model ids.** Every vector carries the id of the model that made it, computed here and
nowhere else (:func:`model_id`): ``network@version+<first 8 hex of the weights'
sha256>``, plus ``+flip`` when flip test-time augmentation averaged in the mirrored crop
(e.g. ``dlib@resnet_v1+55533b28``). The id names the *weights*, not the runtime: the
``dlib`` (dlib-bin) and ``dlib-onnx`` (onnxruntime) embedders run the same network from the
same ``.dat`` file and give the same vectors (cosine >= 0.9999998 on LFW), so both have
``network = "dlib"``, hash that ``.dat``, and share one id; their galleries are
interchangeable. Other weights (a fine-tuned or swapped file) hash differently, so their
vectors get another id and a gallery refuses them.

**Fine-tuned models.** ``faceprint train`` writes a MODEL_DIR (:mod:`.model_dir`); an
embedder argument that is a path to one builds a
:class:`~faceprint.embedding.model_dir.ModelDirEmbedder` named by that path
(:func:`faceprint.registry.create_embedder`), whose id is ``<network>@<version>+<sha8 of
its model.onnx>`` from its card.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from ..alignment import AlignmentTemplate
from ..types import Image


@runtime_checkable
class Embedder(Protocol):
    """Maps aligned RGB uint8 crops to ``(N, dim)`` float32 L2-normalised vectors."""

    name: str  # registry name: the runtime (``dlib``, ``dlib-onnx``), or a MODEL_DIR's path as given
    network: str  # the network whose weights make the vectors; shared by runtimes of one network
    version: str
    weights_sha256: str  # hex sha256 of the weights file the vectors come from (see model_id)
    dim: int
    #: One entry per crop taken of each face (one for a plain embedder, one per part for a
    #: fused one), each mapping a landmark scheme to the template its crop is cut with.
    crop_templates: tuple[dict[str, AlignmentTemplate], ...]
    default_threshold: float

    def embed(self, crops: Sequence[Image]) -> NDArray[np.float32]: ...


def l2_normalize(vectors: NDArray[np.floating]) -> NDArray[np.float32]:
    """Rows scaled to unit length (zero rows stay zero); float32."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.asarray(v / np.maximum(norms, 1e-12), dtype=np.float32)


#: How many hex digits of the weights' sha256 a model id keeps.
ID_SHA_CHARS = 8


def model_id(embedder: Embedder, flip: bool = False) -> str:
    """``network@version+<sha8>`` (``+flip`` with flip TTA): the id of ``embedder``'s vectors,
    stored with every vector and bound to every gallery (see the module doc). A fused
    embedder's id names its parts' ids and weights (:mod:`.fused`)."""
    from .fused import FusedEmbedder

    if isinstance(embedder, FusedEmbedder):
        return embedder.model_id(flip)
    return format_model_id(embedder.network, embedder.version, embedder.weights_sha256, flip, embedder.name)


def format_model_id(
    network: str, version: str, weights_sha256: str, flip: bool = False, who: str = ""
) -> str:
    """The model id of weights hashing to ``weights_sha256`` run as ``network@version``:
    what :func:`model_id` gives for such an embedder, for callers that know a model before
    loading it (a MODEL_DIR's card: :mod:`.model_dir`)."""
    sha = weights_sha256.lower()
    if len(sha) < ID_SHA_CHARS or any(c not in "0123456789abcdef" for c in sha):
        raise ValueError(f"{who or network} embedder: weights_sha256 must be a hex sha256, got {sha!r}")
    return f"{network}@{version}+{sha[:ID_SHA_CHARS]}" + ("+flip" if flip else "")


def check_crops(crops: Sequence[Image], size: int, who: str) -> None:
    """Raise ``ValueError`` unless every crop is a ``size`` x ``size`` x 3 uint8 RGB image."""
    for c in crops:
        if c.shape != (size, size, 3) or c.dtype != np.uint8:
            raise ValueError(f"{who} embedder expects {size}x{size}x3 uint8 crops, got {c.shape} {c.dtype}")
