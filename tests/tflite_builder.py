"""Tiny ``.tflite`` files built by hand, for tests of the TFLite reader and converter that
need no real weights.

A minimal forward FlatBuffer writer: each table is written as its vtable, then the table
(fields aligned to their size), then its children, whose relative offsets are patched in
afterwards, so every ``uoffset`` points forward as the format requires. Field values are
``(kind, value)`` pairs by slot: scalars ``"b" "B" "i" "I" "Q" "f"`` (struct codes),
``"table"`` (a dict of fields), ``"tables"`` (a list of dicts), ``"ints"`` (int32 vector),
``"longs"`` (int64 vector), ``"floats"`` (float32 vector), ``"bytes"`` and ``"str"``.

:func:`model` assembles a TFLite ``Model`` from plain descriptions of tensors and
operators (schema field ids as in ``tensorflow/lite/schema/schema.fbs``).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

Fields = dict[int, tuple[str, Any]]

_SCALARS = {"b": 1, "B": 1, "i": 4, "I": 4, "Q": 8, "f": 4}
_VECTORS = {"ints": "i", "longs": "q", "floats": "f"}


class _Writer:
    def __init__(self) -> None:
        self.buf = bytearray(8)  # root offset, file identifier

    def align(self, n: int) -> None:
        self.buf += b"\0" * (-len(self.buf) % n)

    def patch(self, at: int, target: int) -> None:
        struct.pack_into("<I", self.buf, at, target - at)

    def table(self, fields: Fields) -> int:
        slots = max(fields, default=-1) + 1
        self.align(4)
        vtable = len(self.buf)
        self.buf += b"\0" * (4 + 2 * slots)
        self.align(8)
        pos = len(self.buf)
        self.buf += struct.pack("<i", pos - vtable)
        where: dict[int, int] = {}
        for slot in sorted(fields):
            kind, _ = fields[slot]
            size = _SCALARS.get(kind, 4)
            self.align(size)
            where[slot] = len(self.buf)
            self.buf += b"\0" * size
        struct.pack_into("<HH", self.buf, vtable, 4 + 2 * slots, len(self.buf) - pos)
        for slot, at in where.items():
            struct.pack_into("<H", self.buf, vtable + 4 + 2 * slot, at - pos)
        for slot in sorted(fields):
            kind, value = fields[slot]
            at = where[slot]
            if kind in _SCALARS:
                struct.pack_into("<" + kind, self.buf, at, value)
            else:
                self.patch(at, self.child(kind, value))
        return pos

    def child(self, kind: str, value: Any) -> int:
        if kind == "table":
            return self.table(value)
        self.align(8)  # leaves the elements after the 4-byte count 4-aligned, enough here
        if kind == "tables":
            start = len(self.buf)
            self.buf += struct.pack("<I", len(value)) + b"\0" * (4 * len(value))
            for i, t in enumerate(value):
                self.patch(start + 4 + 4 * i, self.table(t))
            return start
        if kind in ("bytes", "str"):
            data = value.encode() if kind == "str" else bytes(value)
            start = len(self.buf)
            self.buf += struct.pack("<I", len(data)) + data + (b"\0" if kind == "str" else b"")
            return start
        if kind in _VECTORS:
            if kind == "longs":
                self.buf += b"\0" * 4  # 8-aligned elements
            start = len(self.buf)
            self.buf += struct.pack(f"<I{len(value)}{_VECTORS[kind]}", len(value), *value)
            return start
        raise ValueError(f"unknown field kind {kind}")


def flatbuffer(root: Fields, identifier: bytes = b"TFL3") -> bytes:
    """The bytes of a FlatBuffer whose root table has ``root``'s fields."""
    w = _Writer()
    w.buf[4:8] = identifier
    w.patch(0, w.table(root))
    return bytes(w.buf)


def tensor(
    name: str,
    shape: list[int],
    buffer: int = 0,
    type_code: int = 0,
    quantization: Fields | None = None,
) -> Fields:
    """A ``Tensor`` table (type 0 is FLOAT32)."""
    fields: Fields = {0: ("ints", shape), 1: ("b", type_code), 2: ("I", buffer), 3: ("str", name)}
    if quantization is not None:
        fields[4] = ("table", quantization)
    return fields


def operator(
    opcode: int, inputs: list[int], outputs: list[int], options: tuple[int, Fields] | None = None
) -> Fields:
    """An ``Operator`` table; ``options`` is (BuiltinOptions union type, its fields)."""
    fields: Fields = {0: ("I", opcode), 1: ("ints", inputs), 2: ("ints", outputs)}
    if options is not None:
        fields[3] = ("B", options[0])
        fields[4] = ("table", options[1])
    return fields


def opcode(code: int, custom: str = "") -> Fields:
    """An ``OperatorCode`` table the way current converters write it: codes below 127 in
    both fields, larger ones in ``builtin_code`` with the placeholder 127 in the old one."""
    fields: Fields = {0: ("b", min(code, 127)), 2: ("i", 1), 3: ("i", code)}
    if custom:
        fields[1] = ("str", custom)
    return fields


def model(
    tensors: list[Fields],
    operators: list[Fields],
    opcodes: list[Fields],
    inputs: list[int],
    outputs: list[int],
    buffers: list[bytes | Fields],
    version: int = 3,
) -> Fields:
    """A ``Model`` table's fields (buffers: raw data, or a ``Buffer`` table's fields)."""
    subgraph: Fields = {
        0: ("tables", tensors),
        1: ("ints", inputs),
        2: ("ints", outputs),
        3: ("tables", operators),
        4: ("str", "main"),
    }
    bufs = [b if isinstance(b, dict) else ({0: ("bytes", b)} if b else {}) for b in buffers]
    return {
        0: ("I", version),
        1: ("tables", opcodes),
        2: ("tables", [subgraph]),
        3: ("str", "hand-built test model"),
        4: ("tables", bufs),
    }


def conv_options(padding: int, stride: int, activation: int = 0) -> tuple[int, Fields]:
    """Conv2DOptions (union type 1): padding 0 SAME / 1 VALID, square stride."""
    return 1, {0: ("b", padding), 1: ("i", stride), 2: ("i", stride), 3: ("b", activation)}


def depthwise_options(
    padding: int, stride: int, multiplier: int = 1, activation: int = 0
) -> tuple[int, Fields]:
    """DepthwiseConv2DOptions (union type 2)."""
    return 2, {
        0: ("b", padding),
        1: ("i", stride),
        2: ("i", stride),
        3: ("i", multiplier),
        4: ("b", activation),
    }


def f32(a: np.ndarray[Any, Any]) -> bytes:
    return np.ascontiguousarray(a, dtype="<f4").tobytes()


def i32(a: list[int]) -> bytes:
    return np.asarray(a, dtype="<i4").tobytes()


class Net:
    """A one-subgraph model assembled op by op: tensors are added as activations (no data)
    or constants (float32 or int32 arrays), operators by builtin code."""

    def __init__(self) -> None:
        self.tensors: list[Fields] = []
        self.buffers: list[bytes | Fields] = [b""]
        self.operators: list[Fields] = []
        self.codes: list[int] = []

    def act(self, name: str, shape: list[int]) -> int:
        self.tensors.append(tensor(name, shape))
        return len(self.tensors) - 1

    def const(self, name: str, value: np.ndarray[Any, Any]) -> int:
        is_int = value.dtype.kind == "i"
        self.buffers.append(i32(value.ravel().tolist()) if is_int else f32(value))
        self.tensors.append(tensor(name, list(value.shape), len(self.buffers) - 1, 2 if is_int else 0))
        return len(self.tensors) - 1

    def op(
        self, code: int, inputs: list[int], outputs: list[int], options: tuple[int, Fields] | None = None
    ) -> None:
        if code not in self.codes:
            self.codes.append(code)
        self.operators.append(operator(self.codes.index(code), inputs, outputs, options))

    def build(self, inputs: list[int], outputs: list[int]) -> bytes:
        codes = [opcode(c) for c in self.codes]
        return flatbuffer(model(self.tensors, self.operators, codes, inputs, outputs, self.buffers))
