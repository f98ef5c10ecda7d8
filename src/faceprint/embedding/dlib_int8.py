"""dlib's ResNet v1 with int8 weights and uint8 activations on ONNX Runtime (``dlib-onnx-int8``).

Why: a face costs about 4 ms in the float ``dlib-onnx`` graph on one core here, most of it
in 29 convolutions; ONNX Runtime's static int8 kernels run the same network in about half
that, and on LFW dev it is as accurate: pairsDevTest 98.5% for both at their
pairsDevTrain thresholds (``bench/quantize.py`` measures both in one run; the issue's rule
was "an option only if accuracy drops by at most 0.1 point and it is faster here"). It is
an option, not the default: its vectors are close to the float ones (cosine >= 0.998) but
not equal, so they get their own model id and gallery, and on a CPU without fast int8
instructions (no VNNI) it may gain less.

**How the graph is built** (from dlib's ``.dat``, once, into the cache dir, by
:mod:`.converted` like ``dlib-onnx``; needs no images):

1. :func:`faceprint.embedding.dlib_onnx.to_onnx`, the float graph;
2. :func:`fold_affine`: each ``affine_`` layer (dlib's frozen batch norm: ``x * gamma +
   beta`` per channel) right after a convolution is folded into that convolution's weights
   and bias, so the quantised convolution carries it and the tensors keep the names the
   converter gives them;
3. ``onnxruntime.quantization.quantize_static``: QOperator format (``QLinearConv``,
   ``QLinearAdd``, ...), int8 weights per output channel, uint8 activations; the
   uint8-to-float prologue (cast, transpose, mean, /256) stays float.

The activations' ranges are not calibrated at build time: they were measured once with
ONNX Runtime's MinMax calibrator (:func:`calibrate`) on the aligned chips of every LFW
pairsDevTrain image (YuNet, the face nearest the centre; no pairsDevTest image) by
``python bench/quantize.py --write-ranges``, and ship with faceprint
(``models_data/dlib_int8_ranges.json``), tied to the ``.dat``'s sha256 and to both
converter versions. So every machine builds the same graph from the same ranges; another
``.dat`` (a fine-tuned one) is refused with a clear error rather than quantised with
ranges measured on other weights.

**Model id.** ``dlib@resnet_v1-int8+<sha8 of the .dat>``: another version of the same
weights, never mixed with ``dlib@resnet_v1`` vectors in one gallery (``faceprint
reembed`` moves a gallery between them). Needs onnxruntime >= 1.27 to build (its
``quantize_static`` takes stored ranges); running a built graph needs any supported one.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import tempfile
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .. import models
from ..errors import ModelUnavailableError
from .dlib_format import read_network
from .dlib_onnx import CONVERTER_VERSION as FLOAT_CONVERTER_VERSION
from .dlib_onnx import DlibOnnxEmbedder, to_onnx
from .onnx_session import INPUT_NAME

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

#: Bump when fold/quantise settings change the graph built from the same float graph.
INT8_VERSION = "1"
#: The built graph's converter version: the float converter's and this module's.
CONVERTER_VERSION = f"{FLOAT_CONVERTER_VERSION}+int8.{INT8_VERSION}"
#: The shipped activation ranges (module doc), in ``faceprint/models_data``.
RANGES_FILE = "dlib_int8_ranges.json"
#: Verification threshold (cosine similarity): the maximum-accuracy threshold on LFW
#: pairsDevTrain (YuNet landmarks), fitted by ``bench/quantize.py``.
DEFAULT_THRESHOLD = 0.908
#: The same fit with flip TTA.
FLIP_THRESHOLD = 0.912
#: onnxruntime from which ``quantize_static`` loads stored ranges (``calibration_cache_path``).
MIN_ORT_FOR_BUILD = "1.27"

Ranges = dict[str, tuple[float, float]]


def fold_affine(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with every ``Conv -> Mul(gamma) -> Add(beta)`` chain (per-channel
    constants of shape ``(1, C, 1, 1)``, each step the only reader of the one before) made
    one Conv: ``W[c] * gamma[c]``, ``b[c] * gamma[c] + beta[c]``. The Conv takes the Add's
    output name, so the tensors after it keep their names; other nodes are left alone."""
    import onnx
    from onnx import numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = {t.name: t for t in g.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)

    def only_reader(tensor: str, op: str) -> onnx.NodeProto | None:
        r = readers.get(tensor, [])
        return r[0] if len(r) == 1 and r[0].op_type == op and tensor not in graph_outputs else None

    def const(node: onnx.NodeProto, channels: int) -> NDArray[np.float32] | None:
        names = [i for i in node.input if i in inits]
        if len(names) != 1 or len(node.input) != 2:
            return None
        v = numpy_helper.to_array(inits[names[0]]).astype(np.float32)
        return v.reshape(channels) if v.shape == (1, channels, 1, 1) else None

    graph_outputs = {o.name for o in g.output}
    dropped_nodes: set[int] = set()
    dropped_inits: set[str] = set()
    for conv in g.node:
        if conv.op_type != "Conv" or len(conv.input) != 3 or not {*conv.input[1:]} <= inits.keys():
            continue
        w = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float32)
        b = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float32)
        mul = only_reader(conv.output[0], "Mul")
        add = only_reader(mul.output[0], "Add") if mul is not None else None
        if mul is None or add is None:
            continue
        gamma, beta = const(mul, w.shape[0]), const(add, w.shape[0])
        if gamma is None or beta is None:
            continue
        w_new = w * gamma[:, None, None, None]
        b_new = b * gamma + beta
        for name, arr in ((conv.input[1], w_new), (conv.input[2], b_new)):
            inits[name].CopyFrom(numpy_helper.from_array(arr.astype(np.float32), name))
        conv.output[0] = add.output[0]
        dropped_nodes.update((id(mul), id(add)))
        dropped_inits.update(i for i in (*mul.input, *add.input) if i in inits)
    kept = [n for n in g.node if id(n) not in dropped_nodes]
    still_read = {i for n in kept for i in n.input}
    del g.node[:]
    g.node.extend(kept)
    kept_inits = [t for t in g.initializer if t.name not in dropped_inits or t.name in still_read]
    del g.initializer[:]
    g.initializer.extend(kept_inits)
    return out


def float_prologue(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes before the first Conv (uint8 to float, NCHW, mean, scale): they
    stay float, since quantising the raw pixels' arithmetic gains nothing."""
    names: list[str] = []
    for n in model.graph.node:
        if n.op_type == "Conv":
            return names
        names.append(n.name)
    raise ModelUnavailableError("the dlib graph has no convolution to quantise")


def folded_float(source: Path) -> onnx.ModelProto:
    """The float graph of the ``.dat`` at ``source`` with its affines folded: the graph the
    ranges are measured on and the quantiser reads."""
    return fold_affine(to_onnx(read_network(source)))


def _require_quantizer() -> Any:
    """``onnxruntime.quantization``, new enough to load stored ranges; else a clear error."""
    try:
        import onnxruntime  # type: ignore[import-untyped]
        from onnxruntime import quantization
        from onnxruntime.quantization import calibrate as calib  # type: ignore[import-untyped]
    except ImportError as exc:  # onnxruntime missing, or built without its Python tools
        raise ModelUnavailableError(
            f"building dlib-onnx-int8 needs onnxruntime's quantization tools: {exc}"
        ) from exc
    takes_ranges = "calibration_cache_path" in inspect.signature(quantization.quantize_static).parameters
    if not takes_ranges or not hasattr(calib, "save_tensors_data"):
        raise ModelUnavailableError(
            f"building dlib-onnx-int8 needs onnxruntime >= {MIN_ORT_FOR_BUILD} "
            f"(this is {onnxruntime.__version__}): pip install -U onnxruntime; or use the dlib-onnx embedder"
        )
    return quantization


def load_ranges(source_sha256: str, path: Path | None = None) -> Ranges:
    """The shipped activation ranges (``path``: another ranges file, as
    :func:`write_ranges` writes it), checked to belong to the ``.dat`` hashing to
    ``source_sha256`` and to this module's converter version."""
    try:
        if path is None:
            text = resources.files("faceprint.models_data").joinpath(RANGES_FILE).read_text()
        else:
            text = Path(path).read_text()
        data = json.loads(text)
        ranges = {str(k): (float(v[0]), float(v[1])) for k, v in data["ranges"].items()}
        recorded = (str(data["source_sha256"]), str(data["converter_version"]))
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ModelUnavailableError(f"the dlib-onnx-int8 activation ranges cannot be read: {exc}") from exc
    if recorded[0] != source_sha256:
        raise ModelUnavailableError(
            "dlib-onnx-int8 ships activation ranges for the published dlib model "
            f"(sha256 {recorded[0][:12]}...) only; this one's is {source_sha256[:12]}...: "
            "use the dlib-onnx embedder with it"
        )
    if recorded[1] != CONVERTER_VERSION:
        raise ModelUnavailableError(
            f"the dlib-onnx-int8 activation ranges were measured for converter {recorded[1]}, this is "
            f"{CONVERTER_VERSION}: re-measure them (python bench/quantize.py --write-ranges)"
        )
    if not ranges or any(
        not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi) for lo, hi in ranges.values()
    ):
        raise ModelUnavailableError("the dlib-onnx-int8 activation ranges are empty or not finite")
    return ranges


def quantize(
    folded: onnx.ModelProto,
    ranges: Ranges,
    *,
    quant_format: str = "QOperator",
    per_channel: bool = True,
    reduce_range: bool = False,
) -> onnx.ModelProto:
    """The int8 graph of ``folded`` (:func:`folded_float`) with activation ``ranges``: by
    default what ships (module doc); ``bench/quantize.py`` also tries the QDQ format,
    per-tensor weights and 7-bit weights (``reduce_range``). Raises
    :class:`ModelUnavailableError` when a tensor the quantiser needs has no range (ranges
    measured on another graph)."""
    import onnx

    q = _require_quantizer()
    missing = sorted({o for n in folded.graph.node for o in n.output} - ranges.keys())
    if missing:
        raise ModelUnavailableError(
            f"the activation ranges do not fit this graph: {len(missing)} of its tensors have none "
            f"(e.g. {missing[0]}); they were measured on another graph"
        )
    calib = q.calibrate
    tensors = {
        k: calib.TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for k, (lo, hi) in ranges.items()
    }
    with tempfile.TemporaryDirectory(prefix="faceprint-int8-") as tmp:
        d = Path(tmp)
        pre = _prepare(folded, d)
        calib.save_tensors_data(calib.TensorsData(calib.CalibrationMethod.MinMax, tensors), d / "ranges.json")
        try:
            with _quiet():
                q.quantize_static(
                    str(pre),
                    str(d / "int8.onnx"),
                    None,
                    calibration_cache_path=str(d / "ranges.json"),
                    quant_format=q.QuantFormat.QDQ if quant_format == "QDQ" else q.QuantFormat.QOperator,
                    per_channel=per_channel,
                    reduce_range=reduce_range,
                    activation_type=q.QuantType.QUInt8,
                    weight_type=q.QuantType.QInt8,
                    nodes_to_exclude=float_prologue(folded),
                )
        except (KeyError, ValueError) as exc:
            raise ModelUnavailableError(f"cannot quantise the dlib graph with these ranges: {exc}") from exc
        model = onnx.load(str(d / "int8.onnx"))
    model.graph.name = "dlib_face_recognition_resnet_model_v1_int8"
    model.doc_string = (
        f"dlib face recognition ResNet v1 (CC0), int8 (ONNX Runtime static quantisation, {quant_format}). "
        "Input uint8 RGB NHWC 150x150 chips; output raw 128-D descriptors (L2-normalise, compare by cosine)."
    )
    return model


def _prepare(folded: onnx.ModelProto, tmp: Path) -> Path:
    """``folded`` written into ``tmp`` with its shapes inferred (``quant_pre_process``
    without its graph optimisations, which would rename the tensors the ranges are keyed
    by); returns that file's path."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process  # type: ignore[import-untyped]

    onnx.save(folded, str(tmp / "float.onnx"))
    quant_pre_process(str(tmp / "float.onnx"), str(tmp / "pre.onnx"), skip_optimization=True)
    return tmp / "pre.onnx"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The root logger at ERROR for the block: the quantiser logs its info lines there."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def calibrate(folded: onnx.ModelProto, batches: Iterable[NDArray[np.uint8]]) -> Ranges:
    """MinMax activation ranges of every tensor of ``folded`` over chip ``batches`` (each
    ``(N, 150, 150, 3)`` uint8 RGB), by ONNX Runtime's calibrator: what
    ``bench/quantize.py --write-ranges`` stores."""
    q = _require_quantizer()
    feed = iter(batches)

    class Reader(q.CalibrationDataReader):  # type: ignore[misc,name-defined]
        def get_next(self) -> dict[str, NDArray[np.uint8]] | None:
            batch = next(feed, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory(prefix="faceprint-int8-") as tmp:
        d = Path(tmp)
        calibrator = q.create_calibrator(
            _prepare(folded, d),
            augmented_model_path=str(d / "augmented.onnx"),
            calibrate_method=q.CalibrationMethod.MinMax,
        )
        with _quiet():
            calibrator.collect_data(Reader())
            data = calibrator.compute_data()
    return {
        k: (float(np.ravel(data[k].range_value[0])[0]), float(np.ravel(data[k].range_value[1])[0]))
        for k in data
    }


def write_ranges(ranges: Ranges, source_sha256: str, path: Path, provenance: dict[str, Any]) -> None:
    """Store ``ranges`` as :func:`load_ranges` reads them, with what they belong to."""
    payload = {
        "model": "dlib-onnx-int8",
        "source_sha256": source_sha256,
        "converter_version": CONVERTER_VERSION,
        "calibration_method": "MinMax (onnxruntime.quantization.create_calibrator)",
        **provenance,
        "ranges": {k: [lo, hi] for k, (lo, hi) in sorted(ranges.items())},
    }
    path.write_text(json.dumps(payload, indent=1) + "\n")


class DlibInt8Embedder(DlibOnnxEmbedder):
    """dlib ResNet v1 (128-D), int8 on ONNX Runtime (module doc). Options as for
    :class:`~faceprint.embedding.dlib_onnx.DlibOnnxEmbedder`; ``model_path`` must be the
    published ``.dat`` (the ranges are measured for it)."""

    name = "dlib-onnx-int8"
    version = "resnet_v1-int8"
    default_threshold = DEFAULT_THRESHOLD
    flip_threshold = FLIP_THRESHOLD
    converter_version = CONVERTER_VERSION
    strict_source = True

    @classmethod
    def convert(cls, source: Path) -> onnx.ModelProto:
        ranges = load_ranges(models.sha256_file(source))
        return quantize(folded_float(source), ranges)
