"""Core value types of the pipeline.

Conventions (they hold everywhere in faceprint):

* Images are ``(H, W, 3)`` ``uint8`` arrays in **RGB** order. BGR exists only inside OpenCV calls.
* Boxes are **xyxy** float pixel coordinates; ``x2``/``y2`` are exclusive edges, so
  ``width = x2 - x1``.
* Landmarks are ``(5, 2)`` float32 ``x, y`` pixel coordinates. Their order depends on
  ``Face.landmark_scheme``:

  - ``"std5"``: left eye centre, right eye centre, nose tip, left mouth corner, right mouth
    corner, where left/right are the *viewer's* left/right (YuNet, MTCNN, SCRFD give these).
  - ``"dlib5"``: dlib's 5-point predictor order: the eye on the viewer's right (outer
    corner, inner corner), the eye on the viewer's left (outer, inner), the base of the
    nose. dlib's face chip is defined on these points, so the HOG detector keeps them
    untouched rather than approximating ``std5`` (which would need mouth corners).

* Embeddings are L2-normalised float32 vectors; the one similarity measure is the
  **cosine similarity** (dot product of unit vectors, higher = more alike), and every
  threshold is stated in it.

All types are frozen dataclasses: stages return new values and never mutate their input.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

Image = NDArray[np.uint8]
Landmarks = NDArray[np.float32]
Embedding = NDArray[np.float32]

UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box in xyxy float pixels (x2, y2 exclusive)."""

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return max(0.0, self.x2 - self.x1)

    @property
    def height(self) -> float:
        return max(0.0, self.y2 - self.y1)

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0)

    def iou(self, other: Box) -> float:
        """Intersection over union with ``other`` (0 when disjoint)."""
        ix = max(0.0, min(self.x2, other.x2) - max(self.x1, other.x1))
        iy = max(0.0, min(self.y2, other.y2) - max(self.y1, other.y1))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def clip(self, width: float, height: float) -> Box:
        """The box clipped to an image of ``width`` x ``height`` pixels."""
        return Box(
            min(max(self.x1, 0.0), width),
            min(max(self.y1, 0.0), height),
            min(max(self.x2, 0.0), width),
            min(max(self.y2, 0.0), height),
        )

    def to_dict(self) -> dict[str, float]:
        return {"x1": self.x1, "y1": self.y1, "x2": self.x2, "y2": self.y2}


@dataclass(frozen=True, slots=True, eq=False)
class Face:
    """One detected face: box, detector score, landmarks and, once embedded, its vector.

    ``embedding_model`` is the id of the model that made ``embedding``
    (``network@version+<first 8 hex of the weights' sha256>``, ``+flip`` with flip TTA;
    :func:`faceprint.embedding.model_id`), so a gallery can refuse vectors of other weights.
    """

    box: Box
    score: float
    landmarks: Landmarks | None = None
    embedding: Embedding | None = None
    track_id: int | None = None
    landmark_scheme: str = "std5"
    embedding_model: str | None = None

    def with_embedding(self, embedding: Embedding, model: str) -> Face:
        """A copy of this face carrying ``embedding`` (made by ``model``)."""
        return replace(self, embedding=embedding, embedding_model=model)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"box": self.box.to_dict(), "score": round(float(self.score), 6)}
        if self.landmarks is not None:
            out["landmarks"] = [[round(float(x), 3), round(float(y), 3)] for x, y in self.landmarks]
            out["landmark_scheme"] = self.landmark_scheme
        if self.embedding is not None:
            out["embedding"] = [round(float(v), 7) for v in self.embedding]
            out["embedding_model"] = self.embedding_model
        if self.track_id is not None:
            out["track_id"] = self.track_id
        return out


@dataclass(frozen=True, slots=True)
class Match:
    """A gallery hit: identity, cosine similarity (higher = more alike) and the face id."""

    identity: str
    similarity: float
    face_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"identity": self.identity, "similarity": self.similarity, "face_id": self.face_id}


@dataclass(frozen=True, slots=True)
class Recognition:
    """A face with its ranked matches; ``label`` is the best identity or ``"unknown"``.

    ``reason`` says why a face was not searched at all (e.g. ``"too small"``: it failed the
    quality gate of :mod:`faceprint.quality`); such a face has no matches, its label is
    ``"unknown"``, and ``to_dict`` carries the reason, so it is reported, not dropped.
    """

    face: Face
    matches: tuple[Match, ...]
    threshold: float
    reason: str | None = None

    @property
    def best(self) -> Match | None:
        return self.matches[0] if self.matches else None

    @property
    def label(self) -> str:
        best = self.best
        if self.reason is not None or best is None or best.similarity < self.threshold:
            return UNKNOWN
        return best.identity

    def to_dict(self) -> dict[str, Any]:
        out = {
            "face": self.face.to_dict(),
            "matches": [m.to_dict() for m in self.matches],
            "threshold": self.threshold,
            "label": self.label,
        }
        if self.reason is not None:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True, slots=True)
class Verification:
    """The answer to "are these two faces the same person?" (1:1).

    ``same`` is ``similarity >= threshold``; both are cosine similarities. ``detector`` and
    ``embedder`` name what produced the result; ``notes`` says e.g. when the largest of
    several faces was used.
    """

    similarity: float
    threshold: float
    same: bool
    detector: str = ""
    embedder: str = ""
    faces: tuple[Face, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "similarity": round(self.similarity, 6),
            "threshold": self.threshold,
            "same": self.same,
            "detector": self.detector,
            "embedder": self.embedder,
            "faces": [{"box": f.box.to_dict(), "score": round(float(f.score), 6)} for f in self.faces],
            "notes": list(self.notes),
        }
