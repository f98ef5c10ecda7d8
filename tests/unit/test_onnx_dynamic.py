"""A fixed-size ONNX detector graph made size- and batch-dynamic (no weights: tiny graphs).

Each graph is what an export at ``[1, 3, 32, 32]`` looks like: a small feature pyramid
(two strided Convs, a nearest Resize by 2 and an Add), its maps transposed to NHWC and
reshaped to ``[1, -1, 4]`` per level, as YuNet's heads are. Converted, it must give the
source's outputs bit for bit at 32x32, run other sizes (multiples of the largest stride)
and batches, each image as when run alone; a graph that fixes a size in a constant is
refused in one line naming the node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from faceprint.detection.onnx_dynamic import to_dynamic
from faceprint.errors import ModelUnavailableError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

SIZE, OPSET = 32, 11
RNG = np.random.default_rng(3)


def _const(name: str, value: Any, dtype: type = np.float32) -> Any:
    return numpy_helper.from_array(np.asarray(value, dtype), name)


def _pyramid() -> tuple[list[Any], list[Any]]:
    """x [1,3,32,32] -> c1 [1,4,16,16] (stride 2) and c2 [1,4,8,8] (stride 4); p1 = c1 +
    upsampled c2 (with a per-channel bias and PRelu on the way)."""
    nodes = [
        helper.make_node(
            "Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4
        ),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4),
        helper.make_node("PRelu", ["c2", "slope"], ["q2"]),
        helper.make_node("Resize", ["q2", "roi", "scales"], ["u2"], mode="nearest"),
        helper.make_node("Add", ["u2", "r1"], ["s1"]),
        helper.make_node("Add", ["s1", "bias"], ["p1"]),
    ]
    inits = [
        _const("w1", RNG.normal(size=(4, 3, 3, 3))),
        _const("b1", RNG.normal(size=4)),
        _const("w2", RNG.normal(size=(4, 4, 3, 3))),
        _const("slope", RNG.uniform(0, 0.3, size=(4, 1, 1))),
        _const("roi", []),
        _const("scales", [1, 1, 2, 2]),
        _const("bias", RNG.normal(size=(1, 4, 1, 1))),
    ]
    return nodes, inits


def _heads() -> tuple[list[Any], list[Any]]:
    """YuNet's heads: NHWC, then Reshape [1, -1, 4], for both levels."""
    nodes = [
        helper.make_node("Transpose", ["p1"], ["t1"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["t1", "shape"], ["out_2"]),
        helper.make_node("Transpose", ["q2"], ["t2"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["t2", "shape"], ["out_4"]),
    ]
    return nodes, [_const("shape", [1, -1, 4], np.int64)]


def _model(
    head: tuple[list[Any], list[Any]] | None = None, outputs: dict[str, list[int]] | None = None
) -> Any:
    nodes, inits = _pyramid()
    h_nodes, h_inits = head or _heads()
    outs = outputs or {"out_2": [1, 256, 4], "out_4": [1, 64, 4]}
    graph = helper.make_graph(
        nodes + h_nodes,
        "pyramid",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in outs.items()],
        inits + h_inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    helper.set_model_props(model, {"origin": "test"})
    return model


def _session(model: Any) -> Any:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_converted_graph_equals_the_source_at_its_size_and_runs_any_other() -> None:
    source = _model()
    converted = to_dynamic(source, metadata={"converter": "test"})
    x = RNG.uniform(0, 255, (1, 3, SIZE, SIZE)).astype(np.float32)
    for want, got in zip(
        _session(source).run(None, {"x": x}), _session(converted).run(None, {"x": x}), strict=True
    ):
        np.testing.assert_array_equal(got, want)
    sess = _session(converted)
    batch = RNG.uniform(0, 255, (3, 3, 64, 96)).astype(np.float32)
    out_2, out_4 = sess.run(None, {"x": batch})
    assert out_2.shape == (3, 32 * 48, 4) and out_4.shape == (3, 16 * 24, 4)
    for i in range(3):
        alone = sess.run(None, {"x": batch[i : i + 1]})
        np.testing.assert_allclose(out_2[i], alone[0][0], rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(out_4[i], alone[1][0], rtol=1e-6, atol=1e-5)

    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in converted.graph.input]
    assert dims == [["batch", 3, "height", "width"]]
    out_dims = [
        [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in converted.graph.output
    ]
    assert out_dims == [["batch", "out_2_1", 4], ["batch", "out_4_1", 4]]
    props = {p.key: p.value for p in converted.metadata_props}
    assert props == {"origin": "test", "converter": "test"} and not converted.graph.value_info
    reshapes = [n for n in converted.graph.node if n.op_type == "Reshape"]
    targets = {n.input[1] for n in reshapes}
    values = [numpy_helper.to_array(t).tolist() for t in converted.graph.initializer if t.name in targets]
    assert values == [[0, -1, 4]] * 2, "each head's batch of 1 became 'copy the input's batch'"
    assert source.graph.input[0].type.tensor_type.shape.dim[2].dim_value == SIZE, "the source is untouched"


def test_reshapes_that_keep_the_size_axes_in_the_minus_one_are_accepted() -> None:
    head = (
        [
            helper.make_node("Reshape", ["p1", "nc_flat"], ["out_2"]),  # [0, 0, -1]: NCHW -> N, C, HW
            helper.make_node("Flatten", ["q2"], ["out_4"], axis=1),
        ],
        [_const("nc_flat", [0, 0, -1], np.int64)],
    )
    converted = to_dynamic(_model(head, {"out_2": [1, 4, 256], "out_4": [1, 256]}))
    out_2, out_4 = _session(converted).run(None, {"x": np.ones((2, 3, 64, 32), np.float32)})
    assert out_2.shape == (2, 4, 32 * 16) and out_4.shape == (2, 4 * 16 * 8)


def _refused(model: Any) -> str:
    with pytest.raises(ModelUnavailableError) as info:
        to_dynamic(model)
    message = str(info.value)
    assert "\n" not in message and "expected" in message and "found" in message, message
    return message


def _reshape_head(target: list[int], out: list[int]) -> Callable[[], Any]:
    def make() -> Any:
        head = (
            [
                helper.make_node("Transpose", ["p1"], ["t1"], perm=[0, 2, 3, 1]),
                helper.make_node("Reshape", ["t1", "target"], ["out_2"]),
            ],
            [_const("target", target, np.int64)],
        )
        return _model(head, {"out_2": out})

    return make


def _one_node_head(node: Any, inits: list[Any], out: list[int]) -> Callable[[], Any]:
    return lambda: _model(([node], inits), {"out_2": out})


REFUSED: dict[str, tuple[Callable[[], Any], str]] = {
    # the exported number of cells, 16 x 16, frozen into the target
    "a Reshape that holds the cell count": (_reshape_head([1, 256, 4], [1, 256, 4]), "Reshape"),
    # the height taken as a fixed entry: 16 rows of 64
    "a Reshape that splits the size axes": (_reshape_head([1, 16, -1], [1, 16, 64]), "fixed input axes"),
    "a Resize to fixed sizes": (
        _one_node_head(
            helper.make_node("Resize", ["p1", "roi", "", "sizes"], ["out_2"], mode="nearest"),
            [_const("sizes", [1, 4, 32, 32], np.int64)],
            [1, 4, 32, 32],
        ),
        "sizes",
    ),
    "a Slice short of the end of a size axis": (
        _one_node_head(
            helper.make_node("Slice", ["p1", "st", "en", "ax"], ["out_2"]),
            [_const("st", [0], np.int64), _const("en", [8], np.int64), _const("ax", [2], np.int64)],
            [1, 4, 8, 16],
        ),
        "all of size axis 2",
    ),
    "a constant of the exported extent broadcast over the image": (
        _one_node_head(
            helper.make_node("Add", ["p1", "positional"], ["out_2"]),
            [_const("positional", np.zeros((1, 4, 16, 16)))],
            [1, 4, 16, 16],
        ),
        "broadcast along size axis",
    ),
    "a Gemm on the flattened map": (
        lambda: _model(
            (
                [
                    helper.make_node("Flatten", ["p1"], ["flat"], axis=1),
                    helper.make_node("Gemm", ["flat", "fc"], ["out_2"]),
                ],
                [_const("fc", np.zeros((1024, 5)))],
            ),
            {"out_2": [1, 5]},
        ),
        "Gemm",
    ),
    "a Shape op on the image": (
        lambda: _model(
            (
                [
                    helper.make_node("Shape", ["p1"], ["shape"]),
                    helper.make_node("Cast", ["shape"], ["out_2"], to=TensorProto.FLOAT),
                ],
                [],
            ),
            {"out_2": [4]},
        ),
        "Shape node",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refuses_a_graph_that_fixes_a_size(case: str) -> None:
    make, says = REFUSED[case]
    assert says in _refused(make())


def test_refuses_an_input_without_a_fixed_size() -> None:
    model = _model()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "h"
    assert "fixed" in _refused(model)
