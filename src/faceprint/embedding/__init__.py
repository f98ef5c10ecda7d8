"""Face embedders. One module per embedder; each maps aligned crops to unit vectors.

An :class:`Embedder` declares the alignment templates it accepts (one per landmark
scheme); the pipeline crops with them, so embedders never see whole images.
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

    name: str
    version: str
    dim: int
    templates: dict[str, AlignmentTemplate]
    default_threshold: float

    def embed(self, crops: Sequence[Image]) -> NDArray[np.float32]: ...


def l2_normalize(vectors: NDArray[np.floating]) -> NDArray[np.float32]:
    """Rows scaled to unit length (zero rows stay zero); float32."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.asarray(v / np.maximum(norms, 1e-12), dtype=np.float32)


def model_id(embedder: Embedder) -> str:
    """``name@version``: what a stored vector records about the model that made it."""
    return f"{embedder.name}@{embedder.version}"


def check_crops(crops: Sequence[Image], size: int, who: str) -> None:
    """Raise ``ValueError`` unless every crop is a ``size`` x ``size`` x 3 uint8 RGB image."""
    for c in crops:
        if c.shape != (size, size, 3) or c.dtype != np.uint8:
            raise ValueError(f"{who} embedder expects {size}x{size}x3 uint8 crops, got {c.shape} {c.dtype}")
