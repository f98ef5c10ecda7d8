"""SCRFD (InsightFace, ICLR 2022): an anchor-based CNN face detector with 5 landmarks.

Runs the InsightFace ``*_bnkps`` ONNX exports with onnxruntime. What the network expects
and returns, and how this module handles it:

* **Input**: one fixed-size canvas per image (``input_size``, width x height, default
  640 x 640, multiples of 32). The image is resized keeping its aspect ratio and placed in
  the top-left corner; the rest is black, and mapping back to the original pixels is a
  division by the scale (:func:`letterbox` does all this as InsightFace does). Pixels are
  **RGB** (InsightFace feeds BGR images through ``blobFromImage(swapRB=True)``) and
  normalised as ``(x - 127.5) / 128``, NCHW float32.
* **Outputs**: for each stride 8, 16, 32 a score map (sigmoid probability), box distances
  and keypoint offsets, with 2 anchors per feature-map cell (cells row-major, the two
  anchors adjacent). Anchor centres sit at ``(col * stride, row * stride)``: SCRFD was
  trained with no half-cell offset. Box outputs are distances (left, top, right, bottom)
  from the centre in units of the stride; keypoints are (dx, dy) offsets in the same
  units. The two published files name their outputs differently (``score_8``... versus
  numbers) and one has a batch axis, the other none, so outputs are identified by their
  shape (last axis 1/4/10 = score/box/keypoints, row count = stride), not by name.
* **Landmarks** come in SCRFD's (WIDER FACE / RetinaFace annotation) order, which already
  is ``std5``: the viewer's left eye, right eye, nose tip, viewer's left mouth corner,
  right mouth corner.
* Boxes are xyxy float pixels of the original image, not clipped to it (a face cut by the
  border keeps its full extent); faces are sorted by score, highest first.

Licence: the InsightFace code is MIT, but the pretrained SCRFD weights are for
**non-commercial research only**. Constructing a detector logs a warning saying so, once
per process (once per run for an evaluation: its worker processes leave it to the parent).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import models
from ..errors import InvalidArgumentError, InvalidImageError, ModelUnavailableError, UnknownComponentError
from ..types import Box, Face, Image
from . import too_small

log = logging.getLogger(__name__)

#: Model variants (the ``model`` argument) and their files in the catalogue entry "scrfd".
MODEL_FILES: dict[str, str] = {"500m": "scrfd_500m_bnkps.onnx", "2.5g": "scrfd_2.5g_bnkps.onnx"}
STRIDES: tuple[int, ...] = (8, 16, 32)
ANCHORS_PER_CELL = 2
_KINDS = {1: "score", 4: "bbox", 10: "kps"}  # last-axis size -> output kind

LICENCE_WARNING = str(models.CATALOG["scrfd"].licence_warning)

FloatArray = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class _Placement:
    """Where an image went on the canvas: canvas pixel = original pixel * (sx, sy)."""

    sx: float
    sy: float


def letterbox(image: Image, size: tuple[int, int]) -> tuple[NDArray[np.uint8], _Placement]:
    """Resize an RGB image into a black ``size`` = (width, height) canvas, top-left aligned,
    exactly as InsightFace's ``SCRFD.detect`` does, so outputs match the reference's
    (tests/integration/test_scrfd.py checks them against outputs recorded from it).

    The side that fills the canvas takes its full length and the other ``int()`` of the
    scaled length; the resize is bilinear (cv2's default) whether it shrinks or enlarges;
    and both axes map back by one scale, ``new height / height``, as the reference does
    (off from the true width scale by less than one canvas pixel).
    """
    import cv2

    h, w = image.shape[:2]
    cw, ch = size
    ratio = h / w  # the reference's float expressions, so int() truncates the same way
    if ratio > ch / cw:
        nh, nw = ch, max(1, int(ch / ratio))
    else:
        nw, nh = cw, max(1, int(cw * ratio))
    canvas = np.zeros((ch, cw, 3), np.uint8)
    canvas[:nh, :nw] = cv2.resize(np.ascontiguousarray(image), (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas, _Placement(nh / h, nh / h)


def nms(boxes: NDArray[np.float64], scores: NDArray[np.float64], iou_threshold: float) -> NDArray[np.intp]:
    """Greedy non-maximum suppression; indices of the kept xyxy boxes, best score first.

    A box is dropped when its IoU (continuous areas, x2/y2 exclusive) with an already kept
    box exceeds ``iou_threshold``.
    """
    x1, y1, x2, y2 = boxes.T
    order = np.argsort(-scores, kind="stable")
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        iw = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        ih = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = iw * ih
        union = areas[i] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)


def split_outputs(
    arrays: Sequence[NDArray[Any]], batch: int, width: int, height: int
) -> dict[tuple[str, int], FloatArray]:
    """Name SCRFD's raw outputs by shape: ``{(kind, stride): (batch, rows, channels)}``.

    ``kind`` is "score", "bbox" or "kps" (last axis 1, 4 or 10) and the stride follows from
    the row count, ``(height/stride) * (width/stride) * 2``, for a ``width`` x ``height``
    input. Exports without a batch axis (batch 1) get one. Anything else raises
    :class:`ModelUnavailableError`: the file is not an SCRFD ``*_bnkps`` model.
    """
    rows_to_stride = {(height // s) * (width // s) * ANCHORS_PER_CELL: s for s in STRIDES}
    named: dict[tuple[str, int], FloatArray] = {}
    for raw in arrays:
        arr = np.asarray(raw, dtype=np.float32)
        if arr.ndim == 2:
            arr = arr.reshape(batch, -1, arr.shape[-1])
        kind = _KINDS.get(arr.shape[-1]) if arr.ndim == 3 else None
        stride = rows_to_stride.get(arr.shape[1]) if arr.ndim == 3 else None
        if kind is None or stride is None or arr.shape[0] != batch or (kind, stride) in named:
            raise ModelUnavailableError(
                f"unexpected SCRFD output of shape {arr.shape} for a batch of {batch} "
                f"{width}x{height} inputs: expected score/bbox/kps maps (last axis 1/4/10) for "
                f"strides {STRIDES} with {ANCHORS_PER_CELL} anchors per cell"
            )
        named[(kind, stride)] = arr
    if len(named) != 3 * len(STRIDES):
        raise ModelUnavailableError(
            f"SCRFD model gave {len(named)} outputs, expected 9 (score, bbox, kps for strides {STRIDES}); "
            "only the *_bnkps models (with keypoints) are supported"
        )
    return named


class ScrfdDetector:
    """InsightFace SCRFD on onnxruntime. Returns ``std5`` landmarks, xyxy pixel boxes.

    ``score_threshold`` is SCRFD's face probability (0..1); ``nms_threshold`` the IoU above
    which a lower-scored overlapping box is dropped. ``input_size`` is the network canvas
    (width, height), multiples of 32: larger finds smaller faces, at quadratic cost.
    ``model`` picks the catalogue file ("500m", fast; "2.5g", more accurate);
    ``model_path`` overrides the lookup. ``intra_op_threads`` = 0 lets onnxruntime choose.
    ``max_batch`` bounds how many images one session call takes (models with a dynamic
    batch axis only; others run image by image).
    """

    name = "scrfd"

    def __init__(
        self,
        model: str = "500m",
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        input_size: tuple[int, int] = (640, 640),
        intra_op_threads: int = 0,
        model_path: str | None = None,
        providers: list[str] | None = None,
        max_batch: int = 8,
    ) -> None:
        if model not in MODEL_FILES:
            raise UnknownComponentError(
                f"unknown SCRFD model {model!r}: expected one of {', '.join(MODEL_FILES)}"
            )
        width, height = (int(v) for v in input_size)
        if width <= 0 or height <= 0 or width % 32 or height % 32:
            raise InvalidArgumentError(
                f"input_size must be positive multiples of 32 (width, height), got {input_size}"
            )
        if max_batch < 1:
            raise InvalidArgumentError(f"max_batch must be at least 1, got {max_batch}")
        self.model = model
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.input_size = (width, height)
        self.max_batch = max_batch
        self.model_path = self._find_file(model, model_path)
        self._session = self._open(self.model_path, intra_op_threads, providers or ["CPUExecutionProvider"])
        inp = self._session.get_inputs()[0]
        self._input_name: str = inp.name
        self.batched = not isinstance(inp.shape[0], int)  # a dynamic batch axis
        self._centres: dict[tuple[int, int, int], FloatArray] = {}
        self._check_layout()
        models.warn_licence_once("scrfd")

    # -- loading -----------------------------------------------------------------------------

    @staticmethod
    def _find_file(model: str, model_path: str | None) -> Path:
        """An explicit path wins; otherwise the catalogue lookup (see :mod:`faceprint.models`)."""
        if model_path is not None:
            p = Path(model_path).expanduser()
            if not p.is_file():
                raise ModelUnavailableError(f"SCRFD model file not found at {p}")
            return p
        return models.resolve("scrfd", filename=MODEL_FILES[model])

    @staticmethod
    def _open(path: Path, threads: int, providers: list[str]) -> Any:
        import onnxruntime as ort  # type: ignore[import-untyped]

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(0, int(threads))
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # see dlib_onnx
        opts.log_severity_level = 3  # onnxruntime's own warnings would go to stderr unasked
        try:
            return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own, unexported exception types
            raise ModelUnavailableError(
                f"could not load {path} as an ONNX model: expected an InsightFace SCRFD *_bnkps "
                f"export, found a file onnxruntime rejects ({type(exc).__name__}: {exc})"
            ) from exc

    def _check_layout(self) -> None:
        """Run a tiny blank input once so a wrong model fails now, with a clear message."""
        inp = self._session.get_inputs()[0]
        if len(inp.shape) != 4 or (isinstance(inp.shape[1], int) and inp.shape[1] != 3):
            raise ModelUnavailableError(
                f"{self.model_path} takes input of shape {inp.shape}: expected [N, 3, H, W] (SCRFD)"
            )
        fixed = inp.shape[2:]
        if all(isinstance(v, int) for v in fixed) and (fixed[1], fixed[0]) != self.input_size:
            log.info("%s has a fixed input size %s; using it", self.model_path, fixed)
            self.input_size = (int(fixed[1]), int(fixed[0]))
        w, h = (64, 64) if not all(isinstance(v, int) for v in fixed) else self.input_size
        try:
            outs = self._session.run(None, {self._input_name: np.zeros((1, 3, h, w), np.float32)})
        except Exception as exc:
            raise ModelUnavailableError(
                f"{self.model_path} failed on a blank {w}x{h} input: expected an SCRFD model ({exc})"
            ) from exc
        split_outputs(outs, 1, w, h)

    # -- detection ---------------------------------------------------------------------------

    def detect(self, image: Image) -> list[Face]:
        """Faces in an RGB uint8 ``(H, W, 3)`` image, highest score first (xyxy pixels)."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[Image]) -> list[list[Face]]:
        """Faces for each RGB image, in input order.

        Images are letterboxed to the same canvas, so a dynamic-batch model (500m) takes
        up to ``max_batch`` of them in one session call; fixed-batch models (2.5g) loop.
        Images below :data:`~faceprint.detection.MIN_IMAGE_SIDE` give ``[]``.
        """
        results: list[list[Face]] = [[] for _ in images]
        todo = [i for i, im in enumerate(images) if not too_small(_checked(im))]
        step = self.max_batch if self.batched else 1
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            canvases, places = zip(*(letterbox(images[i], self.input_size) for i in chunk), strict=True)
            for i, faces in zip(chunk, self._run(list(canvases), list(places)), strict=True):
                results[i] = faces
        return results

    def _run(self, canvases: list[NDArray[np.uint8]], places: list[_Placement]) -> list[list[Face]]:
        """One session call on letterboxed RGB canvases; decoded faces per canvas."""
        w, h = self.input_size
        blob = np.stack(canvases).astype(np.float32)
        blob -= 127.5
        blob *= 1.0 / 128.0
        blob = np.ascontiguousarray(blob.transpose(0, 3, 1, 2))
        outs = self._session.run(None, {self._input_name: blob})
        named = split_outputs(outs, len(canvases), w, h)
        return [self._decode(named, b, place) for b, place in enumerate(places)]

    def _anchor_centres(self, stride: int) -> FloatArray:
        """(rows, 2) x, y canvas pixels of every anchor at ``stride``, in output row order."""
        w, h = self.input_size
        key = (w, h, stride)
        if key not in self._centres:
            ys, xs = np.mgrid[: h // stride, : w // stride]
            cells = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32) * stride
            self._centres[key] = np.repeat(cells, ANCHORS_PER_CELL, axis=0)
        return self._centres[key]

    def _decode(self, named: dict[tuple[str, int], FloatArray], b: int, place: _Placement) -> list[Face]:
        """Faces of batch item ``b``: threshold, decode distances, map back, NMS."""
        boxes, scores, points = [], [], []
        for s in STRIDES:
            sc = named[("score", s)][b, :, 0]
            pos = np.flatnonzero(sc >= self.score_threshold)
            if pos.size == 0:
                continue
            centres = self._anchor_centres(s)[pos].astype(np.float64)
            dist = named[("bbox", s)][b, pos].astype(np.float64) * s
            boxes.append(np.concatenate([centres - dist[:, :2], centres + dist[:, 2:]], axis=1))
            offsets = named[("kps", s)][b, pos].astype(np.float64).reshape(-1, 5, 2) * s
            points.append(offsets + centres[:, None, :])
            scores.append(sc[pos].astype(np.float64))
        if not scores:
            return []
        scale = np.array([place.sx, place.sy], np.float64)
        box = np.concatenate(boxes) / np.tile(scale, 2)
        pts = np.concatenate(points) / scale
        score = np.concatenate(scores)
        faces = []
        for i in nms(box, score, self.nms_threshold):
            x1, y1, x2, y2 = (float(v) for v in box[i])
            faces.append(
                Face(
                    box=Box(x1, y1, x2, y2),
                    score=float(score[i]),
                    landmarks=pts[i].astype(np.float32),
                    landmark_scheme="std5",
                )
            )
        return faces


def _checked(image: Image) -> Image:
    """``image`` if it is an (H, W, 3) uint8 array; :class:`InvalidImageError` otherwise."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        found = f"{type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}".strip()
        raise InvalidImageError(f"expected an RGB uint8 array of shape (H, W, 3), found {found}")
    return image
