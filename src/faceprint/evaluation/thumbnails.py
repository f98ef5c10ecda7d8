"""Face thumbnails for the evaluation report: square crops around a face, as JPEG data URIs.

Why a module of its own: cutting faces out of third-party photos (decoding, cropping,
resampling, encoding) is image work with its own failure modes, separate from laying out
the HTML (:mod:`.report`), which only asks for a URI per thumbnail. Conventions:

* a thumbnail is the face box (xyxy pixels) grown by :data:`MARGIN` and made square, or a
  centre crop of the whole photo when there is no box; what falls outside the photo is
  grey, and only the part inside is resized, so a bogus huge box cannot allocate a huge
  array;
* each distinct photo is decoded once however many thumbnails it gives, and only one
  decoded photo is held at a time;
* a photo that cannot be read, or a box that cannot be cut, becomes ``"!"`` + the reason
  instead of a URI (shown as a grey placeholder): one bad file must not cost the user the
  whole report.
"""

from __future__ import annotations

import base64
import io
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..types import Box, Image

log = logging.getLogger(__name__)

#: Fraction of the face box's larger side added on each side of a thumbnail crop, so
#: hair, chin and pose are visible: they often explain an error.
MARGIN = 0.25
JPEG_QUALITY = 85
_GREY = 128


@dataclass(frozen=True)
class Thumb:
    """A face to show: ``image`` is a path, ``box`` the face (xyxy pixels) or ``None`` for
    a centre crop of the whole photo, ``label`` a short text under it (file or person)."""

    image: str | Path
    box: Box | None = None
    label: str = ""


def _square(box: Box | None, w: int, h: int, margin: float) -> tuple[float, float, float]:
    """(x0, y0, side) of the square crop in image pixels; may extend past the image."""
    if box is None:
        side = float(min(w, h))
        return (w - side) / 2.0, (h - side) / 2.0, side
    vals = (box.x1, box.y1, box.x2, box.y2)
    if not all(math.isfinite(v) for v in vals) or box.width <= 0 or box.height <= 0:
        raise ValueError(f"invalid face box {vals}")
    if box.x2 <= 0 or box.y2 <= 0 or box.x1 >= w or box.y1 >= h:
        raise ValueError(f"face box {tuple(round(v) for v in vals)} lies outside the {w}x{h} image")
    side = max(box.width, box.height) * (1.0 + 2.0 * margin)
    cx, cy = box.center
    return cx - side / 2.0, cy - side / 2.0, side


def crop_thumbnail(image: Image, box: Box | None, size: int, margin: float = MARGIN) -> Image:
    """A ``size`` x ``size`` RGB crop of ``image`` (RGB uint8) around ``box`` (xyxy pixels).

    Only the part of the square inside the photo is resized, then pasted on a grey
    canvas, so a bogus huge box cannot allocate a huge array.
    """
    from PIL import Image as PILImage

    h, w = image.shape[:2]
    x0, y0, side = _square(box, w, h, margin)
    scale = size / side
    ix0, iy0 = max(0, math.floor(x0)), max(0, math.floor(y0))
    ix1, iy1 = min(w, math.ceil(x0 + side)), min(h, math.ceil(y0 + side))
    out = np.full((size, size, 3), _GREY, dtype=np.uint8)
    tx0, ty0 = round((ix0 - x0) * scale), round((iy0 - y0) * scale)
    tx1, ty1 = min(size, round((ix1 - x0) * scale)), min(size, round((iy1 - y0) * scale))
    tx0, ty0 = min(max(tx0, 0), size), min(max(ty0, 0), size)
    if tx1 > tx0 and ty1 > ty0:
        region = PILImage.fromarray(np.ascontiguousarray(image[iy0:iy1, ix0:ix1]))
        out[ty0:ty1, tx0:tx1] = np.asarray(
            region.resize((tx1 - tx0, ty1 - ty0), PILImage.Resampling.LANCZOS), dtype=np.uint8
        )
    return out


def _jpeg_uri(rgb: Image) -> str:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


ThumbKey = tuple[str, Box | None]


def thumb_key(t: Thumb) -> ThumbKey:
    return str(Path(t.image).absolute()), t.box


def render_thumbnails(thumbs: Iterable[Thumb], size: int) -> dict[ThumbKey, str]:
    """Each distinct (image, box) -> a JPEG data URI, or ``"!"`` + the reason it failed.

    Requests are grouped by photo, so each photo is decoded once and only one decoded
    photo is held at a time, however many pairs share it.
    """
    from ..io import load_image

    by_image: dict[str, set[Box | None]] = {}
    for t in thumbs:
        path, box = thumb_key(t)
        by_image.setdefault(path, set()).add(box)
    out: dict[ThumbKey, str] = {}
    for path, boxes in by_image.items():
        try:
            img = load_image(path)
        except Exception as exc:  # any unreadable photo becomes a placeholder, never a failure
            log.warning("report: cannot load %s: %s", path, exc)
            out.update({(path, b): f"!{exc}" for b in boxes})
            continue
        for b in boxes:
            try:
                out[(path, b)] = _jpeg_uri(crop_thumbnail(img, b, size))
            except Exception as exc:
                log.warning("report: cannot crop %s at %s: %s", path, b, exc)
                out[(path, b)] = f"!{exc}"
        del img
    return out
