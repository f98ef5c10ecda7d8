"""PyTorch weights without torch: read *legacy* ``torch.save`` state_dicts, rebuild as ONNX.

:func:`load_state_dict` reads the pre-1.6, non-zip ``torch.save`` format; and
:func:`sequential_onnx` turns the state_dict of a plain feed-forward CNN into an ONNX graph.

Why: facenet-pytorch ships its MTCNN weights (``pnet.pt``, ``rnet.pt``, ``onet.pt``) in this
format, and faceprint must run them with no torch installed. The reader is pure Python +
numpy and only ever builds plain tensors: its unpickler refuses every class other than
``collections.OrderedDict``, torch's tensor-rebuild functions and the typed storage names,
so a hostile file cannot run code the way ``torch.load`` / ``pickle.load`` would let it.

The layout (checked byte by byte against facenet-pytorch's files), five parts back to back:

1. a pickled int, the magic number ``0x1950a86a20f9469cfc6c``;
2. a pickled int, the protocol version ``1001``;
3. a pickled dict of system info (``little_endian``, ``type_sizes``);
4. the pickled object itself (here an ``OrderedDict`` name -> tensor). Each tensor is
   ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)``
   and each storage a persistent id ``("storage", <torch.XStorage>, key, location, numel,
   view_metadata)``;
5. a pickled list of storage keys, then for each key in that order: its element count as a
   little-endian int64 followed by that many elements' raw little-endian bytes.

Tensors may be stored with any strides (facenet-pytorch's conv weights are column-major),
so each one is rebuilt with its own strides and returned as a C-contiguous copy.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ModelUnavailableError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

#: torch's typed storage classes and the numpy dtype of their elements.
STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass(frozen=True)
class _StorageType:
    """Stands in for a ``torch.XStorage`` class inside the pickle."""

    name: str


@dataclass
class _Storage:
    """A storage named by the pickle; its bytes arrive after the object (part 5)."""

    key: str
    dtype: np.dtype[Any]
    numel: int
    data: bytes | None = None


@dataclass(frozen=True)
class _TensorRef:
    """A tensor whose storage bytes have not been read yet."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> _TensorRef:
    if not isinstance(storage, _Storage):
        raise ValueError(f"tensor storage is a {type(storage).__name__}, expected a persistent storage id")
    return _TensorRef(storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


class _Unpickler(pickle.Unpickler):
    """Restricted unpickler: storages become :class:`_Storage`, tensors :class:`_TensorRef`."""

    def __init__(self, file: io.BufferedIOBase, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a state_dict holds only tensors")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, stype, key, _location, numel, view = pid
        if not isinstance(stype, _StorageType):
            raise pickle.UnpicklingError(f"unknown storage type {stype!r}")
        if view is not None:
            raise pickle.UnpicklingError("storage views (torch < 0.4 files) are not supported")
        key = str(key)
        st = self._storages.setdefault(key, _Storage(key, STORAGE_DTYPES[stype.name], int(numel)))
        return st


def _materialise(ref: _TensorRef) -> NDArray[Any]:
    """The tensor as a C-contiguous numpy array, checked against its storage bounds."""
    data = ref.storage.data
    if data is None:
        raise ValueError(f"storage {ref.storage.key} has no data")
    if any(s < 0 for s in ref.size) or any(s < 0 for s in ref.stride):
        raise ValueError(f"negative size or stride in tensor {ref.size}/{ref.stride}")
    n = int(np.prod(ref.size, dtype=np.int64))
    last = ref.offset + sum((d - 1) * s for d, s in zip(ref.size, ref.stride, strict=True)) if n else 0
    if ref.offset < 0 or (n and last >= ref.storage.numel):
        raise ValueError(f"tensor {ref.size} with strides {ref.stride} overruns its storage")
    itemsize = ref.storage.dtype.itemsize
    view: NDArray[Any] = np.ndarray(
        ref.size,
        dtype=ref.storage.dtype,
        buffer=data,
        offset=ref.offset * itemsize if n else 0,
        strides=tuple(s * itemsize for s in ref.stride),
    )
    return np.array(view, dtype=ref.storage.dtype.newbyteorder("="), order="C")  # keeps 0-d


def _read(fh: io.BufferedIOBase) -> dict[str, NDArray[Any]]:
    end = fh.seek(0, io.SEEK_END)
    fh.seek(0)
    head = fh.read(4)
    if head[:2] == b"PK":
        raise ValueError("this is the zip format of torch >= 1.6, not the legacy format")
    fh.seek(0)
    storages: dict[str, _Storage] = {}

    def load() -> Any:  # the restricted unpickler for every part: no code runs from the file
        return _Unpickler(fh, storages).load()

    magic = load()
    if magic != MAGIC_NUMBER:
        raise ValueError(f"magic number {magic!r} is not torch's legacy magic {MAGIC_NUMBER:#x}")
    proto = load()
    if proto != PROTOCOL_VERSION:
        raise ValueError(f"protocol version {proto!r}, expected {PROTOCOL_VERSION}")
    sysinfo = load()
    if not isinstance(sysinfo, dict) or not sysinfo.get("little_endian", False):
        raise ValueError(f"system info {sysinfo!r}: only little-endian files are supported")
    obj = load()
    if not isinstance(obj, dict):
        raise ValueError(f"the pickled object is a {type(obj).__name__}, expected a state_dict")
    keys = load()
    if not isinstance(keys, list) or set(map(str, keys)) != set(storages):
        raise ValueError("the storage key list does not match the storages the tensors use")
    for key in map(str, keys):
        st = storages[key]
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError(f"file ends before the size of storage {key}")
        (numel,) = struct.unpack("<q", raw)
        if numel != st.numel:
            raise ValueError(f"storage {key} holds {numel} elements, the pickle said {st.numel}")
        nbytes = numel * st.dtype.itemsize
        if numel < 0 or fh.tell() + nbytes > end:  # checked before reading: no huge allocation
            raise ValueError(f"file ends inside storage {key} ({end - fh.tell()} of {nbytes} bytes)")
        st.data = fh.read(nbytes)
    out: dict[str, NDArray[Any]] = {}
    for name, value in obj.items():
        if not isinstance(value, _TensorRef):
            raise ValueError(f"entry {name!r} is a {type(value).__name__}, expected a tensor")
        out[str(name)] = _materialise(value)
    return out


def load_state_dict(path: str | Path) -> dict[str, NDArray[Any]]:
    """The tensors of a legacy ``torch.save`` state_dict at ``path``, as numpy arrays.

    Keys keep the file's order; arrays are C-contiguous in native byte order with the
    storage's dtype (``FloatStorage`` -> float32 ...). Any missing, truncated or malformed
    file raises :class:`ModelUnavailableError` naming the file and what was wrong.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            return _read(fh)
    except OSError as exc:
        raise ModelUnavailableError(f"cannot read torch weights {p}: {exc}") from exc
    except (
        pickle.UnpicklingError,
        ValueError,
        EOFError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        struct.error,
        OverflowError,
        MemoryError,
    ) as exc:
        raise ModelUnavailableError(
            f"{p} is not a valid legacy torch.save state_dict (corrupt or wrong file?): {exc}"
        ) from exc


def sequential_onnx(
    sd: dict[str, NDArray[Any]],
    trunk: Sequence[str],
    heads: Sequence[tuple[str, str, bool]],
    input_shape: Sequence[str | int],
) -> bytes:
    """A serialized ONNX model of a plain feed-forward CNN, built from its state_dict.

    Why: small torch nets (MTCNN's P/R/O-Nets) then run on onnxruntime with no torch.
    ``trunk`` lists the layers in forward order by state_dict name: a name with a 4-D
    ``.weight`` is a Conv (no padding, stride 1), with a 2-D one a Linear; ``prelu*`` is a
    PReLU with one slope per channel; ``pool:K:S`` is ``MaxPool2d(K, S, ceil_mode=True)``;
    ``flatten:ABCD`` permutes the NCHW tensor by axes A, B, C, D, then flattens it to (N, -1).
    ``heads`` are ``(output name, layer name, softmax over axis 1?)``, each applied to the
    trunk's output. The input is float32 ``input`` of ``input_shape`` (str entries are free
    dimensions). Opset 17, IR version 8: every recent onnxruntime reads them.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    inits: list[Any] = []
    flat = False  # after a flatten, PReLU slopes act on (N, C) instead of (N, C, H, W)

    def param(name: str, arr: NDArray[Any]) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name))
        return name

    def layer(name: str, x: str) -> str:
        nonlocal flat
        out = f"t{len(nodes)}"
        if name.startswith("pool:"):
            k, s = (int(v) for v in name.split(":")[1:])
            nodes.append(
                helper.make_node("MaxPool", [x], [out], kernel_shape=[k, k], strides=[s, s], ceil_mode=1)
            )
        elif name.startswith("flatten:"):
            flat = True
            perm = [int(c) for c in name.split(":")[1]]
            nodes.append(helper.make_node("Transpose", [x], [f"{out}p"], perm=perm))
            nodes.append(helper.make_node("Flatten", [f"{out}p"], [out], axis=1))
        elif name.startswith("prelu"):
            slope = sd[f"{name}.weight"]
            nodes.append(
                helper.make_node("PRelu", [x, param(name, slope if flat else slope.reshape(-1, 1, 1))], [out])
            )
        else:
            w, b = sd[f"{name}.weight"], sd[f"{name}.bias"]
            ins = [x, param(f"{name}.weight", w), param(f"{name}.bias", b)]
            if w.ndim == 4:
                nodes.append(helper.make_node("Conv", ins, [out], kernel_shape=list(w.shape[2:])))
            else:
                nodes.append(helper.make_node("Gemm", ins, [out], transB=1))
        return out

    x = "input"
    for name in trunk:
        x = layer(name, x)
    outputs = []
    for out_name, name, softmax in heads:
        y = layer(name, x)
        node = helper.make_node("Softmax", [y], [out_name], axis=1) if softmax else None
        nodes.append(node or helper.make_node("Identity", [y], [out_name]))
        w = sd[f"{name}.weight"]
        spatial: list[str | int] = [f"{out_name}_h", f"{out_name}_w"] if w.ndim == 4 else []
        dims: list[str | int] = ["N", int(w.shape[0]), *spatial]
        outputs.append(helper.make_tensor_value_info(out_name, TensorProto.FLOAT, dims))
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_shape))
    graph = helper.make_graph(nodes, "sequential", [inp], outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="faceprint")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())
