"""A pure-Python reader of TensorFlow Lite model files (``.tflite``), for float models.

Why: it lets :mod:`faceprint.embedding.tflite_onnx` rebuild a TFLite face-embedding
network as an ONNX graph with no TensorFlow (nor any TFLite runtime) at run time. Only
what that converter needs is read; anything else is ignored, and anything it could not
translate faithfully (a quantized or sparse tensor, a tensor type other than float32,
int32 or int64, an operator outside :data:`SUPPORTED_OPS`) is refused.

The container is a FlatBuffer (field ids below are those of TensorFlow's
``tensorflow/lite/schema/schema.fbs``, schema version 3):

* the file starts with a ``uint32`` offset to the root ``Model`` table, then the file
  identifier ``TFL3``; all integers are little endian;
* a **table** starts with an ``int32`` that, subtracted from the table's position, gives
  its **vtable**: ``uint16`` vtable size, ``uint16`` table size, then one ``uint16`` per
  field slot giving the field's offset inside the table (0 or a slot past the vtable's
  end: the field is absent and takes its schema default);
* a field that is a table, vector or string holds a ``uint32`` offset, relative to the
  field's own position; a **vector** (and a string, a vector of bytes) is a ``uint32``
  count then the elements; a vector of tables holds one relative ``uint32`` per element;
* a **union** takes two slots: its type (a ``uint8``, 0 for none), then its table.

Tables read (slot: field): ``Model`` 0 version, 1 operator_codes, 2 subgraphs,
3 description, 4 buffers; ``OperatorCode`` 0 deprecated_builtin_code (int8), 1
custom_code, 2 version, 3 builtin_code (int32; the operator is the larger of the two
codes, as TFLite reads it); ``SubGraph`` 0 tensors, 1 inputs, 2 outputs, 3 operators,
4 name; ``Tensor`` 0 shape, 1 type, 2 buffer, 3 name, 4 quantization, 6 sparsity,
7 shape_signature; ``QuantizationParameters`` 2 scale, 3 zero_point, 4/5 details;
``Operator`` 0 opcode_index, 1 inputs, 2 outputs, 3/4 builtin_options (union);
``Buffer`` 0 data, 1 offset, 2 size (the offset/size form keeps the bytes after the
FlatBuffer, the offset counted from the start of the file, for models over 2 GB).

Shapes are TensorFlow's: activations are **NHWC**; ``CONV_2D`` filters are **OHWI**
(out, height, width, in); ``DEPTHWISE_CONV_2D`` filters are **1HWO** (1, height, width,
in * multiplier). The reader keeps them so; the converter transposes.

Every malformed input (truncated bytes, a wrong identifier, an offset or count out of
range, an unsupported operator or tensor type) raises
:class:`~faceprint.errors.ModelUnavailableError` with a one-line message saying what was
expected and what was found; counts are checked against the bytes there are before
anything is allocated, so garbage can neither hang the reader nor exhaust memory.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import numpy as np
from numpy.typing import NDArray

from ..errors import ModelUnavailableError

FILE_IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3

#: TFLite builtin operator codes this reader (and the converter) handle, by name.
SUPPORTED_OPS: Mapping[int, str] = {
    0: "ADD",
    3: "CONV_2D",
    4: "DEPTHWISE_CONV_2D",
    18: "MUL",
    19: "RELU",
    22: "RESHAPE",
    41: "SUB",
    101: "ABS",
}

#: Names of other common builtin operators, only so that a refusal can name them.
_OTHER_OP_NAMES: Mapping[int, str] = {
    1: "AVERAGE_POOL_2D",
    2: "CONCATENATION",
    6: "DEQUANTIZE",
    9: "FULLY_CONNECTED",
    11: "L2_NORMALIZATION",
    14: "LOGISTIC",
    17: "MAX_POOL_2D",
    21: "RELU6",
    25: "SOFTMAX",
    28: "TANH",
    32: "CUSTOM",
    34: "PAD",
    39: "TRANSPOSE",
    40: "MEAN",
    42: "DIV",
    43: "SQUEEZE",
    45: "STRIDED_SLICE",
    54: "PRELU",
    55: "MAXIMUM",
    60: "PADV2",
    74: "SUM",
    75: "SQRT",
    76: "RSQRT",
    98: "LEAKY_RELU",
    99: "SQUARED_DIFFERENCE",
    114: "QUANTIZE",
}

#: TensorType codes read, and their numpy dtypes (little endian).
TENSOR_TYPES: Mapping[int, tuple[str, str]] = {
    0: ("FLOAT32", "<f4"),
    2: ("INT32", "<i4"),
    4: ("INT64", "<i8"),
}

_OTHER_TYPE_NAMES: Mapping[int, str] = {
    1: "FLOAT16",
    3: "UINT8",
    5: "STRING",
    6: "BOOL",
    7: "INT16",
    8: "COMPLEX64",
    9: "INT8",
    10: "FLOAT64",
}

#: Fused activation codes (ActivationFunctionType) by name.
ACTIVATIONS: Mapping[int, str] = {
    0: "NONE",
    1: "RELU",
    2: "RELU_N1_TO_1",
    3: "RELU6",
    4: "TANH",
    5: "SIGN_BIT",
}

#: Padding codes by name.
PADDINGS: Mapping[int, str] = {0: "SAME", 1: "VALID"}

# Options tables of the supported ops: the union type each must carry (0: none allowed)
# and its fields as (name, slot, struct format, default).
_Field = tuple[str, int, str, int]
_CONV_FIELDS: tuple[_Field, ...] = (
    ("padding", 0, "<b", 0),
    ("stride_w", 1, "<i", 0),
    ("stride_h", 2, "<i", 0),
    ("fused_activation_function", 3, "<b", 0),
    ("dilation_w_factor", 4, "<i", 1),
    ("dilation_h_factor", 5, "<i", 1),
)
_DEPTHWISE_FIELDS: tuple[_Field, ...] = (
    ("padding", 0, "<b", 0),
    ("stride_w", 1, "<i", 0),
    ("stride_h", 2, "<i", 0),
    ("depth_multiplier", 3, "<i", 0),
    ("fused_activation_function", 4, "<b", 0),
    ("dilation_w_factor", 5, "<i", 1),
    ("dilation_h_factor", 6, "<i", 1),
)
_ACTIVATION_FIELDS: tuple[_Field, ...] = (("fused_activation_function", 0, "<b", 0),)
_OPTIONS: Mapping[str, tuple[int, tuple[_Field, ...]]] = {
    "ADD": (11, _ACTIVATION_FIELDS),  # AddOptions
    "CONV_2D": (1, _CONV_FIELDS),  # Conv2DOptions
    "DEPTHWISE_CONV_2D": (2, _DEPTHWISE_FIELDS),  # DepthwiseConv2DOptions
    "MUL": (21, _ACTIVATION_FIELDS),  # MulOptions
    "RELU": (0, ()),
    "RESHAPE": (17, ()),  # ReshapeOptions: new_shape, a vector, read apart
    "SUB": (28, _ACTIVATION_FIELDS),  # SubOptions
    "ABS": (0, ()),
}
_RESHAPE_OPTIONS = 17


def op_name(code: int) -> str:
    """The name of builtin operator ``code`` (``BUILTIN_<code>`` when unknown here)."""
    return SUPPORTED_OPS.get(code) or _OTHER_OP_NAMES.get(code) or f"BUILTIN_{code}"


@dataclass(frozen=True)
class OperatorCode:
    """One entry of the model's operator table: builtin code (or 32, custom), version."""

    builtin_code: int
    custom_code: str
    version: int

    @property
    def name(self) -> str:
        return f"custom operator {self.custom_code!r}" if self.custom_code else op_name(self.builtin_code)


@dataclass(frozen=True)
class Tensor:
    """A tensor's declaration. ``shape`` is TFLite's (NHWC for activations, with the batch
    the model was exported for); ``shape_signature`` marks dynamic dimensions with -1
    when the file has one; ``buffer`` indexes :attr:`Model.buffers` (0: no data)."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype string, little endian: "<f4", "<i4" or "<i8"
    buffer: int
    shape_signature: tuple[int, ...] = ()


@dataclass(frozen=True)
class Operator:
    """One operator: its opcode (an index into :attr:`Model.operator_codes`), its name
    (``CONV_2D``...), tensor indices in and out (-1: an optional input left out), its
    scalar builtin options by schema field name (absent fields take the schema's
    defaults), and ``RESHAPE``'s ``new_shape`` option (empty for other ops)."""

    opcode_index: int
    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: Mapping[str, int] = field(default_factory=dict)
    new_shape: tuple[int, ...] = ()


@dataclass(frozen=True)
class SubGraph:
    """Tensors, the indices of the inputs and outputs, and operators in execution order."""

    tensors: tuple[Tensor, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    operators: tuple[Operator, ...]
    name: str = ""


@dataclass(frozen=True)
class Model:
    """A TFLite model: schema version, operator codes, subgraphs (0 is the main one),
    the raw bytes of every buffer, and the free-text description."""

    version: int
    operator_codes: tuple[OperatorCode, ...]
    subgraphs: tuple[SubGraph, ...]
    buffers: tuple[bytes, ...]
    description: str = ""
    source: str = "<bytes>"

    def constant(self, subgraph: SubGraph, index: int) -> NDArray[np.generic] | None:
        """The value of tensor ``index`` of ``subgraph`` as a numpy array of its shape and
        type, or None for a tensor without data (an activation). Raises
        :class:`ModelUnavailableError` when its buffer's size does not fit its shape."""
        if not 0 <= index < len(subgraph.tensors):
            _fail(self.source, f"expected a tensor index below {len(subgraph.tensors)}, found {index}")
        t = subgraph.tensors[index]
        data = self.buffers[t.buffer]
        if not data:
            return None
        dtype = np.dtype(t.dtype)
        count = math.prod(t.shape)
        if len(data) != count * dtype.itemsize:
            _fail(
                self.source,
                f"tensor {t.name!r} of shape {list(t.shape)} ({dtype.name}) expects "
                f"{count * dtype.itemsize} bytes of data, found {len(data)}",
            )
        return np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("="), copy=True).reshape(t.shape)


def _fail(source: str, what: str) -> NoReturn:
    raise ModelUnavailableError(f"{source} is not a usable TFLite model: {what}")


class _Reader:
    """Bounds-checked access to the FlatBuffer's bytes; every failure names the offset."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.source = source

    def fail(self, what: str, pos: int | None = None) -> NoReturn:
        where = f" (at byte {pos} of {len(self.data)})" if pos is not None else ""
        _fail(self.source, what + where)

    def scalar(self, fmt: str, pos: int, what: str) -> int:
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.data):
            self.fail(f"expected {size} bytes for {what}, found {max(0, len(self.data) - pos)}", pos)
        value: int = struct.unpack_from(fmt, self.data, pos)[0]
        return value

    def table(self, pos: int, what: str) -> _Table:
        if pos % 4:
            self.fail(f"expected the {what} table at a 4-byte aligned offset, found {pos}", pos)
        vtable = pos - self.scalar("<i", pos, f"{what} vtable offset")
        vsize = self.scalar("<H", vtable, f"{what} vtable size")
        tsize = self.scalar("<H", vtable + 2, f"{what} table size")
        if vsize < 4 or vsize % 2 or vtable + vsize > len(self.data) or pos + tsize > len(self.data):
            self.fail(f"expected a {what} vtable, found sizes {vsize}/{tsize} at {vtable}", pos)
        return _Table(self, pos, vtable, vsize, tsize, what)


class _Table:
    """One table of the FlatBuffer: fields by slot number, defaults when absent."""

    def __init__(self, r: _Reader, pos: int, vtable: int, vsize: int, tsize: int, what: str) -> None:
        self.r, self.pos, self.vtable, self.vsize, self.tsize, self.what = r, pos, vtable, vsize, tsize, what

    def _field(self, slot: int, size: int, name: str) -> int | None:
        entry = 4 + 2 * slot
        if entry + 2 > self.vsize:
            return None
        off = self.r.scalar("<H", self.vtable + entry, f"{self.what}.{name} vtable entry")
        if off == 0:
            return None
        if off + size > self.tsize:
            self.r.fail(f"expected {self.what}.{name} inside its {self.tsize}-byte table, found offset {off}")
        return self.pos + off

    def scalar(self, slot: int, fmt: str, default: int, name: str) -> int:
        pos = self._field(slot, struct.calcsize(fmt), name)
        return default if pos is None else self.r.scalar(fmt, pos, f"{self.what}.{name}")

    def _target(self, slot: int, name: str) -> int | None:
        pos = self._field(slot, 4, name)
        if pos is None:
            return None
        target = pos + self.r.scalar("<I", pos, f"{self.what}.{name} offset")
        if target >= len(self.r.data):
            self.r.fail(f"expected {self.what}.{name} inside the file, found offset {target}", pos)
        return target

    def table(self, slot: int, name: str) -> _Table | None:
        target = self._target(slot, name)
        return None if target is None else self.r.table(target, f"{self.what}.{name}")

    def vector(self, slot: int, elem_size: int, name: str) -> tuple[int, int]:
        """(first element's position, count); (0, 0) for an absent vector."""
        target = self._target(slot, name)
        if target is None:
            return 0, 0
        count = self.r.scalar("<I", target, f"{self.what}.{name} length")
        if count * elem_size > len(self.r.data) - target - 4:
            self.r.fail(
                f"expected {count} elements of {self.what}.{name} ({count * elem_size} bytes), found "
                f"{len(self.r.data) - target - 4} bytes left",
                target,
            )
        return target + 4, count

    def tables(self, slot: int, name: str) -> list[_Table]:
        start, count = self.vector(slot, 4, name)
        out = []
        for i in range(count):
            pos = start + 4 * i
            out.append(self.r.table(pos + self.r.scalar("<I", pos, name), f"{self.what}.{name}[{i}]"))
        return out

    def ints(self, slot: int, name: str, fmt: str = "<i") -> tuple[int, ...]:
        size = struct.calcsize(fmt)
        start, count = self.vector(slot, size, name)
        values = struct.unpack_from(f"<{count}{fmt[1:]}", self.r.data, start) if count else ()
        return tuple(int(v) for v in values)

    def raw(self, slot: int, name: str) -> bytes:
        start, count = self.vector(slot, 1, name)
        return self.r.data[start : start + count]

    def string(self, slot: int, name: str) -> str:
        return self.raw(slot, name).decode("utf-8", errors="replace")


def _operator_code(t: _Table) -> OperatorCode:
    deprecated = t.scalar(0, "<b", 0, "deprecated_builtin_code")
    builtin = t.scalar(3, "<i", 0, "builtin_code")
    return OperatorCode(max(deprecated, builtin), t.string(1, "custom_code"), t.scalar(2, "<i", 1, "version"))


def _tensor(r: _Reader, t: _Table, buffers: int) -> Tensor:
    name = t.string(3, "name")
    shape = t.ints(0, "shape")
    code = t.scalar(1, "<b", 0, "type")
    if code not in TENSOR_TYPES:
        shown = _OTHER_TYPE_NAMES.get(code, f"type code {code}")
        known = ", ".join(n for n, _ in TENSOR_TYPES.values())
        r.fail(f"tensor {name!r} has type {shown}; expected one of {known}")
    if any(d < 0 for d in shape):
        r.fail(f"tensor {name!r} has a negative dimension in its shape {list(shape)}")
    buffer = t.scalar(2, "<I", 0, "buffer")
    if buffer >= buffers:
        r.fail(f"tensor {name!r} refers to buffer {buffer}; expected an index below {buffers}")
    quant = t.table(4, "quantization")
    if quant is not None:
        scales = quant.vector(2, 4, "scale")[1]
        zeros = quant.vector(3, 8, "zero_point")[1]
        if scales or zeros or quant.scalar(4, "<B", 0, "details_type"):
            r.fail(f"tensor {name!r} is quantized; expected a float model (no quantization parameters)")
    if t.table(6, "sparsity") is not None:
        r.fail(f"tensor {name!r} is sparse; expected dense tensors")
    return Tensor(name, shape, TENSOR_TYPES[code][1], buffer, t.ints(7, "shape_signature"))


def _operator(r: _Reader, t: _Table, codes: tuple[OperatorCode, ...], n_tensors: int) -> Operator:
    index = t.scalar(0, "<I", 0, "opcode_index")
    if index >= len(codes):
        r.fail(f"operator refers to operator code {index}; expected an index below {len(codes)}")
    code = codes[index]
    if code.custom_code or code.builtin_code not in SUPPORTED_OPS:
        r.fail(f"unsupported operator {code.name}; expected one of {', '.join(SUPPORTED_OPS.values())}")
    op = SUPPORTED_OPS[code.builtin_code]
    inputs, outputs = t.ints(1, "inputs"), t.ints(2, "outputs")
    for i in (*inputs, *outputs):
        if not -1 <= i < n_tensors:
            r.fail(f"{op} refers to tensor {i}; expected an index below {n_tensors}")
    kind, fields = _OPTIONS[op]
    found = t.scalar(3, "<B", 0, "builtin_options_type")
    if found not in (0, kind):
        r.fail(f"{op} has builtin options of union type {found}; expected {kind}")
    options: dict[str, int] = {}
    table = t.table(4, "builtin_options") if found else None
    for name, slot, fmt, default in fields:
        options[name] = default if table is None else table.scalar(slot, fmt, default, name)
    new_shape = table.ints(0, "new_shape") if op == "RESHAPE" and table is not None else ()
    act = options.get("fused_activation_function", 0)
    if act not in ACTIVATIONS:
        r.fail(f"{op} has fused activation code {act}; expected one of {sorted(ACTIVATIONS)}")
    pad = options.get("padding", 0)
    if pad not in PADDINGS:
        r.fail(f"{op} has padding code {pad}; expected 0 (SAME) or 1 (VALID)")
    return Operator(index, op, inputs, outputs, options, new_shape)


def _subgraph(r: _Reader, t: _Table, codes: tuple[OperatorCode, ...], buffers: int) -> SubGraph:
    tensors = tuple(_tensor(r, x, buffers) for x in t.tables(0, "tensors"))
    inputs, outputs = t.ints(1, "inputs"), t.ints(2, "outputs")
    for i in (*inputs, *outputs):
        if not 0 <= i < len(tensors):
            r.fail(f"subgraph input/output {i}; expected a tensor index below {len(tensors)}")
    operators = tuple(_operator(r, x, codes, len(tensors)) for x in t.tables(3, "operators"))
    return SubGraph(tensors, inputs, outputs, operators, t.string(4, "name"))


def _buffer(r: _Reader, t: _Table) -> bytes:
    data = t.raw(0, "data")
    offset, size = t.scalar(1, "<Q", 0, "offset"), t.scalar(2, "<Q", 0, "size")
    if offset > 1:  # 0 and 1 are the "no external data" markers TFLite uses
        if data:
            r.fail("a buffer has both inline data and an offset; expected one of them")
        if offset + size > len(r.data):
            r.fail(f"expected a buffer of {size} bytes at offset {offset}, found a {len(r.data)}-byte file")
        return r.data[offset : offset + size]
    return data


def parse_model(data: bytes, source: str = "<bytes>") -> Model:
    """Decode a ``.tflite`` file's bytes (see the module doc); ``source`` names it in errors."""
    r = _Reader(bytes(data), source)
    if len(r.data) < 8:
        r.fail(f"expected at least 8 bytes (root offset and identifier), found {len(r.data)}")
    ident = r.data[4:8]
    if ident != FILE_IDENTIFIER:
        r.fail(f"expected the file identifier {FILE_IDENTIFIER.decode()!r}, found {ident!r}")
    root = r.table(r.scalar("<I", 0, "root offset"), "Model")
    version = root.scalar(0, "<I", 0, "version")
    if version != SCHEMA_VERSION:
        r.fail(f"expected schema version {SCHEMA_VERSION}, found {version}")
    codes = tuple(_operator_code(t) for t in root.tables(1, "operator_codes"))
    buffers = tuple(_buffer(r, t) for t in root.tables(4, "buffers"))
    subgraphs = tuple(_subgraph(r, t, codes, len(buffers)) for t in root.tables(2, "subgraphs"))
    if not subgraphs:
        r.fail("expected at least one subgraph, found none")
    return Model(version, codes, subgraphs, buffers, root.string(3, "description"), source)


def read_model(path: str | Path) -> Model:
    """Read a ``.tflite`` file; any problem raises :class:`ModelUnavailableError`."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ModelUnavailableError(f"cannot read TFLite model file {p}: {exc}") from exc
    return parse_model(data, str(p))
