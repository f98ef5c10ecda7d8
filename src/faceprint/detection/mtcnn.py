"""MTCNN (Zhang et al. 2016), the three-stage cascade, as facenet-pytorch runs it, without torch.

The weights are facenet-pytorch's released ``pnet.pt``/``rnet.pt``/``onet.pt``, rebuilt as
ONNX graphs and run on onnxruntime (:mod:`.mtcnn_nets`). This module is the cascade
around them and its numeric building blocks (torch's ``area`` resampling, NMS, box
regression, crops).

The cascade follows facenet-pytorch's ``detect_face`` step for step, because its outputs
(and every threshold tuned on them) are what users of this model know:

1. an image pyramid from scale ``12 / min_face_size`` down by ``factor`` while the short
   side stays >= 12 px; each level is ``int(side * scale + 1)`` px, resampled with torch's
   ``area`` mode (an adaptive average pool, reproduced exactly from a summed-area table);
   pixels are normalised as ``(x - 127.5) / 128``;
2. P-Net cells with face probability >= ``thresholds[0]`` become 12/scale boxes; NMS 0.5
   per level, NMS 0.7 per image, box regression (offsets times width, no +1), squared;
3. each box, truncated to integers and clipped, is cut from the image (stretched, not
   zero-padded) and area-resampled to 24x24 for R-Net: probability > ``thresholds[1]``,
   NMS 0.7, regression (offsets times width + 1), squared;
4. the same with 48x48 crops for O-Net: probability > ``thresholds[2]``; landmarks are
   placed on the box *before* its last regression; then regression and NMS 0.7 by
   intersection over the smaller box ("Min").

Output: boxes are xyxy float pixels as facenet-pytorch returns them (its MATLAB heritage
makes them about one pixel larger than exclusive-edge boxes); ``score`` is O-Net's face
probability; landmarks are ``std5`` (the net gives x1..x5 then y1..y5, in the order
viewer's left eye, right eye, nose, left mouth corner, right mouth corner). Faces are
sorted by score, highest first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidArgumentError, InvalidImageError
from ..types import Box, Face, Image
from . import too_small
from .mtcnn_nets import FILES, INPUT_SIDE, open_session

log = logging.getLogger(__name__)

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]

#: Crops per R-Net/O-Net session call; bounds the activations' memory (~55 MB for R-Net).
CROP_CHUNK = 1024

# ---------------------------------------------------------------- resampling (torch "area")


def summed_area_table(image: Image) -> NDArray[np.uint32]:
    """``(H+1, W+1, 3)`` prefix sums of ``image``, modulo 2**32.

    uint32 halves the memory of int64; the wrap-around is harmless because every window
    sum taken from it (a few hundred pixels at most) is far below 2**32, and modular
    differences of prefix sums are exact for such windows.
    """
    h, w, c = image.shape
    sat = np.zeros((h + 1, w + 1, c), np.uint32)
    np.cumsum(image, axis=0, dtype=np.uint32, out=sat[1:, 1:])
    np.cumsum(sat[1:, 1:], axis=1, dtype=np.uint32, out=sat[1:, 1:])
    return sat


def _windows(start: I64, length: I64, out: int) -> tuple[I64, I64]:
    """torch's adaptive-pool windows: ``[floor(i*n/out), ceil((i+1)*n/out))`` per output i."""
    i = np.arange(out, dtype=np.int64)
    n = length[..., None]
    return start[..., None] + (i * n) // out, start[..., None] - ((-(i + 1) * n) // out)


def area_resample(sat: NDArray[np.uint32], r0: I64, r1: I64, c0: I64, c1: I64) -> F32:
    """Means of the windows ``rows[r0, r1) x cols[c0, c1)``, normalised for the nets.

    ``r*`` are ``(..., oh)`` and ``c*`` ``(..., ow)`` with the same leading shape; the
    result is ``(..., 3, oh, ow)`` float32 ``(mean - 127.5) / 128``.
    """
    flat = sat.reshape(-1, sat.shape[2])  # one flat index gathers 2x faster than two
    a, b = r0[..., :, None] * sat.shape[1], r1[..., :, None] * sat.shape[1]
    c, d = c0[..., None, :], c1[..., None, :]

    def at(index: I64) -> NDArray[np.uint32]:
        return np.take(flat, index, axis=0)

    sums = at(b + d) - at(a + d) - at(b + c) + at(a + c)  # uint32, exact (see above)
    count = ((r1 - r0)[..., :, None] * (c1 - c0)[..., None, :]).astype(np.float32)[..., None]
    mean = sums.astype(np.float32) / count
    return np.moveaxis((mean - np.float32(127.5)) * np.float32(0.0078125), -1, -3)


# ---------------------------------------------------------------- boxes


def nms(
    boxes: NDArray[np.floating[Any]],
    scores: NDArray[np.floating[Any]],
    threshold: float,
    mode: str = "union",
    plus_one: bool = False,
) -> I64:
    """Greedy NMS: indices kept, best score first.

    ``mode="union"`` is IoU (torchvision's ``nms``; areas without +1); ``"min"`` divides
    the intersection by the smaller area (facenet-pytorch's numpy NMS, areas with +1 when
    ``plus_one``). A box is dropped when its overlap with a kept one exceeds ``threshold``.
    """
    x1, y1, x2, y2 = (boxes[:, k].astype(np.float64) for k in range(4))
    off = 1.0 if plus_one else 0.0
    areas = (x2 - x1 + off) * (y2 - y1 + off)
    # Only boxes whose x-range can meet box i's are compared with it: with boxes sorted by
    # x1, those lie in one searchsorted window, so crowds of thousands of boxes stay fast.
    by_x = np.argsort(x1, kind="stable")
    sorted_x1 = x1[by_x]
    reach = float((x2 - x1).max()) + off if len(boxes) else 0.0
    suppressed = np.zeros(len(boxes), dtype=bool)
    keep: list[int] = []
    # Ties are common (O-Net saturates at 0.9999994) and decide which box survives: "union"
    # breaks them as torchvision's stable sort does, "min" as facenet-pytorch's numpy NMS
    # (default argsort, popped from the end); measured to give its boxes to 1e-3 px.
    order = np.argsort(-scores, kind="stable") if mode != "min" else np.argsort(scores)[::-1]
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        lo = int(np.searchsorted(sorted_x1, x1[i] - reach, side="left"))
        hi = int(np.searchsorted(sorted_x1, x2[i] + off, side="right"))
        cand = by_x[lo:hi]
        cand = cand[~suppressed[cand]]
        iw = np.maximum(0.0, np.minimum(x2[i], x2[cand]) - np.maximum(x1[i], x1[cand]) + off)
        ih = np.maximum(0.0, np.minimum(y2[i], y2[cand]) - np.maximum(y1[i], y1[cand]) + off)
        inter = iw * ih
        denom = np.minimum(areas[i], areas[cand]) if mode == "min" else areas[i] + areas[cand] - inter
        overlap = np.divide(inter, denom, out=np.zeros_like(inter), where=denom > 0)
        suppressed[cand[overlap > threshold]] = True
    return np.asarray(keep, dtype=np.int64)


def nms_per_group(boxes: F32, scores: F32, groups: I64, threshold: float, **kw: Any) -> I64:
    """:func:`nms` within each group id (image, or image and pyramid level)."""
    kept = [
        np.flatnonzero(groups == g)[nms(boxes[groups == g], scores[groups == g], threshold, **kw)]
        for g in np.unique(groups)
    ]
    return np.concatenate(kept) if kept else np.zeros(0, np.int64)


def square(boxes: F32) -> F32:
    """Boxes grown to squares of their longer side around the same top-left-based centre."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1).astype(np.float32)


def regress(boxes: F32, reg: F32, plus_one: bool) -> F32:
    """Box regression: each side moves by its offset times the box width/height (+1)."""
    off = np.float32(1.0 if plus_one else 0.0)
    w = boxes[:, 2] - boxes[:, 0] + off
    h = boxes[:, 3] - boxes[:, 1] + off
    return (boxes[:, :4] + reg[:, :4] * np.stack([w, h, w, h], axis=1)).astype(np.float32)


def crop_windows(boxes: F32, width: int, height: int) -> tuple[I64, I64, I64, I64]:
    """Integer crop ``rows[y0, y1) x cols[x0, x1)`` of each box, as facenet-pytorch cuts it.

    Coordinates are truncated toward zero, then the 1-based MATLAB convention is kept:
    the crop starts one pixel before the truncated x1/y1 (clipped at 1) and ends at the
    truncated x2/y2 (clipped at the image size).
    """
    t = np.trunc(boxes[:, :4]).astype(np.int64)
    x0 = np.maximum(t[:, 0], 1) - 1
    y0 = np.maximum(t[:, 1], 1) - 1
    x1 = np.minimum(t[:, 2], width)
    y1 = np.minimum(t[:, 3], height)
    return y0, y1, x0, x1


# ---------------------------------------------------------------- the detector


class MtcnnDetector:
    """The MTCNN cascade with facenet-pytorch's weights and defaults, on onnxruntime.

    ``min_face_size`` (px) sets the first pyramid scale; ``thresholds`` are the P-, R- and
    O-Net face probabilities; ``factor`` is the pyramid step. ``model_dir`` is a directory
    holding ``pnet.pt``, ``rnet.pt`` and ``onet.pt``, used instead of the model catalogue.
    ``num_threads`` caps onnxruntime's threads (None: its default).
    """

    name = "mtcnn"

    def __init__(
        self,
        min_face_size: float = 20.0,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        model_dir: str | None = None,
        num_threads: int | None = None,
    ) -> None:
        import onnxruntime as ort  # type: ignore[import-untyped]

        if min_face_size <= 0 or not 0.0 < factor < 1.0 or len(thresholds) != 3:
            raise InvalidArgumentError(
                f"expected min_face_size > 0, 0 < factor < 1 and three thresholds; got "
                f"{min_face_size}, {factor}, {tuple(thresholds)}"
            )
        self.min_face_size = float(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.inter_op_num_threads = 1
        # Idle workers must sleep, not spin: between session calls this thread does numpy
        # work (resampling, NMS) that spinning workers would slow down.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if num_threads:
            opts.intra_op_num_threads = num_threads
        self._sessions = {net: open_session(ort, opts, net, model_dir) for net in FILES}

    def _run(self, net: str, batch: F32) -> list[F32]:
        """One net's outputs for ``batch``, in chunks of :data:`CROP_CHUNK` crops."""
        sess = self._sessions[net]
        if net == "pnet" or len(batch) <= CROP_CHUNK:
            return [np.asarray(o, np.float32) for o in sess.run(None, {"input": batch})]
        starts = range(0, len(batch), CROP_CHUNK)
        parts = [sess.run(None, {"input": batch[i : i + CROP_CHUNK]}) for i in starts]
        return [np.concatenate([p[k] for p in parts]).astype(np.float32) for k in range(len(parts[0]))]

    def detect(self, image: Image) -> list[Face]:
        """Faces in an RGB uint8 ``(H, W, 3)`` image, highest score first (see module doc)."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[Image]) -> list[list[Face]]:
        """:meth:`detect` for each image; P-Net runs once per pyramid level for all images
        of one size, R-Net and O-Net once for all crops of all images."""
        for k, im in enumerate(images):
            if not isinstance(im, np.ndarray):
                raise InvalidImageError(f"image {k}: expected an RGB uint8 (H, W, 3) array, got {type(im)}")
            if im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
                raise InvalidImageError(
                    f"image {k}: expected an RGB uint8 (H, W, 3) array, got {im.dtype} {im.shape}"
                )
        live = [k for k, im in enumerate(images) if not too_small(im)]
        sats = {k: summed_area_table(images[k]) for k in live}
        sizes = {k: images[k].shape[:2] for k in live}
        boxes, scores, owner = self._propose(sats, sizes)
        boxes, scores, owner, _ = self._refine("rnet", sats, sizes, boxes, owner)
        boxes, scores, owner, points = self._refine("onet", sats, sizes, boxes, owner)
        out: list[list[Face]] = [[] for _ in images]
        for j in np.argsort(-scores, kind="stable"):
            b = boxes[j]
            out[int(owner[j])].append(
                Face(
                    box=Box(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                    score=float(scores[j]),
                    landmarks=np.ascontiguousarray(points[j], dtype=np.float32),
                    landmark_scheme="std5",
                )
            )
        return out

    def _scales(self, height: int, width: int) -> list[float]:
        scale = 12.0 / self.min_face_size
        short = min(height, width) * scale
        scales = []
        while short >= 12:
            scales.append(scale)
            scale *= self.factor
            short *= self.factor
        return scales

    def _propose(
        self, sats: dict[int, NDArray[np.uint32]], sizes: dict[int, tuple[int, int]]
    ) -> tuple[F32, F32, I64]:
        """Stage 1: P-Net over the pyramid; squared, regressed candidate boxes per image."""
        rows: list[F32] = []
        owners: list[I64] = []
        levels: list[I64] = []
        by_size: dict[tuple[int, int], list[int]] = {}
        for k, hw in sizes.items():
            by_size.setdefault(hw, []).append(k)
        for (h, w), ks in by_size.items():
            for lvl, scale in enumerate(self._scales(h, w)):
                hs, ws = int(h * scale + 1), int(w * scale + 1)
                r0, r1 = _windows(np.zeros(1, np.int64), np.array([h]), hs)
                c0, c1 = _windows(np.zeros(1, np.int64), np.array([w]), ws)
                batch = np.stack([area_resample(sats[k], r0[0], r1[0], c0[0], c1[0]) for k in ks])
                reg, prob = self._run("pnet", batch)
                for j, k in enumerate(ks):
                    ys, xs = np.nonzero(prob[j, 1] >= self.thresholds[0])
                    if not len(ys):
                        continue
                    cell = np.stack([xs, ys], axis=1).astype(np.float32)
                    q1 = np.floor((2 * cell + 1) / np.float32(scale))
                    q2 = np.floor((2 * cell + 12) / np.float32(scale))
                    rows.append(
                        np.concatenate(
                            [q1, q2, prob[j, 1, ys, xs][:, None], reg[j][:, ys, xs].T], axis=1
                        ).astype(np.float32)
                    )
                    owners.append(np.full(len(ys), k, np.int64))
                    levels.append(np.full(len(ys), lvl, np.int64))
        log.debug("P-Net: %d cells above threshold", sum(len(r) for r in rows))
        if not rows:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
        cand, owner, level = np.concatenate(rows), np.concatenate(owners), np.concatenate(levels)
        keep = nms_per_group(cand[:, :4], cand[:, 4], owner * 1000 + level, 0.5)
        cand, owner = cand[keep], owner[keep]
        keep = nms_per_group(cand[:, :4], cand[:, 4], owner, 0.7)
        cand, owner = cand[keep], owner[keep]
        boxes = square(regress(cand[:, :4], cand[:, 5:9], plus_one=False))
        return boxes, cand[:, 4], owner

    def _refine(
        self,
        net: str,
        sats: dict[int, NDArray[np.uint32]],
        sizes: dict[int, tuple[int, int]],
        boxes: F32,
        owner: I64,
    ) -> tuple[F32, F32, I64, F32]:
        """Stage 2 (R-Net, 24 px) or 3 (O-Net, 48 px, with landmarks) on all candidates."""
        side = INPUT_SIDE[net] or 0
        no_points = np.zeros((0, 5, 2), np.float32)
        crops: list[F32] = []
        kept: list[I64] = []
        for k in np.unique(owner):
            idx = np.flatnonzero(owner == k)
            h, w = sizes[int(k)]
            y0, y1, x0, x1 = crop_windows(boxes[idx], w, h)
            ok = (y1 > y0) & (x1 > x0)  # boxes entirely outside the image have no crop
            if not ok.any():
                continue
            r0, r1 = _windows(y0[ok], y1[ok] - y0[ok], side)
            c0, c1 = _windows(x0[ok], x1[ok] - x0[ok], side)
            crops.append(area_resample(sats[int(k)], r0, r1, c0, c1))
            kept.append(idx[ok])
        if not crops:
            return boxes[:0], np.zeros(0, np.float32), owner[:0], no_points
        sel = np.concatenate(kept)
        boxes, owner = boxes[sel], owner[sel]
        outs = self._run(net, np.concatenate(crops))
        reg, prob = outs[0], outs[-1]
        score = prob[:, 1]
        ok = score > self.thresholds[1 if net == "rnet" else 2]
        boxes, score, owner, reg = boxes[ok], score[ok], owner[ok], reg[ok]
        if net == "rnet":
            keep = nms_per_group(boxes, score, owner, 0.7)
            boxes = square(regress(boxes[keep], reg[keep], plus_one=True))
            return boxes, score[keep], owner[keep], no_points
        pts = outs[1][ok]
        bw = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        bh = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points = np.stack([bw * pts[:, :5] + boxes[:, :1] - 1, bh * pts[:, 5:] + boxes[:, 1:2] - 1], axis=2)
        boxes = regress(boxes, reg, plus_one=True)
        keep = nms_per_group(boxes, score, owner, 0.7, mode="min", plus_one=True)
        return boxes[keep], score[keep], owner[keep], points[keep].astype(np.float32)
