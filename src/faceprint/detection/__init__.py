"""Face detectors. One module per detector; each returns ``list[Face]`` for an RGB image.

The :class:`Detector` protocol is all the pipeline needs. Detectors are created through
:data:`faceprint.registry.detectors` so their heavy imports happen on first use only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..errors import FaceprintError
from ..types import Face, Image

#: Images smaller than this on either side cannot hold a detectable face; detectors
#: return no faces for them instead of handing degenerate sizes to native code.
MIN_IMAGE_SIDE = 8


@runtime_checkable
class Detector(Protocol):
    """Finds faces in an RGB uint8 image; boxes are xyxy pixels, sorted by score."""

    name: str

    def detect(self, image: Image) -> list[Face]: ...

    def detect_batch(self, images: Sequence[Image]) -> list[list[Face]]: ...


def too_small(image: Image) -> bool:
    """Whether ``image`` is below :data:`MIN_IMAGE_SIDE` on either side."""
    return bool(image.shape[0] < MIN_IMAGE_SIDE or image.shape[1] < MIN_IMAGE_SIDE)


def detect_each(detector: Detector, images: Sequence[Image]) -> list[list[Face] | FaceprintError]:
    """Each image's faces from one ``detect_batch`` call (SCRFD and MTCNN batch their
    networks), or, for an image the detector refuses, its :class:`FaceprintError`: when
    the batch raises one, every image is detected alone so that only the bad one fails."""
    try:
        return list(detector.detect_batch(images))
    except FaceprintError:
        out: list[list[Face] | FaceprintError] = []
        for img in images:
            try:
                out.append(detector.detect(img))
            except FaceprintError as exc:
                out.append(exc)
        return out
