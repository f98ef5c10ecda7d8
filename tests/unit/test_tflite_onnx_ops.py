"""The TFLite -> ONNX converter on hand-built networks: ONNX Runtime's output equals a
numpy rendering of TFLite's NHWC semantics (SAME padding with the odd pixel after,
OHWI and 1HWO filters, per-channel constants, RESHAPE in NHWC order) at any batch, the
graph follows the embedder contract, and what it cannot translate is refused by name;
the five-op PReLU is fused (same outputs, no ABS/SUB/MUL left) only where it is exact."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from faceprint.embedding import tflite_onnx
from faceprint.embedding.tflite_format import parse_model
from faceprint.embedding.tflite_onnx import to_onnx
from faceprint.errors import ModelUnavailableError
from tflite_builder import Net, conv_options, depthwise_options

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ADD, CONV, DEPTHWISE, MUL, RELU, RESHAPE, SUB, ABS = 0, 3, 4, 18, 19, 22, 41, 101
ADD_OPTIONS, MUL_OPTIONS, SUB_OPTIONS = 11, 21, 28
SAME, VALID = 0, 1
MEAN, SCALE = 127.5, 1 / 128
F = np.float32
Array = np.ndarray[Any, Any]


def convert(data: bytes, **kw: Any) -> Any:
    args: dict[str, Any] = {"mean": MEAN, "scale": SCALE, "metadata": None, "graph_name": "g", "doc": "d"}
    return to_onnx(parse_model(data, "test.tflite"), **{**args, **kw})


def run(model: Any, crops: Array) -> Array:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out: Array = session.run(None, {"crops": crops})[0]
    return out


def _geometry(n: int, k: int, s: int, padding: int) -> tuple[int, int, int]:
    """(pad before, pad after, outputs) as TFLite computes them."""
    if padding == VALID:
        return 0, 0, (n - k) // s + 1
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2, out


def _windows(x: Array, kh: int, kw: int, s: int, padding: int) -> tuple[Array, int, int]:
    """x (N, H, W, C) padded the TFLite way, as (N, oh, ow, kh, kw, C) windows."""
    t, b, oh = _geometry(x.shape[1], kh, s, padding)
    left, right, ow = _geometry(x.shape[2], kw, s, padding)
    xp = np.pad(x, ((0, 0), (t, b), (left, right), (0, 0)))
    win = np.stack(
        [
            np.stack(
                [xp[:, i : i + (oh - 1) * s + 1 : s, j : j + (ow - 1) * s + 1 : s] for j in range(kw)], 3
            )
            for i in range(kh)
        ],
        3,
    )
    return win, oh, ow


def conv_ref(x: Array, w: Array, b: Array, s: int, padding: int) -> Array:
    """TFLite CONV_2D: x NHWC, w OHWI."""
    win, _, _ = _windows(x, w.shape[1], w.shape[2], s, padding)
    return np.einsum("nyxijc,oijc->nyxo", win, w).astype(F) + b


def depthwise_ref(x: Array, w: Array, b: Array, s: int, padding: int) -> Array:
    """TFLite DEPTHWISE_CONV_2D: w (1, H, W, C*M), output channel c*M+m reads channel c."""
    mult = w.shape[3] // x.shape[3]
    win, _, _ = _windows(x, w.shape[1], w.shape[2], s, padding)
    return np.einsum("nyxijc,ijc->nyxc", np.repeat(win, mult, axis=-1), w[0]).astype(F) + b


def network(rng: np.random.Generator, batch: int = 1) -> tuple[bytes, dict[str, Array]]:
    """8x8x3 -> conv 3x3 SAME s2 RELU6 (4) -> depthwise 3x3 SAME x2 (8) -> PReLU spelt as
    RELU, ABS, SUB, MUL, ADD -> depthwise 2x2 VALID s2 RELU, no bias -> SUB(const, x) ->
    RESHAPE (N, 32)."""
    p = {
        "w1": rng.normal(0, 0.5, (4, 3, 3, 3)).astype(F),
        "b1": rng.normal(0, 0.5, 4).astype(F),
        "w2": rng.normal(0, 0.5, (1, 3, 3, 8)).astype(F),
        "b2": rng.normal(0, 0.5, 8).astype(F),
        "alpha": rng.normal(0, 0.2, 8).astype(F),
        "w3": rng.normal(0, 0.5, (1, 2, 2, 8)).astype(F),
        "c": rng.normal(0, 1, 8).astype(F),
    }
    n = Net()
    x = n.act("input", [batch, 8, 8, 3])
    t1 = n.act("conv1", [batch, 4, 4, 4])
    n.op(CONV, [x, n.const("w1", p["w1"]), n.const("b1", p["b1"])], [t1], conv_options(SAME, 2, activation=3))
    t2 = n.act("dw1", [batch, 4, 4, 8])
    n.op(DEPTHWISE, [t1, n.const("w2", p["w2"]), n.const("b2", p["b2"])], [t2], depthwise_options(SAME, 1, 2))
    a, d, m, r, y = (n.act(k, [batch, 4, 4, 8]) for k in ("abs", "sub", "mul", "relu", "prelu"))
    n.op(ABS, [t2], [a])
    n.op(SUB, [t2, a], [d], (SUB_OPTIONS, {}))
    n.op(MUL, [n.const("alpha", p["alpha"] / 2), d], [m], (MUL_OPTIONS, {}))
    n.op(RELU, [t2], [r])
    n.op(ADD, [r, m], [y], (ADD_OPTIONS, {}))
    t3 = n.act("dw2", [batch, 2, 2, 8])
    n.op(DEPTHWISE, [y, n.const("w3", p["w3"]), -1], [t3], depthwise_options(VALID, 2, 1, activation=1))
    t4 = n.act("sub2", [batch, 2, 2, 8])
    n.op(SUB, [n.const("c", p["c"]), t3], [t4], (SUB_OPTIONS, {}))
    out = n.act("embeddings", [batch, 32])
    n.op(
        RESHAPE,
        [t4, n.const("shape", np.array([batch, 32], np.int32))],
        [out],
        (17, {0: ("ints", [batch, 32])}),
    )
    return n.build([x], [out]), p


def network_ref(crops: Array, p: dict[str, Array]) -> Array:
    x = (crops.astype(F) - F(MEAN)) * F(SCALE)
    x = np.clip(conv_ref(x, p["w1"], p["b1"], 2, SAME), 0, 6)
    x = depthwise_ref(x, p["w2"], p["b2"], 1, SAME)
    x = np.maximum(x, 0) + p["alpha"] / 2 * (x - np.abs(x))
    x = np.maximum(depthwise_ref(x, p["w3"], np.zeros(8, F), 2, VALID), 0)
    return (p["c"] - x).reshape(len(crops), -1)


@pytest.mark.parametrize("batch", [1, 3])
def test_matches_tflite_semantics_at_any_batch(batch: int) -> None:
    """The file's batch is 1; the graph takes any, and equals the NHWC reference."""
    rng = np.random.default_rng(0)
    data, params = network(rng)
    crops = rng.integers(0, 256, (batch, 8, 8, 3), dtype=np.uint8)
    out = run(convert(data), crops)
    assert out.shape == (batch, 32) and out.dtype == np.float32
    np.testing.assert_allclose(out, network_ref(crops, params), atol=1e-5, rtol=1e-5)


def test_same_padding_puts_the_odd_pixel_after() -> None:
    """4x4, 3x3 kernel, stride 2: one pixel of padding in all, at the bottom/right, so a
    kernel that picks its top-left tap reads pixels (0, 0), (0, 2), (2, 0), (2, 2)."""
    n = Net()
    x, y = n.act("input", [1, 4, 4, 3]), n.act("conv", [1, 2, 2, 1])
    w = np.zeros((1, 3, 3, 3), F)
    w[0, 0, 0, 0] = 1
    n.op(CONV, [x, n.const("w", w), n.const("b", np.zeros(1, F))], [y], conv_options(SAME, 2))
    out = n.act("out", [1, 4])
    n.op(RESHAPE, [y, n.const("shape", np.array([1, 4], np.int32))], [out])
    crops = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    got = run(convert(n.build([x], [out]), mean=0.0, scale=1.0), crops)
    np.testing.assert_array_equal(got, crops[:, ::2, ::2, 0].reshape(2, 4).astype(F))


def test_follows_the_embedder_graph_contract() -> None:
    data, _ = network(np.random.default_rng(1), batch=2)
    model = convert(data, metadata={"source_sha256": "ab" * 32}, graph_name="tiny_net", doc="a tiny net")
    onnx.checker.check_model(model, full_check=True)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "crops" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 8, 8, 3]
    assert out.name == "descriptors" and out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 32]
    assert (model.graph.name, model.doc_string) == ("tiny_net", "a tiny net")
    assert model.ir_version == 8 and model.opset_import[0].version == 17
    props = {p.key: p.value for p in model.metadata_props}
    assert props["source_sha256"] == "ab" * 32 and props["converter_version"]
    assert [n.op_type for n in model.graph.node].count("Transpose") == 2  # in, and back before RESHAPE


def _single_conv(activation: int = 0, out_shape: tuple[int, ...] = (1, 2, 2, 2), channels: int = 3) -> bytes:
    n = Net()
    x, y = n.act("input", [1, 4, 4, channels]), n.act("conv", list(out_shape))
    w = np.ones((2, 3, 3, channels), F)
    n.op(CONV, [x, n.const("w", w), -1], [y], conv_options(SAME, 2, activation=activation))
    return n.build([x], [y])


def test_untranslatable_networks_are_refused_by_name() -> None:
    with pytest.raises(ModelUnavailableError, match="fused activation SIGN_BIT"):
        convert(_single_conv(activation=5))
    with pytest.raises(ModelUnavailableError, match=r"ends in \[1, 2, 2, 2\]; expected float32 \(N, dim\)"):
        convert(_single_conv())
    with pytest.raises(
        ModelUnavailableError, match=r"output \[1, 3, 3, 2\]; its geometry gives \[1, 2, 2, 2\]"
    ):
        convert(_single_conv(out_shape=(1, 3, 3, 2)))
    with pytest.raises(ModelUnavailableError, match=r"\[1, 4, 4, 1\]; expected float32 \(N, H, W, 3\)"):
        convert(_single_conv(channels=1))


def test_reshape_that_mixes_the_batch_is_refused() -> None:
    n = Net()
    x, y = n.act("input", [2, 4, 4, 3]), n.act("flat", [1, 96])
    n.op(RESHAPE, [x, n.const("shape", np.array([1, 96], np.int32))], [y])
    with pytest.raises(ModelUnavailableError, match="expected the batch"):
        convert(n.build([x], [y]))


PRELU_SHAPE = (4, 4, 16)  # 16 channels: a whole block of ONNX Runtime's NCHWc layout


def prelu_network(
    rng: np.random.Generator, variant: str, batch: int = 2
) -> tuple[bytes, Array, Array, Array]:
    """8x8x3 -> conv 3x3 SAME s2 (16) -> PReLU spelt ADD(RELU(x), MUL(a, SUB(x, ABS(x))))
    -> RESHAPE (N, 256); ``variant`` spells it exactly ("exact", or "swapped" operands of
    the commutative ADD and MUL) or nearly ("sub_read_twice": the SUB's output is added to
    the result too; "sub_reversed": SUB(ABS(x), x); "add_fused_relu": the ADD carries a
    fused RELU). Returns the file, the conv's weights and bias, and a (the half slope)."""
    w = rng.normal(0, 0.5, (16, 3, 3, 3)).astype(F)
    b = rng.normal(0, 0.5, 16).astype(F)
    half = rng.normal(0, 0.2, 16).astype(F)
    n = Net()
    x = n.act("input", [batch, 8, 8, 3])
    t = n.act("conv", [batch, *PRELU_SHAPE])
    n.op(CONV, [x, n.const("w", w), n.const("b", b)], [t], conv_options(SAME, 2))
    a, d, m, r, y = (n.act(k, [batch, *PRELU_SHAPE]) for k in ("abs", "sub", "mul", "relu", "prelu"))
    n.op(ABS, [t], [a])
    n.op(SUB, [a, t] if variant == "sub_reversed" else [t, a], [d], (SUB_OPTIONS, {}))
    alpha = n.const("alpha_half", half)
    n.op(MUL, [d, alpha] if variant == "swapped" else [alpha, d], [m], (MUL_OPTIONS, {}))
    n.op(RELU, [t], [r])
    relu_fused = (ADD_OPTIONS, {0: ("b", 1)}) if variant == "add_fused_relu" else (ADD_OPTIONS, {})
    n.op(ADD, [m, r] if variant == "swapped" else [r, m], [y], relu_fused)
    if variant == "sub_read_twice":
        y2 = n.act("prelu_plus_sub", [batch, *PRELU_SHAPE])
        n.op(ADD, [y, d], [y2], (ADD_OPTIONS, {}))
        y = y2
    out = n.act("embeddings", [batch, 256])
    n.op(RESHAPE, [y, n.const("shape", np.array([batch, 256], np.int32))], [out])
    return n.build([x], [out]), w, b, half


def prelu_network_ref(crops: Array, variant: str, w: Array, b: Array, half: Array) -> Array:
    x = conv_ref((crops.astype(F) - F(MEAN)) * F(SCALE), w, b, 2, SAME)
    d = np.abs(x) - x if variant == "sub_reversed" else x - np.abs(x)
    y = np.maximum(x, 0) + half * d
    if variant == "add_fused_relu":
        y = np.maximum(y, 0)
    if variant == "sub_read_twice":
        y = y + d
    return y.reshape(len(crops), -1)


def op_types(model: Any) -> list[str]:
    return [node.op_type for node in model.graph.node]


@pytest.mark.parametrize("variant", ["exact", "swapped"])
def test_prelu_pattern_is_fused_into_blocked_friendly_nodes(
    variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The five-op PReLU becomes Add(Relu(x), BN(Relu(BN(x, -1)), -2a)): no ABS, SUB or
    MUL left, the same outputs as the op-by-op graph (bit for bit in practice) and as
    the NHWC reference, at batch 1 and 3 (the file's batch is 2)."""
    rng = np.random.default_rng(7)
    data, w, b, half = prelu_network(rng, variant)
    fused = convert(data)
    ops = op_types(fused)
    assert "Abs" not in ops and "Mul" not in ops[3:] and "Sub" not in ops[3:]  # [:3]: cast, mean, scale
    assert ops.count("BatchNormalization") == 2 and ops.count("Relu") == 2 and ops.count("Add") == 1
    onnx.checker.check_model(fused, full_check=True)
    monkeypatch.setattr(tflite_onnx, "_find_prelus", lambda model, sg: {})
    op_by_op = convert(data)
    assert "Abs" in op_types(op_by_op) and "BatchNormalization" not in op_types(op_by_op)
    for batch in (1, 3):
        crops = rng.integers(0, 256, (batch, 8, 8, 3), dtype=np.uint8)
        got = run(fused, crops)
        assert got.shape == (batch, 256) and (got < 0).any() and (got > 0).any()
        np.testing.assert_allclose(got, run(op_by_op, crops), rtol=0, atol=1e-6)
        np.testing.assert_allclose(got, prelu_network_ref(crops, variant, w, b, half), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ["sub_read_twice", "sub_reversed", "add_fused_relu"])
def test_prelu_near_misses_are_translated_op_by_op(variant: str) -> None:
    """Short of the exact pattern (an intermediate read elsewhere, SUB's operands the
    other way round, an activation fused into the ADD) nothing is fused, and the
    graph still computes what the file says."""
    rng = np.random.default_rng(8)
    data, w, b, half = prelu_network(rng, variant)
    model = convert(data)
    ops = op_types(model)
    assert "BatchNormalization" not in ops and ops.count("Abs") == 1
    crops = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        run(model, crops), prelu_network_ref(crops, variant, w, b, half), atol=1e-5, rtol=1e-5
    )
