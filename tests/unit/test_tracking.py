"""The face tracker on synthetic detections: motion, ByteTrack's two stages, confirmation,
retirement, detect-every-N, ids, and the Hungarian solver against brute force."""

from __future__ import annotations

import itertools
import time
from collections import Counter

import numpy as np
import pytest

from faceprint.types import Box, Face
from faceprint.video.assignment import iou_matrix, linear_sum_assignment, match_by_iou
from faceprint.video.tracking import Track, Tracker, TrackUpdate, shot_changed


def face(x: float, y: float, size: float = 50.0, score: float = 0.9) -> Face:
    return Face(Box(x, y, x + size, y + size), score)


def ids_of(update: TrackUpdate) -> list[int]:
    return [t.id for t in update.tracks]


def matched_id(update: TrackUpdate, det: Face) -> int | None:
    """The id of the confirmed track whose detection this frame is ``det``."""
    hits = [t.id for t in update.tracks if t.face is not None and t.face.box == det.box]
    assert len(hits) <= 1
    return hits[0] if hits else None


# -- assignment ---------------------------------------------------------------------------------


def brute_force_min(cost: np.ndarray) -> float:
    n, m = cost.shape
    if n <= m:
        return min(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
    return brute_force_min(cost.T)


@pytest.mark.parametrize("seed", range(40))
def test_hungarian_is_optimal_against_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = rng.integers(1, 7, size=2)
    # integers make ties common (several optima); floats exercise the general case
    cost = rng.integers(0, 5, size=(n, m)).astype(float) if seed % 2 else rng.random((n, m))
    rows, cols = linear_sum_assignment(cost)
    assert len(rows) == len(cols) == min(n, m)
    assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
    assert list(rows) == sorted(rows)
    assert cost[rows, cols].sum() == pytest.approx(brute_force_min(cost))


def test_hungarian_edge_cases() -> None:
    rows, cols = linear_sum_assignment(np.zeros((0, 3)))
    assert rows.size == cols.size == 0
    rows, cols = linear_sum_assignment(np.array([[5.0]]))
    assert (rows.tolist(), cols.tolist()) == ([0], [0])
    rows, cols = linear_sum_assignment(np.array([[-1.0, -10.0], [-2.0, -3.0]]))
    assert cols.tolist() == [1, 0]
    with pytest.raises(ValueError, match="finite"):
        linear_sum_assignment(np.array([[np.inf, 1.0]]))
    with pytest.raises(ValueError, match="2-D"):
        linear_sum_assignment(np.zeros(3))


def test_iou_matrix_agrees_with_box_iou() -> None:
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, size=(12, 2))
    wh = rng.uniform(0, 40, size=(12, 2))
    boxes = np.hstack([xy, xy + wh])
    boxes[3, 2] = boxes[3, 0]  # an empty box
    got = iou_matrix(boxes[:5], boxes[5:])
    for i, a in enumerate(boxes[:5]):
        for j, b in enumerate(boxes[5:]):
            assert got[i, j] == pytest.approx(Box(*a).iou(Box(*b)))
    assert iou_matrix(np.zeros((0, 4)), boxes).shape == (0, 12)


def test_match_by_iou_gates_without_stealing() -> None:
    # Greedy would give column 0 to row 0 (0.9) and leave row 1 with nothing valid;
    # the optimum gives row 0 column 1 (0.8) and row 1 column 0 (0.7).
    iou = np.array([[0.9, 0.8], [0.7, 0.1]])
    assert sorted(match_by_iou(iou, 0.3)) == [(0, 1), (1, 0)]
    # a pair under the gate is never returned
    assert match_by_iou(np.array([[0.2]]), 0.3) == []
    assert match_by_iou(np.zeros((0, 2)), 0.3) == []


# -- tracking -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dy", [30.0, 0.0])
@pytest.mark.parametrize("occluded", [False, True])
def test_crossing_faces_keep_their_ids(dy: float, occluded: bool) -> None:
    """Two faces move towards each other and cross. With ``dy=30`` the boxes stay distinct
    (IoU at most 0.25); with ``dy=0`` they overlap fully, and when ``occluded`` the detector
    sees only the front face while they overlap. Constant-velocity prediction carries both
    through: no swap (a face that stops while hidden gets a new id; see the module doc).

    The one ambiguous moment: in the frame where two visible boxes coincide to within the
    detector's jitter, the two detections are interchangeable (same box) and may be handed
    either way; both tracks still get one each, and the ids are right again next frame."""
    rng = np.random.default_rng(0)
    tr = Tracker()
    seen_a: set[int] = set()
    seen_b: set[int] = set()
    for k in range(60):
        jitter = rng.normal(0, 1.0, size=2)
        a = face(4.0 * k + jitter[0], 100.0)
        b = face(240.0 - 4.0 * k + jitter[1], 100.0 + dy, score=0.85)
        hidden = occluded and abs(a.box.x1 - b.box.x1) < 40
        upd = tr.update([b] if hidden else [a, b])
        ia, ib = matched_id(upd, a), matched_id(upd, b)
        if abs(a.box.x1 - b.box.x1) < 5 and dy == 0 and not hidden:  # coincident boxes
            assert {ia, ib} == {1, 2}
            continue
        if ia is not None and not hidden:
            seen_a.add(ia)
        if ib is not None:
            seen_b.add(ib)
    assert seen_a == {1} and seen_b == {2}


def test_a_face_missing_for_a_few_frames_keeps_its_id() -> None:
    tr = Tracker(max_age=30)
    started: list[Track] = []
    ended: list[Track] = []
    for k in range(30):
        det = face(100.0 + 3 * k, 80.0 + k)
        upd = tr.update([] if 10 <= k < 15 else [det])  # missed 5 frames while moving
        started += upd.started
        ended += upd.ended
        assert ids_of(upd) == [1], f"frame {k}"
        t = upd.tracks[0]
        if 10 <= k < 15:
            assert t.face is None and t.misses == k - 9
            # it coasts along its velocity
            assert t.box.x1 == pytest.approx(det.box.x1, abs=3.0)
        else:
            assert t.face is not None and t.face.track_id == 1 and t.misses == 0
            assert t.box == det.box
    assert [t.id for t in started] == [1] and ended == []
    assert upd.tracks[0].hits == 25 and upd.tracks[0].age == 29


def test_a_face_missing_longer_than_max_age_is_ended_once_and_comes_back_new() -> None:
    tr = Tracker(max_age=5)
    ended: list[int] = []
    started: list[int] = []
    for k in range(20):
        upd = tr.update([] if 3 <= k < 10 else [face(100.0, 100.0)])  # 7 misses > max_age
        ended += [t.id for t in upd.ended]
        started += [t.id for t in upd.started]
        if k == 8:  # the 6th miss retires it
            assert [t.id for t in upd.ended] == [1] and upd.tracks == []
            assert upd.ended[0].misses == 6 and upd.ended[0].last_frame == 3
    assert ended == [1]
    assert started == [1, 2]
    assert ids_of(upd) == [2]
    assert [t.id for t in tr.close()] == [2]


def test_low_score_detections_keep_a_track_alive_but_never_start_one() -> None:
    tr = Tracker(max_age=3, high_score=0.6, low_score=0.1)
    for k in range(3):
        tr.update([face(50.0 + k, 50.0)])
    for k in range(3, 20):  # a half-turned face: weak detections only, longer than max_age
        upd = tr.update([face(50.0 + k, 50.0, score=0.3)])
        assert ids_of(upd) == [1] and upd.tracks[0].misses == 0
        assert upd.tracks[0].score == pytest.approx(0.3) and upd.ended == []
    # weak detections elsewhere start nothing, and under low_score they are ignored
    for _ in range(5):
        upd = tr.update([face(50.0 + 20, 50.0, score=0.3), face(400.0, 400.0, score=0.3)])
        assert ids_of(upd) == [1] and upd.started == []
    upd = tr.update([face(70.0, 50.0, score=0.05)])
    assert upd.tracks[0].misses == 1
    fresh = Tracker()
    for _ in range(5):
        assert fresh.update([face(10.0, 10.0, score=0.5)]).tracks == []


def test_a_weak_detection_does_not_confirm_a_tentative_track() -> None:
    tr = Tracker(min_hits=2)
    for _ in range(3):
        tr.update([])  # past the start-up frames
    assert tr.update([face(10.0, 10.0)]).started == []
    upd = tr.update([face(11.0, 10.0, score=0.4)])  # tentative: dropped, not confirmed
    assert upd.started == [] and upd.tracks == []


def test_min_hits_hides_one_frame_false_positives() -> None:
    tr = Tracker(min_hits=3)
    everything: list[Track] = []
    for k in range(30):
        dets = [face(100.0, 100.0)]
        if k in (10, 20):
            dets.append(face(300.0, 50.0, score=0.95))  # a one-frame false positive
        if k in (15, 16):
            dets.append(face(500.0, 300.0, score=0.95))  # two frames: still below min_hits
        upd = tr.update(dets)
        everything += upd.tracks + upd.started + upd.ended
    everything += tr.close()
    assert {t.id for t in everything} == {1}
    assert all(t.confirmed for t in everything)


def test_confirmation_waits_for_min_hits_after_the_first_frames() -> None:
    tr = Tracker(min_hits=3)
    # SORT's rule: during the first min_hits detector frames a face is shown at once
    upd = tr.update([face(0.0, 0.0)])
    assert [t.id for t in upd.started] == [1] and upd.started[0].hits == 1
    for _ in range(3):
        tr.update([face(0.0, 0.0)])
    starts = []
    for k in range(4):
        upd = tr.update([face(0.0, 0.0), face(200.0, 200.0)])
        starts.append([t.id for t in upd.started])
        if k < 2:
            assert ids_of(upd) == [1]
    assert starts == [[], [], [2], []]
    assert upd.tracks[1].hits == 4 and upd.tracks[1].first_frame == 5


def test_predict_between_detections_moves_boxes_along_the_velocity() -> None:
    """Detect every 3rd frame: predict() frames move the box at the learnt speed, give no
    face and count no miss; max_age counts detector frames only."""
    tr = Tracker(max_age=2)
    vx, vy = 6.0, -2.0
    for k in range(45):
        det = face(100.0 + vx * k, 300.0 + vy * k)
        upd = tr.update([det]) if k % 3 == 0 else tr.predict()
        assert tr.frame == k + 1 and ids_of(upd) == [1]
        t = upd.tracks[0]
        assert t.age == k
        if k % 3:
            assert t.face is None and t.misses == 0 and upd.started == [] == upd.ended
        if k > 20:  # once the velocity is learnt, predictions follow the true motion
            assert t.box.x1 == pytest.approx(det.box.x1, abs=1.0)
            assert t.box.y1 == pytest.approx(det.box.y1, abs=1.0)
    assert t.hits == 15
    # the face leaves: 2 missed detections survive (6 video frames), the 3rd retires it
    for k in range(45, 54):
        upd = tr.update([]) if k % 3 == 0 else tr.predict()
        if k < 51:
            assert ids_of(upd) == [1] and upd.ended == []
    assert ids_of(upd) == [] and tr.close() == []
    assert tr.frame == 54


def test_boxes_never_get_negative_sizes() -> None:
    tr = Tracker()
    for k in range(6):
        tr.update([face(100.0 + 2 * k, 100.0 + 2 * k, size=40.0 - 4 * k)])  # shrinking fast
    for _ in range(50):
        upd = tr.predict()
        b = upd.tracks[0].box
        assert b.x2 > b.x1 and b.y2 > b.y1
    for _ in range(30):  # coasting keeps the last size
        upd = tr.update([])
        assert all(t.box.width > 0 and t.box.height > 0 for t in upd.tracks)


def test_close_ends_every_confirmed_track_once() -> None:
    tr = Tracker(min_hits=2)
    for _ in range(3):
        tr.update([face(0.0, 0.0), face(100.0, 0.0)])
    tr.update([face(0.0, 0.0), face(100.0, 0.0), face(300.0, 0.0)])  # a tentative third
    tr.update([face(0.0, 0.0)])  # the second coasts
    ended = tr.close()
    assert [t.id for t in ended] == [1, 2]
    assert ended[0].misses == 0 and ended[1].misses == 1
    assert tr.close() == [] and tr.update([]).tracks == []
    # ids go on after close(), never reused
    tr.update([face(0.0, 0.0)])
    upd = tr.update([face(0.0, 0.0)])
    assert [t.id for t in upd.started] == [3]


def test_ids_are_unique_increasing_and_never_reused() -> None:
    rng = np.random.default_rng(7)
    tr = Tracker(max_age=3, min_hits=2)
    starts: list[int] = []
    ends: list[int] = []
    alive: dict[int, tuple[float, float]] = {}
    next_key = 0
    for _ in range(300):
        if rng.random() < 0.1 and len(alive) < 8:  # a face enters
            alive[next_key] = (float(rng.uniform(0, 1500)), float(rng.uniform(0, 1500)))
            next_key += 1
        if alive and rng.random() < 0.05:  # one leaves for good
            alive.pop(int(rng.choice(list(alive))))
        alive = {k: (x + 1.0, y) for k, (x, y) in alive.items()}
        dets = [face(x, y) for x, y in alive.values() if rng.random() > 0.2]  # 20% missed
        upd = tr.update(dets)
        starts += [t.id for t in upd.started]
        ends += [t.id for t in upd.ended]
        assert len(set(ids_of(upd))) == len(upd.tracks)
    ends += [t.id for t in tr.close()]
    assert starts == list(range(1, len(starts) + 1))
    assert Counter(ends) == Counter(starts)  # every started track ended exactly once


def test_empty_frames_and_a_fresh_tracker() -> None:
    tr = Tracker()
    assert tr.frame == 0 and tr.close() == []
    upd = tr.update([])
    assert upd == TrackUpdate() and upd.faces == []
    upd = tr.predict()
    assert upd.tracks == [] and tr.frame == 2


def test_returned_tracks_are_copies_and_faces_carry_the_id() -> None:
    tr = Tracker()
    det = face(10.0, 10.0)
    upd = tr.update([det])
    assert det.track_id is None  # the input is not mutated
    assert [f.track_id for f in upd.faces] == [1]
    upd.tracks[0].hits = 99
    upd.tracks[0].box = Box(0, 0, 1, 1)
    upd = tr.update([face(11.0, 10.0)])
    assert upd.tracks[0].hits == 2 and upd.tracks[0].box == face(11.0, 10.0).box


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="IoU"):
        Tracker(iou_threshold=0.0)
    with pytest.raises(ValueError, match="max_age"):
        Tracker(max_age=-1)
    with pytest.raises(ValueError, match="low_score"):
        Tracker(low_score=0.7, high_score=0.6)


def test_fifty_faces_in_one_frame() -> None:
    tr = Tracker()
    grid = [(60.0 * (i % 10), 60.0 * (i // 10)) for i in range(50)]
    slowest = 0.0
    for k in range(20):
        dets = [face(x + 2 * k, y + k, size=40.0) for x, y in grid]
        t0 = time.perf_counter()
        upd = tr.update(dets)
        slowest = max(slowest, time.perf_counter() - t0)
        assert ids_of(upd) == list(range(1, 51))
        assert all(t.face is not None and t.face.box == d.box for t, d in zip(upd.tracks, dets, strict=True))
    # not a timing test (the machine is shared); only a gross regression fails here
    assert slowest < 1.0, f"{slowest * 1000:.0f} ms for one update of 50 faces"


def test_shot_changed() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, size=(90, 160, 3), dtype=np.uint8)
    b = rng.integers(0, 256, size=(90, 160, 3), dtype=np.uint8)
    smooth = np.repeat(np.linspace(0, 255, 160, dtype=np.uint8)[None, :, None], 90, axis=0).repeat(3, axis=2)
    assert not shot_changed(a, a)
    assert not shot_changed(smooth, np.roll(smooth, 3, axis=1))  # a small pan
    assert shot_changed(smooth, smooth[:, ::-1].copy())  # another picture
    assert shot_changed(a, b[:80])  # another size: another source
    assert not shot_changed(a, b)  # noise averages out per block: same grey levels


def test_a_second_box_on_one_face_starts_no_track() -> None:
    """YuNet put a box on Miranda's forehead beside his face box (Hamilton clip, frames
    152-154): IoU 0.22, but 70% of the small box inside the face's. It started a track that
    then coasted for max_age frames on nothing."""
    t = Tracker()
    whole = Face(Box(226, 33, 314, 152), 0.93)
    for _ in range(3):
        t.update([whole])
    forehead = Face(Box(223, 15, 277, 84), 0.64)
    assert whole.box.iou(forehead.box) < 0.3
    for _ in range(3):
        up = t.update([whole, forehead])
        assert ids_of(up) == [1] and not up.started
    beside = face(320, 40, 80)  # a real neighbour overlapping the face box a little
    t.update([whole, beside])
    up = t.update([whole, beside])
    assert ids_of(up) == [1, 2]


def test_of_two_new_overlapping_boxes_only_the_stronger_starts_a_track() -> None:
    t = Tracker(min_hits=1)
    big, inner = face(0, 0, 100, 0.9), face(10, 10, 50, 0.7)
    up = t.update([inner, big])
    assert [tr.box for tr in up.tracks] == [big.box]
