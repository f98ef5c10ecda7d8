"""Data augmentation for fine-tuning dlib's face ResNet with a triplet loss.

Why: fine-tuning sees far fewer photos per person than the network's original training
did, and what it must learn is to ignore what varies between photos of one person (pose,
framing, light, colour balance, focus, resolution, compression, things in front of the
face) while keeping what varies between people. Each operation below draws one such nuisance at random.

Why a *context* chip: a crop, zoom or rotation of the 150 px chip itself would pull
pixels in from outside it (black or mirrored borders the network never sees at test
time). So training faces are stored aligned exactly like dlib's chip, at the same pixel
scale, with :data:`MARGIN` = 38 extra pixels on every side (:data:`CONTEXT` = 226 px
square, made with ``align(image, landmarks, context_template())``); the geometric
operations then resample the 150 px chip from real image content.
``context[38:188, 38:188]`` is the standard chip to within a fraction of a pixel
(:func:`center_chip`). The margin covers the default jitters with room to spare: the
widest sampled region (zoom 0.9, 10 degrees, 6 px shift) reaches 103 px from the centre,
the context's half-width is 113 px. Beyond that (larger user-set strengths) the edge
pixels are repeated (``BORDER_REPLICATE``): unlike black it adds no strong edge, and
OpenCV's warp runs 2.4x faster with it than with a mirrored border (60 vs 140 us).

Conventions: images are RGB ``uint8`` ``(H, W, 3)`` (HWC) arrays, as everywhere in
faceprint; BGR exists only inside the OpenCV JPEG calls. Pixel centres are at integer
x,y coordinates, so the 150 px chip's centre is (74.5, 74.5) and the context's is
(112.5, 112.5). Every function is pure: it draws its randomness from the explicit
``rng`` (:class:`numpy.random.Generator`) and never writes into its input, so the same
seed gives the same output. Only numpy and OpenCV are used (no torch), so data-loading
workers can run it and it is unit-testable without weights.

Operations, in their canonical application order :data:`OPS` (the order in a spec
string does not matter). ``p`` is the probability that an operation is applied to a
sample; every operation accepts it, and the other keys set its strength:

=========  ====  ==========================================================================
name       p     strength keys (defaults)
=========  ====  ==========================================================================
flip       0.5   none: horizontal mirror
crop       0.5   ``scale=0.1``: zoom uniform in [1-scale, 1+scale] (>1 enlarges the face);
                 ``shift=6``: crop window moved by dx, dy each uniform in [-shift, shift] px
rotate     0.5   ``deg=10``: in-plane rotation uniform in [-deg, deg] degrees about the centre
occlude    0.3   ``min=0.1``, ``max=0.3``: rectangle of that fraction of the chip area,
                 aspect (w/h) log-uniform in [1/3, 3], filled with a flat grey, a flat
                 colour or uniform noise (one of the three, equally likely)
colour     0.5   ``brightness=0.3``, ``contrast=0.3``, ``saturation=0.3``: factors uniform
                 in [1-x, 1+x]; ``gain=0.05``: per-channel gains uniform in [1-x, 1+x]
grey       0.2   none: Rec.601 luminance copied to the three channels
blur       0.2   ``min=0.5``, ``max=1.5``: Gaussian sigma in px, uniform
lowres     0.5   ``min=24``, ``max=64``: side in px, log-uniform, of the shrunk chip;
                 ``jpeg=0.3``: probability of a JPEG round trip at that low resolution,
                 quality uniform in [``qmin=60``, ``qmax=95``]
jpeg       0.3   ``min=30``, ``max=90``: JPEG quality, uniform integer
=========  ====  ==========================================================================

Why this order: it follows how a photo comes to be. The pose and framing come first
(flip, crop and rotate, composed into **one** affine warp so the chip is resampled once;
when none fires the chip is the exact centre crop, with no resampling blur); then the
scene (an occluder is part of it, so the lighting, blur, resolution and compression that
follow apply to it too, and the network cannot learn to spot a sharp-edged synthetic
rectangle); then the light and the camera's colour response (colour, then grey, so a
grey sample stays exactly grey); then the optics (blur), the sensor's resolution
(lowres) and, last, the file's compression (jpeg).

Why ``lowres`` and its range: recognition must work on small faces, e.g. LFW photos
shrunk to 64x64 and enlarged back, where a face is about 25 px wide. A 150 px chip spans
about 1.5 face widths, so shrinking it to a side of 24-64 px gives faces of about
16-43 px, around that case on both sides. The side is drawn log-uniformly because
resolution acts by octaves: 24 to 32 px loses as much detail as 48 to 64 px. The chip is
shrunk with area averaging (``INTER_AREA``, as a camera integrates light) and enlarged
back with bilinear interpolation (``INTER_LINEAR``), as the detection and alignment of
an enlarged photo would. Small photos are usually JPEG files too, so with probability
``jpeg`` the shrunk chip is JPEG-compressed at its low resolution, where the 8x8 blocks
cover a large part of the face, as they do in a real small photo.

Spec strings (:func:`parse_spec`) name the operations to use, comma-separated, each
optionally followed by ``:key=value`` settings, e.g.
``"flip,lowres:p=0.7:min=20:max=48,jpeg:min=40"``; ``""`` or ``"none"`` means no
augmentation. :class:`Augmenter` applies a spec to context chips.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from ..alignment import AlignmentTemplate, dlib_template
from ..errors import InvalidArgumentError, InvalidImageError
from ..types import Image

__all__ = [
    "CHIP",
    "CONTEXT",
    "MARGIN",
    "OPS",
    "AugmentSpec",
    "Augmenter",
    "OpSpec",
    "blur",
    "center_chip",
    "colour",
    "compose_geometry",
    "context_template",
    "crop",
    "flip",
    "grey",
    "jpeg",
    "lowres",
    "occlude",
    "parse_spec",
    "rotate",
    "warp",
]

CHIP = 150  #: side of dlib's face chip, the network's input
MARGIN = 38  #: extra pixels on every side of a context chip
CONTEXT = CHIP + 2 * MARGIN  #: side of a context chip (226)

#: The operations in their canonical application order (see the module docstring).
OPS: tuple[str, ...] = ("flip", "crop", "rotate", "occlude", "colour", "grey", "blur", "lowres", "jpeg")

_DLIB_PADDING = 0.25  # dlib's default get_face_chip padding: the chip spans 1.5 template units
_CONTEXT_PADDING = (CONTEXT * (1 + 2 * _DLIB_PADDING) / CHIP - 1) / 2  # 0.63
_CHIP_CENTRE = (CHIP - 1) / 2  # 74.5
_CONTEXT_CENTRE = (CONTEXT - 1) / 2  # 112.5
_LUMA = np.array([0.299, 0.587, 0.114])  # Rec.601 in RGB order, as cv2's RGB2GRAY
_ASPECT = 3.0  # occluder aspect ratio (w/h) is log-uniform in [1/_ASPECT, _ASPECT]

Matrix = NDArray[np.float64]  # 2x3 affine, output chip pixel (x, y, 1) -> context pixel


def context_template() -> AlignmentTemplate:
    """dlib's chip template for a :data:`CONTEXT` px chip at the scale of the 150 px one.

    ``dlib_template(size, padding)`` puts the unit-square template at
    ``size / (1 + 2 * padding)`` px per unit; dlib's chip uses ``150 / 1.5``, so the context
    uses the padding ``p`` with ``(1 + 2p) / 226 == 1.5 / 150`` (``p = 0.63``): every
    landmark lands exactly :data:`MARGIN` px further right and down than in the chip.
    (For a photo more than twice the chip's scale, dlib's pyramid may then pick a different
    level for the two sizes: the geometry agrees, the sharpness may differ slightly.)
    """
    return dlib_template(CONTEXT, padding=_CONTEXT_PADDING)


def _check_rgb(image: Image, what: str = "image") -> None:
    """A ValueError unless ``image`` is an RGB ``uint8`` (H, W, 3) array."""
    shape = getattr(image, "shape", None)
    dtype = getattr(image, "dtype", None)
    if shape is None or len(shape) != 3 or shape[2] != 3 or min(shape[:2]) < 1:
        raise InvalidArgumentError(f"{what}: expected an RGB (H, W, 3) uint8 array, got shape {shape}")
    if dtype != np.uint8:
        raise InvalidArgumentError(f"{what}: expected an RGB (H, W, 3) uint8 array, got dtype {dtype}")


def _check_context(context: Image) -> None:
    shape = getattr(context, "shape", None)
    dtype = getattr(context, "dtype", None)
    if shape != (CONTEXT, CONTEXT, 3) or dtype != np.uint8:
        raise InvalidArgumentError(
            f"expected a ({CONTEXT}, {CONTEXT}, 3) uint8 RGB context chip (aligned with "
            f"context_template()), got shape {shape} and dtype {dtype}"
        )


def center_chip(context: Image) -> Image:
    """The standard 150 px chip inside a context chip: an integer crop, no resampling.

    Returns a new contiguous array (``context[38:188, 38:188]`` copied).
    """
    _check_context(context)
    return context[MARGIN : MARGIN + CHIP, MARGIN : MARGIN + CHIP].copy()


# --- geometric operations: context chip (226) -> chip (150) ------------------------------


def compose_geometry(
    *,
    mirror: bool = False,
    zoom: float = 1.0,
    shift: tuple[float, float] = (0.0, 0.0),
    angle: float = 0.0,
) -> Matrix:
    """The one affine map of the chip, from output chip pixels to context pixels.

    The transforms apply to the context, in this order, all about its centre: a
    horizontal ``mirror``; a crop window moved by ``shift`` = (dx, dy) context pixels
    (the content moves the other way) and scaled so the content is enlarged ``zoom``
    times; a rotation of the content by ``angle`` degrees, counter-clockwise as seen on
    screen (as ``cv2.getRotationMatrix2D``). With the defaults the map is the identity
    crop ``x + 38, y + 38``.
    """
    if not (math.isfinite(zoom) and zoom > 0):
        raise InvalidArgumentError(f"zoom: expected a finite number > 0, got {zoom}")
    a = math.radians(angle)
    cos, sin = math.cos(a), math.sin(a)
    # Forward (centred context -> centred chip): y = R(angle) @ (zoom * (M @ x - shift)),
    # R = [[cos, sin], [-sin, cos]] on screen (y down); inverse: x = M @ (R^-1 @ y / zoom + shift).
    m = np.diag([-1.0 if mirror else 1.0, 1.0])
    r_inv = np.array([[cos, -sin], [sin, cos]])
    linear = m @ r_inv / zoom
    offset = m @ np.asarray(shift, dtype=np.float64)
    c = np.full(2, _CHIP_CENTRE)
    t = np.full(2, _CONTEXT_CENTRE) - linear @ c + offset
    return np.hstack([linear, t[:, None]])


def warp(context: Image, matrix: Matrix) -> Image:
    """The 150 px chip sampled from ``context`` through ``matrix`` (output pixel -> context
    pixel, as :func:`compose_geometry` makes it).

    Bilinear sampling (``INTER_LINEAR``), border pixels repeated (``BORDER_REPLICATE``). A map
    that is an integer translation, mirrored or not, is done by slicing instead: the
    identity and a plain flip are then exact, with no resampling blur.
    """
    _check_context(context)
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3) or not np.isfinite(m).all():
        raise InvalidArgumentError(f"expected a finite 2x3 affine matrix, got shape {m.shape}")
    sx, x0, y0 = m[0, 0], m[0, 2], m[1, 2]
    if (
        abs(sx) == 1.0
        and m[0, 1] == 0.0
        and m[1, 0] == 0.0
        and m[1, 1] == 1.0
        and x0.is_integer()
        and y0.is_integer()
    ):
        xs, ys = int(x0), int(y0)
        x_end = xs + (CHIP - 1) * int(sx)
        if min(xs, x_end) >= 0 and max(xs, x_end) < CONTEXT and ys >= 0 and ys + CHIP <= CONTEXT:
            rows = context[ys : ys + CHIP]
            if sx > 0:
                return rows[:, xs : xs + CHIP].copy()
            # cv2.flip: numpy's copy of a negative-stride view takes 30x longer (115 us).
            return np.asarray(cv2.flip(rows[:, x_end : xs + 1], 1), dtype=np.uint8)
    out = cv2.warpAffine(
        np.ascontiguousarray(context),
        m,
        (CHIP, CHIP),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return np.asarray(out, dtype=np.uint8)


@dataclass
class _Pose:
    """The geometric parameters drawn for one sample, before they become one warp."""

    mirror: bool = False
    zoom: float = 1.0
    dx: float = 0.0
    dy: float = 0.0
    angle: float = 0.0

    def matrix(self) -> Matrix:
        return compose_geometry(
            mirror=self.mirror, zoom=self.zoom, shift=(self.dx, self.dy), angle=self.angle
        )


def _draw_flip(rng: np.random.Generator, pose: _Pose) -> None:
    pose.mirror = True


def _draw_crop(rng: np.random.Generator, pose: _Pose, scale: float = 0.1, shift: float = 6.0) -> None:
    pose.zoom = float(rng.uniform(1.0 - scale, 1.0 + scale))
    dx, dy = rng.uniform(-shift, shift, size=2)
    pose.dx, pose.dy = float(dx), float(dy)


def _draw_rotate(rng: np.random.Generator, pose: _Pose, deg: float = 10.0) -> None:
    pose.angle = float(rng.uniform(-deg, deg))


def flip(context: Image, rng: np.random.Generator) -> Image:
    """The chip of ``context`` mirrored left-right (exact, no resampling).

    ``rng`` is unused (a mirror has no strength); it keeps every operation's signature alike.
    """
    pose = _Pose()
    _draw_flip(rng, pose)
    return warp(context, pose.matrix())


def crop(context: Image, rng: np.random.Generator, scale: float = 0.1, shift: float = 6.0) -> Image:
    """The chip of ``context`` zoomed by a factor uniform in ``[1 - scale, 1 + scale]`` and
    its crop window moved by dx, dy each uniform in ``[-shift, shift]`` px (defaults ±10%, ±6 px)."""
    pose = _Pose()
    _draw_crop(rng, pose, scale, shift)
    return warp(context, pose.matrix())


def rotate(context: Image, rng: np.random.Generator, deg: float = 10.0) -> Image:
    """The chip of ``context`` rotated about its centre by an angle uniform in ``[-deg, deg]``
    degrees (default ±10)."""
    pose = _Pose()
    _draw_rotate(rng, pose, deg)
    return warp(context, pose.matrix())


# --- photometric operations: RGB uint8 (H, W, 3) -> same shape ---------------------------


def occlude(chip: Image, rng: np.random.Generator, area: tuple[float, float] = (0.1, 0.3)) -> Image:
    """``chip`` with one rectangle covering a fraction uniform in ``area`` of it (default
    10-30%), aspect log-uniform in [1/3, 3], anywhere inside the chip, filled with a flat
    grey, a flat colour or uniform noise (equally likely): a hand, a mask, a microphone."""
    _check_rgb(chip, "occlude")
    h, w = chip.shape[:2]
    frac = float(rng.uniform(area[0], area[1]))
    aspect = math.exp(float(rng.uniform(-math.log(_ASPECT), math.log(_ASPECT))))
    rw = int(np.clip(round(math.sqrt(frac * h * w * aspect)), 1, w))
    rh = int(np.clip(round(math.sqrt(frac * h * w / aspect)), 1, h))
    x0 = int(rng.integers(0, w - rw + 1))
    y0 = int(rng.integers(0, h - rh + 1))
    kind = int(rng.integers(3))
    out = chip.copy()
    if kind == 0:
        out[y0 : y0 + rh, x0 : x0 + rw] = rng.integers(0, 256, dtype=np.uint8)
    elif kind == 1:
        out[y0 : y0 + rh, x0 : x0 + rw] = rng.integers(0, 256, size=3, dtype=np.uint8)
    else:
        out[y0 : y0 + rh, x0 : x0 + rw] = rng.integers(0, 256, size=(rh, rw, 3), dtype=np.uint8)
    return out


def colour(
    chip: Image,
    rng: np.random.Generator,
    brightness: float = 0.3,
    contrast: float = 0.3,
    saturation: float = 0.3,
    gain: float = 0.05,
) -> Image:
    """``chip`` under other light and another camera's colour response.

    Each factor is uniform in ``[1 - x, 1 + x]``: brightness multiplies all channels;
    per-channel ``gain`` multiplies each (white balance); contrast scales the distance to
    the mean luminance; saturation the distance to each pixel's luminance (Rec.601). The
    four are composed into one 3x4 colour matrix, applied once with rounding and clipping.
    """
    _check_rgb(chip, "colour")
    b = float(rng.uniform(1.0 - brightness, 1.0 + brightness))
    c = float(rng.uniform(1.0 - contrast, 1.0 + contrast))
    s = float(rng.uniform(1.0 - saturation, 1.0 + saturation))
    g = rng.uniform(1.0 - gain, 1.0 + gain, size=3)
    d = np.diag(b * g)
    mean_luma = float(_LUMA @ d @ np.asarray(cv2.mean(chip)[:3]))
    sat = s * np.eye(3) + (1.0 - s) * np.outer(np.ones(3), _LUMA)  # sat @ (1, 1, 1) == (1, 1, 1)
    m = np.hstack([c * sat @ d, np.full((3, 1), (1.0 - c) * mean_luma)])
    return np.asarray(cv2.transform(chip, m), dtype=np.uint8)


def grey(chip: Image, rng: np.random.Generator) -> Image:
    """``chip`` in grey: Rec.601 luminance (of RGB, as ``cv2.COLOR_RGB2GRAY``) in all three
    channels. ``rng`` is unused, for a uniform signature."""
    _check_rgb(chip, "grey")
    luma = cv2.cvtColor(np.ascontiguousarray(chip), cv2.COLOR_RGB2GRAY)
    return np.asarray(cv2.cvtColor(luma, cv2.COLOR_GRAY2RGB), dtype=np.uint8)


def blur(chip: Image, rng: np.random.Generator, sigma: tuple[float, float] = (0.5, 1.5)) -> Image:
    """``chip`` out of focus: Gaussian blur, sigma uniform in ``sigma`` px (default 0.5-1.5)."""
    _check_rgb(chip, "blur")
    s = float(rng.uniform(sigma[0], sigma[1]))
    out = cv2.GaussianBlur(
        np.ascontiguousarray(chip), (0, 0), sigmaX=s, sigmaY=s, borderType=cv2.BORDER_REFLECT_101
    )
    return np.asarray(out, dtype=np.uint8)


def _jpeg_round_trip(image: Image, quality: int) -> Image:
    """``image`` (RGB) JPEG-encoded at ``quality`` and decoded. OpenCV's codec takes BGR
    (its luminance weights depend on the order), hence the conversions."""
    bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise InvalidImageError(f"JPEG encoding failed for a {image.shape} image at quality {quality}")
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if decoded is None:
        raise InvalidImageError(f"JPEG decoding failed for a {image.shape} image at quality {quality}")
    return np.asarray(cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def jpeg(chip: Image, rng: np.random.Generator, quality: tuple[int, int] = (30, 90)) -> Image:
    """``chip`` after a JPEG round trip at a quality uniform in ``quality`` (integers,
    both ends included; default 30-90)."""
    _check_rgb(chip, "jpeg")
    return _jpeg_round_trip(chip, int(rng.integers(quality[0], quality[1] + 1)))


def lowres(
    chip: Image,
    rng: np.random.Generator,
    side: tuple[int, int] = (24, 64),
    jpeg_p: float = 0.3,
    quality: tuple[int, int] = (60, 95),
) -> Image:
    """``chip`` as if taken at low resolution (see the module docstring for why 24-64).

    The chip is shrunk (``INTER_AREA``) so its longer side is ``s`` px, ``s`` log-uniform
    in ``side`` and rounded; with probability ``jpeg_p`` it is JPEG-compressed there at a
    quality uniform in ``quality``; it is then enlarged back to its size (``INTER_LINEAR``).
    At ``s`` equal to the chip's side and ``jpeg_p=0`` it is returned unchanged.
    """
    _check_rgb(chip, "lowres")
    h, w = chip.shape[:2]
    s = math.exp(float(rng.uniform(math.log(side[0]), math.log(side[1]))))
    s_int = int(np.clip(round(s), side[0], side[1]))
    f = s_int / max(h, w)
    sw, sh = max(1, round(w * f)), max(1, round(h * f))
    small = np.asarray(
        cv2.resize(np.ascontiguousarray(chip), (sw, sh), interpolation=cv2.INTER_AREA), dtype=np.uint8
    )
    if rng.random() < jpeg_p:
        small = _jpeg_round_trip(small, int(rng.integers(quality[0], quality[1] + 1)))
    return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), dtype=np.uint8)


# --- spec strings ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Key:
    """One setting of an operation: its default, its closed range and what it means."""

    name: str
    default: float
    lo: float
    hi: float
    integer: bool
    what: str


def _p(default: float) -> _Key:
    return _Key("p", default, 0.0, 1.0, False, "a probability")


_KEYS: dict[str, tuple[_Key, ...]] = {
    "flip": (_p(0.5),),
    "crop": (
        _p(0.5),
        _Key("scale", 0.1, 0.0, 0.5, False, "a zoom jitter fraction"),
        _Key("shift", 6.0, 0.0, float(MARGIN), False, "a shift in px"),
    ),
    "rotate": (_p(0.5), _Key("deg", 10.0, 0.0, 180.0, False, "an angle in degrees")),
    "occlude": (
        _p(0.3),
        _Key("min", 0.1, 0.01, 1.0, False, "a fraction of the chip area"),
        _Key("max", 0.3, 0.01, 1.0, False, "a fraction of the chip area"),
    ),
    "colour": (
        _p(0.5),
        _Key("brightness", 0.3, 0.0, 1.0, False, "a jitter fraction"),
        _Key("contrast", 0.3, 0.0, 1.0, False, "a jitter fraction"),
        _Key("saturation", 0.3, 0.0, 1.0, False, "a jitter fraction"),
        _Key("gain", 0.05, 0.0, 0.5, False, "a per-channel gain jitter fraction"),
    ),
    "grey": (_p(0.2),),
    "blur": (
        _p(0.2),
        _Key("min", 0.5, 0.1, 10.0, False, "a Gaussian sigma in px"),
        _Key("max", 1.5, 0.1, 10.0, False, "a Gaussian sigma in px"),
    ),
    "lowres": (
        _p(0.5),
        _Key("min", 24, 8, CHIP, True, "an integer side in px"),
        _Key("max", 64, 8, CHIP, True, "an integer side in px"),
        _Key("jpeg", 0.3, 0.0, 1.0, False, "a probability"),
        _Key("qmin", 60, 1, 100, True, "an integer JPEG quality"),
        _Key("qmax", 95, 1, 100, True, "an integer JPEG quality"),
    ),
    "jpeg": (
        _p(0.3),
        _Key("min", 30, 1, 100, True, "an integer JPEG quality"),
        _Key("max", 90, 1, 100, True, "an integer JPEG quality"),
    ),
}
_PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "occlude": (("min", "max"),),
    "blur": (("min", "max"),),
    "lowres": (("min", "max"), ("qmin", "qmax")),
    "jpeg": (("min", "max"),),
}


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _fmt(value: float) -> str:
    """A number as the shortest text that parses back to it ("6", "0.1", "1e-05")."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


@dataclass(frozen=True)
class OpSpec:
    """One operation of a spec with all its settings resolved, in its table's key order."""

    name: str
    params: tuple[tuple[str, float], ...]

    @property
    def p(self) -> float:
        """The probability of applying the operation to a sample."""
        return self.params[0][1]

    def kwargs(self) -> dict[str, float]:
        """The settings as a dict, ``p`` included."""
        return dict(self.params)

    def __str__(self) -> str:
        return ":".join([self.name, *(f"{k}={_fmt(v)}" for k, v in self.params)])


def _resolve(name: str, given: Mapping[str, str | float]) -> OpSpec:
    """``name``'s settings: ``given`` (text or numbers) over the defaults, validated."""
    keys = _KEYS[name]
    values: dict[str, float] = {}
    for key in keys:
        raw = given.get(key.name, key.default)
        expected = f"expected {key.what} in {_fmt(key.lo)}..{_fmt(key.hi)}"
        try:
            v = float(raw)
        except (TypeError, ValueError):
            raise InvalidArgumentError(
                f"augmentation {name!r}: {key.name}={raw!r} is not a number: {expected}"
            ) from None
        if not math.isfinite(v):
            raise InvalidArgumentError(f"augmentation {name!r}: {key.name}={raw} is not finite: {expected}")
        if key.integer and not v.is_integer():
            raise InvalidArgumentError(
                f"augmentation {name!r}: {key.name}={raw} is not an integer: {expected}"
            )
        if not key.lo <= v <= key.hi:
            raise InvalidArgumentError(f"augmentation {name!r}: {key.name}={raw} is out of range: {expected}")
        values[key.name] = int(v) if key.integer else v
    for lo, hi in _PAIRS.get(name, ()):
        if values[lo] > values[hi]:
            shown = [f"{k}={_fmt(values[k])}{'' if k in given else ' (default)'}" for k in (lo, hi)]
            raise InvalidArgumentError(
                f"augmentation {name!r}: {shown[0]} is greater than {shown[1]}: expected {lo} <= {hi}"
            )
    return OpSpec(name, tuple((key.name, values[key.name]) for key in keys))


@dataclass(frozen=True)
class AugmentSpec:
    """A validated augmentation spec: the operations to use, in :data:`OPS` order, each
    with every setting resolved (defaults included). Empty means no augmentation.

    Build one with :func:`parse_spec`; ``str(spec)`` is the canonical spec string, which
    :func:`parse_spec` turns back into an equal spec.
    """

    ops: tuple[OpSpec, ...] = ()

    def __post_init__(self) -> None:
        names = [op.name for op in self.ops]
        for name in names:
            if name not in _KEYS:
                raise InvalidArgumentError(
                    f"unknown augmentation {name!r}: expected one of {', '.join(OPS)}{_suggest(name, OPS)}"
                )
        if names != [n for n in OPS if n in names]:
            raise InvalidArgumentError(
                f"augmentations {', '.join(names)}: expected each at most once, in the order {', '.join(OPS)}"
            )
        for op in self.ops:
            if _resolve(op.name, dict(op.params)) != op:
                raise InvalidArgumentError(
                    f"augmentation {op.name!r}: settings {op.params}: expected exactly the keys "
                    f"{', '.join(k.name for k in _KEYS[op.name])}, in that order"
                )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(op.name for op in self.ops)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description for a model card: the canonical string and, per operation
        in application order, every setting (integers stay integers)."""
        return {"spec": str(self), "ops": {op.name: op.kwargs() for op in self.ops}}

    def __str__(self) -> str:
        return ",".join(str(op) for op in self.ops) if self.ops else "none"


def parse_spec(spec: str) -> AugmentSpec:
    """Parse an augmentation spec string (see the module docstring for the grammar).

    Raises :class:`~faceprint.errors.InvalidArgumentError` (a ValueError) with one line
    saying what was expected and what was found, for: an unknown name (with the closest
    valid one), a name given twice, an unknown key for that operation, a setting given
    twice or without ``=value``, a value that is not a finite number or out of its range,
    a ``min`` above its ``max``.
    """
    if not isinstance(spec, str):
        raise InvalidArgumentError(f"expected an augmentation spec string, got {type(spec).__name__}")
    text = spec.strip()
    if text in ("", "none"):
        return AugmentSpec()
    given: dict[str, dict[str, str]] = {}
    for item in text.split(","):
        name, *settings = (part.strip() for part in item.split(":"))
        if not name:
            raise InvalidArgumentError(
                f"augmentation spec {spec!r} has an empty item: expected comma-separated names, "
                "e.g. 'flip,jpeg'"
            )
        if name == "none":
            raise InvalidArgumentError(
                f"augmentation spec {spec!r}: 'none' must stand alone: "
                "expected 'none' or a list of augmentations"
            )
        if name not in _KEYS:
            raise InvalidArgumentError(
                f"unknown augmentation {name!r} in {spec!r}: expected one of "
                f"{', '.join(OPS)}{_suggest(name, OPS)}"
            )
        if name in given:
            raise InvalidArgumentError(
                f"augmentation {name!r} is given twice in {spec!r}: expected each name at most once"
            )
        valid = [k.name for k in _KEYS[name]]
        values: dict[str, str] = {}
        for setting in settings:
            key, eq, value = (s.strip() for s in setting.partition("="))
            if key and key not in valid:
                raise InvalidArgumentError(
                    f"augmentation {name!r} has no setting {key!r}: expected one of "
                    f"{', '.join(valid)}{_suggest(key, valid)}"
                )
            if not (key and eq and value):
                raise InvalidArgumentError(
                    f"augmentation {name!r}: setting {setting!r} is not key=value: expected e.g. "
                    f"'{name}:p=0.5'"
                )
            if key in values:
                raise InvalidArgumentError(
                    f"augmentation {name!r}: setting {key!r} is given twice: expected it at most once"
                )
            values[key] = value
        given[name] = values
    return AugmentSpec(tuple(_resolve(name, given[name]) for name in OPS if name in given))


# --- the augmenter -----------------------------------------------------------------------

_Draw = Callable[[np.random.Generator, _Pose], None]
_Apply = Callable[[Image, np.random.Generator], Image]

_GEOMETRIC: dict[str, Callable[[OpSpec], _Draw]] = {
    "flip": lambda op: _draw_flip,
    "crop": lambda op: partial(_draw_crop, scale=op.kwargs()["scale"], shift=op.kwargs()["shift"]),
    "rotate": lambda op: partial(_draw_rotate, deg=op.kwargs()["deg"]),
}


def _photometric(op: OpSpec) -> _Apply:
    k = op.kwargs()
    if op.name == "occlude":
        return partial(occlude, area=(k["min"], k["max"]))
    if op.name == "colour":
        return partial(
            colour,
            brightness=k["brightness"],
            contrast=k["contrast"],
            saturation=k["saturation"],
            gain=k["gain"],
        )
    if op.name == "grey":
        return grey
    if op.name == "blur":
        return partial(blur, sigma=(k["min"], k["max"]))
    if op.name == "lowres":
        return partial(
            lowres,
            side=(int(k["min"]), int(k["max"])),
            jpeg_p=k["jpeg"],
            quality=(int(k["qmin"]), int(k["qmax"])),
        )
    if op.name == "jpeg":
        return partial(jpeg, quality=(int(k["min"]), int(k["max"])))
    raise InvalidArgumentError(f"augmentation {op.name!r}: expected one of {', '.join(OPS)}")


class Augmenter:
    """Applies an :class:`AugmentSpec` to context chips, giving 150 px training chips.

    Per sample, for each operation of the spec in :data:`OPS` order, one ``rng.random()``
    decides whether it fires (``< p``), then the operation draws its own parameters: the
    same seed therefore gives the same output. The geometric operations that fire are
    composed into one warp; when none fires the chip is :func:`center_chip` exactly, so
    the empty spec returns the plain centre crop. Holds no state but the spec (picklable,
    safe to share between data-loading workers, each with its own ``rng``).
    """

    def __init__(self, spec: AugmentSpec | str) -> None:
        self.spec = parse_spec(spec) if isinstance(spec, str) else spec
        if not isinstance(self.spec, AugmentSpec):
            raise InvalidArgumentError(f"expected an AugmentSpec or a spec string, got {type(spec).__name__}")
        self._geometric = [(op.p, _GEOMETRIC[op.name](op)) for op in self.spec.ops if op.name in _GEOMETRIC]
        self._photometric = [(op.p, _photometric(op)) for op in self.spec.ops if op.name not in _GEOMETRIC]

    def __repr__(self) -> str:
        return f"Augmenter({str(self.spec)!r})"

    def __call__(self, context: Image, rng: np.random.Generator) -> Image:
        """One augmented (150, 150, 3) uint8 RGB chip from a (226, 226, 3) context chip."""
        _check_context(context)
        pose: _Pose | None = None
        for p, draw in self._geometric:
            if rng.random() < p:
                pose = pose or _Pose()
                draw(rng, pose)
        chip = center_chip(context) if pose is None else warp(context, pose.matrix())
        for p, apply in self._photometric:
            if rng.random() < p:
                chip = apply(chip, rng)
        return chip

    def batch(
        self, contexts: Sequence[Image] | NDArray[np.uint8], rng: np.random.Generator
    ) -> NDArray[np.uint8]:
        """Augmented chips ``(N, 150, 150, 3)`` uint8 of ``contexts`` (a sequence of context
        chips or an ``(N, 226, 226, 3)`` array), drawn one after the other from ``rng``:
        the same as calling the augmenter on each in turn."""
        if isinstance(contexts, np.ndarray) and (
            contexts.ndim != 4 or contexts.shape[1:] != (CONTEXT, CONTEXT, 3)
        ):
            raise InvalidArgumentError(
                f"expected (N, {CONTEXT}, {CONTEXT}, 3) uint8 context chips, got shape {contexts.shape}"
            )
        out = np.empty((len(contexts), CHIP, CHIP, 3), dtype=np.uint8)
        for i, context in enumerate(contexts):
            out[i] = self(context, rng)
        return out
