import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceprint.errors import ImageTooLargeError, InvalidImageError
from faceprint.io import load_image


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _gradient() -> np.ndarray:
    y, x = np.mgrid[0:40, 0:60]
    return np.stack([x * 4, y * 6, (x + y) * 2], axis=-1).astype(np.uint8)


def test_rgb_png_roundtrip_is_exact() -> None:
    arr = _gradient()
    out = load_image(_encode(Image.fromarray(arr), "PNG"))
    assert out.dtype == np.uint8 and out.shape == (40, 60, 3)
    assert np.array_equal(out, arr)


def test_path_and_bytes_agree(tmp_path: Path) -> None:
    p = tmp_path / "a.png"
    Image.fromarray(_gradient()).save(p)
    assert np.array_equal(load_image(p), load_image(p.read_bytes()))
    assert np.array_equal(load_image(str(p)), load_image(p))


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "1"])
def test_modes_become_rgb(mode: str) -> None:
    img = Image.fromarray(_gradient()).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode == "1" else "PNG")
    out = load_image(_encode(img, fmt))
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8


def test_cmyk_jpeg_colours_survive() -> None:
    red = Image.new("RGB", (32, 32), (220, 30, 30)).convert("CMYK")
    out = load_image(_encode(red, "JPEG", quality=95))
    r, g, b = out[16, 16].astype(int)
    assert r > 150 and g < 90 and b < 90


def test_sixteen_bit_grayscale_is_scaled_not_clipped() -> None:
    a16 = np.full((10, 10), 40000, dtype=np.uint16)
    out = load_image(_encode(Image.fromarray(a16), "PNG"))
    assert abs(int(out[0, 0, 0]) - round(40000 * 255 / 65535)) <= 1


def test_transparent_pixels_become_white() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    out = load_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert (out == 255).all()


def test_exif_orientation_is_applied() -> None:
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    out = load_image(_encode(img, "JPEG", exif=exif.tobytes(), quality=95))
    assert out.shape == (40, 20, 3)
    assert out[:20].mean() > 200 and out[20:].mean() < 60  # white ends up on top


def test_arrays() -> None:
    g = np.zeros((5, 6), np.uint8)
    assert load_image(g).shape == (5, 6, 3)
    assert load_image(np.zeros((5, 6, 4), np.uint8)).shape == (5, 6, 3)
    assert load_image(np.full((5, 6, 3), 65535, np.uint16)).max() == 255
    with pytest.raises(InvalidImageError, match="dtype"):
        load_image(np.zeros((5, 6, 3), np.float64))
    with pytest.raises(InvalidImageError, match="shape"):
        load_image(np.zeros((5, 6, 2), np.uint8))
    with pytest.raises(InvalidImageError, match="shape"):
        load_image(np.zeros((0, 6, 3), np.uint8))


def test_missing_empty_and_non_image(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(InvalidImageError, match="empty"):
        load_image(empty)
    text = tmp_path / "notes.jpg"
    text.write_text("hello, I am not a JPEG")
    with pytest.raises(InvalidImageError, match="not a recognised image"):
        load_image(text)
    with pytest.raises(InvalidImageError, match="not a regular file"):
        load_image(tmp_path)
    with pytest.raises(InvalidImageError, match="expected a path"):
        load_image(12345)  # type: ignore[arg-type]


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = _encode(
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)), "JPEG"
    )
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(InvalidImageError, match=r"truncated|corrupt"):
        load_image(p)


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height gray pixels (all zero)."""
    raw = zlib.compress(b"\x00" * (width + 1) * 64, 9)  # only a few rows: header is what matters

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = _bomb_png(30000, 30000)  # 900 MP declared, a few KB on disk
    assert len(bomb) < 100_000
    with pytest.raises(ImageTooLargeError, match="exceeds the cap"):
        load_image(bomb)


def test_pixel_cap_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _encode(Image.fromarray(_gradient()), "PNG")  # 2,400 pixels
    with pytest.raises(ImageTooLargeError):
        load_image(data, max_pixels=1000)
    monkeypatch.setenv("FACEPRINT_MAX_PIXELS", "1000")
    with pytest.raises(ImageTooLargeError, match="FACEPRINT_MAX_PIXELS"):
        load_image(data)
    monkeypatch.setenv("FACEPRINT_MAX_PIXELS", "5000")
    assert load_image(data).shape == (40, 60, 3)


def test_one_pixel_image_loads() -> None:
    out = load_image(_encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"))
    assert out.shape == (1, 1, 3) and tuple(out[0, 0]) == (1, 2, 3)
