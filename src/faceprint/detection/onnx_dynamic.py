"""Give a fixed-size ONNX detector graph a dynamic batch, height and width.

Why: detector graphs are often exported at one input size and a batch of 1 (YuNet's
``face_detection_yunet_2023mar.onnx`` declares ``input [1, 3, 640, 640]``). OpenCV's DNN
engine re-plans the network for each input size, so ``cv2.FaceDetectorYN`` runs it on
any image; ONNX Runtime takes the declared dims literally and refuses other sizes.
Declaring the dims symbolic is not enough: the export froze sizes into constants too (a
``Reshape(x, [1, -1, 4])`` holds the batch of 1; an export could as well hold
``[1, 6400, 4]``, 6400 being 80 x 80 cells of a 640 input), and run at another size such
a graph fails or, worse, reads the wrong cells. :func:`to_dynamic` proves, op by op, that
no constant on the path from the image fixes the batch or a size that follows the
image's height or width, rewrites the batch constants, and refuses
(:class:`~faceprint.errors.ModelUnavailableError`, one line naming the node) a graph
where it cannot.

**The proof.** Two walks over the nodes in order, from the image input:

* the batch: :class:`~faceprint.embedding.onnx_rebatch.BatchProof`, the proof that makes
  fixed-batch embedders batch-dynamic (sample ``i`` of every output depends on sample
  ``i`` of the input alone; a Reshape target ``[1, ...]`` becomes ``[0, ...]``);
* the size: each tensor computed from the image carries its *size axes*, the axes whose
  extent follows the image's height or width (the input's are 2 and 3). A size axis may
  pass through ops whose output extent is a function of their input's (elementwise ops,
  Conv and pools with the channel axis fixed, Resize by scales, Pad by amounts,
  Transpose, Flatten); it may never meet a constant that fixes its extent: a Resize
  target size, Slice bounds short of the end, Split, Gather, Expand, Gemm/MatMul weights,
  or an operand of fixed extent > 1 broadcast along it. A **Reshape** keeps its constant
  target only when every size axis falls into its one ``-1``: the entries before the
  ``-1`` take a prefix of the input's axes and those after it a suffix, product for
  product, none of them a size axis (a ``0`` may copy one in place); the ``-1`` then
  holds the size axes, with whatever fixed axes lie between them, at any size. Anything
  else (an op with no rule, a constant the rules cannot place) is refused.

The result passes ``onnx.checker`` (full check), and ONNX shape inference from the
symbolic input ``[batch, C, height, width]`` finds no fixed extent on the batch axis or a
size axis of any tensor computed from the image. Outputs are declared with ``batch`` on
axis 0 and ``<output>_<axis>`` on their size axes. Numbers are not checked here (no
runtime is imported); the caller runs the graph (:mod:`.yunet_onnx` compares it with the
source at the exported size and runs it at others).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from ..embedding.onnx_rebatch import (
    BROADCAST_OPS,
    UNARY_OPS,
    BatchProof,
    default_opset,
    dims_of,
    infer_dims,
    node_label,
)
from ..embedding.onnx_session import require

if TYPE_CHECKING:  # onnx is imported lazily at run time
    import onnx

Axes = frozenset[int]
BATCH, HEIGHT, WIDTH = "batch", "height", "width"  # the input's dim_params
_INT32_MAX = 2**31 - 1  # a Slice end at least this large means "to the end" (exporters write both)


def _refuse(expected: str, found: str) -> NoReturn:
    from ..errors import ModelUnavailableError

    raise ModelUnavailableError(
        f"cannot give the ONNX model a dynamic height and width: expected {expected}, found {found}"
    )


def _norm(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


class _SizeProof:
    """Marks each tensor computed from the image with its size axes (module doc). Reads
    the constants (as the batch proof rewrote them) and the shapes at the exported size
    through ``batch``."""

    def __init__(self, batch: BatchProof) -> None:
        self.b = batch
        self.axes: dict[str, Axes] = {}

    def of(self, name: str) -> Axes:
        """The size axes of ``name`` (none for a constant)."""
        return self.axes.get(name, frozenset())

    def dims(self, name: str, node: onnx.NodeProto) -> list[int]:
        dims = self.b.dims(name, node)
        if any(d is None for d in dims):
            _refuse(f"a shape ONNX can infer at the exported size for {name!r}", f"{dims}")
        return [int(d) for d in dims if d is not None]

    def run(self, input_name: str) -> dict[str, Axes]:
        self.axes[input_name] = frozenset({2, 3})
        for node in self.b.graph.node:
            if not any(n in self.axes for n in node.input if n):
                continue  # a constant (the batch proof has checked the order and the domain)
            rule = _RULES.get(node.op_type)
            if rule is None:
                _refuse("ops whose handling of the image size is known", f"{node_label(node)} on the image")
            out = rule(self, node)
            for name in node.output:
                if name:
                    self.axes[name] = out
        return self.axes

    def fixed_channels(self, node: onnx.NodeProto) -> Axes:
        """Input 0's size axes, refused on axis 1: weights or per-channel parameters fix it."""
        axes = self.of(node.input[0])
        if 1 in axes:
            _refuse(f"{node_label(node)} on a tensor whose channel axis is fixed", "a size axis 1")
        return axes


# -- per-op rules: the size axes of the node's outputs ----------------------------------------


def _same(sp: _SizeProof, node: onnx.NodeProto) -> Axes:
    return sp.of(node.input[0])


def _channels(sp: _SizeProof, node: onnx.NodeProto) -> Axes:
    if node.op_type == "ConvTranspose" and (sp.b.attr(node, "output_shape") is not None):
        _refuse(f"{node_label(node)} without a fixed output_shape", "one")
    return sp.fixed_channels(node)


def _global_pool(sp: _SizeProof, node: onnx.NodeProto) -> Axes:
    return frozenset(a for a in sp.fixed_channels(node) if a < 2)  # the spatial axes become 1


def _layer_norm(sp: _SizeProof, node: onnx.NodeProto) -> Axes:
    axes = sp.of(node.input[0])
    rank = len(sp.dims(node.input[0], node))
    first = _norm(int(sp.b.attr(node, "axis", -1)), rank)
    if any(a >= first for a in axes):  # its scale has the normalised axes' shape
        _refuse(f"{node_label(node)} to normalise fixed axes only", f"size axes {sorted(axes)}")
    return axes


def _broadcast(sp: _SizeProof, node: onnx.NodeProto) -> Axes:
    names = [n for n in node.input if n]
    rank = max(len(sp.dims(n, node)) for n in names)
    out = frozenset(a + rank - len(sp.dims(n, node)) for n in names for a in sp.of(n))
    for n in names:
        dims = sp.dims(n, node)
        shift = rank - len(dims)
        for a in out:
            own = a - shift
            if own >= 0 and own not in sp.of(n) and dims[own] != 1:
                _refuse(
                    f"operands of {node_label(node)} broadcast along size axis {a} to have it or an extent 1",
                    f"{n!r} of fixed shape {dims}",
                )
    return out


def _transpose(sp: _SizeProof, node: onnx.NodeProto) -> Axes:
    axes = sp.of(node.input[0])
    rank = len(sp.dims(node.input[0], node))
    perm = sp.b.attr(node, "perm")
    order = [int(p) for p in perm] if perm is not None else list(reversed(range(rank)))
    return frozenset(j for j, p in enumerate(order) if p in axes)


def _flatten(sp: _SizeProof, node: onnx.NodeProto) -> Axes:
    axes = sp.of(node.input[0])
    k = _norm(int(sp.b.attr(node, "axis", 1)), len(sp.dims(node.input[0], node)))
    return frozenset(
        ({0} if any(a < k for a in axes) else set()) | ({1} if any(a >= k for a in axes) else set())
    )


def _reshape(sp: _SizeProof, node: onnx.NodeProto) -> Axes:
    """The target's size axes all fall into its one ``-1`` (module doc)."""
    data = node.input[0]
    axes = sp.of(data)
    dims = sp.dims(data, node)
    target_value = sp.b.value(node, 1)
    assert target_value is not None  # a required input
    target = [int(v) for v in target_value.reshape(-1)]
    if not axes:
        return frozenset()  # every extent is fixed: the constant target fits at any image size
    if target.count(-1) != 1:
        _refuse(f"{node_label(node)} to gather the size axes into one -1", f"target {target}")
    k = target.index(-1)
    out: set[int] = set()

    def take(entries: list[tuple[int, int]], order: list[int]) -> int:
        """Match ``entries`` (output position, value) against input axes in ``order``;
        returns how many input axes they consumed."""
        used = 0
        for pos, value in entries:
            if value == 0:  # copies input axis `pos` in place
                if used >= len(order) or order[used] != pos:
                    _refuse(f"a 0 in the target of {node_label(node)} to copy an axis in place", f"{target}")
                if pos in axes:
                    out.add(pos)
                used += 1
                continue
            product = 1
            while product < value:
                if used >= len(order) or order[used] in axes:
                    _refuse(
                        f"the fixed entries of {node_label(node)}'s target to match fixed input axes",
                        f"target {target} for input axes {dims} with size axes {sorted(axes)}",
                    )
                product *= dims[order[used]]
                used += 1
            if product != value:
                _refuse(
                    f"the fixed entries of {node_label(node)}'s target to match whole input axes",
                    f"target {target} for input axes {dims}",
                )
        return used

    rank = len(dims)
    front = take([(j, target[j]) for j in range(k)], list(range(rank)))
    back_entries = [(j, target[j]) for j in range(len(target) - 1, k, -1)]
    if any(v == 0 for _, v in back_entries):
        _refuse(f"no 0 after the -1 in the target of {node_label(node)}", f"{target}")
    back = take(back_entries, list(range(rank - 1, -1, -1)))
    middle = set(range(front, rank - back))
    if front > rank - back or not (axes - out) <= middle:
        _refuse(f"the -1 of {node_label(node)} to hold every size axis", f"target {target} for {dims}")
    if middle & axes:
        out.add(k)
    return frozenset(out)


def _resize(sp: _SizeProof, node: onnx.NodeProto) -> Axes:
    # The batch proof has refused target sizes; scales (any) keep each extent a function of the input's.
    return sp.of(node.input[0])


def _concat(sp: _SizeProof, node: onnx.NodeProto) -> Axes:
    names = [n for n in node.input if n]
    axis = _norm(int(sp.b.attr(node, "axis", 0)), len(sp.dims(names[0], node)))
    out = frozenset(a for n in names for a in sp.of(n))
    for n in names:
        if (out - sp.of(n)) - {axis}:
            _refuse(f"the operands of {node_label(node)} to share their size axes", f"{n!r} lacks some")
    return out


def _slice(sp: _SizeProof, node: onnx.NodeProto) -> Axes:
    axes = sp.of(node.input[0])
    rank = len(sp.dims(node.input[0], node))
    starts, ends = sp.b.ints(node, "starts", 1), sp.b.ints(node, "ends", 2)
    sliced, steps = sp.b.ints(node, "axes", 3), sp.b.ints(node, "steps", 4)
    if starts is None or ends is None:
        _refuse(f"starts and ends on {node_label(node)}", "none")
    on = [_norm(a, rank) for a in (sliced if sliced is not None else range(len(starts)))]
    for i, a in enumerate(on):
        step = 1 if steps is None else steps[i]
        if a in axes and (starts[i] != 0 or step != 1 or ends[i] < _INT32_MAX):
            _refuse(
                f"{node_label(node)} to take all of size axis {a}",
                f"start {starts[i]}, end {ends[i]}, step {step}",
            )
    return axes


def _fixed_axis(sp: _SizeProof, node: onnx.NodeProto) -> tuple[Axes, int]:
    """Input 0's size axes and the node's ``axis``, refused when that axis is a size axis
    (its split sizes or gathered indices are constants)."""
    axes = sp.of(node.input[0])
    axis = _norm(int(sp.b.attr(node, "axis", 0)), len(sp.dims(node.input[0], node)))
    if axis in axes:
        _refuse(f"{node_label(node)} on a fixed axis", f"size axis {axis}")
    return axes, axis


def _split(sp: _SizeProof, node: onnx.NodeProto) -> Axes:
    return _fixed_axis(sp, node)[0]


def _gather(sp: _SizeProof, node: onnx.NodeProto) -> Axes:
    axes, axis = _fixed_axis(sp, node)
    q = len(sp.dims(node.input[1], node))  # the indices' rank replaces the gathered axis
    return frozenset(a if a < axis else a + q - 1 for a in axes)


def _expand(sp: _SizeProof, node: onnx.NodeProto) -> Axes:
    """Both shapes align to the right; the target must hold 1 on every size axis."""
    axes = sp.of(node.input[0])
    rank = len(sp.dims(node.input[0], node))
    shape = sp.b.ints(node, "shape", 1) or []
    out_rank = max(rank, len(shape))
    out = frozenset(a + out_rank - rank for a in axes)
    for o in out:
        j = o - (out_rank - len(shape))
        if j >= 0 and shape[j] != 1:
            _refuse(f"{node_label(node)} to leave size axis {o} alone", f"shape {shape}")
    return out


def _squeeze(sp: _SizeProof, node: onnx.NodeProto) -> Axes:
    axes = sp.of(node.input[0])
    rank = len(sp.dims(node.input[0], node))
    listed = sp.b.ints(node, "axes", 1) or []
    if node.op_type == "Squeeze":
        gone = {_norm(a, rank) for a in listed}
        if gone & axes:
            _refuse(f"{node_label(node)} to drop fixed axes of 1", f"size axes {sorted(gone & axes)}")
        kept = [a for a in range(rank) if a not in gone]
        return frozenset(kept.index(a) for a in axes)
    out_rank = rank + len(listed)
    new = {_norm(a, out_rank) for a in listed}
    old_positions = [j for j in range(out_rank) if j not in new]
    return frozenset(old_positions[a] for a in axes)


def _reduce(sp: _SizeProof, node: onnx.NodeProto) -> Axes:
    axes = sp.of(node.input[0])
    rank = len(sp.dims(node.input[0], node))
    if node.op_type in ("ArgMax", "ArgMin"):
        reduced: set[int] | None = {_norm(int(sp.b.attr(node, "axis", 0)), rank)}
    else:
        listed = sp.b.ints(node, "axes", 1)
        if listed is None and sp.b.attr(node, "noop_with_empty_axes", 0):
            return axes
        reduced = None if listed is None else {_norm(a, rank) for a in listed}
    gone = set(range(rank)) if reduced is None else reduced
    if sp.b.attr(node, "keepdims", 1):
        return frozenset(axes - gone)
    kept = [a for a in range(rank) if a not in gone]
    return frozenset(kept.index(a) for a in axes if a not in gone)


def _matmul(sp: _SizeProof, node: onnx.NodeProto) -> Axes:
    a, b = node.input[0], node.input[1]
    ra, rb = len(sp.dims(a, node)), len(sp.dims(b, node))
    sa, sb = sp.of(a), sp.of(b)
    if ra < 2 or rb < 2:
        if sa or sb:
            _refuse(f"{node_label(node)} on matrices", f"operand ranks {ra} and {rb}")
        return frozenset()
    if (ra - 1 in sa) != (rb - 2 in sb):  # the contracted axis: both follow the image, or neither
        _refuse(f"{node_label(node)} to contract a size axis only with a size axis", "a fixed operand")
    ro = max(ra, rb)
    out = {x + ro - ra for x in sa if x < ra - 1} | {x + ro - rb for x in sb if x < rb - 2}
    if rb - 1 in sb:
        out.add(ro - 1)
    return frozenset(out)


def _gemm(sp: _SizeProof, node: onnx.NodeProto) -> Axes:
    if any(sp.of(n) for n in node.input if n):
        _refuse(f"{node_label(node)} on fixed extents", "a size axis")
    return frozenset()


# the batch proof's element-wise ops (one list for both proofs), plus ops that keep sizes
_SAME = UNARY_OPS + " Softmax LogSoftmax Hardmax LpNormalization CumSum Tile Pad"
_CHANNELS = "AveragePool BatchNormalization Conv ConvTranspose DepthToSpace InstanceNormalization LpPool "
_CHANNELS += "LRN MaxPool SpaceToDepth"
_REDUCE = "ArgMax ArgMin ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin "
_REDUCE += "ReduceProd ReduceSum ReduceSumSquare"

_RULES: dict[str, Callable[[_SizeProof, onnx.NodeProto], Axes]] = {
    **dict.fromkeys(_SAME.split(), _same),
    **dict.fromkeys(_CHANNELS.split(), _channels),
    **dict.fromkeys(("GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool"), _global_pool),
    **dict.fromkeys(BROADCAST_OPS.split(), _broadcast),
    **dict.fromkeys(_REDUCE.split(), _reduce),
    **dict.fromkeys(("Squeeze", "Unsqueeze"), _squeeze),
    **dict.fromkeys(("Resize", "Upsample"), _resize),
    "Concat": _concat,
    "Expand": _expand,
    "Flatten": _flatten,
    "Gather": _gather,
    "Gemm": _gemm,
    "LayerNormalization": _layer_norm,
    "MatMul": _matmul,
    "Reshape": _reshape,
    "Slice": _slice,
    "Split": _split,
    "Transpose": _transpose,
}


# -- the conversion ---------------------------------------------------------------------------


def to_dynamic(
    model: onnx.ModelProto, *, metadata: dict[str, str] | None = None, doc: str = ""
) -> onnx.ModelProto:
    """A new model: ``model`` (one float32 NCHW image input of fixed height and width, batch
    1 or symbolic) with input ``[batch, C, height, width]`` and its batch and size
    constants proved or rewritten (module doc). ``metadata`` is added to the source's
    ``metadata_props``; ``doc`` (when given) becomes the doc string. ``model`` is not
    changed. Raises :class:`~faceprint.errors.ModelUnavailableError` (one line) for a
    graph it cannot prove."""
    require("onnx", "the ONNX detector converter")
    import onnx
    from onnx import TensorProto, helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    opset = default_opset(m)
    g = m.graph
    del g.value_info[:]  # the export's shapes hold its size: stale once it is dynamic
    stored = {t.name for t in g.initializer}
    inputs = [v for v in g.input if v.name not in stored]  # old IRs list initializers as inputs
    if len(inputs) != 1:
        _refuse("one image input", f"{len(inputs)} inputs")
    image = inputs[0]
    dims = dims_of(image)
    elem = image.type.tensor_type.elem_type if image.type.WhichOneof("value") == "tensor_type" else None
    if elem != TensorProto.FLOAT or dims is None or len(dims) != 4:
        _refuse("a float32 NCHW image input", f"{image.name!r} of type {image.type}".replace("\n", " "))
    _, channels, height, width = dims
    if dims[0] not in (None, 1) or channels is None or height is None or width is None:
        _refuse("an input of shape [1, C, H, W] with C, H and W fixed (the exported size)", f"{dims}")
    del g.input[:]
    g.input.append(helper.make_tensor_value_info(image.name, TensorProto.FLOAT, [1, channels, height, width]))
    if m.ir_version < 4:
        m.ir_version = 4  # initializers no longer listed as inputs

    shapes = infer_dims(m, "a graph")
    proof = BatchProof(g, shapes, opset)
    batched = proof.run(image.name)
    size_axes = _SizeProof(proof).run(image.name)
    for out in g.output:
        if out.name not in batched:
            _refuse("every output computed from the image", f"{out.name!r} constant")

    del g.input[:]
    g.input.append(
        helper.make_tensor_value_info(image.name, TensorProto.FLOAT, [BATCH, channels, HEIGHT, WIDTH])
    )
    outputs = []
    for out in g.output:
        ref = shapes.get(out.name)
        if ref is None:
            _refuse(f"a shape ONNX can infer for output {out.name!r}", "none")
        declared: list[int | str | None] = [
            BATCH if i == 0 else f"{out.name}_{i}" if i in size_axes[out.name] else d
            for i, d in enumerate(ref)
        ]
        outputs.append(helper.make_tensor_value_info(out.name, out.type.tensor_type.elem_type, declared))
    del g.output[:]
    g.output.extend(outputs)
    used = {n for nd in g.node for n in nd.input}
    kept = [init for init in g.initializer if init.name in used]  # the replaced constants go
    del g.initializer[:]
    g.initializer.extend(kept)

    if doc:
        m.doc_string = doc
    props = {p.key: p.value for p in model.metadata_props}
    del m.metadata_props[:]
    helper.set_model_props(m, {**props, **(metadata or {})})
    _verify(m, size_axes)
    return m


def _verify(m: onnx.ModelProto, size_axes: dict[str, Axes]) -> None:
    """The converted graph is valid, and shape inference from the symbolic input finds a
    fixed extent on the batch axis or a size axis of no tensor computed from the image."""
    import onnx

    try:
        onnx.checker.check_model(m, full_check=True)
    except Exception as exc:
        _refuse("a converted graph the ONNX checker accepts", str(exc).strip().splitlines()[0])
    shapes = infer_dims(m, "a converted graph")
    for name in sorted(size_axes):
        dims = shapes.get(name)
        if not dims:
            continue
        fixed = [a for a in ({0} | size_axes[name]) if a < len(dims) and dims[a] is not None]
        if fixed:
            _refuse(
                f"dynamic batch and size axes on {name!r} after conversion",
                f"fixed axes {fixed} (shape {dims})",
            )
