"""The detection schedule for large frames without weights: a fake detector that finds white
squares (only those at least :data:`SEEN` px across in the image it is given, as YuNet
misses small faces on a shrunken frame) shows where the detector runs, when the
full-resolution scan comes, and that boxes and landmarks come back in full-frame pixels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from numpy.typing import NDArray
from test_quality import FakeEmbedder

from faceprint.recognizer import Recognizer
from faceprint.types import Box, Face
from faceprint.video.schedule import GRID, DetectionSchedule, merge, schedule_for
from faceprint.video.stream import StreamRecognizer
from faceprint.video.tracking import ShotWatcher, Tracker, shot_changed

cv2 = pytest.importorskip("cv2")

SEEN = 20  # px: smaller squares are not found
#: landmarks as fractions of the square: eyes, nose, mouth corners
SHAPE = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]], np.float32)


class SquareDetector:
    """Faces are white squares; records the shape of every image it is given."""

    name = "squares"

    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []

    def detect(self, image: NDArray[np.uint8]) -> list[Face]:
        self.calls.append(image.shape)
        mask = (image[:, :, 0] > 127).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        out = []
        for x, y, w, h, _area in stats[1:n]:
            if min(w, h) >= SEEN:
                lm = (SHAPE * [w, h] + [x, y]).astype(np.float32)
                out.append(Face(Box(float(x), float(y), float(x + w), float(y + h)), 0.9, lm))
        return out

    def detect_batch(self, images: list[NDArray[np.uint8]]) -> list[list[Face]]:
        return [self.detect(im) for im in images]


def frame(*squares: tuple[int, int, int], size: tuple[int, int] = (1920, 1080)) -> NDArray[np.uint8]:
    """A black frame of ``size`` (w, h) with white squares ``(x, y, side)``."""
    im = np.zeros((size[1], size[0], 3), np.uint8)
    for x, y, s in squares:
        im[y : y + s, x : x + s] = 255
    return im


def expected_face(x: int, y: int, s: int) -> tuple[Box, NDArray[np.float32]]:
    return Box(x, y, x + s, y + s), (SHAPE * s + [x, y]).astype(np.float32)


def test_small_frames_take_the_old_path() -> None:
    det, sch = SquareDetector(), DetectionSchedule(scan_every=5)
    im = frame((100, 100, 30), size=(960, 540))
    for i in range(7):
        faces = sch.detect(det, im, i, [Box(100, 100, 130, 130)])
        assert len(faces) == 1
    assert det.calls == [im.shape] * 7  # the whole frame, once per frame
    assert (sch.scans, sch.downscaled, sch.regions) == (0, 0, 0)
    full = DetectionSchedule(scan_every=1)  # --scan-every 1: the whole 1080p frame every time
    big = frame((99, 99, 60))
    for i in range(3):
        full.detect(det, big, i, [])
    assert det.calls[7:] == [big.shape] * 3 and full.scans == 0


def test_scans_at_full_resolution_every_n_frames_and_after_a_reset() -> None:
    det, sch = SquareDetector(), DetectionSchedule(scan_every=4)
    im = frame()
    kinds = []
    for i in range(10):
        det.calls.clear()
        sch.detect(det, im, i, [])
        kinds.append("scan" if det.calls == [im.shape] else "down")
        if i == 5:
            sch.reset()
    assert kinds == ["scan", "down", "down", "down", "scan", "down", "scan", "down", "down", "down"]
    assert det.calls == [(360, 640, 3)]  # the downscaled pass: a 640 px copy


def test_a_large_face_is_found_on_the_copy_in_full_frame_pixels() -> None:
    det, sch = SquareDetector(), DetectionSchedule(scan_every=30)
    im = frame((300, 150, 180))
    sch.detect(det, im, 0, [])  # the scan
    (f,) = sch.detect(det, im, 1, [Box(300, 150, 480, 330)])  # too large for a region
    box, lm = expected_face(300, 150, 180)
    assert sch.regions == 0 and sch.downscaled == 1
    assert f.box.iou(box) > 0.99 and np.abs(f.landmarks - lm).max() < 1.5


def test_a_small_tracked_face_is_detected_on_a_full_resolution_region() -> None:
    det, sch = SquareDetector(), DetectionSchedule(scan_every=30)
    im = frame((1001, 603, 30), (1500, 100, 300))  # 30 px: 10 px on the copy, unseen there
    sch.detect(det, im, 0, [])
    det.calls.clear()
    faces = sch.detect(det, im, 1, [Box(998, 600, 1030, 634), Box(1500, 100, 1800, 400)])
    assert len(faces) == 2 and sch.regions == 1
    small = min(faces, key=lambda f: f.box.area)
    box, lm = expected_face(1001, 603, 30)
    assert small.box == box and np.allclose(small.landmarks, lm)  # exact: full-resolution pixels
    ((h, w, _),) = [c for c in det.calls if c != (360, 640, 3)]
    assert h >= 128 and w >= 128 and h % GRID == 0 and w % GRID == 0  # context, on the grid


def test_region_and_copy_detections_of_one_face_merge_and_cut_faces_are_dropped() -> None:
    near = [Face(Box(100, 100, 140, 140), 0.8), Face(Box(101, 101, 141, 141), 0.7)]
    far = [Face(Box(98, 99, 139, 141), 0.95), Face(Box(500, 500, 600, 600), 0.9)]
    out = merge(near, far)
    assert [f.score for f in out] == [0.9, 0.8]  # the region's detection wins for its face
    det, sch = SquareDetector(), DetectionSchedule(scan_every=30)
    # two small faces side by side: each one's region cuts into the other... they are joined
    im = frame((1000, 600, 30), (1100, 600, 30))
    sch.detect(det, im, 0, [])
    faces = sch.detect(det, im, 1, [Box(1000, 600, 1030, 630), Box(1100, 600, 1130, 630)])
    assert sch.regions == 1 and sorted(f.box.x1 for f in faces) == [1000, 1100]
    # ... and a face a region cuts through is not reported from it
    sch2 = DetectionSchedule(scan_every=30, small_face=28.0)
    im2 = frame((1000, 600, 30), (1041, 561, 201))  # a large face beside the small one
    sch2.detect(det, im2, 0, [])
    rects = sch2.region_rects([Box(1000, 600, 1030, 630)], 1920, 1080, 1 / 3)
    assert rects and rects[0][2] < 1240  # the region ends inside the large face
    faces = sch2.detect(det, im2, 1, [Box(1000, 600, 1030, 630)])
    assert sorted((f.box.x1, f.box.width) for f in faces) == [(1000, 30), (1041, 201)]


def test_the_stream_finds_a_new_small_face_within_n_frames_and_keeps_it() -> None:
    """A 30 px face (10 px on the copy) appears at frame 3, moving; with ``scan_every=8``
    the scan at frame 8 finds it, and from then on its region tracks it on every frame."""
    rec = Recognizer(detector=SquareDetector(), embedder=FakeEmbedder())  # type: ignore[arg-type]
    n = 8
    sr = StreamRecognizer(rec, None, cuts=False, schedule=DetectionSchedule(scan_every=n))
    started, seen = None, []
    for i in range(25):
        x, y = 700 + 3 * i, 400 + i
        im = frame((x, y, 30)) if i >= 3 else frame()
        res = sr.process(im, i, i / 25)
        for e in res.events:
            if e["event"] == "track_started":
                started = i
        for r in res.visible:
            box, lm = expected_face(x, y, 30)
            assert r.face.box == box and np.allclose(r.face.landmarks, lm)
            seen.append(i)
    assert started is not None and started - 3 <= n  # found by the scan, confirmed next frame
    assert seen == list(range(started, 25))  # never lost: its region follows it


def test_the_schedule_is_used_only_with_the_detectors_it_was_measured_with() -> None:
    assert schedule_for("yunet", 12) == DetectionSchedule(scan_every=12)
    assert schedule_for("hog") is None and schedule_for("squares") is None
    with pytest.raises(ValueError):
        DetectionSchedule(scan_every=0)


def test_tracker_expected_is_the_next_prediction_and_changes_nothing() -> None:
    t = Tracker()
    for i in range(5):
        t.update([Face(Box(100 + 10 * i, 50, 150 + 10 * i, 100), 0.9)])
    t.update([Face(Box(900, 900, 920, 920), 0.9)])  # a tentative one is expected too
    before = t.expected()
    assert before == t.expected() and len(before) == 2
    upd = t.predict()
    assert [tr.box for tr in upd.tracks] == before[:1]


def test_shot_watcher_agrees_with_shot_changed() -> None:
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (90, 160, 3), dtype=np.uint8) for _ in range(3)]
    smooth = np.tile(np.linspace(0, 255, 160, dtype=np.uint8)[None, :, None], (90, 1, 3))
    seq = [smooth, smooth, smooth[:, ::-1].copy(), frames[0], frames[1], frames[2][:80], frames[2]]
    w = ShotWatcher()
    got = [w(im) for im in seq]
    assert got == [False] + [shot_changed(a, b) for a, b in itertools.pairwise(seq)]
