"""Fused embedders: several networks' vectors of one face, concatenated by fitted weights.

``--embedder dlib-onnx+mobilefacenet`` (any two or three of the registered parts joined by
``+``) builds a :class:`FusedEmbedder`. Why: networks trained on other data make other
errors, so averaging their cosine similarities removes a share of each one's mistakes
(``bench/fusion.py`` measures how many on LFW).

**The vector.** Each part's unit vector ``v_p`` is scaled by ``sqrt(w_p)`` (weights summing
to 1) and the scaled vectors are concatenated; the result has unit length, and the cosine
similarity of two fused vectors is ``sum_p w_p * cos_p``: the weighted mean of the parts'
cosines. So every consumer of vectors (gallery, ANN index, open-set threshold,
calibration, video, evaluation) works unchanged, with ``dim`` the sum of the parts'.

**Crops.** Each part crops the face with its own template from the same landmarks: the
embedder's ``crop_templates`` lists the parts' templates in order, the pipeline cuts one
crop per part of each face, and :meth:`FusedEmbedder.embed` takes them face-major (face
0's crops in part order, then face 1's, ...). One detection serves every part.

**Weights and thresholds** are fitted on LFW pairsDevTrain only (``bench/fusion.py``) and
stored here (:data:`FUSIONS`) per set of part networks; ``dlib`` and ``dlib-onnx`` run
one network, so ``dlib+mobilefacenet`` uses the same entry. The parts are always put in
the entry's order, whatever order the name gives.

**Model id.** ``fuse(<part id>=<weight>,...)`` with each part's own id
(:func:`faceprint.embedding.model_id`) and ``+flip`` with flip TTA, e.g.
``fuse(dlib@resnet_v1+55533b28=0.5,mobilefacenet@expo-1.0.24+d8ba40c0=0.5)``: it names
every part's weights and the fusion weights, so a gallery filled by one fusion refuses the
vectors of a plain embedder, of another fusion, or of other weights.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..alignment import AlignmentTemplate
from ..errors import UnknownComponentError
from ..types import Image
from . import Embedder, model_id

#: Joins part names in a fused embedder's name (``dlib-onnx+mobilefacenet``).
SEPARATOR = "+"
#: The registered embedders a fusion may combine, and the network each runs.
PART_NETWORKS = {
    "dlib": "dlib",
    "dlib-onnx": "dlib",
    "mobilefacenet": "mobilefacenet",
    "faceplugin": "faceplugin",
}


@dataclass(frozen=True)
class Fusion:
    """A fitted fusion: its parts' networks in vector order, their weights (summing to 1)
    and the 1:1 thresholds (cosine similarity of fused vectors), fitted on pairsDevTrain."""

    networks: tuple[str, ...]
    weights: tuple[float, ...]
    default_threshold: float
    flip_threshold: float


#: The fitted fusions, by their parts' networks in vector order. Fitted by
#: ``bench/fusion.py`` on LFW pairsDevTrain only (yunet landmarks; weights on a 0.05 grid
#: summing to 1: the maximum-accuracy weights, ties broken by the higher AUC; thresholds:
#: maximum accuracy, plain and with flip TTA), its JSON in ``bench/results/fusion.json``.
#: Held out on pairsDevTest: dlib-onnx 98.5%, dlib-onnx+mobilefacenet 99.4%.
FUSIONS: dict[tuple[str, ...], Fusion] = {
    f.networks: f
    for f in (
        Fusion(("dlib", "mobilefacenet"), (0.65, 0.35), 0.720, 0.728),
        Fusion(("dlib", "faceplugin"), (0.7, 0.3), 0.712, 0.717),
        Fusion(("mobilefacenet", "faceplugin"), (0.6, 0.4), 0.326, 0.332),
        Fusion(("dlib", "mobilefacenet", "faceplugin"), (0.8, 0.1, 0.1), 0.787, 0.791),
    )
}


def is_fused_name(name: str) -> bool:
    """Whether the embedder argument ``name`` names a fusion (parts joined by ``+``)."""
    return SEPARATOR in name


def _usage(name: str, why: str) -> UnknownComponentError:
    fitted = ", ".join(
        SEPARATOR.join("dlib-onnx" if n == "dlib" else n for n in f.networks) for f in FUSIONS.values()
    )
    return UnknownComponentError(
        f"unknown fused embedder {name!r}: {why}; expected two or more of "
        f"{', '.join(PART_NETWORKS)} joined by '+' (fitted fusions: {fitted})"
    )


def parse(name: str) -> tuple[list[str], Fusion]:
    """The part names of fused embedder ``name`` in vector order, and its fitted
    :class:`Fusion`. Raises :class:`UnknownComponentError` (a usage error that lists the
    embedders) for an unknown part, a repeated network, or parts with no fitted fusion."""
    parts = name.split(SEPARATOR)
    for p in parts:
        if p == "flip":
            raise _usage(name, "flip is not a part: use --flip (flip TTA applies to every part)")
        if p not in PART_NETWORKS:
            raise _usage(name, f"{p!r} is not an embedder that can be fused")
    networks = [PART_NETWORKS[p] for p in parts]
    if len(set(networks)) != len(networks):
        raise _usage(name, "a network appears twice (dlib and dlib-onnx run the same one)")
    fusion = next((f for f in FUSIONS.values() if sorted(f.networks) == sorted(networks)), None)
    if fusion is None:
        raise _usage(name, "no weights are fitted for these parts")
    by_network = dict(zip(networks, parts, strict=True))
    return [by_network[n] for n in fusion.networks], fusion


def format_fused_id(part_ids: Sequence[str], weights: Sequence[float], flip: bool = False) -> str:
    """``fuse(<id>=<w>,...)`` (``+flip``): the model id of a fusion (module doc)."""
    inner = ",".join(f"{pid}={w:g}" for pid, w in zip(part_ids, weights, strict=True))
    return f"fuse({inner})" + ("+flip" if flip else "")


def is_fused_id(model: str) -> bool:
    """Whether the model id ``model`` is a fusion's."""
    return model.startswith("fuse(")


def fusion_of_id(model: str) -> Fusion | None:
    """The fitted fusion whose parts' networks and weights the fused model id ``model``
    names, or ``None`` (not a fused id, unknown parts, or weights this faceprint does not
    ship)."""
    if not is_fused_id(model):
        return None
    inner = model[len("fuse(") :].rsplit(")", 1)[0]
    parts = [p.rpartition("=") for p in inner.split(",")]
    fusion = FUSIONS.get(tuple(pid.split("@", 1)[0] for pid, _, _ in parts))
    if fusion is None or [w for _, _, w in parts] != [f"{w:g}" for w in fusion.weights]:
        return None
    return fusion


class FusedEmbedder:
    """The weighted fusion of registered embedders (module doc), named ``name``
    (``dlib-onnx+mobilefacenet``). ``intra_op_threads``, ``providers`` and ``batch_size``
    go to every part that takes them. Raises :class:`UnknownComponentError` for a name
    that is not a fitted fusion of registered parts."""

    def __init__(
        self,
        name: str,
        intra_op_threads: int | None = None,
        providers: Sequence[str] | None = None,
        batch_size: int | None = None,
    ) -> None:
        from ..registry import embedders, instantiate

        part_names, fusion = parse(name)
        options: dict[str, Any] = {}
        if providers is not None:
            options["providers"] = providers
        if batch_size is not None:
            options["batch_size"] = batch_size
        parts: list[Embedder] = []
        for p in part_names:
            cls = embedders.resolve(p)
            accepted = inspect.signature(cls).parameters  # dlib-bin takes neither option
            parts.append(
                instantiate(cls, {k: v for k, v in options.items() if k in accepted}, intra_op_threads)
            )
        self.name = name
        self.parts: tuple[Embedder, ...] = tuple(parts)
        self.fusion = fusion
        self.weights = fusion.weights
        # network/version/weights_sha256 satisfy the Embedder protocol; the id itself is
        # made by model_id() below, which names every part's id and the weights
        self.network = "fuse"
        self.version = "+".join(part_names)
        self.dim = sum(p.dim for p in parts)
        self.default_threshold = fusion.default_threshold
        self.flip_threshold = fusion.flip_threshold
        self.crop_templates: tuple[dict[str, AlignmentTemplate], ...] = tuple(
            t for p in parts for t in p.crop_templates
        )
        self._scales = np.sqrt(np.asarray(fusion.weights, dtype=np.float32))
        #: sha256 of the fused id without flip: the parts' weights and the fusion weights
        self.weights_sha256 = hashlib.sha256(self.model_id().encode()).hexdigest()

    def model_id(self, flip: bool = False) -> str:
        """The id of this fusion's vectors (module doc)."""
        return format_fused_id([model_id(p) for p in self.parts], self.weights, flip)

    def embed_parts(self, crops: Sequence[Image]) -> list[NDArray[np.float32]]:
        """Each part's ``(N, dim_p)`` unit vectors for face-major crops (module doc)."""
        per_face = len(self.crop_templates)
        if len(crops) % per_face:
            raise ValueError(
                f"{self.name} embedder expects {per_face} crops per face (one per part's template), "
                f"got {len(crops)} crops"
            )
        out: list[NDArray[np.float32]] = []
        k = 0
        for p in self.parts:
            n = len(p.crop_templates)
            mine = [crops[i + j] for i in range(k, len(crops), per_face) for j in range(n)]
            out.append(p.embed(mine))
            k += n
        return out

    def combine(self, vectors: Sequence[NDArray[np.float32]]) -> NDArray[np.float32]:
        """The fused unit vectors of the parts' unit vectors (each ``(N, dim_p)``)."""
        scaled = [np.asarray(v, dtype=np.float32) * s for v, s in zip(vectors, self._scales, strict=True)]
        return np.ascontiguousarray(np.concatenate(scaled, axis=1), dtype=np.float32)

    def embed(self, crops: Sequence[Image]) -> NDArray[np.float32]:
        """``(N, dim)`` float32 unit vectors for face-major crops, one per part's template."""
        return self.combine(self.embed_parts(crops))
