"""The detection schedule for large frames with the real YuNet: a small face pasted into a
1080p frame (an LFW face shrunk to 30 px, which YuNet finds at full resolution but not on
the 640 px copy) is found by the full-resolution scan within ``scan_every`` frames and then
kept by its full-resolution region, with boxes and landmarks in the frame's pixels; a large
one is found on the copy and mapped back; small frames take the old path unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from conftest import LFW, MODELS, SHARED, need
from faceprint.detection.yunet import YuNetDetector
from faceprint.io import load_image
from faceprint.recognizer import Recognizer
from faceprint.types import Face
from faceprint.video.schedule import DetectionSchedule
from faceprint.video.stream import StreamRecognizer
from faceprint.video.tracking import Tracker

cv2 = pytest.importorskip("cv2")

HAMILTON = SHARED / "data" / "video" / "short_hamilton_clip.mp4"
PHOTO = LFW / "Aaron_Sorkin" / "Aaron_Sorkin_0001.jpg"


@pytest.fixture(scope="module")
def detector() -> YuNetDetector:
    model = need(MODELS / "face_detection_yunet_2023mar.onnx")
    return YuNetDetector(score_threshold=0.3, model_path=str(model))


@pytest.fixture(scope="module")
def photo(detector: YuNetDetector) -> tuple[NDArray[np.uint8], Face]:
    """The LFW photo and its face as YuNet finds it (the truth to map back to)."""
    im = load_image(need(PHOTO))
    return im, max(detector.detect(im), key=lambda f: f.score)


def pasted(
    photo: tuple[NDArray[np.uint8], Face], face_px: float, x: int, y: int
) -> tuple[NDArray[np.uint8], Face]:
    """A 1920x1080 grey frame with the photo shrunk so that its face is ``face_px`` tall,
    its top left corner at ``x, y``; and where its face is, in the frame's pixels (the
    photo's detection scaled and shifted)."""
    im, f = photo
    s = face_px / f.box.height
    small = cv2.resize(im, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    frame = np.full((1080, 1920, 3), 110, np.uint8)
    frame[y : y + small.shape[0], x : x + small.shape[1]] = small
    sx, sy = small.shape[1] / im.shape[1], small.shape[0] / im.shape[0]
    assert f.landmarks is not None
    lm = (f.landmarks * [sx, sy] + [x, y]).astype(np.float32)
    b = f.box
    box = type(b)(b.x1 * sx + x, b.y1 * sy + y, b.x2 * sx + x, b.y2 * sy + y)
    return frame, Face(box, f.score, lm)


def test_a_new_small_face_is_found_within_n_frames_and_kept_at_full_resolution(
    detector: YuNetDetector, photo: tuple[NDArray[np.uint8], Face]
) -> None:
    n, appears = 8, 3
    rec = Recognizer(detector=detector, embedder="dlib-onnx")
    sr = StreamRecognizer(rec, None, cuts=False, schedule=DetectionSchedule(scan_every=n))
    started, seen = None, []
    for i in range(24):
        if i < appears:
            im = np.full((1080, 1920, 3), 110, np.uint8)
        else:
            im, truth = pasted(photo, 30, 1201 + 3 * i, 517 + i)  # moving right and down
            if i == appears:  # what makes the scan necessary: on the 640 px copy, no face
                copy = DetectionSchedule()._downscaled(detector, im, 1 / 3)  # that can start a track
                assert all(f.score < Tracker().high_score for f in copy)
        res = sr.process(im, i, i / 25)
        started = next((i for e in res.events if e["event"] == "track_started"), started)
        for r in res.visible:
            seen.append(i)
            f = r.face
            assert f.landmarks is not None
            (full,) = detector.detect(im)  # the whole frame at full resolution
            assert full.landmarks is not None
            # the region saw what the full frame shows (measured: IoU >= 0.94, landmarks within 1.5 px)
            assert f.box.iou(full.box) > 0.9 and np.abs(f.landmarks - full.landmarks).max() < 2.0
            # and where the face was pasted (measured: IoU >= 0.85, landmarks within 2.9 px)
            assert f.box.iou(truth.box) > 0.8
            assert np.abs(f.landmarks - truth.landmarks).max() < 0.15 * truth.box.height
    assert started is not None and started - appears <= n  # the scan, then one frame to confirm
    assert seen == list(range(started, 24))  # never lost after: its region follows it
    assert sr.schedule is not None and sr.schedule.regions >= 24 - started - 3


def test_a_large_face_is_found_on_the_downscaled_frame_in_full_frame_pixels(
    detector: YuNetDetector, photo: tuple[NDArray[np.uint8], Face]
) -> None:
    im, truth = pasted(photo, 150, 700, 300)
    sch = DetectionSchedule(scan_every=30)
    (scan,) = sch.detect(detector, im, 0, [])
    (f,) = sch.detect(detector, im, 1, [truth.box])  # 150 px: no region, the copy's face
    assert sch.downscaled == 1 and sch.regions == 0
    assert f.landmarks is not None and scan.landmarks is not None and truth.landmarks is not None
    assert f.box.iou(scan.box) > 0.85 and f.box.iou(truth.box) > 0.8
    assert np.abs(f.landmarks - scan.landmarks).max() < 0.05 * 150
    assert np.abs(f.landmarks - truth.landmarks).max() < 0.08 * 150


def test_small_frames_take_the_old_path_exactly(detector: YuNetDetector) -> None:
    cap = cv2.VideoCapture(str(need(HAMILTON)))
    frames = []
    for _ in range(40):
        ok, bgr = cap.read()
        assert ok
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    sch = DetectionSchedule(scan_every=3)
    for i, im in enumerate(frames[::4]):
        got, old = sch.detect(detector, im, i, [f.box for f in detector.detect(im)]), detector.detect(im)
        assert [(f.box, f.score) for f in got] == [(f.box, f.score) for f in old]
        assert all(np.array_equal(a.landmarks, b.landmarks) for a, b in zip(got, old, strict=True))
    assert (sch.scans, sch.downscaled, sch.regions) == (0, 0, 0)
