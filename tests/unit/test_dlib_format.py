"""dlib's serialization decoded from synthetic bytes (no weights needed).

The encoders below follow dlib's documented format: an integer is a control byte (low
4 bits: number of magnitude bytes; 0x80: negative) then the magnitude little endian; a
float is its mantissa then its exponent as two such integers.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest

from faceprint.embedding.dlib_format import Slot, _Stream, parse_network
from faceprint.errors import ModelUnavailableError


def enc_int(v: int) -> bytes:
    m = abs(v)
    body = m.to_bytes(max(1, (m.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if v < 0 else 0)]) + body


def enc_float(x: float) -> bytes:
    if math.isinf(x):
        return enc_int(0) + enc_int(32000 if x > 0 else 32001)
    m, e = math.frexp(x)
    return enc_int(int(m * (1 << 24))) + enc_int(e - 24)


def enc_str(s: str) -> bytes:
    return enc_int(len(s)) + s.encode()


def enc_tensor(values: np.ndarray, dims: tuple[int, ...] = (), version: int = 2) -> bytes:
    dims = dims or (values.size, 1, 1, 1)
    head = enc_int(version) + b"".join(enc_int(d) for d in dims)
    if version == 2:
        return head + values.astype("<f4").tobytes()
    return head + b"".join(enc_float(float(v)) for v in values.ravel())


def enc_alias(*dims: int) -> bytes:
    return enc_int(1) + b"".join(enc_int(d) for d in dims)


EMPTY = enc_tensor(np.zeros(0), (0, 0, 0, 0))
STATE = b"110" + EMPTY * 3  # flags, x_grad, cached_output, params_grad (or grad_final)
MULTS = enc_float(1.0) * 3 + enc_float(0.0)


def stream(data: bytes) -> _Stream:
    return _Stream(data, "test.dat")


@pytest.mark.parametrize("value", [0, 1, 127, 128, 255, 256, 150, -1, -28, 4736, 2**40, -(2**62)])
def test_integers_round_trip(value: int) -> None:
    s = stream(enc_int(value))
    assert s.signed("v", 8) == value and s.left() == 0


def test_integer_errors() -> None:
    with pytest.raises(ModelUnavailableError, match="control byte"):
        stream(bytes([0x05]) + b"\0" * 5).signed("v", 4)  # 5 bytes for a 4-byte int
    with pytest.raises(ModelUnavailableError, match="control byte"):
        stream(bytes([0x81, 1])).unsigned("v")  # negative unsigned
    with pytest.raises(ModelUnavailableError, match="expected 2 more bytes, found 1"):
        stream(bytes([0x02, 1])).signed("v")


def test_dlib_float_encoding() -> None:
    # bytes taken from dlib's own files: 0.04 = 0xa3d70a * 2**-28, 122.782 = 0xf59062 * 2**-17
    assert stream(bytes.fromhex("030ad7a3811c")).real("margin") == pytest.approx(0.04, abs=1e-9)
    assert np.float32(stream(bytes.fromhex("036290f58111")).real("r")) == np.float32(122.782)
    assert stream(bytes.fromhex("0100010b")).real("zero") == 0.0
    assert stream(enc_float(-3.5)).real("x") == -3.5
    assert stream(enc_float(math.inf)).real("x") == math.inf
    assert math.isnan(stream(enc_int(0) + enc_int(32002)).real("x"))
    with pytest.raises(ModelUnavailableError, match="legacy text float"):
        stream(b"1.5 ").real("x")


def test_strings_bools_and_tensors() -> None:
    s = stream(enc_str("con_4") + b"10")
    assert s.string("v") == "con_4" and s.boolean("a") and not s.boolean("b")
    with pytest.raises(ModelUnavailableError, match="'0' or '1'"):
        stream(b"x").boolean("flag")
    vals = np.arange(6, dtype=np.float32) / 8
    for version in (1, 2):
        out = stream(enc_tensor(vals, (1, 2, 3, 1), version)).tensor("t")
        np.testing.assert_array_equal(out, vals)
    with pytest.raises(ModelUnavailableError, match="needs more bytes"):
        stream(enc_int(2) + enc_int(1 << 40) + enc_int(1) * 3).tensor("huge")  # no allocation, no hang
    with pytest.raises(ModelUnavailableError, match="unknown tensor version"):
        stream(enc_int(7)).tensor("t")


# A tiny network: 4x4 RGB -> con(2, 3x3, s1, p1) -> tag1 -> con(3, 3x3, s2, p0) -> add_prev1
# (shapes (3,1,1) + (2,4,4): dlib zero-pads both to (3,4,4)) -> relu -> avg_pool_everything -> fc 2
ARCH = (
    Slot("con"),
    Slot("tag", 1),
    Slot("con"),
    Slot("add_prev", 1),
    Slot("relu"),
    Slot("avg_pool"),
    Slot("fc"),
)
RNG = np.random.default_rng(0)
W1, B1 = RNG.normal(size=(2, 3, 3, 3)).astype(np.float32), RNG.normal(size=2).astype(np.float32)
W2, B2 = RNG.normal(size=(3, 2, 3, 3)).astype(np.float32), RNG.normal(size=3).astype(np.float32)
FC = RNG.normal(size=(3, 2)).astype(np.float32)
MEAN = (122.782, 117.001, 104.298)


def enc_con(w: np.ndarray, b: np.ndarray, stride: int, pad: int) -> bytes:
    o, i, h, k = w.shape
    return (
        enc_str("con_4")
        + enc_tensor(np.concatenate([w.ravel(), b]))
        + b"".join(enc_int(v) for v in (o, h, k, stride, stride, pad, pad))
        + enc_alias(o, i, h, k)
        + enc_alias(1, o, 1, 1)
        + MULTS
    )


def tiny_net() -> bytes:
    versions = [2, 2, 2, 2, 2, 1, 3]  # top-down: fc, avg_pool, relu, add_prev, con, tag, con(input)
    head = enc_int(1) + enc_str("loss_metric_2") + enc_float(0.04) + enc_float(0.6)
    head += b"".join(enc_int(v) for v in versions)
    head += enc_str("input_rgb_image_sized") + b"".join(enc_float(m) for m in MEAN) + enc_int(4) * 2
    body = enc_con(W1, B1, 1, 1) + STATE + enc_int(1)  # + sample_expansion_factor
    body += enc_con(W2, B2, 2, 0) + STATE
    body += enc_str("add_prev_") + STATE + enc_str("relu_") + STATE
    body += enc_str("avg_pool_2") + b"".join(enc_int(v) for v in (0, 0, 1, 1, 0, 0)) + STATE
    fc = enc_str("fc_2") + enc_int(2) + enc_int(3) + enc_tensor(FC.ravel())
    fc += enc_alias(3, 2, 1, 1) + enc_alias(0, 0, 0, 0) + enc_int(1) + MULTS
    return head + body + fc + STATE


def test_parses_a_synthetic_network() -> None:
    net = parse_network(tiny_net(), "tiny.dat", ARCH)
    assert net.input_size == (4, 4) and np.allclose(net.mean_rgb, MEAN)
    assert [layer.kind for layer in net.layers] == [s.kind for s in ARCH]
    np.testing.assert_array_equal(net.layers[0].arrays["filters"], W1)
    np.testing.assert_array_equal(net.layers[2].arrays["bias"], B2)
    assert net.layers[2].attrs["stride_y"] == 2 and net.layers[0].attrs["padding_x"] == 1
    np.testing.assert_array_equal(net.layers[6].arrays["weights"], FC)
    assert "bias" not in net.layers[6].arrays


def test_every_truncation_and_any_trailing_byte_is_an_error() -> None:
    data = tiny_net()
    for n in range(len(data)):
        with pytest.raises(ModelUnavailableError):
            parse_network(data[:n], "tiny.dat", ARCH)
    with pytest.raises(ModelUnavailableError, match="unexpected bytes"):
        parse_network(data + b"\0", "tiny.dat", ARCH)


def test_corrupted_bytes_fail_cleanly() -> None:
    """Every single-byte corruption either still parses and converts, or raises
    ModelUnavailableError (never IndexError, struct.error, a hang or a huge allocation)."""
    pytest.importorskip("onnx")
    from faceprint.embedding.dlib_onnx import to_onnx

    data = tiny_net()
    for i in range(len(data)):
        for value in (0x00, 0x03, 0x0F, 0x8F, 0xFF):
            bad = bytearray(data)
            bad[i] = value
            with contextlib.suppress(ModelUnavailableError):
                to_onnx(parse_network(bytes(bad), "tiny.dat", ARCH))


def test_wrong_layer_is_named() -> None:
    arch = list(ARCH)
    arch[3] = Slot("relu")
    with pytest.raises(ModelUnavailableError, match="expected relu_ version 'relu_', found 'add_prev_'"):
        parse_network(tiny_net(), "tiny.dat", tuple(arch))


def _dlib_reference(img: np.ndarray) -> np.ndarray:
    """dlib's forward pass of the tiny net, written from dlib's documented semantics."""
    x = (img.astype(np.float32).transpose(2, 0, 1) - np.array(MEAN, np.float32)[:, None, None]) / 256

    def conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, s: int, p: int) -> np.ndarray:
        xp = np.pad(x, ((0, 0), (p, p), (p, p)))
        k = w.shape[2]
        n = 1 + (x.shape[1] + 2 * p - k) // s
        out = np.empty((w.shape[0], n, n), np.float32)
        for r in range(n):
            for c in range(n):
                patch = xp[:, r * s : r * s + k, c * s : c * s + k]
                out[:, r, c] = (w * patch).sum(axis=(1, 2, 3)) + b
        return out

    t1 = conv(x, W1, B1, 1, 1)
    t2 = conv(t1, W2, B2, 2, 0)
    added = np.zeros((3, 4, 4), np.float32)
    added[: t1.shape[0], : t1.shape[1], : t1.shape[2]] += t1
    added[: t2.shape[0], : t2.shape[1], : t2.shape[2]] += t2
    return np.maximum(added, 0).mean(axis=(1, 2)) @ FC


def test_onnx_conversion_matches_dlib_semantics() -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from faceprint.embedding.dlib_onnx import INPUT_NAME, to_onnx

    model = to_onnx(parse_network(tiny_net(), "tiny.dat", ARCH))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    imgs = RNG.integers(0, 256, size=(3, 4, 4, 3), dtype=np.uint8)
    out = sess.run(None, {INPUT_NAME: imgs})[0]
    ref = np.stack([_dlib_reference(im) for im in imgs])
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
