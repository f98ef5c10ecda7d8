"""Annotate images with boxes, landmarks and labels (RGB in, RGB out, xyxy boxes)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .types import Face, Image


def draw_faces(image: Image, faces: Sequence[Face], labels: Sequence[str] | None = None) -> Image:
    """A copy of ``image`` with each face's box, landmarks and label drawn on it."""
    import cv2

    out = np.ascontiguousarray(image.copy())
    for i, f in enumerate(faces):
        b = f.box
        # Sizes follow the face, so crowds stay readable and large faces stay visible.
        thick = max(1, round(b.width / 60))
        cv2.rectangle(out, (round(b.x1), round(b.y1)), (round(b.x2), round(b.y2)), (0, 255, 0), thick)
        if f.landmarks is not None:
            for x, y in f.landmarks:
                cv2.circle(out, (round(float(x)), round(float(y))), thick, (255, 0, 0), -1)
        text = labels[i] if labels is not None else f"{f.score:.2f}"
        cv2.putText(
            out,
            text,
            (round(b.x1), max(0, round(b.y1) - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            max(0.3, b.width / 160),
            (255, 255, 0),
            thick,
        )
    return out


def save_image(image: Image, path: str) -> None:
    """Write an RGB image to ``path`` (format from the extension)."""
    from PIL import Image as PILImage

    PILImage.fromarray(image).save(path)
