"""Which face of a photo is *the* face: one rule, shared by enrolment and evaluation.

* :func:`central_face` -- the face whose box centre is nearest the image centre. LFW and
  datasets built like it label that face, whatever else the photo shows.
* :func:`largest_face` -- the largest box: the usual subject of a user's own photo.

Boxes are xyxy pixels; ``shape`` is the image's ``(H, W[, C])``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .types import Face


def central_face(faces: Sequence[Face], shape: tuple[int, ...]) -> Face | None:
    """The face nearest the image centre, or ``None`` when there is none."""
    if not faces:
        return None
    cy, cx = shape[0] / 2.0, shape[1] / 2.0
    return min(faces, key=lambda f: (f.box.center[0] - cx) ** 2 + (f.box.center[1] - cy) ** 2)


def largest_face(faces: Sequence[Face]) -> Face | None:
    """The face with the largest box, or ``None`` when there is none."""
    return max(faces, key=lambda f: f.box.area) if faces else None
