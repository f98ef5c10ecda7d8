"""The torch-free reader of legacy ``torch.save`` state_dicts, on synthetic files.

The files are written here without torch: stand-in ``torch`` / ``torch._utils`` modules are
put in ``sys.modules`` only while pickling, so the pickle names the same globals
(``torch._utils._rebuild_tensor_v2``, ``torch.FloatStorage``) that real files do, and the
layout after the pickle (key list, then int64 count + raw bytes per storage) is written
by hand, as :mod:`faceprint.detection.torch_legacy` documents it.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceprint.detection.torch_legacy import MAGIC_NUMBER, load_state_dict, sequential_onnx
from faceprint.errors import ModelUnavailableError

Shape = tuple[int, ...]


class _Storage:
    def __init__(self, key: str, data: np.ndarray) -> None:
        self.key, self.data = key, data


class _Tensor:
    def __init__(
        self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]
    ) -> None:
        self.args = (storage, offset, size, stride)

    def __reduce__(self) -> tuple[Any, ...]:
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        return rebuild, (*self.args, False, collections.OrderedDict())


@pytest.fixture
def fake_torch(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Stand-in torch globals, present only for the duration of one test."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
    classes = {}
    for name in ("FloatStorage", "LongStorage"):
        cls = type(name, (), {"__module__": "torch"})
        setattr(torch, name, cls)
        classes[name] = cls

    def _rebuild_tensor_v2(*args: Any) -> None: ...

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    yield classes


def _write(path: Path, tensors: dict[str, _Tensor], classes: dict[str, Any], **damage: Any) -> None:
    storages: dict[str, _Storage] = {}

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            if not isinstance(obj, _Storage):
                return None
            storages[obj.key] = obj
            kind = "LongStorage" if obj.data.dtype == np.int64 else "FloatStorage"
            return ("storage", classes[kind], obj.key, "cpu", obj.data.size, None)

    buf = io.BytesIO()
    for head in (damage.get("magic", MAGIC_NUMBER), 1001, {"little_endian": True}):
        pickle.dump(head, buf, protocol=2)
    Pickler(buf, protocol=2).dump(collections.OrderedDict(tensors))
    keys = sorted(storages)
    pickle.dump(keys, buf, protocol=2)
    for key in keys:
        data = storages[key].data
        buf.write(struct.pack("<q", damage.get("numel", data.size)))
        buf.write(data.astype(data.dtype.newbyteorder("<")).tobytes())
    path.write_bytes(buf.getvalue()[: damage.get("cut")])


def test_reads_tensors_with_strides_offsets_and_shared_storage(
    fake_torch: dict[str, Any], tmp_path: Path
) -> None:
    w = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    col_major = _Storage("1", np.asfortranarray(w).ravel(order="K"))  # strides (1, 2, 6)
    shared = _Storage("2", np.arange(10, dtype=np.float32))
    longs = _Storage("3", np.array([7, -8, 9], np.int64))
    _write(
        tmp_path / "sd.pt",
        {
            "conv.weight": _Tensor(col_major, 0, (2, 3, 4), (1, 2, 6)),
            "a": _Tensor(shared, 0, (4,), (1,)),
            "b": _Tensor(shared, 4, (2, 3), (3, 1)),
            "count": _Tensor(longs, 1, (), ()),
            "empty": _Tensor(longs, 0, (0,), (1,)),
        },
        fake_torch,
    )
    sd = load_state_dict(tmp_path / "sd.pt")
    assert list(sd) == ["conv.weight", "a", "b", "count", "empty"]
    assert np.array_equal(sd["conv.weight"], w) and sd["conv.weight"].flags.c_contiguous
    assert np.array_equal(sd["a"], np.arange(4)) and sd["a"].dtype == np.float32
    assert np.array_equal(sd["b"], np.arange(4, 10).reshape(2, 3))
    assert sd["count"].shape == () and sd["count"] == -8 and sd["count"].dtype == np.int64
    assert sd["empty"].shape == (0,)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ({"magic": 12345}, "magic number"),
        ({"numel": 3}, "holds 3 elements"),
        ({"cut": -5}, "file ends inside storage"),
        ({"cut": 40}, "not a valid legacy"),
    ],
)
def test_damaged_files_raise_model_unavailable(
    fake_torch: dict[str, Any], tmp_path: Path, damage: dict[str, Any], message: str
) -> None:
    st = _Storage("1", np.ones(6, np.float32))
    _write(tmp_path / "bad.pt", {"w": _Tensor(st, 0, (2, 3), (3, 1))}, fake_torch, **damage)
    with pytest.raises(ModelUnavailableError, match=message) as info:
        load_state_dict(tmp_path / "bad.pt")
    assert "bad.pt" in str(info.value)


def test_a_tensor_past_its_storage_is_refused(fake_torch: dict[str, Any], tmp_path: Path) -> None:
    st = _Storage("1", np.ones(6, np.float32))
    _write(tmp_path / "over.pt", {"w": _Tensor(st, 2, (2, 3), (3, 1))}, fake_torch)
    with pytest.raises(ModelUnavailableError, match="overruns its storage"):
        load_state_dict(tmp_path / "over.pt")


def test_other_globals_are_never_loaded(tmp_path: Path) -> None:
    buf = io.BytesIO()
    for head in (MAGIC_NUMBER, 1001, {"little_endian": True}):
        pickle.dump(head, buf, protocol=2)
    buf.write(b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R.")  # os.system("true")
    (tmp_path / "evil.pt").write_bytes(buf.getvalue())
    with pytest.raises(ModelUnavailableError, match=r"refusing to load os\.system"):
        load_state_dict(tmp_path / "evil.pt")


@pytest.mark.parametrize(
    ("content", "message"), [(b"PK\x03\x04rest", "zip format"), (b"", "not a valid"), (None, "cannot read")]
)
def test_wrong_or_missing_files(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "w.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelUnavailableError, match=message):
        load_state_dict(path)


def test_sequential_onnx_runs_a_tiny_net() -> None:
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(0)
    sd = {
        "conv.weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        "conv.bias": rng.normal(size=4).astype(np.float32),
        "prelu.weight": np.full(4, 0.25, np.float32),
        "fc.weight": rng.normal(size=(2, 4 * 2 * 2)).astype(np.float32),
        "fc.bias": np.zeros(2, np.float32),
    }
    onnx_bytes = sequential_onnx(
        sd, ["conv", "prelu", "pool:2:2", "flatten:0321"], [("p", "fc", True)], ["N", 3, 6, 6]
    )
    x = rng.normal(size=(2, 3, 6, 6)).astype(np.float32)
    (got,) = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"]).run(None, {"input": x})
    # the same net in numpy: valid 3x3 conv, PReLU, 2x2 max-pool (4x4 -> 2x2), N,W,H,C flatten
    conv = np.zeros((2, 4, 4, 4), np.float64)
    for i in range(4):
        for j in range(4):
            conv[:, :, i, j] = np.einsum("nchw,ochw->no", x[:, :, i : i + 3, j : j + 3], sd["conv.weight"])
    conv += sd["conv.bias"][None, :, None, None]
    act = np.where(conv > 0, conv, 0.25 * conv)
    pooled = act.reshape(2, 4, 2, 2, 2, 2).max(axis=(3, 5))
    logits = pooled.transpose(0, 3, 2, 1).reshape(2, -1) @ sd["fc.weight"].T
    want = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert np.allclose(got, want, atol=1e-5)
