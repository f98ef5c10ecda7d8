"""Turn a fixed-batch ONNX face embedder into faceprint's embedder graph contract.

Why: face embedders found as ONNX files are mostly PyTorch traces exported with a batch of
exactly 1 (``input [1, 3, 112, 112]``, ``Reshape(x, [1, -1])`` before the output), so
they run one face per call; ONNX Runtime takes several times less time per face on a
batch. Declaring the input's batch dynamic is not enough: the trace froze the batch of 1
into shape constants too, and a graph run at batch 7 would then fail, or worse, mix faces.
:func:`to_contract` proves, op by op, that every tensor computed from the input keeps the
batch on axis 0 and never mixes samples, rewrites the constants that hard-code it, and
refuses (:class:`~faceprint.errors.ModelUnavailableError`) a graph where it cannot.

The graph it returns (the contract of :mod:`.onnx_session`):

* input ``crops``: ``uint8`` ``(N, size, size, 3)``, **RGB, NHWC** (the aligned crops as
  :func:`faceprint.alignment.align` cuts them), dynamic batch ``N`` (``dim_param``
  ``"batch"``);
* inside: cast to float32, ``(x - mean) * scale``, transpose to **NCHW**, then the
  source network unchanged but for its batch constants;
* output ``descriptors``: float32 ``(N, dim)``, the network's raw output (not normalised:
  the embedder L2-normalises).

The source must have one float32 input ``[1 or symbolic, 3, size, size]`` (NCHW, the
channels in the order ``mean``/``scale`` preprocessing assumes: RGB for ``crops``) and one
float32 output ``[1 or symbolic, dim]``, all its ops in the default ONNX domain.

**The proof.** Walking the nodes in order, a tensor is *batched* (computed from the
input, batch on axis 0) or *constant* (no path from the input). A node with no batched
input is constant whatever it does. A node with one is accepted only when its op's rule
shows sample ``i`` of each output depends on sample ``i`` of the inputs alone:
elementwise and per-sample ops (Conv, pools, normalisations over non-batch axes),
broadcasting whose constant operand has a leading 1 or a lower rank, axis ops on an axis
other than 0, Flatten at axis 1, Gemm/MatMul with the batch in the rows, Transpose
keeping axis 0, Resize by constant scales of 1 on axis 0. Shape constants are rewritten
generically: a Reshape target ``[1, ...]`` or ``[-1, ...]`` becomes ``[0, ...]`` (ONNX's
"copy the input's dim"; the ``-1`` case only when it means the batch of 1), a Slice over
axis 0 from 0 to 1 ends at ``INT64_MAX``; Expand, Tile and Pad must leave axis 0 alone.
Anything else (Shape, control flow, an unknown op, a constant with a batch axis other than
1) is refused, naming the node. The result passes ``onnx.checker`` (full check) and ONNX
shape inference must find no fixed size on the batch axis of any batched tensor.

Metadata: the source's ``metadata_props`` are kept, ``metadata`` added over them
(:func:`onnx.helper.set_model_props`); the opset is the source's (raised to 7 only when
older, for broadcasting Sub/Mul and numeric Cast).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidArgumentError, ModelUnavailableError
from .onnx_session import INPUT_NAME, OUTPUT_NAME, require

if TYPE_CHECKING:  # onnx is imported lazily at run time
    import onnx

BATCH = "batch"  # the dim_param of the dynamic batch axis
_MIN_OPSET = 7  # multidirectional broadcasting (Sub, Mul) and Cast's numeric `to`
_INT64_MAX = 2**63 - 1
_DEFAULT_DOMAINS = ("", "ai.onnx")
Dims = list[int | None]  # a tensor's dims; None for a symbolic or unknown one


def _refuse(expected: str, found: str) -> NoReturn:
    raise ModelUnavailableError(
        f"cannot give the ONNX model a dynamic batch: expected {expected}, found {found}"
    )


def node_label(node: onnx.NodeProto) -> str:
    return f"{node.op_type} node {node.name or node.output[0]!r}"


def _fresh(taken: set[str], base: str) -> str:
    """A tensor or node name not in ``taken`` (which it joins)."""
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


def _all_names(graph: onnx.GraphProto) -> set[str]:
    names = {t.name for t in graph.initializer} | {v.name for v in (*graph.input, *graph.output)}
    for node in graph.node:
        names.update(node.input, node.output, [node.name])
    names.discard("")
    return names


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename tensor ``old`` to ``new`` everywhere in ``graph`` (no subgraphs: refused)."""
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for item in (*graph.input, *graph.output, *graph.initializer):
        if item.name == old:
            item.name = new


def dims_of(value_info: onnx.ValueInfoProto) -> Dims | None:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]


def _normalise(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _broadcasts_keep_batch(dims: Dims, rank: int) -> bool:
    """Whether a constant of ``dims``, broadcast against a batched tensor of ``rank``,
    leaves the batch axis alone: a lower rank aligns it to the right, past axis 0; an
    equal rank needs a leading 1."""
    return len(dims) < rank or (len(dims) == rank and dims[0] == 1)


class BatchProof:
    """Marks the tensors computed from the input and rewrites the batch constants (module
    doc, "The proof"). ``shapes`` are ONNX's inferred shapes at batch 1.

    Public because the detector converter (:mod:`faceprint.detection.onnx_dynamic`) runs
    the same proof for the batch axis before its own for the image's height and width; it
    reads the rewritten constants from :attr:`tensors`."""

    def __init__(self, graph: onnx.GraphProto, shapes: dict[str, Dims], opset: int) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.graph, self.shapes, self.opset = graph, shapes, opset
        self.tensors = {t.name: t for t in graph.initializer}  # constant values by name
        self.constant = set(self.tensors)
        self.batched: set[str] = set()
        self.taken = _all_names(graph)

    # -- what is known about a tensor ---------------------------------------------------
    def dims(self, name: str, node: onnx.NodeProto) -> Dims:
        if name not in self.shapes:
            _refuse(f"a shape ONNX can infer for {name!r}, read by {node_label(node)}", "none")
        return self.shapes[name]

    def rank(self, name: str, node: onnx.NodeProto) -> int:
        return len(self.dims(name, node))

    def value(self, node: onnx.NodeProto, index: int) -> NDArray[Any] | None:
        """The constant value of input ``index`` (None when the input is absent)."""
        if index >= len(node.input) or not node.input[index]:
            return None
        name = node.input[index]
        if name not in self.tensors:
            how = "computed from the input" if name in self.batched else "computed at run time"
            _refuse(f"input {index} of {node_label(node)} to be a stored constant", f"{name!r} {how}")
        return np.asarray(self.numpy_helper.to_array(self.tensors[name]))

    def attr(self, node: onnx.NodeProto, name: str, default: Any = None) -> Any:
        for a in node.attribute:
            if a.name == name:
                return self.helper.get_attribute_value(a)
        return default

    def ints(self, node: onnx.NodeProto, attr: str, index: int) -> list[int] | None:
        """An int list given as attribute ``attr`` (older opsets) or constant input ``index``."""
        found = self.attr(node, attr)
        if found is not None:
            return [int(v) for v in found]
        value = self.value(node, index)
        return None if value is None else [int(v) for v in value.reshape(-1)]

    def replace_input(self, node: onnx.NodeProto, index: int, value: NDArray[Any]) -> None:
        """Point input ``index`` of ``node`` at a new initializer holding ``value`` (the old
        one may be shared with other nodes)."""
        name = _fresh(self.taken, f"{node.input[index]}_dynamic_batch")
        self.tensors[name] = self.numpy_helper.from_array(value, name)
        self.graph.initializer.append(self.tensors[name])
        self.constant.add(name)
        node.input[index] = name

    # -- the walk -----------------------------------------------------------------------
    def run(self, input_name: str) -> set[str]:
        """The names of the batched tensors; refuses a node no rule proves."""
        self.batched.add(input_name)
        for node in self.graph.node:
            if node.op_type == "Constant" and node.domain in _DEFAULT_DOMAINS:
                self._constant(node)
                continue
            inputs = [n for n in node.input if n]
            late = [n for n in inputs if n not in self.batched and n not in self.constant]
            if late:
                _refuse(
                    "nodes in topological order", f"{node_label(node)} reading {late[0]!r} before it is made"
                )
            if not any(n in self.batched for n in inputs):
                self.constant.update(n for n in node.output if n)
                continue
            if node.domain not in _DEFAULT_DOMAINS:
                _refuse("ops of the default ONNX domain", f"{node_label(node)} of domain {node.domain!r}")
            rule = _RULES.get(node.op_type)
            if rule is None:
                _refuse("ops whose batch handling is known", f"{node_label(node)} on the input")
            rule(self, node)
            for out in node.output:
                if out:
                    self._check_batch_axis(out, node)
                    self.batched.add(out)
        return self.batched

    def _constant(self, node: onnx.NodeProto) -> None:
        """Record a Constant node's value (so it can be read as a shape)."""
        out = node.output[0]
        self.constant.add(out)
        for a in node.attribute:
            v = self.helper.get_attribute_value(a)
            if a.name == "value":
                self.tensors[out] = v
            elif a.name in ("value_int", "value_ints"):
                self.tensors[out] = self.numpy_helper.from_array(np.asarray(v, np.int64), out)
            elif a.name in ("value_float", "value_floats"):
                self.tensors[out] = self.numpy_helper.from_array(np.asarray(v, np.float32), out)

    def _check_batch_axis(self, name: str, node: onnx.NodeProto) -> None:
        """A batched tensor has the batch on axis 0: of size 1 at batch 1. (A safety net
        behind the rules: a rule that let a sample-mixing op through would show here.)"""
        dims = self.shapes.get(name)
        if dims is not None and (not dims or (dims[0] is not None and dims[0] != 1)):
            _refuse(f"{node_label(node)} to keep the batch (size 1) on axis 0 of {name!r}", f"shape {dims}")

    # -- rules shared by several ops -----------------------------------------------------
    def only_first_batched(self, node: onnx.NodeProto) -> None:
        """Input 0 carries the batch; the others (weights, parameters) are constants."""
        if node.input[0] not in self.batched:
            _refuse(
                f"the input to reach {node_label(node)} through input 0", f"input {node.input[0]!r} constant"
            )
        for n in node.input[1:]:
            if n in self.batched:
                _refuse(
                    f"the parameters of {node_label(node)} to be constants", f"{n!r} computed from the input"
                )

    def only_first_output(self, node: onnx.NodeProto) -> None:
        """Optional outputs (training statistics, MaxPool's flat indices, which count
        across the batch) are refused."""
        if any(node.output[1:]):
            _refuse(f"{node_label(node)} to have one output", f"{sum(1 for o in node.output if o)}")

    def not_axis_zero(self, node: onnx.NodeProto, axes: Iterable[int], rank: int) -> None:
        norm = [_normalise(a, rank) for a in axes]
        if 0 in norm:
            _refuse(f"{node_label(node)} to work on axes other than the batch's (0)", f"axes {list(axes)}")

    def broadcast(self, node: onnx.NodeProto) -> None:
        """Elementwise with numpy broadcasting: batched operands of the full rank, constants
        that never stretch along axis 0."""
        names = [n for n in node.input if n]
        rank = max(self.rank(n, node) for n in names)
        for n in names:
            dims = self.dims(n, node)
            if n in self.batched and len(dims) != rank:
                _refuse(
                    f"batched operands of {node_label(node)} to have rank {rank}",
                    f"{n!r} of rank {len(dims)}",
                )
            if n not in self.batched and not _broadcasts_keep_batch(dims, rank):
                _refuse(
                    f"constants broadcast by {node_label(node)} over the batch (leading 1 or lower rank)",
                    f"{n!r} of shape {dims}",
                )


# -- per-op rules ----------------------------------------------------------------------------


def _per_sample(ctx: BatchProof, node: onnx.NodeProto) -> None:
    ctx.only_first_batched(node)


def _per_sample_one_output(ctx: BatchProof, node: onnx.NodeProto) -> None:
    ctx.only_first_batched(node)
    ctx.only_first_output(node)
    if ctx.attr(node, "training_mode", 0):
        _refuse(f"{node_label(node)} in inference mode", "training_mode=1")


def _broadcast(ctx: BatchProof, node: onnx.NodeProto) -> None:
    ctx.broadcast(node)


def _axis_rule(
    default: int | None, all_batched: bool = False
) -> Callable[[BatchProof, onnx.NodeProto], None]:
    """Ops that work along one ``axis`` attribute: fine unless that axis is the batch."""

    def rule(ctx: BatchProof, node: onnx.NodeProto) -> None:
        names = [n for n in node.input if n]
        if all_batched:
            constant = next((n for n in names if n not in ctx.batched), None)
            if constant is not None:
                _refuse(
                    f"every input of {node_label(node)} computed from the input", f"{constant!r} constant"
                )
        else:
            ctx.only_first_batched(node)
        axis = ctx.attr(node, "axis", default)
        if node.op_type == "CumSum":
            value = ctx.value(node, 1)
            axis = None if value is None else int(value.reshape(-1)[0])
        if axis is None:
            _refuse(f"an axis on {node_label(node)}", "none")
        ctx.not_axis_zero(node, [int(axis)], ctx.rank(node.input[0], node))

    return rule


def _softmax(ctx: BatchProof, node: onnx.NodeProto) -> None:
    ctx.only_first_batched(node)
    axis = ctx.attr(node, "axis", 1 if ctx.opset < 13 else -1)  # before 13: rows from axis on
    ctx.not_axis_zero(node, [int(axis)], ctx.rank(node.input[0], node))


def _flatten(ctx: BatchProof, node: onnx.NodeProto) -> None:
    ctx.only_first_batched(node)
    axis = _normalise(int(ctx.attr(node, "axis", 1)), ctx.rank(node.input[0], node))
    if axis != 1:  # axis k >= 2 folds the batch into the rows
        _refuse(f"{node_label(node)} at axis 1", f"axis {axis}")


def _transpose(ctx: BatchProof, node: onnx.NodeProto) -> None:
    perm = ctx.attr(node, "perm")
    if perm is None or int(perm[0]) != 0:
        _refuse(f"{node_label(node)} to keep axis 0 first", f"perm {perm}")


def _reshape(ctx: BatchProof, node: onnx.NodeProto) -> None:
    ctx.only_first_batched(node)
    if ctx.attr(node, "allowzero", 0):
        _refuse(f"{node_label(node)} with allowzero=0 (0 copies a dim)", "allowzero=1")
    target = ctx.value(node, 1)
    assert target is not None  # a required input
    if target.ndim != 1 or target.size == 0:
        _refuse(f"a non-empty 1-D target shape on {node_label(node)}", f"shape {list(target.shape)}")
    lead = int(target[0])
    if lead == 0:
        return
    out = ctx.dims(node.output[0], node)
    if lead not in (1, -1) or out[0] != 1:
        _refuse(f"{node_label(node)} to keep the batch of 1 on axis 0", f"target {target.tolist()}")
    rewritten = target.astype(np.int64)
    rewritten[0] = 0  # "copy the input's dim 0", the batch: generic, and shape inference keeps it
    ctx.replace_input(node, 1, rewritten)


def _expand(ctx: BatchProof, node: onnx.NodeProto) -> None:
    ctx.only_first_batched(node)
    shape = ctx.value(node, 1)
    assert shape is not None
    dims: Dims = [int(v) for v in shape.reshape(-1)]
    if not _broadcasts_keep_batch(dims, ctx.rank(node.input[0], node)):
        _refuse(f"{node_label(node)} to leave the batch axis alone", f"shape {dims}")


def _tile(ctx: BatchProof, node: onnx.NodeProto) -> None:
    ctx.only_first_batched(node)
    repeats = ctx.value(node, 1)
    assert repeats is not None
    if int(repeats.reshape(-1)[0]) != 1:
        _refuse(f"{node_label(node)} to repeat the batch axis once", f"repeats {repeats.tolist()}")


def _pad(ctx: BatchProof, node: onnx.NodeProto) -> None:
    ctx.only_first_batched(node)
    rank = ctx.rank(node.input[0], node)
    pads = ctx.attr(node, "pads", ctx.attr(node, "paddings"))
    pads = [int(v) for v in pads] if pads is not None else ctx.ints(node, "pads", 1)
    axes = ctx.ints(node, "axes", 3) if ctx.opset >= 18 else None
    axes = [_normalise(a, rank) for a in axes] if axes is not None else list(range(rank))
    if pads is None or len(pads) != 2 * len(axes):
        _refuse(f"{2 * len(axes)} pads on {node_label(node)}", f"{pads}")
    if 0 in axes and (pads[axes.index(0)] or pads[len(axes) + axes.index(0)]):
        _refuse(f"{node_label(node)} not to pad the batch axis", f"pads {pads}")


def _slice(ctx: BatchProof, node: onnx.NodeProto) -> None:
    """Axis 0 may be sliced only as ``0:1`` (the trace's "all of the batch of 1"), which
    becomes ``0:INT64_MAX``."""
    ctx.only_first_batched(node)
    rank = ctx.rank(node.input[0], node)
    old = ctx.opset < 10  # starts/ends/axes were attributes
    starts = ctx.ints(node, "starts", 1)
    ends = ctx.ints(node, "ends", 2)
    axes = ctx.ints(node, "axes", 3)
    steps = None if old else ctx.ints(node, "steps", 4)
    if starts is None or ends is None:
        _refuse(f"starts and ends on {node_label(node)}", "none")
    axes = [_normalise(a, rank) for a in (axes if axes is not None else range(len(starts)))]
    if 0 not in axes:
        return
    i = axes.index(0)
    step = 1 if steps is None else steps[i]
    if starts[i] != 0 or step != 1 or ends[i] < 1:
        _refuse(
            f"{node_label(node)} to take all of the batch axis",
            f"start {starts[i]}, end {ends[i]}, step {step}",
        )
    ends[i] = _INT64_MAX
    if old:
        for a in node.attribute:
            if a.name == "ends":
                a.ints[:] = ends
    else:
        ctx.replace_input(node, 2, np.asarray(ends, np.int64))


def _resize(ctx: BatchProof, node: onnx.NodeProto) -> None:
    """Resize (and the older Upsample) by constant ``scales`` of 1 on axis 0; target
    ``sizes`` would fix the batch, so they are refused."""
    ctx.only_first_batched(node)
    scales_at = 1 if node.op_type == "Upsample" or ctx.opset < 11 else 2
    scales = ctx.attr(node, "scales")  # Upsample before opset 9
    scales = [float(v) for v in scales] if scales is not None else None
    if scales is None:
        value = ctx.value(node, scales_at)
        scales = None if value is None or value.size == 0 else [float(v) for v in value.reshape(-1)]
    sizes = ctx.value(node, 3) if scales_at == 2 else None
    if sizes is not None and sizes.size:
        _refuse(f"{node_label(node)} by scales", f"target sizes {sizes.tolist()}")
    if not scales or scales[0] != 1:
        _refuse(f"{node_label(node)} to scale the batch axis by 1", f"scales {scales}")


def _squeeze(ctx: BatchProof, node: onnx.NodeProto) -> None:
    ctx.only_first_batched(node)
    rank = ctx.rank(node.input[0], node)
    if node.op_type == "Unsqueeze":
        rank = ctx.rank(node.output[0], node)  # its axes index the output
    axes = ctx.ints(node, "axes", 1)
    if axes is None:  # Squeeze without axes drops every 1, the batch's too
        _refuse(f"explicit axes on {node_label(node)}", "none")
    ctx.not_axis_zero(node, axes, rank)


def _reduce(ctx: BatchProof, node: onnx.NodeProto) -> None:
    ctx.only_first_batched(node)
    axes = ctx.ints(node, "axes", 1)
    if axes is None:
        if ctx.attr(node, "noop_with_empty_axes", 0):
            return
        _refuse(f"explicit axes on {node_label(node)}", "a reduction over every axis, the batch's too")
    ctx.not_axis_zero(node, axes, ctx.rank(node.input[0], node))


def _gemm(ctx: BatchProof, node: onnx.NodeProto) -> None:
    ctx.only_first_batched(node)
    if ctx.attr(node, "transA", 0):
        _refuse(f"{node_label(node)} with the batch in the rows of A", "transA=1")
    if len(node.input) > 2 and node.input[2] and not _broadcasts_keep_batch(ctx.dims(node.input[2], node), 2):
        _refuse(
            f"a bias of {node_label(node)} that broadcasts over the batch", f"{ctx.dims(node.input[2], node)}"
        )


def _matmul(ctx: BatchProof, node: onnx.NodeProto) -> None:
    """Batch in the rows of A, or in the stacked leading axes of either operand."""
    a, b = node.input[0], node.input[1]
    ra, rb = ctx.rank(a, node), ctx.rank(b, node)
    if a in ctx.batched and b in ctx.batched:
        ok = ra == rb and ra >= 3
    elif a in ctx.batched:
        ok = ra >= 2 and (rb <= 2 or (ra >= 3 and _broadcasts_keep_batch(ctx.dims(b, node), ra)))
    else:
        ok = rb >= 3 and (ra <= 2 or _broadcasts_keep_batch(ctx.dims(a, node), rb))
    if not ok:
        _refuse(f"{node_label(node)} to keep the batch on axis 0", f"operand ranks {ra} and {rb}")


#: Element-wise ops of one input: the output keeps the input's batch (public: the YuNet
#: size-freeing pass in faceprint.detection.onnx_dynamic reuses these lists).
UNARY_OPS = (
    "Abs Acos Acosh Asin Asinh Atan Atanh Cast Ceil Celu Clip Cos Cosh Dropout Elu Erf Exp Floor Gelu "
    "HardSigmoid HardSwish Identity IsInf IsNaN LeakyRelu Log Mish Neg Not Reciprocal Relu Round Selu "
    "Shrink Sigmoid Sign Sin Sinh Softplus Softsign Sqrt Tan Tanh ThresholdedRelu"
)
_PER_SAMPLE = "AveragePool Conv ConvTranspose DepthToSpace GlobalAveragePool GlobalLpPool GlobalMaxPool "
_PER_SAMPLE += "InstanceNormalization LpPool LRN SpaceToDepth"
#: Element-wise ops that broadcast their inputs (numpy rules).
BROADCAST_OPS = "Add And BitShift Div Equal Greater GreaterOrEqual Less LessOrEqual Max Mean Min Mod Mul Or "
BROADCAST_OPS += "Pow PRelu Sub Sum Where Xor"
_REDUCE = "ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd "
_REDUCE += "ReduceSum ReduceSumSquare"

_RULES: dict[str, Callable[[BatchProof, onnx.NodeProto], None]] = {
    **dict.fromkeys(UNARY_OPS.split(), _per_sample),
    **dict.fromkeys(_PER_SAMPLE.split(), _per_sample),
    **dict.fromkeys(("BatchNormalization", "MaxPool"), _per_sample_one_output),
    **dict.fromkeys(BROADCAST_OPS.split(), _broadcast),
    **dict.fromkeys(_REDUCE.split(), _reduce),
    **dict.fromkeys(("Softmax", "LogSoftmax", "Hardmax"), _softmax),
    **dict.fromkeys(("Squeeze", "Unsqueeze"), _squeeze),
    "ArgMax": _axis_rule(0),
    "ArgMin": _axis_rule(0),
    "Concat": _axis_rule(None, all_batched=True),
    "CumSum": _axis_rule(None),
    "Gather": _axis_rule(0),
    "LayerNormalization": _axis_rule(-1),
    "LpNormalization": _axis_rule(-1),
    "Split": _axis_rule(0),
    "Expand": _expand,
    "Flatten": _flatten,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Pad": _pad,
    "Reshape": _reshape,
    "Resize": _resize,
    "Slice": _slice,
    "Tile": _tile,
    "Transpose": _transpose,
    "Upsample": _resize,
}


# -- the conversion ------------------------------------------------------------------------


def default_opset(model: onnx.ModelProto) -> int:
    versions = [o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS]
    if not versions:
        _refuse("an import of the default ONNX opset", "none")
    return int(versions[0])


def infer_dims(model: onnx.ModelProto, what: str) -> dict[str, Dims]:
    """Every tensor's inferred dims (strict: an inconsistent graph is refused)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:  # onnx raises several types; any of them means "not valid"
        _refuse(f"{what} that ONNX shape inference accepts", str(exc).strip().splitlines()[0])
    g = inferred.graph
    shapes: dict[str, Dims] = {t.name: [int(d) for d in t.dims] for t in g.initializer}
    for vi in (*g.input, *g.output, *g.value_info):
        dims = dims_of(vi)
        if dims is not None:
            shapes[vi.name] = dims
    return shapes


def _check_arguments(size: int, mean: float, scale: float) -> None:
    if size < 1 or not math.isfinite(mean) or not math.isfinite(scale) or scale == 0:
        raise InvalidArgumentError(
            f"need size >= 1 and finite mean and non-zero scale, got size {size}, mean {mean}, scale {scale}"
        )


def to_contract(
    model: onnx.ModelProto,
    *,
    size: int,
    mean: float,
    scale: float,
    metadata: dict[str, str] | None,
    doc: str,
) -> onnx.ModelProto:
    """A new model: ``model`` (float32 NCHW ``[1, 3, size, size]`` in, ``[1, dim]`` out,
    batch fixed or not) as faceprint's embedder graph, ``uint8`` RGB NHWC crops of
    ``size`` x ``size`` in, raw float32 ``(N, dim)`` descriptors out, dynamic batch (see
    the module doc). ``mean`` and ``scale`` are the network's preprocessing, ``(x - mean)
    * scale`` on 0..255 pixels; ``metadata`` is added to the source's ``metadata_props``,
    ``doc`` becomes the model's doc string. ``model`` is not changed.

    Raises :class:`ModelUnavailableError` (one line: what was expected, what was found)
    for a graph whose batch cannot be proved to be made dynamic, and
    :class:`InvalidArgumentError` for a bad ``size``, ``mean`` or ``scale``.
    """
    require("onnx", "the ONNX embedder converter")  # names the package when it is missing
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    _check_arguments(size, mean, scale)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    if default_opset(m) < _MIN_OPSET:
        try:
            m = onnx.version_converter.convert_version(m, _MIN_OPSET)
        except Exception as exc:
            _refuse(f"a graph convertible to opset {_MIN_OPSET}", str(exc).strip().splitlines()[0])
    opset = default_opset(m)
    g = m.graph
    del g.value_info[:]  # the trace's shapes say batch 1: stale once the batch is dynamic
    stored = {t.name for t in g.initializer}
    inputs = [v for v in g.input if v.name not in stored]  # old IRs list initializers as inputs
    if len(inputs) != 1 or len(g.output) != 1:
        _refuse("one input and one output", f"{len(inputs)} inputs and {len(g.output)} outputs")
    source_in, source_out = inputs[0].name, g.output[0].name
    _check_io(inputs[0], g.output[0], size)

    # Names: `crops` and `descriptors` become the graph's I/O; an inner tensor of either name moves.
    taken = _all_names(g) | {INPUT_NAME, OUTPUT_NAME}
    for name in (INPUT_NAME, OUTPUT_NAME):
        if name in _all_names(g) and not (name == OUTPUT_NAME == source_out):
            new = _fresh(taken, f"{name}_inner")
            _rename(g, name, new)
            source_in, source_out = (new if s == name else s for s in (source_in, source_out))
    del g.input[:]
    g.input.append(helper.make_tensor_value_info(source_in, TensorProto.FLOAT, [1, 3, size, size]))
    if m.ir_version < 4:
        m.ir_version = 4  # initializers no longer listed as inputs

    shapes = infer_dims(m, "a graph")
    out_dims = shapes.get(source_out)
    if out_dims is None or len(out_dims) != 2 or out_dims[0] != 1 or not out_dims[1]:
        _refuse("an output of shape [1, dim] at batch 1", f"{out_dims}")
    dim = int(out_dims[1])
    batched = BatchProof(g, shapes, opset).run(source_in)
    if source_out not in batched:
        _refuse("an output computed from the input", f"{source_out!r} constant")

    # Splice the preprocessing in front: crops -> Cast -> Sub -> Mul -> Transpose -> source input.
    def node(op: str, inputs: list[str], out: str, **attrs: Any) -> Any:
        return helper.make_node(op, inputs, [out], name=out, **attrs)

    t = {k: _fresh(taken, f"contract_{k}") for k in ("float", "mean", "centred", "scale", "scaled")}
    g.initializer.extend(
        [
            numpy_helper.from_array(np.array(mean, np.float32), t["mean"]),
            numpy_helper.from_array(np.array(scale, np.float32), t["scale"]),
        ]
    )
    front = [
        node("Cast", [INPUT_NAME], t["float"], to=TensorProto.FLOAT),
        node("Sub", [t["float"], t["mean"]], t["centred"]),
        node("Mul", [t["centred"], t["scale"]], t["scaled"]),
        helper.make_node(
            "Transpose",
            [t["scaled"]],
            [source_in],
            name=_fresh(taken, "contract_nhwc_to_nchw"),
            perm=[0, 3, 1, 2],
        ),
    ]
    body = list(g.node)
    del g.node[:]
    g.node.extend(front + body)
    _rename(g, source_out, OUTPUT_NAME)
    del g.input[:], g.output[:]
    g.input.append(helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, [BATCH, size, size, 3]))
    g.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH, dim]))
    used = {n for nd in g.node for n in nd.input}
    kept = [init for init in g.initializer if init.name in used]  # the replaced shape constants go
    del g.initializer[:]
    g.initializer.extend(kept)

    m.doc_string = doc
    m.producer_name, m.producer_version = "faceprint", ""
    props = {p.key: p.value for p in model.metadata_props}
    helper.set_model_props(m, {**props, **(metadata or {})})
    batched = {OUTPUT_NAME if n == source_out else n for n in batched}
    _verify(m, batched, dim)
    return m


def _check_io(source_in: onnx.ValueInfoProto, source_out: onnx.ValueInfoProto, size: int) -> None:
    """One float32 NCHW input ``[1|?, 3, size, size]``, one float32 output."""
    from onnx import TensorProto

    for vi, what in ((source_in, "input"), (source_out, "output")):
        kind = vi.type.WhichOneof("value")
        if kind != "tensor_type" or vi.type.tensor_type.elem_type != TensorProto.FLOAT:
            _refuse(f"a float32 tensor {what}", f"{vi.name!r} of type {vi.type}".replace("\n", " "))
    dims = dims_of(source_in)
    if dims is None or len(dims) != 4:
        _refuse("a 4-D NCHW input", f"{source_in.name!r} of shape {dims}")
    if dims[0] not in (None, 1) or dims[1] not in (None, 3) or any(d not in (None, size) for d in dims[2:]):
        _refuse(f"an input of shape [1, 3, {size}, {size}] (NCHW)", f"{dims}")


def _verify(m: onnx.ModelProto, batched: set[str], dim: int) -> None:
    """The converted graph is valid, and shape inference, starting from a symbolic batch,
    finds a fixed size on axis 0 of no batched tensor: no batch of 1 is left anywhere."""
    import onnx

    try:
        onnx.checker.check_model(m, full_check=True)
    except Exception as exc:
        _refuse("a converted graph the ONNX checker accepts", str(exc).strip().splitlines()[0])
    shapes = infer_dims(m, "a converted graph")
    for name in sorted(batched):
        dims = shapes.get(name)
        if dims and dims[0] is not None:
            _refuse(f"a dynamic batch axis on {name!r} after conversion", f"a fixed {dims[0]} (shape {dims})")
    out = shapes.get(OUTPUT_NAME)
    if out is None or len(out) != 2 or out[1] != dim:
        _refuse(f"{OUTPUT_NAME!r} of shape [batch, {dim}] after conversion", f"{out}")
