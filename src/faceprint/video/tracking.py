"""Face tracking across video frames: SORT's Kalman filter with ByteTrack's two-stage matching.

Why: recognising every face in every frame is slow and noisy. A tracker ties the
detections of one face across frames to one id, so the video pipeline embeds a track now
and then and votes across its frames, and the detector can run only every N-th frame.

Conventions

* Boxes are xyxy float pixels (:class:`faceprint.types.Box`). The tracker knows nothing of
  the image size: a coasting box may leave the image; clip it when drawing.
* Frames are counted by calls: each :meth:`Tracker.update` (a frame the detector ran on)
  and each :meth:`Tracker.predict` (a frame it skipped) is one frame;
  :attr:`Tracker.frame` is the number of frames so far, so during the k-th call it is k,
  and ``first_frame`` / ``last_frame`` use that count.
* ``max_age``, ``min_hits`` and ``misses`` count **detector frames** (``update`` calls)
  only. A frame the detector skipped is not evidence that a face left, so with
  ``detect_every=N`` a track survives ``max_age`` failed detections (about ``N * max_age``
  video frames), whatever N is. ``age`` counts every frame.

Motion model: a constant-velocity Kalman filter on ``(cx, cy, w, h)`` with their
velocities (8 states), with noise proportional to the box size as in DeepSORT, so small
and large faces behave alike. This rather than SORT's ``(cx, cy, area, aspect)``: width
and height move linearly when a face approaches the camera, and clamping them keeps every
box with a positive size (SORT's area can go negative and needs a special case). It
predicts every frame, including the frames :meth:`Tracker.predict` skips, so velocities
are per frame.

Association (ByteTrack): detections with ``score >= high_score`` are matched first to
every live track by IoU with the tracks' predicted boxes (optimal assignment, see
:mod:`.assignment`), gated by ``iou_threshold``; then detections with
``low_score <= score < high_score`` are matched to the confirmed tracks still unmatched, with a stricter gate
(``low_iou_threshold``), since a weak detection is kept only where a face is expected: a
half-turned or blurred face keeps its track alive, but a weak detection never starts a
track. Unmatched high-score detections start tentative tracks, except duplicates: a
detection that covers, or is covered by, more than :data:`DUPLICATE_OVERLAP` of a matched
or stronger detection of the same frame is a second box on one face (YuNet put one on
Miranda's forehead beside his face box at frames 152-154 of the Hamilton clip, IoU only
0.22-0.26 but 62-70% of the smaller box inside the other), not a new face, since a face
hidden that much is not detected. A tentative track becomes
confirmed after ``min_hits`` hits in a row (or at once during the tracker's first
``min_hits`` detector frames, as SORT does, so a stream's first faces show without delay;
:meth:`Tracker.close` does not restart that grace) and is dropped silently if it misses
before that. A confirmed track coasts on its prediction when unmatched (keeping its last
size, as ByteTrack freezes the height of lost tracks, since growth extrapolated over many
frames gives absurd boxes) and is retired after more than ``max_age`` consecutive misses.

Ids: a track gets its id when it is confirmed, so ids are 1, 2, 3, ... without gaps left
by one-frame false positives; ids are never reused, and a retired track never comes back
(the same face seen again later gets a new id).

Crossing faces: matching uses predicted boxes, so two faces that cross keep their ids when
their boxes stay distinct, even if they overlap for a while. In a frame where two visible
boxes coincide (to within the detector's jitter) the two detections are interchangeable
and may be handed either way for that frame; the ids are right again once the boxes part,
since the predictions part. When one face hides the other completely, the detector sees
one face: the nearest prediction takes it, the hidden face coasts on its velocity and
keeps its id if it reappears where its motion leads (the unit tests cross two equal boxes
head-on, visible or hidden, without a swap). A face that stops or turns while hidden
reappears away from its prediction and gets a new id, while its old track coasts on and is
retired. Ids can swap only when each face lands where the other's motion leads; there is
no appearance model here, and the pipeline's per-track voting is where identities are
checked.

Shot cuts: boxes alone cannot tell a cut from motion. On the Hamilton clip a face of the
new shot overlapped one of the old shot with IoU 0.45, and a Mahalanobis gate on the
Kalman prediction (DeepSORT's) could not separate the cuts (squared distances 21 and 47)
from a fast pan of the same clip (37), so there is no motion gate. :func:`shot_changed`
compares frames; call :meth:`Tracker.close` when it fires, and the new shot's faces get
new ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from ..types import Box, Face, Image
from .assignment import iou_matrix, match_by_iou

Vector = NDArray[np.float64]

_POS_STD = 1.0 / 20.0  # position noise, relative to the box size (DeepSORT's weights)
_VEL_STD = 1.0 / 160.0  # velocity noise, relative to the box size
SHOT_CHANGE_THRESHOLD = 18.0  # grey levels; see shot_changed
#: An unmatched detection sharing more than this fraction of the smaller box's area with a
#: matched or stronger detection of the same frame starts no track (module doc).
DUPLICATE_OVERLAP = 0.5
_MIN_SIZE = 1.0  # pixels: predicted widths and heights never shrink below this
_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_H = np.eye(4, 8)


class _Kalman:
    """Constant-velocity Kalman filter of one box: state ``(cx, cy, w, h, vcx, vcy, vw, vh)``."""

    def __init__(self, z: Vector) -> None:
        size = np.array([z[2], z[3], z[2], z[3]])
        self.x = np.concatenate([z, np.zeros(4)])
        self.p = np.diag(np.concatenate([2 * _POS_STD * size, 10 * _VEL_STD * size]) ** 2)

    def predict(self) -> None:
        size = np.array([self.x[2], self.x[3], self.x[2], self.x[3]])
        q = np.diag(np.concatenate([_POS_STD * size, _VEL_STD * size]) ** 2)
        self.x = _F @ self.x
        self.p = _F @ self.p @ _F.T + q
        for k in (2, 3):  # a shrinking box stops shrinking instead of turning inside out
            if self.x[k] < _MIN_SIZE:
                self.x[k] = _MIN_SIZE
                self.x[k + 4] = max(self.x[k + 4], 0.0)

    def update(self, z: Vector) -> None:
        size = np.array([self.x[2], self.x[3], self.x[2], self.x[3]])
        s = _H @ self.p @ _H.T + np.diag((_POS_STD * size) ** 2)
        gain = np.linalg.solve(s, _H @ self.p).T  # P H^T S^-1 (S and P are symmetric)
        self.x = self.x + gain @ (z - _H @ self.x)
        self.p = self.p - gain @ _H @ self.p
        self.p = (self.p + self.p.T) / 2
        self.x[2:4] = np.maximum(self.x[2:4], _MIN_SIZE)

    def hold_size(self) -> None:
        """Stop the size from changing: a missed face gives no evidence of zooming, and
        growth or shrinkage extrapolated over many frames gives absurd boxes."""
        self.x[6:8] = 0.0

    def box(self) -> Box:
        cx, cy, w, h = (float(v) for v in self.x[:4])
        return Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def _measure(box: Box) -> Vector:
    cx, cy = box.center
    return np.array([cx, cy, max(box.width, _MIN_SIZE), max(box.height, _MIN_SIZE)])


@dataclass
class Track:
    """One face followed across frames. The tracker hands out copies, so keeping or changing
    one never affects tracking.

    ``box`` is the matched detection's box when ``face`` is set, else the motion model's
    prediction; ``face`` is the detection matched this frame (with ``track_id`` set), None
    when the track coasts or the frame came from :meth:`Tracker.predict`. ``hits`` counts
    matched frames, ``misses`` consecutive detector frames without a match, ``age`` frames
    (of any kind) since ``first_frame``; frame numbers are :attr:`Tracker.frame` values.
    """

    id: int
    box: Box
    score: float
    face: Face | None
    hits: int
    age: int
    misses: int
    confirmed: bool
    first_frame: int
    last_frame: int


@dataclass(frozen=True)
class TrackUpdate:
    """What one frame changed: the confirmed live tracks (matched or coasting, by id), the
    tracks confirmed this frame, and the confirmed tracks retired this frame."""

    tracks: list[Track] = field(default_factory=list)
    started: list[Track] = field(default_factory=list)
    ended: list[Track] = field(default_factory=list)

    @property
    def faces(self) -> list[Face]:
        """The faces detected this frame that belong to confirmed tracks, ``track_id`` set."""
        return [t.face for t in self.tracks if t.face is not None]


@dataclass
class _Live:
    track: Track
    kalman: _Kalman
    order: int  # creation order: ids are handed out in it when several confirm at once


class Tracker:
    """Multi-face tracker (see the module docstring for the method and its conventions).

    ``iou_threshold`` gates the high-score stage, ``low_iou_threshold`` (never below
    ``iou_threshold``) the low-score stage; detections under ``low_score`` are ignored.
    """

    def __init__(
        self,
        *,
        iou_threshold: float = 0.3,
        max_age: int = 30,
        min_hits: int = 2,
        high_score: float = 0.6,
        low_score: float = 0.1,
        low_iou_threshold: float = 0.5,
    ) -> None:
        if not 0.0 < iou_threshold <= 1.0 or not 0.0 < low_iou_threshold <= 1.0:
            raise ValueError(
                f"expected IoU thresholds in (0, 1], found {iou_threshold} and {low_iou_threshold}"
            )
        if max_age < 0 or min_hits < 0:
            raise ValueError(f"expected max_age >= 0 and min_hits >= 0, found {max_age} and {min_hits}")
        if not low_score <= high_score:
            raise ValueError(f"expected low_score <= high_score, found {low_score} > {high_score}")
        self.iou_threshold = iou_threshold
        self.low_iou_threshold = max(low_iou_threshold, iou_threshold)
        self.max_age = max_age
        self.min_hits = min_hits
        self.high_score = high_score
        self.low_score = low_score
        self._frame = 0
        self._detector_frames = 0
        self._next_id = 1
        self._created = 0
        self._live: list[_Live] = []

    @property
    def frame(self) -> int:
        """Frames seen so far (``update`` and ``predict`` calls)."""
        return self._frame

    def update(self, faces: Sequence[Face]) -> TrackUpdate:
        """Track one frame on which the detector ran; ``faces`` may be empty."""
        self._frame += 1
        self._detector_frames += 1
        self._advance()
        high = [f for f in faces if f.score >= self.high_score]
        low = [f for f in faces if self.low_score <= f.score < self.high_score]

        matched: dict[int, Face] = {}  # index in self._live -> its detection
        pairs = self._match(list(range(len(self._live))), high, self.iou_threshold)
        matched.update({ti: high[di] for ti, di in pairs})
        taken = {di for _, di in pairs}
        rest = [i for i, lv in enumerate(self._live) if i not in matched and lv.track.confirmed]
        matched.update({ti: low[di] for ti, di in self._match(rest, low, self.low_iou_threshold)})

        survivors: list[_Live] = []
        ended: list[Track] = []
        for i, lv in enumerate(self._live):
            t = lv.track
            face = matched.get(i)
            if face is not None:
                lv.kalman.update(_measure(face.box))
                t.box, t.score, t.face = face.box, float(face.score), face
                t.hits += 1
                t.misses = 0
                t.last_frame = self._frame
            else:
                t.misses += 1
                lv.kalman.hold_size()
                if not t.confirmed:
                    continue  # a tentative track that misses was a false positive
                if t.misses > self.max_age:
                    ended.append(self._snapshot(t))
                    continue
            survivors.append(lv)
        seen = list(matched.values())
        for di, face in sorted(enumerate(high), key=lambda t: -t[1].score):
            if di not in taken and not any(overlap(face.box, f.box) > DUPLICATE_OVERLAP for f in seen):
                survivors.append(self._start(face))
                seen.append(face)
        self._live = survivors

        started: list[Track] = []
        warming_up = self._detector_frames <= self.min_hits
        for lv in sorted(self._live, key=lambda lv: lv.order):
            t = lv.track
            if not t.confirmed and (t.hits >= self.min_hits or warming_up):
                t.confirmed = True
                t.id = self._next_id
                self._next_id += 1
                started.append(self._snapshot(t))
        return TrackUpdate(tracks=self._confirmed(), started=started, ended=ended)

    def expected(self) -> list[Box]:
        """Where every live track, tentative ones included, is expected on the next frame:
        the motion model's prediction one frame ahead, xyxy pixels; nothing changes.

        Why: a detector that looks only where faces can be (:mod:`.schedule`) must look
        where the next :meth:`update` will match them, and a tentative track must be seen
        again to be confirmed."""
        out = []
        for lv in self._live:
            cx, cy, w, h = (float(v) for v in (_F @ lv.kalman.x)[:4])
            w, h = max(w, _MIN_SIZE), max(h, _MIN_SIZE)
            out.append(Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        return out

    def predict(self) -> TrackUpdate:
        """Advance one frame on which the detector did not run (detect every N frames).

        Boxes move along their velocities; ``age`` grows, ``misses`` does not (see the module
        docstring), so no track starts or ends here; every ``face`` is None.
        """
        self._frame += 1
        self._advance()
        return TrackUpdate(tracks=self._confirmed())

    def close(self) -> list[Track]:
        """End of stream (or of a shot, see :func:`shot_changed`): every confirmed live
        track, ended; tentative ones are dropped.

        The tracker is empty afterwards and may go on, with new ids that never repeat old ones.
        """
        ended = [self._snapshot(lv.track) for lv in self._live if lv.track.confirmed]
        self._live = []
        return sorted(ended, key=lambda t: t.id)

    # -- internals ---------------------------------------------------------------------------

    def _advance(self) -> None:
        """One frame of motion for every live track: predicted box, no face, one frame older."""
        for lv in self._live:
            lv.kalman.predict()
            lv.track.box = lv.kalman.box()
            lv.track.face = None
            lv.track.age = self._frame - lv.track.first_frame

    def _match(self, rows: list[int], faces: list[Face], threshold: float) -> list[tuple[int, int]]:
        """``(live index, face index)`` pairs of the optimal IoU assignment of ``faces`` to the
        predicted boxes of the live tracks ``rows``."""
        if not rows or not faces:
            return []
        tracks = np.array([_xyxy(self._live[i].track.box) for i in rows])
        dets = np.array([_xyxy(f.box) for f in faces])
        return [(rows[r], c) for r, c in match_by_iou(iou_matrix(tracks, dets), threshold)]

    def _start(self, face: Face) -> _Live:
        self._created += 1
        track = Track(
            id=0,  # tentative: the id comes with confirmation
            box=face.box,
            score=float(face.score),
            face=face,
            hits=1,
            age=0,
            misses=0,
            confirmed=False,
            first_frame=self._frame,
            last_frame=self._frame,
        )
        return _Live(track, _Kalman(_measure(face.box)), self._created)

    def _confirmed(self) -> list[Track]:
        tracks = [self._snapshot(lv.track) for lv in self._live if lv.track.confirmed]
        return sorted(tracks, key=lambda t: t.id)

    @staticmethod
    def _snapshot(t: Track) -> Track:
        face = replace(t.face, track_id=t.id) if t.face is not None else None
        return replace(t, face=face)


def shot_changed(previous: Image, current: Image, threshold: float = SHOT_CHANGE_THRESHOLD) -> bool:
    """Whether ``current`` starts a new shot after ``previous`` (``(H, W, 3)`` uint8 frames).

    Why: the tracker sees only boxes, so at a hard cut a face of the new shot that lands on
    a face of the old one inherits its track (and its votes). Call :meth:`Tracker.close`
    when this returns True. The measure is the mean absolute difference of the two frames'
    grey levels averaged over a 32 x 18 grid of blocks, so motion within a block barely
    counts and a whole-picture change does. ``threshold`` is in grey levels (0..255): on the
    test clips hard cuts gave 25 to 29, camera pans and moving people at most 12.4. Frames
    of different sizes count as a change (a new source). Fades and flashes are not handled.
    """
    if previous.shape != current.shape:
        return True
    a, b = _thumbnail(previous), _thumbnail(current)
    return bool(np.abs(a - b).mean() > threshold)


class ShotWatcher:
    """:func:`shot_changed` over a stream of frames, with each frame's thumbnail computed
    once instead of twice (it costs about 1.5 ms at 1080p: 5% of a 30 fps frame budget)."""

    def __init__(self, threshold: float = SHOT_CHANGE_THRESHOLD) -> None:
        self.threshold = threshold
        self._prev: tuple[tuple[int, ...], Vector] | None = None

    def __call__(self, image: Image) -> bool:
        """Whether ``image`` starts a new shot after the previous frame given (False for the
        first); the same answer as ``shot_changed(previous, image)``."""
        cur = (tuple(image.shape), _thumbnail(image))
        prev, self._prev = self._prev, cur
        if prev is None:
            return False
        return prev[0] != cur[0] or bool(np.abs(prev[1] - cur[1]).mean() > self.threshold)


def _thumbnail(image: Image, cols: int = 32, rows: int = 18) -> Vector:
    """Mean grey level of each block of a ``cols`` x ``rows`` grid. OpenCV's area
    resampling averages the blocks without converting the whole frame to float (a 1080p
    frame costs ~1 ms instead of ~15)."""
    import cv2

    h, w = image.shape[:2]
    rows, cols = max(1, min(rows, h)), max(1, min(cols, w))
    small = cv2.resize(np.ascontiguousarray(image), (cols, rows), interpolation=cv2.INTER_AREA)
    blocks: Vector = small.astype(np.float64).mean(axis=2) if small.ndim == 3 else small.astype(np.float64)
    return blocks


def overlap(a: Box, b: Box) -> float:
    """Intersection of the xyxy boxes ``a`` and ``b`` over the smaller one's area (1 when
    one holds the other, whatever their sizes; IoU would be small then); 0 for empty boxes."""
    w = min(a.x2, b.x2) - max(a.x1, b.x1)
    h = min(a.y2, b.y2) - max(a.y1, b.y1)
    smaller = min(a.area, b.area)
    return max(0.0, w) * max(0.0, h) / smaller if smaller > 0 else 0.0


def _xyxy(box: Box) -> tuple[float, float, float, float]:
    return (box.x1, box.y1, box.x2, box.y2)
