"""Training augmentation (faceprint.training.augment): each operation is checked against
what it must do to pixels (a mirror is ``[:, ::-1]``, a rotation moves a marked point
where trigonometry says, low resolution removes high frequencies), so a wrong sign, a
swapped channel order or a leaked resampling fails; plus the spec grammar and its errors."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from faceprint.alignment import DLIB5_UNIT, align, dlib_template
from faceprint.errors import InvalidArgumentError
from faceprint.training import augment as aug
from faceprint.training.augment import (
    CHIP,
    CONTEXT,
    MARGIN,
    OPS,
    Augmenter,
    AugmentSpec,
    center_chip,
    compose_geometry,
    parse_spec,
    warp,
)

FULL = "flip,crop,rotate,colour,grey,blur,jpeg,lowres,occlude"


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def textured(size: int = CONTEXT, seed: int = 1) -> NDArray[np.uint8]:
    """A colourful image with detail at every scale: gradients plus noise."""
    r = rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    base = np.dstack([xx / size * 200, yy / size * 200, (xx + yy) / (2 * size) * 120 + 60])
    return np.clip(base + r.normal(0, 25, base.shape), 0, 255).astype(np.uint8)


def smooth(size: int = CONTEXT) -> NDArray[np.uint8]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    img = np.dstack(
        [
            128 + 80 * np.sin(xx / 17.0),
            128 + 80 * np.cos(yy / 23.0),
            128 + 60 * np.sin((xx + yy) / 31.0),
        ]
    )
    return img.astype(np.uint8)


def blob(cx: float, cy: float, sigma: float = 2.0) -> NDArray[np.uint8]:
    """A context chip, black but for a Gaussian spot centred at pixel (cx, cy)."""
    yy, xx = np.mgrid[0:CONTEXT, 0:CONTEXT].astype(np.float64)
    spot = 255 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
    return np.repeat(spot.astype(np.uint8)[..., None], 3, axis=2)


def centroid(chip: NDArray[np.uint8]) -> tuple[float, float]:
    w = chip[..., 0].astype(np.float64)
    yy, xx = np.mgrid[0 : chip.shape[0], 0 : chip.shape[1]]
    return float((w * xx).sum() / w.sum()), float((w * yy).sum() / w.sum())


def high_energy(chip: NDArray[np.uint8], cycles: float) -> float:
    """Spectral power of the luminance above ``cycles`` cycles per chip width (Hann
    windowed, so the image's borders do not count as edges)."""
    y = chip.astype(np.float64).mean(axis=2)
    n = y.shape[0]
    window = np.outer(np.hanning(n), np.hanning(n))
    f = np.fft.fftshift(np.fft.fft2((y - y.mean()) * window))
    k = np.hypot(*np.meshgrid(np.arange(n) - n // 2, np.arange(n) - n // 2))
    return float((np.abs(f[k > cycles]) ** 2).sum())


# --- context chip ---------------------------------------------------------------------


def test_context_template_puts_every_landmark_margin_pixels_further() -> None:
    assert (CHIP, MARGIN, CONTEXT) == (150, 38, 226)
    ctx, std = aug.context_template(), dlib_template()
    assert ctx.size == CONTEXT and ctx.method == "dlib" and ctx.scheme == "dlib5"
    np.testing.assert_allclose(ctx.array(), std.array() + MARGIN, atol=1e-9)


def test_center_chip_is_the_integer_crop_and_a_copy() -> None:
    ctx = textured()
    chip = center_chip(ctx)
    assert chip.shape == (CHIP, CHIP, 3) and chip.dtype == np.uint8 and chip.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(chip, ctx[38:188, 38:188])
    chip[:] = 0
    assert ctx[38:188, 38:188].any(), "center_chip returned a view into the context"


def test_center_chip_of_a_real_photo_is_dlibs_chip(lfw: Path) -> None:
    """On an LFW photo aligned both ways: exact at the photo's own scale, and within a
    fraction of a grey level on average when the chip resamples it."""
    from faceprint.io import load_image

    person = sorted(p for p in lfw.iterdir() if p.is_dir())[0]
    img = load_image(sorted(person.glob("*.jpg"))[0])
    unit = np.asarray(DLIB5_UNIT) - 0.5
    for angle, scale, exact in [
        (0.0, 100.0, True),
        (0.12, 100.0, True),
        (-0.15, 120.0, False),
        (0.2, 60.0, False),
    ]:
        c, s = math.cos(angle), math.sin(angle)
        lm = (unit @ np.array([[c, s], [-s, c]]) * scale + (125.0, 120.0)).astype(np.float32)
        chip = align(img, lm, dlib_template())
        inner = center_chip(align(img, lm, aug.context_template()))
        diff = np.abs(inner.astype(np.int16) - chip.astype(np.int16))
        if exact:
            assert diff.max() == 0, (angle, scale)
        else:
            assert diff.mean() < 0.5, (angle, scale, diff.mean())


def test_the_margin_covers_the_strongest_default_geometry() -> None:
    """Zoom 0.9, 10 degrees and a 6 px shift still sample only real context pixels."""
    corners = np.array([[-0.5, -0.5, 1], [149.5, -0.5, 1], [-0.5, 149.5, 1], [149.5, 149.5, 1]])
    for mirror in (False, True):
        for angle in (-10.0, 10.0):
            for shift in [(-6.0, -6.0), (6.0, 6.0), (6.0, -6.0)]:
                m = compose_geometry(mirror=mirror, zoom=0.9, shift=shift, angle=angle)
                pts = corners @ m.T
                assert pts.min() >= -0.5 and pts.max() <= CONTEXT - 0.5, (mirror, angle, shift, pts)


# --- geometric operations -------------------------------------------------------------


def test_flip_is_an_exact_mirror_of_the_centre_chip() -> None:
    ctx = textured()
    expected = ctx[38:188, 38:188][:, ::-1]
    np.testing.assert_array_equal(aug.flip(ctx, rng()), expected)
    np.testing.assert_array_equal(Augmenter("flip:p=1")(ctx, rng()), expected)
    np.testing.assert_array_equal(warp(ctx, compose_geometry()), ctx[38:188, 38:188])


def test_mirror_composes_with_rotation_zoom_and_shift() -> None:
    ctx = smooth()
    m = compose_geometry(mirror=True, zoom=1.07, shift=(3.3, -2.1), angle=6.0)
    a = warp(ctx, m).astype(np.int16)
    b = warp(np.ascontiguousarray(ctx[:, ::-1]), compose_geometry(zoom=1.07, shift=(3.3, -2.1), angle=6.0))
    assert np.abs(a - b).max() <= 2 and np.abs(a - b).mean() < 0.2
    # Mirroring the context and rotating by +a is the mirror of rotating by -a.
    c = warp(ctx, compose_geometry(mirror=True, angle=7.0)).astype(np.int16)
    d = warp(ctx, compose_geometry(angle=-7.0))[:, ::-1].astype(np.int16)
    assert np.abs(c - d).max() <= 2 and np.abs(c - d).mean() < 0.2
    assert np.abs(c - warp(ctx, compose_geometry(angle=7.0))).mean() > 10  # not a no-op


@pytest.mark.parametrize("angle", [10.0, -25.0])
def test_rotation_moves_a_marked_point_counter_clockwise(angle: float) -> None:
    """A spot 30 px right of the centre goes up for a positive angle (y points down)."""
    ctx = blob(112.5 + 30, 112.5)
    x, y = centroid(warp(ctx, compose_geometry(angle=angle)))
    a = math.radians(angle)
    assert x == pytest.approx(74.5 + 30 * math.cos(a), abs=0.1)
    assert y == pytest.approx(74.5 - 30 * math.sin(a), abs=0.1)


def test_a_quarter_turn_moves_a_pixel_exactly() -> None:
    ctx = np.zeros((CONTEXT, CONTEXT, 3), np.uint8)
    ctx[112, 143] = (255, 128, 7)  # (30.5, -0.5) from the centre (112.5, 112.5)
    out = warp(ctx, compose_geometry(angle=90.0))
    ys, xs = np.nonzero(out.any(axis=2))
    assert list(zip(xs.tolist(), ys.tolist(), strict=True)) == [(74, 44)]
    assert tuple(out[44, 74]) == (255, 128, 7)


def test_crop_zoom_and_shift_move_a_point_as_documented() -> None:
    ctx = blob(112.5 + 30, 112.5)
    x, y = centroid(warp(ctx, compose_geometry(zoom=1.2)))
    assert (x, y) == pytest.approx((74.5 + 36, 74.5), abs=0.1)
    x, y = centroid(warp(ctx, compose_geometry(shift=(6.0, -4.0))))  # window right and up
    assert (x, y) == pytest.approx((74.5 + 24, 74.5 + 4), abs=0.1)
    x, _ = centroid(warp(ctx, compose_geometry(zoom=1.2, shift=(6.0, 0.0))))
    assert x == pytest.approx(74.5 + 1.2 * 24, abs=0.1)


def test_crop_and_rotate_draw_within_their_strength() -> None:
    ctx = blob(112.5 + 30, 112.5)
    for seed in range(20):
        x, y = centroid(aug.rotate(ctx, rng(seed), deg=10.0))
        angle = math.degrees(math.atan2(74.5 - y, x - 74.5))
        assert abs(angle) <= 10.0 + 0.3 and math.hypot(x - 74.5, y - 74.5) == pytest.approx(30, abs=0.2)
        x, y = centroid(aug.crop(ctx, rng(seed), scale=0.1, shift=6.0))
        assert 0.9 * 24 - 0.2 <= x - 74.5 <= 1.1 * 36 + 0.2 and abs(y - 74.5) <= 1.1 * 6 + 0.2


# --- photometric operations -----------------------------------------------------------


def test_lowres_removes_high_frequencies_and_is_identity_at_full_size() -> None:
    chip = textured(CHIP)
    before = high_energy(chip, 15)
    low24 = aug.lowres(chip, rng(), side=(24, 24), jpeg_p=0.0)
    low64 = aug.lowres(chip, rng(), side=(64, 64), jpeg_p=0.0)
    assert low24.shape == chip.shape and low24.dtype == np.uint8
    assert high_energy(low24, 15) < 0.01 * before  # 24 px keeps at most 12 cycles per chip
    assert high_energy(low24, 15) < high_energy(low64, 15) < before
    assert abs(float(low24.mean()) - float(chip.mean())) < 1.5
    np.testing.assert_array_equal(aug.lowres(chip, rng(), side=(150, 150), jpeg_p=0.0), chip)


def test_lowres_draws_its_side_log_uniformly_within_range() -> None:
    """Seen through what survives: a side of 24 leaves less detail than 64, and the
    draws spread over the range rather than sticking to one end."""
    chip = textured(CHIP)
    levels = [high_energy(aug.lowres(chip, rng(s), jpeg_p=0.0), 15) for s in range(30)]
    lo = high_energy(aug.lowres(chip, rng(), side=(24, 24), jpeg_p=0.0), 15)
    hi = high_energy(aug.lowres(chip, rng(), side=(64, 64), jpeg_p=0.0), 15)
    assert all(lo * 0.9 <= v <= hi * 1.1 for v in levels)
    assert min(levels) < (lo + hi) / 2 < max(levels)


def test_jpeg_changes_pixels_but_keeps_the_mean_and_the_colour() -> None:
    chip = smooth(CHIP)
    out = aug.jpeg(chip, rng(), quality=(30, 30))
    assert out.shape == chip.shape and out.dtype == np.uint8
    assert not np.array_equal(out, chip)
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), chip.reshape(-1, 3).mean(0), atol=2.0)
    flat = np.zeros((CHIP, CHIP, 3), np.uint8)
    flat[:] = (200, 60, 20)  # a swapped R and B would show at once
    np.testing.assert_allclose(aug.jpeg(flat, rng()).reshape(-1, 3).mean(0), (200, 60, 20), atol=3.0)


def test_grey_gives_equal_channels_of_rec601_luminance_of_rgb() -> None:
    out = aug.grey(textured(CHIP), rng())
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    for rgb, luma in [((255, 0, 0), 76), ((0, 255, 0), 150), ((0, 0, 255), 29)]:
        flat = np.zeros((8, 8, 3), np.uint8)
        flat[:] = rgb
        assert abs(int(aug.grey(flat, rng())[0, 0, 0]) - luma) <= 1, rgb


def test_colour_with_zero_strength_is_identity_and_each_factor_does_its_job() -> None:
    chip = textured(CHIP)
    none = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "gain": 0.0}
    np.testing.assert_array_equal(aug.colour(chip, rng(), **none), chip)
    # Brightness alone scales every pixel by one factor.
    mid = np.full((CHIP, CHIP, 3), 100, np.uint8)
    mid[::2] = 50
    out = aug.colour(mid, rng(3), **{**none, "brightness": 0.3}).astype(np.float64)
    ratio = out[1, 0, 0] / 100
    assert ratio != pytest.approx(1.0, abs=0.01)
    np.testing.assert_allclose(out[::2], 50 * ratio, atol=0.51)
    # Saturation alone leaves a grey image grey; contrast alone keeps the mean.
    g = aug.grey(chip, rng())
    np.testing.assert_array_equal(aug.colour(g, rng(4), **{**none, "saturation": 0.9}), g)
    c = aug.colour(g, rng(5), **{**none, "contrast": 0.3})
    assert not np.array_equal(c, g) and abs(float(c.mean()) - float(g.mean())) < 1.0


def test_blur_lowers_detail_and_keeps_the_mean() -> None:
    chip = textured(CHIP)
    out = aug.blur(chip, rng(), sigma=(1.0, 1.0))
    assert high_energy(out, 30) < 0.2 * high_energy(chip, 30)
    assert abs(float(out.mean()) - float(chip.mean())) < 0.5


def test_occlude_changes_one_rectangle_of_the_documented_size_only() -> None:
    chip = textured(CHIP)
    for seed in range(30):
        out = aug.occlude(chip, rng(seed))
        changed = (out != chip).any(axis=2)
        ys, xs = np.nonzero(changed)
        box = changed[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        assert box.all(), f"seed {seed}: the changed pixels are not one filled rectangle"
        frac = box.size / chip.shape[0] / chip.shape[1]
        assert 0.09 <= frac <= 0.31, (seed, frac)


def test_photometric_operations_work_on_any_rgb_size_and_refuse_other_arrays() -> None:
    img = textured(97)[:, :61]
    for op in (aug.occlude, aug.colour, aug.grey, aug.blur, aug.jpeg, aug.lowres):
        out = op(img, rng())
        assert out.shape == img.shape and out.dtype == np.uint8, op.__name__
        with pytest.raises(ValueError, match="uint8"):
            op(img.astype(np.float32), rng())
        with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
            op(img[..., 0], rng())


# --- the augmenter --------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["", "none", "  none ", ",".join(f"{n}:p=0" for n in OPS)])
def test_no_augmentation_returns_the_exact_centre_crop(spec: str) -> None:
    ctx = textured()
    a = Augmenter(spec)
    for seed in range(10):
        np.testing.assert_array_equal(a(ctx, rng(seed)), ctx[38:188, 38:188])


@pytest.mark.parametrize("name", OPS)
def test_p0_never_changes_the_chip_and_p1_always_does(name: str) -> None:
    ctx = textured()
    centre = center_chip(ctx)
    never, always = Augmenter(f"{name}:p=0"), Augmenter(f"{name}:p=1")
    for seed in range(12):
        np.testing.assert_array_equal(never(ctx, rng(seed)), centre)
        assert not np.array_equal(always(ctx, rng(seed)), centre), (name, seed)


def test_default_probabilities_fire_about_as_often_as_documented() -> None:
    ctx = textured()
    centre = center_chip(ctx)
    for name in ("flip", "grey", "jpeg"):
        a = Augmenter(name)
        p = a.spec.ops[0].p
        fired = sum(not np.array_equal(a(ctx, rng(s)), centre) for s in range(400))
        assert abs(fired / 400 - p) < 0.08, (name, fired, p)


def test_outputs_are_chips_and_inputs_are_never_mutated() -> None:
    ctx = textured()
    keep = ctx.copy()
    for spec in (FULL, ",".join(f"{n}:p=1" for n in OPS)):
        a = Augmenter(spec)
        for seed in range(25):
            out = a(ctx, rng(seed))
            assert out.shape == (CHIP, CHIP, 3) and out.dtype == np.uint8
            assert not np.shares_memory(out, ctx)
    np.testing.assert_array_equal(ctx, keep)
    chip = center_chip(ctx)
    chip_keep = chip.copy()
    for op in (aug.occlude, aug.colour, aug.grey, aug.blur, aug.jpeg, aug.lowres):
        op(chip, rng())
    for geo in (aug.flip, aug.crop, aug.rotate):
        geo(ctx, rng())
    np.testing.assert_array_equal(chip, chip_keep)
    np.testing.assert_array_equal(ctx, keep)


def test_same_seed_same_output_different_seed_different_output() -> None:
    ctx = textured()
    a = Augmenter(",".join(f"{n}:p=1" for n in OPS if n != "grey"))
    np.testing.assert_array_equal(a(ctx, rng(7)), a(ctx, rng(7)))
    np.testing.assert_array_equal(
        Augmenter(FULL).batch([ctx] * 4, rng(3)), Augmenter(FULL).batch([ctx] * 4, rng(3))
    )
    assert not np.array_equal(a(ctx, rng(7)), a(ctx, rng(8)))


def test_batch_is_the_same_as_calls_in_turn() -> None:
    contexts = np.stack([textured(seed=s) for s in range(5)])
    a = Augmenter(FULL)
    r = rng(11)
    expected = np.stack([a(c, r) for c in contexts])
    out = a.batch(contexts, rng(11))
    assert out.shape == (5, CHIP, CHIP, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(a.batch(list(contexts), rng(11)), expected)
    assert a.batch([], rng()).shape == (0, CHIP, CHIP, 3)
    with pytest.raises(ValueError, match=r"\(N, 226, 226, 3\)"):
        a.batch(contexts[:, :150, :150], rng())


def test_the_augmenter_refuses_what_is_not_a_context_chip() -> None:
    a = Augmenter(FULL)
    with pytest.raises(ValueError, match=r"\(226, 226, 3\) uint8.*got shape \(150, 150, 3\)"):
        a(textured(CHIP), rng())
    with pytest.raises(ValueError, match="dtype float32"):
        a(textured().astype(np.float32), rng())
    with pytest.raises(ValueError, match="226"):
        center_chip(textured(200))
    with pytest.raises(ValueError, match="AugmentSpec or a spec string"):
        Augmenter(42)  # type: ignore[arg-type]


# --- spec strings ---------------------------------------------------------------------


def test_parse_spec_resolves_defaults_and_keeps_given_values() -> None:
    spec = parse_spec("flip,lowres:p=0.7:min=20:max=48,jpeg:min=40")
    assert spec.names == ("flip", "lowres", "jpeg")
    lowres = spec.ops[1].kwargs()
    assert lowres == {"p": 0.7, "min": 20, "max": 48, "jpeg": 0.3, "qmin": 60, "qmax": 95}
    assert spec.ops[2].kwargs() == {"p": 0.3, "min": 40, "max": 90}
    assert spec.ops[0].p == 0.5
    assert parse_spec(" jpeg : min = 40 , flip ") == parse_spec("flip,jpeg:min=40")
    assert parse_spec("") == parse_spec("none") == AugmentSpec()


@pytest.mark.parametrize(
    "spec",
    [
        "none",
        FULL,
        "flip,lowres:p=0.7:min=20:max=48,jpeg:min=40",
        "crop:scale=0.125:shift=2.5,rotate:deg=3.3333333333333335,colour:gain=0",
        "occlude:p=1:min=0.01:max=1,blur:min=0.1:max=10",
    ],
)
def test_str_is_a_canonical_spec_that_parses_back_equal(spec: str) -> None:
    parsed = parse_spec(spec)
    text = str(parsed)
    assert parse_spec(text) == parsed
    assert str(parse_spec(text)) == text
    assert Augmenter(spec).spec == parsed and repr(Augmenter(spec)) == f"Augmenter({text!r})"


def test_spec_order_does_not_matter_and_str_lists_every_setting() -> None:
    a, b = parse_spec("jpeg,flip,crop"), parse_spec("crop,jpeg,flip")
    assert a == b and a.names == ("flip", "crop", "jpeg")
    assert str(a) == "flip:p=0.5,crop:p=0.5:scale=0.1:shift=6,jpeg:p=0.3:min=30:max=90"
    assert str(AugmentSpec()) == "none"


def test_to_dict_is_json_ready_with_every_resolved_setting() -> None:
    spec = parse_spec(FULL)
    d = json.loads(json.dumps(spec.to_dict()))
    assert d["spec"] == str(spec)
    assert list(d["ops"]) == list(OPS)
    assert d["ops"]["lowres"] == {"p": 0.5, "min": 24, "max": 64, "jpeg": 0.3, "qmin": 60, "qmax": 95}
    assert isinstance(spec.to_dict()["ops"]["jpeg"]["min"], int)
    assert d["ops"]["colour"] == {
        "p": 0.5,
        "brightness": 0.3,
        "contrast": 0.3,
        "saturation": 0.3,
        "gain": 0.05,
    }


def test_the_docstring_table_states_each_default_probability() -> None:
    doc = aug.__doc__ or ""
    for name in OPS:
        p = parse_spec(name).ops[0].p
        assert re.search(rf"^{name}\s+{p}\s", doc, re.MULTILINE), f"{name} p={p} missing from the table"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("flp", r"unknown augmentation 'flp'.*expected one of flip, crop.*did you mean 'flip'"),
        ("flip,color", r"unknown augmentation 'color'.*did you mean 'colour'"),
        ("jpeg:q=50", r"'jpeg' has no setting 'q': expected one of p, min, max"),
        ("lowres:jpg=0.5", r"no setting 'jpg'.*did you mean 'jpeg'"),
        ("jpeg:min=abc", r"min='abc' is not a number: expected an integer JPEG quality in 1\.\.100"),
        ("blur:max=nan", r"max=nan is not finite"),
        ("blur:max=inf", r"max=inf is not finite"),
        ("crop:p=1.5", r"p=1\.5 is out of range: expected a probability in 0\.\.1"),
        ("flip:p=-0.1", r"p=-0\.1 is out of range"),
        ("lowres:min=4", r"min=4 is out of range: expected an integer side in px in 8\.\.150"),
        ("lowres:max=200", r"max=200 is out of range"),
        ("lowres:min=20.5", r"min=20\.5 is not an integer"),
        ("jpeg:min=0", r"min=0 is out of range.*1\.\.100"),
        ("jpeg:max=101", r"max=101 is out of range"),
        ("rotate:deg=-5", r"deg=-5 is out of range: expected an angle in degrees in 0\.\.180"),
        ("crop:shift=40", r"shift=40 is out of range.*0\.\.38"),
        ("lowres:min=80", r"min=80 is greater than max=64 \(default\): expected min <= max"),
        ("blur:min=2:max=1", r"min=2 is greater than max=1: expected min <= max"),
        ("lowres:qmin=99", r"qmin=99 is greater than qmax=95 \(default\)"),
        ("flip,jpeg,flip", r"'flip' is given twice.*at most once"),
        ("jpeg:min=40:min=50", r"setting 'min' is given twice"),
        ("jpeg:min", r"setting 'min' is not key=value"),
        ("jpeg:=3", r"setting '=3' is not key=value"),
        ("flip,,jpeg", r"empty item"),
        ("none,flip", r"'none' must stand alone"),
    ],
)
def test_parse_errors_say_what_was_expected_and_what_was_found(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_spec(spec)
    assert isinstance(info.value, InvalidArgumentError)
    text = str(info.value)
    assert "\n" not in text and "expected" in text, text


def test_a_spec_built_by_hand_is_validated_too() -> None:
    good = parse_spec("jpeg")
    bad = aug.OpSpec("jpeg", (("p", 0.3), ("min", 95), ("max", 90)))
    with pytest.raises(ValueError, match="greater than"):
        AugmentSpec((bad,))
    with pytest.raises(ValueError, match="in the order"):
        AugmentSpec((good.ops[0], parse_spec("flip").ops[0]))
    with pytest.raises(ValueError, match="unknown augmentation 'spin'"):
        AugmentSpec((aug.OpSpec("spin", (("p", 0.5),)),))
    with pytest.raises(ValueError, match="expected exactly the keys p, min, max"):
        AugmentSpec((aug.OpSpec("jpeg", (("min", 30), ("p", 0.3), ("max", 90))),))
    with pytest.raises(ValueError, match="expected an augmentation spec string"):
        parse_spec(None)  # type: ignore[arg-type]
