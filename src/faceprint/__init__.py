"""faceprint: offline face detection, alignment, embedding and verification.

Public API (imports are lazy, so ``import faceprint`` loads no cv2, dlib, onnxruntime
or torch)::

    import faceprint
    img = faceprint.load_image("photo.jpg")          # RGB uint8, EXIF applied
    rec = faceprint.Recognizer()                     # best detector available + dlib
    faces = rec.detect(img)                          # list[Face], xyxy boxes
    faces = rec.embed(img, faces)                    # unit vectors, cosine similarity
    v = rec.verify("a.jpg", "b.jpg")                 # Verification(similarity, threshold, same)
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Box",
    "Face",
    "FaceprintError",
    "ImageTooLargeError",
    "IncompatibleEmbeddingError",
    "InvalidImageError",
    "Match",
    "ModelUnavailableError",
    "MultipleFacesError",
    "NoFaceError",
    "Recognition",
    "Recognizer",
    "Settings",
    "UnknownComponentError",
    "Verification",
    "__version__",
    "load_image",
]

_WHERE = {
    "Box": "types",
    "Face": "types",
    "Match": "types",
    "Recognition": "types",
    "Verification": "types",
    "FaceprintError": "errors",
    "ImageTooLargeError": "errors",
    "IncompatibleEmbeddingError": "errors",
    "InvalidImageError": "errors",
    "ModelUnavailableError": "errors",
    "MultipleFacesError": "errors",
    "NoFaceError": "errors",
    "UnknownComponentError": "errors",
    "Recognizer": "recognizer",
    "Settings": "config",
    "load_image": "io",
}

if TYPE_CHECKING:
    from .config import Settings
    from .errors import (
        FaceprintError,
        ImageTooLargeError,
        IncompatibleEmbeddingError,
        InvalidImageError,
        ModelUnavailableError,
        MultipleFacesError,
        NoFaceError,
        UnknownComponentError,
    )
    from .io import load_image
    from .recognizer import Recognizer
    from .types import Box, Face, Match, Recognition, Verification


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'faceprint' has no attribute {name!r}")
