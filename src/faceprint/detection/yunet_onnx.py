"""YuNet on ONNX Runtime: the shipped graph made size-dynamic, decoded as OpenCV does.

Why: ``cv2.FaceDetectorYN`` (OpenCV 5's DNN engine) took 3.5 ms per 250x250 LFW image
on one thread here, the same network with the same decoding 1.7 ms on ONNX Runtime
(``bench/yunet_backends.py``); detection was about 45% of the default pipeline's time.

**The graph.** faceprint ships ``face_detection_yunet_2023mar.onnx`` (input fixed at ``[1,
3, 640, 640]``; its Reshapes hold the batch of 1). :func:`convert` makes it take ``[batch,
3, height, width]`` with :func:`faceprint.detection.onnx_dynamic.to_dynamic`, which proves
that no constant fixes the batch or a size that follows the image (or refuses the file),
then runs both graphs on ONNX Runtime: the outputs must equal the source's at 640x640
(they are bit for bit here) and a batch of 2 at 96x160 must give each image's cells, the
same as that image alone. The result is cached in the cache dir as :data:`BUILT_FILE`,
recording the source's sha256 and :data:`CONVERTER_VERSION`, by the machinery of the
converted embedders (:func:`faceprint.embedding.converted.open_built`): built once, rebuilt
when the source or the converter changes. Where the cache cannot be written the graph
is converted in memory (0.1 to 0.2 s, plus 0.5 s for ``import onnx``) each time a
detector is made, with a warning, so the default detector never fails for a read-only
home.

**Input and decoding**, as ``FaceDetectorYN`` does them (``FaceDetectorYNImpl`` in
opencv's ``modules/objdetect/src/face_detect.cpp``, as of OpenCV 5): the image, resized
by the caller, is padded
bottom and right with zeros to multiples of 32 and fed as float32 NCHW, **BGR**, 0..255,
no mean or scale. For each stride ``s`` of 8, 16, 32 the outputs ``cls_s``, ``obj_s``,
``bbox_s``, ``kps_s`` hold one row per cell of the padded input, row-major (``r * cols +
c``). A cell's score is ``sqrt(clamp(cls, 0, 1) * clamp(obj, 0, 1))``; cells scoring below
``score_threshold`` are dropped; the box centre is ``((c + bbox0) * s, (r + bbox1) * s)``,
its size ``(exp(bbox2) * s, exp(bbox3) * s)``, and landmark ``n`` is ``((kps[2n] + c) * s,
(kps[2n+1] + r) * s)``. All of this in float32, as OpenCV computes it. When more than one
cell is left, ``cv2.dnn.NMSBoxes`` runs on the boxes truncated to integers (OpenCV builds
``Rect2i`` from them) with the same thresholds, ``eta`` 1 and ``top_k``, and the kept rows
come out in its order (score descending); NMSBoxes keeps only scores strictly above the
threshold, so a face scoring exactly the threshold survives only alone, in both backends.
Rows are OpenCV's: ``x, y, w, h``, five landmarks (x, y), score.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .. import models
from ..config import get_settings
from ..errors import ModelUnavailableError
from ..types import Image

if TYPE_CHECKING:  # onnx is imported lazily, when the graph is built
    import onnx

log = logging.getLogger(__name__)

#: The cached size-dynamic graph, in ``Settings.cache_dir``.
BUILT_FILE = "face_detection_yunet_2023mar_dynamic.onnx"
#: Bump when :func:`convert` writes a different graph: cached files of another version are rebuilt.
CONVERTER_VERSION = "1"
STRIDES = (8, 16, 32)
#: The padded input's sides are multiples of this (the largest stride).
DIVISOR = 32
INPUT = "input"
OUTPUTS = tuple(f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in STRIDES)
_WIDTHS = {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}
#: Sizes :func:`convert` checks the converted graph at: the exported size against the
#: source, and another (height, width) with a batch of 2 against each image alone.
_EXPORTED, _OTHER = (640, 640), (96, 160)

FloatArray = NDArray[np.float32]


def padded(size: int) -> int:
    """``size`` rounded up to a multiple of :data:`DIVISOR`, as OpenCV pads."""
    return ((size - 1) // DIVISOR + 1) * DIVISOR


def convert(source: Path) -> onnx.ModelProto:
    """YuNet's graph at ``source`` with a dynamic batch, height and width, checked on ONNX
    Runtime against the source (module doc). Raises :class:`ModelUnavailableError` for a
    file that is not YuNet or cannot be made dynamic."""
    import onnx

    from .onnx_dynamic import to_dynamic

    try:
        model = onnx.load(str(source))
    except Exception as exc:  # a protobuf that does not parse
        raise ModelUnavailableError(f"{source} is not a readable ONNX model ({exc})") from None
    names = {o.name for o in model.graph.output}
    if set(OUTPUTS) - names or INPUT not in {i.name for i in model.graph.input}:
        raise ModelUnavailableError(
            f"{source} is not YuNet: expected input {INPUT!r} and outputs {', '.join(OUTPUTS)}, "
            f"found {sorted(i.name for i in model.graph.input)} and {sorted(names)}"
        )
    dynamic = to_dynamic(
        model,
        doc="YuNet (opencv_zoo face_detection_yunet_2023mar) with a dynamic batch, height and width. "
        "Input float32 NCHW BGR 0..255, height and width multiples of 32; outputs as the source's.",
    )
    _check_numbers(model, dynamic, source)
    return dynamic


def _check_numbers(source: onnx.ModelProto, dynamic: onnx.ModelProto, path: Path) -> None:
    """Run both graphs on ONNX Runtime (module doc); :class:`ModelUnavailableError` when the
    converted one differs from the source at the exported size, or mixes the images of a
    batch, or gives another number of cells than the input has."""
    from ..embedding.onnx_session import new_session

    who = "the yunet converter"
    src = new_session(source.SerializeToString(), 1, None, who)
    dyn = new_session(dynamic.SerializeToString(), 1, None, who)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (1, 3, *_EXPORTED)).astype(np.float32)
    want, got = src.run(list(OUTPUTS), {INPUT: x}), dyn.run(list(OUTPUTS), {INPUT: x})
    worst = max(float(np.abs(a - b).max()) for a, b in zip(want, got, strict=True))
    if worst > 1e-5:
        raise ModelUnavailableError(
            f"{path} converted to a dynamic size: expected the source's outputs at "
            f"{_EXPORTED[1]}x{_EXPORTED[0]}, found a difference of {worst:g}"
        )
    h, w = _OTHER
    pair = rng.uniform(0, 255, (2, 3, h, w)).astype(np.float32)
    both = dyn.run(list(OUTPUTS), {INPUT: pair})
    alone = [dyn.run(list(OUTPUTS), {INPUT: pair[i : i + 1]}) for i in range(2)]
    for name, out, a, b in zip(OUTPUTS, both, *alone, strict=True):
        kind, stride = name.split("_")
        cells = (h // int(stride)) * (w // int(stride))
        if out.shape != (2, cells, _WIDTHS[kind]) or not np.allclose(out, np.concatenate([a, b]), atol=1e-5):
            raise ModelUnavailableError(
                f"{path} converted to a dynamic size: expected {name} of shape (2, {cells}, "
                f"{_WIDTHS[kind]}) for two {w}x{h} images, each as when run alone; found {out.shape}"
            )


def decode(
    outputs: dict[str, FloatArray],
    index: int,
    pad_width: int,
    score_threshold: float,
    nms_threshold: float,
    top_k: int,
) -> FloatArray:
    """OpenCV's rows ``(n, 15)`` (module doc) for image ``index`` of the batch whose raw
    ``outputs`` (by name) came from a padded input ``pad_width`` pixels wide (which gives
    each stride's number of columns)."""
    threshold = np.float32(score_threshold)
    parts = []
    for s in STRIDES:
        cols = pad_width // s
        score = np.sqrt(
            np.clip(outputs[f"cls_{s}"][index, :, 0], 0, 1) * np.clip(outputs[f"obj_{s}"][index, :, 0], 0, 1)
        )
        cells = np.flatnonzero(~(score < threshold))  # OpenCV skips `score < threshold` (keeps NaN)
        if cells.size == 0:
            continue
        stride = np.float32(s)
        rc = np.stack([cells % cols, cells // cols], axis=1).astype(np.float32)  # (col, row)
        bbox = outputs[f"bbox_{s}"][index, cells]
        centre = (rc + bbox[:, :2]) * stride
        size = np.exp(bbox[:, 2:]) * stride
        corner = centre - size / np.float32(2)
        kps = (outputs[f"kps_{s}"][index, cells].reshape(-1, 5, 2) + rc[:, None, :]) * stride
        parts.append(np.concatenate([corner, size, kps.reshape(-1, 10), score[cells, None]], axis=1))
    if not parts:
        return np.zeros((0, 15), np.float32)
    faces = np.concatenate(parts).astype(np.float32, copy=False)
    if len(faces) == 1:
        return faces  # OpenCV runs no NMS on a single face
    import cv2

    boxes = np.trunc(faces[:, :4]).tolist()  # Rect2i(int(x), int(y), int(w), int(h))
    keep = cv2.dnn.NMSBoxes(boxes, faces[:, 14].tolist(), score_threshold, nms_threshold, 1.0, top_k)
    return faces[np.asarray(keep, dtype=np.intp).reshape(-1)]


class YuNetOnnx:
    """YuNet's converted graph on ONNX Runtime (module doc): :meth:`run` takes RGB images
    of one size and returns OpenCV's rows for each. ``model_path`` is the source file
    (default: the catalogue's ``yunet``); the thresholds are ``FaceDetectorYN``'s;
    ``intra_op_threads`` 0 is ONNX Runtime's default (one per physical core)."""

    def __init__(
        self,
        model_path: str | Path | None,
        score_threshold: float,
        nms_threshold: float,
        top_k: int,
        intra_op_threads: int = 0,
        providers: Sequence[str] | None = None,
    ) -> None:
        from ..embedding.converted import converted_bytes, open_built, warn_unpublished
        from ..embedding.onnx_session import new_session, require

        who = "the yunet detector's onnxruntime backend"
        require("onnxruntime", who)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.top_k = int(top_k)
        path = get_settings().cache_dir / BUILT_FILE
        try:
            self._session: Any = open_built(
                "yunet",
                convert,
                CONVERTER_VERSION,
                path,
                model_path,
                intra_op_threads=intra_op_threads,
                providers=providers,
                who=who,
            )
            self.onnx_path: Path | None = path
        except ModelUnavailableError as exc:
            if not isinstance(exc.__cause__, OSError):
                raise
            log.warning("%s; converting YuNet in memory instead (again in each process)", exc)
            src = models.resolve("yunet", path=model_path)
            sha = models.weights_sha256(src)
            data = converted_bytes(convert, src, sha, CONVERTER_VERSION)
            warn_unpublished("yunet", src, sha)
            self._session = new_session(data, intra_op_threads, providers, who)
            self.onnx_path = None

    def run(self, images: Sequence[Image]) -> list[FloatArray]:
        """OpenCV's rows ``(n, 15)`` (float32, pixels of the images as given) for RGB uint8
        images that all have one size, in one session call."""
        if not images:
            return []
        h, w = images[0].shape[:2]
        pad_w, pad_h = padded(w), padded(h)
        blob = np.zeros((len(images), 3, pad_h, pad_w), np.float32)
        for i, image in enumerate(images):
            blob[i, :, :h, :w] = image.transpose(2, 0, 1)[::-1]  # RGB HWC -> BGR CHW, as OpenCV feeds it
        raw = self._session.run(list(OUTPUTS), {INPUT: blob})
        named: dict[str, FloatArray] = {}
        for name, out in zip(OUTPUTS, raw, strict=True):
            kind, stride = name.split("_")
            want = (len(images), (pad_h // int(stride)) * (pad_w // int(stride)), _WIDTHS[kind])
            if out.shape != want:
                raise ModelUnavailableError(
                    f"YuNet's {name} for {len(images)} padded {pad_w}x{pad_h} images: expected shape "
                    f"{want}, found {out.shape}"
                )
            named[name] = np.asarray(out, np.float32)
        return [
            decode(named, i, pad_w, self.score_threshold, self.nms_threshold, self.top_k)
            for i in range(len(images))
        ]
