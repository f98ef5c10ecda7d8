"""The TFLite reader decodes hand-built FlatBuffers field by field, and turns every kind of
malformed or unsupported file into one ModelUnavailableError saying what it expected and
what it found (never an IndexError or a struct.error). No real weights are needed."""

from __future__ import annotations

import contextlib
import random
import struct
from pathlib import Path

import numpy as np
import pytest

from faceprint.embedding.tflite_format import parse_model, read_model
from faceprint.errors import ModelUnavailableError
from tflite_builder import Fields, conv_options, f32, flatbuffer, i32, model, opcode, operator, tensor

FILTER = np.arange(2 * 3 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 3) / 10  # OHWI
BIAS = np.array([0.5, -0.5], np.float32)


def conv_model(**changes: object) -> Fields:
    """input [1,6,6,3] -> CONV_2D 3x3 SAME stride 2 -> [1,3,3,2] -> RESHAPE -> [1,18]."""
    parts: dict[str, object] = {
        "tensors": [
            tensor("input", [1, 6, 6, 3]),
            tensor("filter", [2, 3, 3, 3], buffer=1),
            tensor("bias", [2], buffer=2),
            tensor("conv", [1, 3, 3, 2]),
            tensor("shape", [2], buffer=3, type_code=2),
            tensor("output", [1, 18]),
        ],
        "operators": [
            operator(0, [0, 1, 2], [3], conv_options(padding=0, stride=2, activation=1)),
            operator(1, [3, 4], [5], (17, {0: ("ints", [1, 18])})),
        ],
        "opcodes": [opcode(3), opcode(22)],
        "inputs": [0],
        "outputs": [5],
        "buffers": [b"", f32(FILTER), f32(BIAS), i32([1, 18])],
    }
    parts.update(changes)
    return model(**parts)  # type: ignore[arg-type]  # parts holds each argument's type


def conv_bytes(**changes: object) -> bytes:
    return flatbuffer(conv_model(**changes))


def refused(data: bytes, *words: str) -> str:
    with pytest.raises(ModelUnavailableError) as info:
        parse_model(data, "test.tflite")
    message = str(info.value)
    assert "\n" not in message and message.startswith("test.tflite is not a usable TFLite model")
    for word in words:
        assert word in message, message
    return message


def test_reads_every_field_the_converter_needs() -> None:
    m = parse_model(conv_bytes())
    assert (m.version, m.description) == (3, "hand-built test model")
    assert [c.builtin_code for c in m.operator_codes] == [3, 22]
    sg = m.subgraphs[0]
    assert (sg.inputs, sg.outputs, sg.name) == ((0,), (5,), "main")
    assert [t.name for t in sg.tensors] == ["input", "filter", "bias", "conv", "shape", "output"]
    assert sg.tensors[0].shape == (1, 6, 6, 3) and sg.tensors[0].dtype == "<f4"
    assert sg.tensors[4].dtype == "<i4"
    conv, reshape = sg.operators
    assert (conv.op, conv.inputs, conv.outputs) == ("CONV_2D", (0, 1, 2), (3,))
    assert dict(conv.options) == {
        "padding": 0,
        "stride_w": 2,
        "stride_h": 2,
        "fused_activation_function": 1,
        "dilation_w_factor": 1,  # absent from the file: the schema's default
        "dilation_h_factor": 1,
    }
    assert (reshape.op, reshape.new_shape) == ("RESHAPE", (1, 18))
    np.testing.assert_array_equal(m.constant(sg, 1), FILTER)
    np.testing.assert_array_equal(m.constant(sg, 2), BIAS)
    np.testing.assert_array_equal(m.constant(sg, 4), [1, 18])
    assert m.constant(sg, 0) is None  # an activation has no data


def test_options_absent_take_defaults_and_old_opcodes_read() -> None:
    """A file of an old converter: only deprecated_builtin_code, and no options table."""
    data = conv_bytes(
        opcodes=[{0: ("b", 3)}, {0: ("b", 22)}],
        operators=[operator(0, [0, 1, -1], [3]), operator(1, [3, 4], [5])],
    )
    m = parse_model(data)
    conv = m.subgraphs[0].operators[0]
    assert conv.op == "CONV_2D" and conv.inputs == (0, 1, -1)
    assert conv.options["stride_h"] == 0 and conv.options["dilation_h_factor"] == 1
    assert m.subgraphs[0].operators[1].new_shape == ()


def test_buffers_after_the_flatbuffer() -> None:
    """The offset/size form (models over 2 GB): bytes counted from the start of the file."""
    blob = f32(FILTER)
    probe = conv_bytes(buffers=[b"", {1: ("Q", 10**6), 2: ("Q", len(blob))}, f32(BIAS), i32([1, 18])])
    offset = len(probe) + 16
    data = conv_bytes(buffers=[b"", {1: ("Q", offset), 2: ("Q", len(blob))}, f32(BIAS), i32([1, 18])])
    assert len(data) == len(probe)
    data += b"\0" * 16 + blob
    m = parse_model(data)
    np.testing.assert_array_equal(m.constant(m.subgraphs[0], 1), FILTER)
    refused(data[:-1], "buffer of 216 bytes at offset")


def test_wrong_identifier_and_short_files() -> None:
    good = conv_bytes()
    refused(good[:4] + b"TFL2" + good[8:], "expected the file identifier 'TFL3'", "b'TFL2'")
    refused(b"", "expected at least 8 bytes", "found 0")
    refused(b"\x00\x00\x00\x00TFL3", "Model vtable")
    refused(b"PK\x03\x04" + bytes(100), "identifier")


def test_every_truncation_is_refused() -> None:
    data = conv_bytes()
    for n in range(len(data)):
        with pytest.raises(ModelUnavailableError):
            parse_model(data[:n])


def test_corrupted_bytes_never_escape_as_other_errors() -> None:
    """Each byte flipped, and random bytes written at random places: the reader either
    decodes something or raises ModelUnavailableError, nothing else."""
    data = conv_bytes()
    rng = random.Random(0)
    variants = [data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :] for i in range(8, len(data))]
    for _ in range(300):
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(8, len(b) - 4)
            b[i : i + 4] = rng.randbytes(4)
        variants.append(bytes(b))
    for v in variants:
        try:
            m = parse_model(v)
        except ModelUnavailableError:
            continue
        sg = m.subgraphs[0]
        for i in range(len(sg.tensors)):
            with contextlib.suppress(ModelUnavailableError):
                m.constant(sg, i)


def test_offsets_out_of_range() -> None:
    data = bytearray(conv_bytes())
    struct.pack_into("<I", data, 0, len(data) + 100)
    refused(bytes(data), "Model vtable offset", f"of {len(data)}")
    refused(conv_bytes(operators=[operator(5, [0, 1, 2], [3])]), "operator code 5", "below 2")
    refused(conv_bytes(operators=[operator(0, [0, 1, 9], [3])]), "tensor 9", "below 6")
    refused(conv_bytes(inputs=[7]), "input/output 7", "below 6")
    tensors = [tensor("input", [1, 6, 6, 3], buffer=12)]
    refused(conv_bytes(tensors=tensors, operators=[], inputs=[0], outputs=[0]), "buffer 12", "below 4")


def test_unsupported_operators_are_named() -> None:
    refused(conv_bytes(opcodes=[opcode(9), opcode(22)]), "unsupported operator FULLY_CONNECTED", "CONV_2D")
    refused(conv_bytes(opcodes=[opcode(32, custom="MyOp"), opcode(22)]), "custom operator 'MyOp'")
    refused(conv_bytes(opcodes=[opcode(150), opcode(22)]), "BUILTIN_150")  # builtin_code past 127


def test_options_of_another_type_are_refused() -> None:
    ops = [operator(0, [0, 1, 2], [3], (5, {0: ("b", 0)})), operator(1, [3, 4], [5])]
    refused(conv_bytes(operators=ops), "CONV_2D has builtin options of union type 5", "expected 1")
    ops = [operator(0, [0, 1, 2], [3], conv_options(0, 2, activation=9)), operator(1, [3, 4], [5])]
    refused(conv_bytes(operators=ops), "fused activation code 9")
    ops = [operator(0, [0, 1, 2], [3], conv_options(3, 2)), operator(1, [3, 4], [5])]
    refused(conv_bytes(operators=ops), "padding code 3")


@pytest.mark.parametrize(("code", "name"), [(1, "FLOAT16"), (9, "INT8"), (3, "UINT8"), (42, "type code 42")])
def test_unsupported_tensor_types_are_named(code: int, name: str) -> None:
    tensors = [tensor("input", [1, 6, 6, 3], type_code=code)]
    refused(conv_bytes(tensors=tensors, operators=[], inputs=[0], outputs=[0]), f"type {name}", "FLOAT32")


def test_quantized_and_sparse_tensors_are_refused() -> None:
    quant = {2: ("floats", [0.02]), 3: ("longs", [128])}
    tensors = [tensor("input", [1, 6, 6, 3], quantization=quant)]
    refused(conv_bytes(tensors=tensors, operators=[], inputs=[0], outputs=[0]), "'input' is quantized")
    empty = [tensor("input", [1, 6, 6, 3], quantization={})]  # float converters write an empty table
    assert parse_model(conv_bytes(tensors=empty, operators=[], inputs=[0], outputs=[0]))
    sparse = [{**tensor("input", [1, 6, 6, 3]), 6: ("table", {})}]
    refused(conv_bytes(tensors=sparse, operators=[], inputs=[0], outputs=[0]), "sparse")


def test_other_schema_versions_are_refused() -> None:
    refused(flatbuffer({**conv_model(), 0: ("I", 2)}), "expected schema version 3, found 2")
    refused(flatbuffer({0: ("I", 3)}), "expected at least one subgraph")


def test_constant_whose_buffer_does_not_fit_its_shape() -> None:
    m = parse_model(conv_bytes(buffers=[b"", f32(FILTER[:1]), f32(BIAS), i32([1, 18])]))
    with pytest.raises(
        ModelUnavailableError, match=r"'filter' of shape \[2, 3, 3, 3\].*216 bytes.*found 108"
    ):
        m.constant(m.subgraphs[0], 1)


def test_read_model_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="cannot read TFLite model file"):
        read_model(tmp_path / "nope.tflite")
    (tmp_path / "m.tflite").write_bytes(conv_bytes())
    assert read_model(tmp_path / "m.tflite").source == str(tmp_path / "m.tflite")
