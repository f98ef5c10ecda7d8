"""Result types of gallery operations; each has ``to_dict()`` for the CLI's ``--json``.

Similarities and thresholds are cosine similarities; boxes are xyxy pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from ..types import Box, Face, Recognition


@dataclass(frozen=True)
class EnrolledFace:
    image: str
    face_id: str
    box: Box
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "face_id": self.face_id, "box": self.box.to_dict(), "score": self.score}


@dataclass(frozen=True)
class Refusal:
    """An image that added nothing, and why (``duplicate`` when already enrolled)."""

    image: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"image": self.image, "reason": self.reason}


@dataclass(frozen=True)
class EnrollReport:
    person: str
    model: str
    added: tuple[EnrolledFace, ...]
    duplicates: tuple[Refusal, ...]
    refused: tuple[Refusal, ...]

    @property
    def ok(self) -> bool:
        """Something was added, or everything was already there."""
        return bool(self.added or self.duplicates)

    def to_dict(self) -> dict[str, Any]:
        return {
            "person": self.person,
            "model": self.model,
            "added": [a.to_dict() for a in self.added],
            "duplicates": [d.to_dict() for d in self.duplicates],
            "refused": [r.to_dict() for r in self.refused],
        }


@dataclass(frozen=True)
class OperatingPoint:
    """The threshold an identification used and where it came from: ``"argument"``,
    ``"gallery"`` (stored), ``"calibrated"`` (the open-set threshold for ``people`` people
    at stranger false-alarm rate ``far``, from the impostor distribution ``faceprint
    calibrate --gallery`` stored; ``note`` says which data), ``"open-set"`` (the same from
    the distribution shipped for the model) or ``"embedder default"`` (no impostor
    distribution for the model; ``note`` says why)."""

    threshold: float
    source: str
    model: str
    people: int
    far: float | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "source": self.source,
            "model": self.model,
            "people": self.people,
            "far": self.far,
            "note": self.note,
        }


def _face_dict(face: Face) -> dict[str, Any]:
    return replace(face, embedding=None).to_dict()


def recognition_dict(r: Recognition) -> dict[str, Any]:
    """``Recognition.to_dict()`` without the 128 floats of the probe's embedding."""
    return {**r.to_dict(), "face": _face_dict(r.face)}


@dataclass(frozen=True)
class Identification:
    """Per image (in input order), one :class:`Recognition` per face; indexable like a
    list of lists. ``operating_point`` is the threshold used for every face."""

    images: tuple[str, ...]
    results: tuple[tuple[Recognition, ...], ...]
    operating_point: OperatingPoint
    #: per image, faces left out by ``max_faces`` (empty when none was)
    dropped: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, i: int) -> tuple[Recognition, ...]:
        return self.results[i]

    def __iter__(self) -> Iterator[tuple[Recognition, ...]]:
        return iter(self.results)

    def to_dict(self) -> dict[str, Any]:
        images: list[dict[str, Any]] = [
            {"image": im, "faces": [recognition_dict(r) for r in rs]}
            for im, rs in zip(self.images, self.results, strict=True)
        ]
        for entry, n in zip(images, self.dropped, strict=False):
            if n:
                entry["faces_dropped"] = n
        return {"operating_point": self.operating_point.to_dict(), "images": images}
