"""A fixed-batch ONNX embedder made batch-dynamic (no weights: tiny graphs built here).

Each graph below is what a PyTorch trace at batch 1 looks like: float32 NCHW ``[1, 3, 8,
8]`` in, ``[1, 5]`` out, the batch of 1 frozen into its shape constants. Converted, it
must run uint8 RGB NHWC crops at batch 3 and give, row for row, what the original gives
one crop at a time with the preprocessing done in numpy; a graph whose batch cannot be
proved is refused in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from faceprint.embedding.onnx_rebatch import to_contract
from faceprint.errors import ModelUnavailableError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

SIZE, MEAN, SCALE, OPSET = 8, 127.0, 1 / 128, 11
RNG = np.random.default_rng(7)


def _const(name: str, value: Any, dtype: type = np.float32) -> Any:
    return numpy_helper.from_array(np.asarray(value, dtype), name)


def _trunk() -> tuple[list[Any], list[Any]]:
    """Conv -> BatchNorm -> PRelu -> Add of a [1, C, 1, 1] constant: tensor ``t`` [1, 4, 6, 6]."""
    w = RNG.normal(size=(4, 3, 3, 3))
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3]),
        helper.make_node("BatchNormalization", ["c", "g", "beta", "mu", "var"], ["n"]),
        helper.make_node("PRelu", ["n", "slope"], ["p"]),
        helper.make_node("Add", ["p", "shift"], ["t"]),
    ]
    inits = [
        _const("w", w),
        _const("b", RNG.normal(size=4)),
        _const("g", RNG.uniform(0.5, 2, size=4)),
        _const("beta", RNG.normal(size=4)),
        _const("mu", RNG.normal(size=4)),
        _const("var", RNG.uniform(0.5, 2, size=4)),
        _const("slope", RNG.uniform(0, 0.3, size=(4, 1, 1))),
        _const("shift", RNG.normal(size=(1, 4, 1, 1))),
    ]
    return nodes, inits


def _model(head: list[Any], head_inits: list[Any], inputs: list[Any] | None = None) -> Any:
    """The trunk, then ``head`` from ``t`` to ``flat`` [1, 144], then a MatMul to ``y`` [1, 5]."""
    nodes, inits = _trunk()
    nodes += [*head, helper.make_node("MatMul", ["flat", "fc"], ["y"])]
    inits += [*head_inits, _const("fc", RNG.normal(size=(144, 5)))]
    graph = helper.make_graph(
        nodes,
        "tiny",
        inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 7
    helper.set_model_props(model, {"origin": "tiny"})
    return model


def _shape(name: str, value: list[int]) -> Any:
    return _const(name, value, np.int64)


HEADS: dict[str, Callable[[], tuple[list[Any], list[Any]]]] = {
    "reshape [1, -1]": lambda: ([helper.make_node("Reshape", ["t", "s"], ["flat"])], [_shape("s", [1, -1])]),
    "reshape [-1, 144]": lambda: (
        [helper.make_node("Reshape", ["t", "s"], ["flat"])],
        [_shape("s", [-1, 144])],
    ),
    "reshape via a Constant node": lambda: (
        [
            helper.make_node("Constant", [], ["s"], value=_shape("v", [1, 144])),
            helper.make_node("Reshape", ["t", "s"], ["flat"]),
        ],
        [],
    ),
    "slice 0:1 on axis 0, flatten": lambda: (
        [
            helper.make_node("Slice", ["t", "st", "en", "ax"], ["sl"]),
            helper.make_node("Flatten", ["sl"], ["flat"], axis=1),
        ],
        [_shape("st", [0]), _shape("en", [1]), _shape("ax", [0])],
    ),
}


def _run_original(model: Any, crops: np.ndarray) -> np.ndarray:
    """The source graph one crop at a time, (x - mean) * scale and NCHW done in numpy."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = ((crops.astype(np.float32) - MEAN) * SCALE).transpose(0, 3, 1, 2)
    return np.concatenate([sess.run(None, {"x": x[i : i + 1]})[0] for i in range(len(crops))])


def _convert(model: Any) -> Any:
    return to_contract(model, size=SIZE, mean=MEAN, scale=SCALE, metadata={"source_sha256": "ab"}, doc="tiny")


@pytest.mark.parametrize("head", sorted(HEADS))
def test_batch_of_3_equals_three_runs_of_1(head: str) -> None:
    model = _model(*HEADS[head]())
    before = model.SerializeToString()
    converted = _convert(model)
    assert model.SerializeToString() == before, "the source model was changed"
    crops = RNG.integers(0, 256, size=(3, SIZE, SIZE, 3), dtype=np.uint8)
    sess = ort.InferenceSession(converted.SerializeToString(), providers=["CPUExecutionProvider"])
    out = sess.run(["descriptors"], {"crops": crops})[0]
    assert out.shape == (3, 5) and out.dtype == np.float32
    np.testing.assert_allclose(out, _run_original(model, crops), rtol=1e-5, atol=1e-5)
    assert sess.run(["descriptors"], {"crops": crops[:1]})[0].shape == (1, 5)


def test_declares_the_contract_and_keeps_opset_and_metadata() -> None:
    converted = _convert(_model(*HEADS["reshape [1, -1]"]()))
    (inp,), (out,) = converted.graph.input, converted.graph.output
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert (inp.name, inp.type.tensor_type.elem_type, dims) == (
        "crops",
        TensorProto.UINT8,
        ["batch", 8, 8, 3],
    )
    dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    assert (out.name, out.type.tensor_type.elem_type, dims) == (
        "descriptors",
        TensorProto.FLOAT,
        ["batch", 5],
    )
    assert [(o.domain, o.version) for o in converted.opset_import] == [("", OPSET)]
    props = {p.key: p.value for p in converted.metadata_props}
    assert props == {"origin": "tiny", "source_sha256": "ab"}
    assert converted.doc_string == "tiny" and not converted.graph.value_info
    (reshape,) = (n for n in converted.graph.node if n.op_type == "Reshape")
    target = next(t for t in converted.graph.initializer if t.name == reshape.input[1])
    assert numpy_helper.to_array(target).tolist() == [0, -1]


def _refused(model: Any, size: int = SIZE) -> str:
    with pytest.raises(ModelUnavailableError) as info:
        to_contract(model, size=size, mean=MEAN, scale=SCALE, metadata=None, doc="")
    message = str(info.value)
    assert "\n" not in message and "expected" in message and "found" in message, message
    return message


def test_refuses_two_inputs() -> None:
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, SIZE, SIZE]),
        helper.make_tensor_value_info("x2", TensorProto.FLOAT, [1, 3, SIZE, SIZE]),
    ]
    assert "2 inputs" in _refused(_model(*HEADS["reshape [1, -1]"](), inputs=inputs))


def test_refuses_a_wrong_size_and_a_non_4d_input() -> None:
    assert "[1, 3, 16, 16]" in _refused(_model(*HEADS["reshape [1, -1]"]()), size=16)
    model = _model(*HEADS["reshape [1, -1]"]())
    flat = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3 * SIZE * SIZE])
    model.graph.input[0].CopyFrom(flat)
    assert "4-D" in _refused(model)


REFUSED: dict[str, tuple[Callable[[], tuple[list[Any], list[Any]]], str]] = {
    # x.view(x.size(0), -1) as older exporters write it: the shape is computed at run time
    "a Shape op on the crops": (
        lambda: (
            [
                helper.make_node("Shape", ["t"], ["sh"]),
                helper.make_node("Gather", ["sh", "zero"], ["batch"], axis=0),
                helper.make_node("Unsqueeze", ["batch"], ["batch1"], axes=[0]),
                helper.make_node("Concat", ["batch1", "minus1"], ["s"], axis=0),
                helper.make_node("Reshape", ["t", "s"], ["flat"]),
            ],
            [_shape("zero", 0), _shape("minus1", [-1])],
        ),
        "Shape node",
    ),
    # a constant row joined to each sample: its batch of 1 cannot stretch to N
    "a constant concatenated to the crops": (
        lambda: (
            [
                helper.make_node("Reshape", ["t", "s"], ["r"]),
                helper.make_node("Slice", ["r", "st", "en", "ax"], ["r2"]),
                helper.make_node("Concat", ["r2", "row"], ["flat"], axis=1),
            ],
            [
                _shape("s", [1, -1]),
                _shape("st", [4]),
                _shape("en", [144]),
                _shape("ax", [1]),
                _const("row", np.ones((1, 4))),
            ],
        ),
        "Concat",
    ),
    "a transpose that moves the batch": (
        lambda: (
            [
                helper.make_node("Transpose", ["t"], ["tt"], perm=[1, 0, 2, 3]),
                helper.make_node("Reshape", ["tt", "s"], ["flat"]),
            ],
            [_shape("s", [1, -1])],
        ),
        "perm [1, 0, 2, 3]",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refuses_what_it_cannot_prove(case: str) -> None:
    head, says = REFUSED[case]
    assert says in _refused(_model(*head()))
