"""Image loading: anything a user has -> RGB uint8 ``(H, W, 3)``.

``load_image`` accepts a path, raw bytes, or a numpy array, applies the EXIF orientation
(phone photos are stored sideways), and converts grayscale, RGBA, palette, CMYK and
16-bit images to 8-bit RGB. Arrays are taken as RGB (or gray/RGBA) already. A pixel cap
(``Settings.max_pixels``) refuses decompression bombs before they are decoded.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .config import get_settings
from .errors import ImageTooLargeError, InvalidImageError
from .types import Image

ImageInput = str | os.PathLike[str] | bytes | bytearray | memoryview | np.ndarray[Any, Any]

_PIL_LOCK = threading.Lock()


def _check_pixels(width: int, height: int, cap: int, what: str) -> None:
    if width * height > cap:
        raise ImageTooLargeError(
            f"{what}: {width}x{height} = {width * height:,} pixels exceeds the cap of "
            f"{cap:,} (raise it with FACEPRINT_MAX_PIXELS or max_pixels=)"
        )


def _from_array(arr: np.ndarray[Any, Any], cap: int) -> Image:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InvalidImageError(
            f"array image: expected shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {arr.shape}"
        )
    _check_pixels(arr.shape[1], arr.shape[0], cap, "array image")
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise InvalidImageError(f"array image: expected dtype uint8 or uint16, got {arr.dtype}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr)


def _pil_to_rgb(img: Any) -> Image:
    from PIL import Image as PILImage

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale: scale to 8 bits instead of clipping (Pillow's convert clips).
        a = np.asarray(img, dtype=np.uint32 if mode == "I" else np.uint16)
        top = 65535 if mode != "I" or a.max(initial=0) > 255 else 255
        a8 = (a.astype(np.float64) * (255.0 / top)).clip(0, 255).round().astype(np.uint8)
        return np.ascontiguousarray(np.repeat(a8[:, :, None], 3, axis=2))
    if mode == "F":
        f = np.asarray(img, dtype=np.float32)
        hi = float(f.max(initial=1.0)) or 1.0
        scale = np.float32(255.0 if hi <= 1.0 else 255.0 / hi)
        a8 = (f * scale).clip(0, 255).round().astype(np.uint8)
        return np.ascontiguousarray(np.repeat(a8[:, :, None], 3, axis=2))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # Transparent pixels become white, as a viewer would show them on a page.
        rgba = img.convert("RGBA")
        bg = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = PILImage.alpha_composite(bg, rgba)
    rgb = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def _decode(data: io.BytesIO | Path, cap: int, what: str) -> Image:
    from PIL import Image as PILImage
    from PIL import ImageOps, UnidentifiedImageError

    with _PIL_LOCK, warnings.catch_warnings():
        # Our own cap replaces Pillow's global bomb check, which is tuned for 89 MP.
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
        old = PILImage.MAX_IMAGE_PIXELS
        PILImage.MAX_IMAGE_PIXELS = None
        try:
            img = PILImage.open(data)
        except UnidentifiedImageError as exc:
            raise InvalidImageError(f"{what}: not a recognised image format") from exc
        except OSError as exc:
            raise InvalidImageError(f"{what}: cannot be read ({exc})") from exc
        finally:
            PILImage.MAX_IMAGE_PIXELS = old
    with img:
        width, height = img.size
        _check_pixels(width, height, cap, what)
        try:
            img.load()
            return _pil_to_rgb(ImageOps.exif_transpose(img) or img)
        except (OSError, SyntaxError, ValueError) as exc:
            raise InvalidImageError(f"{what}: corrupt or truncated image data ({exc})") from exc


def load_image(source: ImageInput, max_pixels: int | None = None) -> Image:
    """Load ``source`` as an RGB uint8 ``(H, W, 3)`` array.

    ``source`` is a file path, encoded bytes (JPEG, PNG, ...), or a numpy array that is
    already RGB/gray/RGBA (uint8 or uint16). EXIF orientation is applied. Raises
    :class:`InvalidImageError` for anything unreadable and :class:`ImageTooLargeError`
    above ``max_pixels`` (default ``Settings.max_pixels``).
    """
    cap = max_pixels if max_pixels is not None else get_settings().max_pixels
    if isinstance(source, np.ndarray):
        return _from_array(source, cap)
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise InvalidImageError("image bytes: empty (0 bytes)")
        return _decode(io.BytesIO(bytes(source)), cap, "image bytes")
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.exists():
            raise InvalidImageError(f"{path}: no such file")
        if not path.is_file():
            raise InvalidImageError(f"{path}: not a regular file")
        if path.stat().st_size == 0:
            raise InvalidImageError(f"{path}: empty file (0 bytes)")
        return _decode(path, cap, str(path))
    raise InvalidImageError(f"expected a path, bytes or numpy array, got {type(source).__name__}")


def image_sha256(source: ImageInput) -> str | None:
    """sha256 of a file's or bytes' content (``None`` for arrays); used for provenance."""
    import hashlib

    if isinstance(source, bytes | bytearray | memoryview):
        return hashlib.sha256(bytes(source)).hexdigest()
    if isinstance(source, str | os.PathLike):
        return hashlib.sha256(Path(source).read_bytes()).hexdigest()
    return None
