"""Where a stream's detector looks at full resolution: a detection schedule for large frames.

Why: YuNet's cost follows the pixels it is given (on the 2-core bench machine, with ONNX
Runtime, 44 ms for a 1920x1080 frame and 6 ms for 640x360), so detecting on every full
frame held ``faceprint watch`` to 18 fps on the 1080p crowd clip (README's video table),
where decoding a frame takes about 4 ms. Most faces a tracker can use are large enough to
be found on a downscaled frame; only small ones need the full resolution, and those are
either already tracked (so we know where they are) or new. So on a detector frame of a
large frame (long side above :data:`LARGE_SIDE`):

* **a downscaled pass** runs on the whole frame shrunk to a long side of :data:`SIDE` px;
* **regions**: each live track (tentative ones included, so a face a scan found can be
  confirmed) whose expected box (:meth:`.tracking.Tracker.expected`) is under
  :data:`SMALL_FACE` px in the downscaled frame is detected again on a crop of the
  *full-resolution* frame around it: the box grown by :data:`PAD` of its size on each side,
  to at least :data:`MIN_REGION` px, its edges on YuNet's :data:`GRID`; overlapping crops
  are joined into one;
* **a full-resolution scan** of the whole frame replaces both at least every
  ``scan_every`` video frames (:data:`SCAN_EVERY`), on the first detector frame of a
  stream, and on the first one after :meth:`DetectionSchedule.reset` (a shot cut: every
  face of a new shot is new).

**The guarantee.** A face that full-frame detection finds is found within ``scan_every``
frames of appearing (``scan_every + detect_every - 1`` when ``scan_every`` is not a
multiple of ``detect_every``), however small: within 30 frames, 1 s at 30 fps, by default.
Once found it has a track, and the track keeps a full-resolution region for as long as its
face is small. A face large enough for the downscaled pass (:data:`SMALL_FACE` px there,
84 px in a 1080p frame) is found on the next detector frame, as before. The cost: a scan
frame takes as long as every frame did before (44 ms of detection at 1080p), so a live
source drops a few frames at each scan instead of many frames all the time.

Every box and landmark the schedule returns is in the full frame's pixels (xyxy boxes,
std5 landmarks, each axis mapped back by its own factor as YuNet does), so alignment and
embedding crop from the full-resolution frame and keep its detail. Detections of one face
from a region and from the downscaled pass are merged by IoU (:data:`MERGE_IOU`, YuNet's
own NMS threshold): the region's wins, since it saw the face at full resolution.

Measured on the 1080p crowd clip, against full-frame YuNet (score >= 0.3) on every 4th
frame:

* at a long side of 640 px YuNet still finds every face of 80 px or more, but only 92% of
  the 60-80 px ones, 87% of 50-60 px, 72% of 30-35 px; so a track's face under 84 px
  (28 px on the copy) gets a region;
* on regions, every face under 84 px that full-frame detection scores >= 0.6 is found
  again (IoU > 0.5), and 64% of the weak ones (0.3-0.6), when the crop is at least 128 px
  and its edges are on the 32 px grid; crops as large but placed anywhere found 97% and
  47% (YuNet is not shift-invariant: on the grid its coarsest features see the face as
  the full frame does). The tracker's second stage uses weak detections to bridge a miss.
  96 px crops found as many, but where two faces overlap they lost one that the full
  frame kept, and a track jumped to the other face (frame 29 of the clip).

End to end (bench/video.py) the crowd clip keeps the tracks of full-frame detection: the
same five people tracked through all 105 frames, as many lasting tracks, nobody named.
Frames whose long side is at most :data:`LARGE_SIDE` (the 640x360 Hamilton clip, not
720p) take the old path unchanged: one ``detector.detect(frame)`` per detector frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from ..types import Box, Face, Image

if TYPE_CHECKING:
    from ..detection import Detector

#: Frames whose long side is at most this many pixels are detected whole, as before.
LARGE_SIDE = 960
#: Long side (px) of the downscaled frame of the downscaled pass.
SIDE = 640
#: A track whose expected box (its longer side) is under this many pixels in the
#: downscaled frame is detected on a full-resolution region (module doc).
SMALL_FACE = 28.0
#: A region is the expected box grown by this fraction of its longer side on each side.
PAD = 0.5
#: A region is at least this many pixels wide and tall (where the frame allows): YuNet
#: needs context around a small face (measured below).
MIN_REGION = 128
#: Regions start and end on this grid of the frame's pixels: YuNet's coarsest stride.
GRID = 32
#: Video frames between full-resolution scans of the whole frame (the guarantee's N).
SCAN_EVERY = 30
#: Two detections overlapping at least this much (IoU) are one face.
MERGE_IOU = 0.3
#: A region's detection this close (px) to a side of the crop that is not the frame's edge
#: is a face cut by the crop; the downscaled pass or the region of that face sees it whole.
_EDGE = 2.0

#: Names of the detectors the schedule is used with by default: those whose accuracy on the
#: downscaled frame was measured (module doc). HOG, for one, finds no face under 80 px,
#: which is 240 px in a 1080p frame shrunk to 640.
SCHEDULED_DETECTORS = frozenset({"yunet"})


@dataclass
class DetectionSchedule:
    """Decides, per detector frame, where the detector runs (module doc); holds only the
    frame of the last full-resolution scan, and counters of what ran (for benchmarks)."""

    scan_every: int = SCAN_EVERY
    side: int = SIDE
    large_side: int = LARGE_SIDE
    small_face: float = SMALL_FACE
    pad: float = PAD
    merge_iou: float = MERGE_IOU
    scans: int = field(default=0, init=False)
    downscaled: int = field(default=0, init=False)
    regions: int = field(default=0, init=False)
    _last_scan: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.scan_every < 1:
            raise ValueError(f"scan_every: expected at least 1, got {self.scan_every}")
        if not 0 < self.side <= self.large_side:
            raise ValueError(f"expected 0 < side <= large_side, got {self.side} and {self.large_side}")

    def reset(self) -> None:
        """Scan the next detector frame at full resolution (a new shot: every face is new)."""
        self._last_scan = None

    def detect(self, detector: Detector, image: Image, frame: int, expected: Sequence[Box]) -> list[Face]:
        """Faces in the RGB frame ``image`` (highest score first, full-frame pixels), found
        where the schedule says. ``frame`` counts the stream's frames (any increasing
        count); ``expected`` are the boxes where live tracks are expected in this frame
        (:meth:`.tracking.Tracker.expected`), xyxy pixels of ``image``."""
        h, w = image.shape[:2]
        if max(h, w) <= self.large_side or self.scan_every == 1:
            return detector.detect(image)
        if self._last_scan is None or frame - self._last_scan >= self.scan_every:
            self._last_scan = frame
            self.scans += 1
            return detector.detect(image)
        scale = self.side / max(h, w)
        far = self._downscaled(detector, image, scale)
        near: list[Face] = []
        for rect in self.region_rects(expected, w, h, scale):
            near += _in_region(detector, image, rect)
            self.regions += 1
        return merge(near, far, self.merge_iou)

    def region_rects(
        self, expected: Sequence[Box], width: int, height: int, scale: float
    ) -> list[tuple[int, int, int, int]]:
        """Integer ``(x1, y1, x2, y2)`` crops of a ``width`` x ``height`` frame around the
        ``expected`` boxes too small for the downscaled pass at ``scale``; overlapping
        crops joined, so no pixel is detected twice."""
        rects: list[tuple[int, int, int, int]] = []
        for b in expected:
            side = max(b.width, b.height)
            if side * scale >= self.small_face:
                continue
            p = max(self.pad * side, (MIN_REGION - side) / 2)
            x1, y1 = _on_grid(b.x1 - p, False, width), _on_grid(b.y1 - p, False, height)
            x2, y2 = _on_grid(b.x2 + p, True, width), _on_grid(b.y2 + p, True, height)
            if x2 > x1 and y2 > y1:
                rects.append((x1, y1, x2, y2))
        return _join(rects)

    def _downscaled(self, detector: Detector, image: Image, scale: float) -> list[Face]:
        import cv2

        h, w = image.shape[:2]
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        self.downscaled += 1
        return [_mapped(f, w / size[0], h / size[1], 0.0, 0.0) for f in detector.detect(small)]


def _on_grid(v: float, up: bool, limit: int) -> int:
    """``v`` rounded down (or ``up``) to a multiple of :data:`GRID`, within ``[0, limit]``."""
    g = (math.ceil(v / GRID) if up else math.floor(v / GRID)) * GRID
    return min(max(g, 0), limit)


def _in_region(detector: Detector, image: Image, rect: tuple[int, int, int, int]) -> list[Face]:
    """Faces in the full-resolution crop ``rect`` of ``image``, in ``image``'s pixels; a face
    cut by a side of the crop inside the frame is left out (see :data:`_EDGE`)."""
    x1, y1, x2, y2 = rect
    h, w = image.shape[:2]
    out = []
    for f in detector.detect(image[y1:y2, x1:x2]):
        b = f.box
        cut = (
            (x1 > 0 and b.x1 < _EDGE)
            or (y1 > 0 and b.y1 < _EDGE)
            or (x2 < w and b.x2 > x2 - x1 - _EDGE)
            or (y2 < h and b.y2 > y2 - y1 - _EDGE)
        )
        if not cut:
            out.append(_mapped(f, 1.0, 1.0, float(x1), float(y1)))
    return out


def _mapped(face: Face, sx: float, sy: float, ox: float, oy: float) -> Face:
    """``face`` (found in an image scaled by ``1/sx, 1/sy`` and cropped at ``ox, oy``) in
    the full frame's pixels: box and landmarks."""
    b = face.box
    box = Box(b.x1 * sx + ox, b.y1 * sy + oy, b.x2 * sx + ox, b.y2 * sy + oy)
    lm = face.landmarks
    if lm is not None:
        lm = (np.asarray(lm, np.float64) * [sx, sy] + [ox, oy]).astype(np.float32)
    return replace(face, box=box, landmarks=lm)


def merge(near: Sequence[Face], far: Sequence[Face], iou: float = MERGE_IOU) -> list[Face]:
    """One detection per face, highest score first: ``near`` (full-resolution regions)
    after non-maximum suppression among themselves by score, then each of ``far`` (the
    downscaled pass) that overlaps none of those by ``iou`` or more (module doc)."""
    kept: list[Face] = []
    for f in sorted(near, key=lambda f: -f.score):
        if all(f.box.iou(k.box) < iou for k in kept):
            kept.append(f)
    out = kept + [f for f in far if all(f.box.iou(k.box) < iou for k in kept)]
    out.sort(key=lambda f: -f.score)
    return out


def _join(rects: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """``rects`` with every group of overlapping ones replaced by their bounding box."""
    out = list(rects)
    joined = True
    while joined:
        joined = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    out[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del out[j]
                    joined = True
                    break
            if joined:
                break
    return out


def schedule_for(detector_name: str, scan_every: int = SCAN_EVERY) -> DetectionSchedule | None:
    """The schedule a stream uses with the detector ``detector_name``: one for the
    :data:`SCHEDULED_DETECTORS`, ``None`` (every detector frame whole) for the others."""
    return DetectionSchedule(scan_every=scan_every) if detector_name in SCHEDULED_DETECTORS else None
