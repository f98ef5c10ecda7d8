"""YuNet's decoding on ONNX Runtime outputs (no weights: raw outputs made up here).

:func:`faceprint.detection.yunet_onnx.decode` must give what OpenCV's
``FaceDetectorYN::postProcess`` (``modules/objdetect/src/face_detect.cpp``) gives for the
same raw outputs. The reference below follows that function cell by cell, with its own
greedy NMS over the truncated integer boxes, so the vectorised code and its call of
``cv2.dnn.NMSBoxes`` are checked against an independent rendering.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from faceprint.detection.yunet_onnx import OUTPUTS, STRIDES, decode

F32 = np.float32


def _blank(pad_w: int, pad_h: int, batch: int = 1) -> dict[str, np.ndarray]:
    widths = {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}
    out = {}
    for name in OUTPUTS:
        kind, s = name.split("_")
        cells = (pad_h // int(s)) * (pad_w // int(s))
        out[name] = np.zeros((batch, cells, widths[kind]), np.float32)
    return out


def _iou(a: list[int], b: list[int]) -> float:
    """OpenCV's rectangle overlap of x, y, w, h integer boxes."""
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x2 - x1) * max(0, y2 - y1) if x2 > x1 and y2 > y1 else 0
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _reference(
    out: dict[str, np.ndarray], pad_w: int, pad_h: int, thr: float, nms: float, top_k: int
) -> np.ndarray:
    faces = []
    for s in STRIDES:
        cols, rows = pad_w // s, pad_h // s
        for r in range(rows):
            for c in range(cols):
                i = r * cols + c
                cls = min(max(out[f"cls_{s}"][0, i, 0], F32(0)), F32(1))
                obj = min(max(out[f"obj_{s}"][0, i, 0], F32(0)), F32(1))
                score = F32(math.sqrt(F32(cls * obj)))
                if score < F32(thr):
                    continue
                b = out[f"bbox_{s}"][0, i]
                cx, cy = (F32(c) + b[0]) * F32(s), (F32(r) + b[1]) * F32(s)
                w, h = F32(math.exp(b[2])) * F32(s), F32(math.exp(b[3])) * F32(s)
                k = out[f"kps_{s}"][0, i]
                lm = [(k[2 * n + j] + F32((c, r)[j])) * F32(s) for n in range(5) for j in range(2)]
                faces.append([cx - w / F32(2), cy - h / F32(2), w, h, *lm, score])
    if len(faces) <= 1:
        return np.asarray(faces, np.float32).reshape(-1, 15)
    boxes = [[int(v) for v in f[:4]] for f in faces]
    order = sorted((i for i, f in enumerate(faces) if f[14] > F32(thr)), key=lambda i: -faces[i][14])[:top_k]
    kept: list[int] = []
    for i in order:
        if all(_iou(boxes[i], boxes[j]) <= nms for j in kept):
            kept.append(i)
    return np.asarray([faces[i] for i in kept], np.float32).reshape(-1, 15)


@pytest.mark.parametrize("seed", range(6))
def test_random_outputs_decode_as_opencv_does(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pad_w, pad_h = 96, 64
    out = _blank(pad_w, pad_h)
    for name, arr in out.items():
        kind = name.split("_")[0]
        if kind in ("cls", "obj"):
            arr[:] = rng.uniform(-0.2, 1.2, arr.shape)  # clamping matters both ways
        elif kind == "bbox":
            arr[..., :2] = rng.uniform(-0.5, 1.5, arr[..., :2].shape)
            arr[..., 2:] = rng.uniform(0.5, 2.5, arr[..., 2:].shape)
        else:
            arr[:] = rng.normal(0, 1, arr.shape)
    got = decode(out, 0, pad_w, 0.6, 0.3, 5000)
    want = _reference(out, pad_w, pad_h, 0.6, 0.3, 5000)
    assert len(want) >= 2, "the case exercises NMS"
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_one_cell_gives_opencv_s_formulas_exactly() -> None:
    out = _blank(64, 64)
    i = 1 * 4 + 2  # stride 16: 4 columns; row 1, column 2
    out["cls_16"][0, i, 0], out["obj_16"][0, i, 0] = 0.81, 1.0
    out["bbox_16"][0, i] = [0.5, 0.25, math.log(2), math.log(3)]
    out["kps_16"][0, i] = np.arange(10) / 10
    (row,) = decode(out, 0, 64, 0.6, 0.3, 5000)
    centre, size = np.array([2.5 * 16, 1.25 * 16]), np.array([32, 48])
    np.testing.assert_allclose(row[:2], centre - size / 2, atol=1e-4)
    np.testing.assert_allclose(row[2:4], size, atol=1e-4)
    np.testing.assert_allclose(row[4:14], (np.arange(10) / 10 + np.tile([2, 1], 5)) * 16, atol=1e-5)
    assert row[14] == pytest.approx(0.9, abs=1e-6)


def test_scores_are_clamped_before_the_square_root() -> None:
    out = _blank(32, 32)
    out["cls_32"][0, 0, 0], out["obj_32"][0, 0, 0] = 1.5, 0.64
    (row,) = decode(out, 0, 32, 0.6, 0.3, 5000)
    assert row[14] == pytest.approx(0.8, abs=1e-6)
    out["cls_32"][0, 0, 0] = -0.2  # unclamped, sqrt(-0.128) is NaN, which `score < threshold` keeps
    assert decode(out, 0, 32, 0.01, 0.3, 5000).shape == (0, 15)


def test_a_score_at_the_threshold_passes_alone_but_not_through_nms() -> None:
    """OpenCV drops cells with ``score < threshold`` but NMSBoxes keeps only ``score >
    threshold``: one face at exactly the threshold is returned, two are not."""
    out = _blank(64, 32)
    out["cls_32"][0, :, 0] = out["obj_32"][0, :, 0] = 0.5  # both cells score exactly 0.5
    out["cls_32"][0, 1, 0] = 0.0
    assert len(decode(out, 0, 64, 0.5, 0.3, 5000)) == 1
    out["cls_32"][0, 1, 0] = 0.5
    assert len(decode(out, 0, 64, 0.5, 0.3, 5000)) == 0


def test_nms_keeps_the_best_of_overlapping_boxes_and_top_k_bounds_the_rest() -> None:
    out = _blank(128, 32)  # stride 32: 4 cells in a row, 32 px apart
    out["bbox_32"][0, :, 2:] = math.log(1.5)  # 48 px boxes: neighbours overlap (IoU 0.2), others not
    out["cls_32"][0, :, 0] = out["obj_32"][0, :, 0] = [0.7, 0.9, 0.8, 0.75]
    rows = decode(out, 0, 128, 0.6, 0.1, 5000)
    np.testing.assert_allclose(rows[:, 14], [0.9, 0.75])  # cell 1 drops its neighbours 0 and 2
    assert decode(out, 0, 128, 0.6, 0.3, 5000).shape[0] == 4  # IoU 0.2 <= 0.3: all kept
    np.testing.assert_allclose(decode(out, 0, 128, 0.6, 0.3, 2)[:, 14], [0.9, 0.8])


def test_each_image_of_a_batch_is_decoded_from_its_own_rows() -> None:
    out = _blank(32, 32, batch=2)
    out["cls_32"][1, 0, 0] = out["obj_32"][1, 0, 0] = 1.0
    assert decode(out, 0, 32, 0.6, 0.3, 5000).shape == (0, 15)
    assert decode(out, 1, 32, 0.6, 0.3, 5000).shape == (1, 15)
