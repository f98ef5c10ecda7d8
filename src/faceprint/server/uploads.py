"""Images sent to the service: ``multipart/form-data`` file fields, read and decoded here.

The service never fetches a URL a client names: an image field that holds text (a URL, a
path, base64) is refused with 422 saying so. A part whose declared type is not an image
is refused with 415; bytes that do not decode, or decode to more pixels than the cap, get
400 or 413 from :func:`faceprint.io.load_image` (which checks the pixel count from the
header, before decoding: decompression bombs never reach memory). Images are RGB uint8.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from ..types import Image
from .config import Limits
from .problems import Problem

#: Content types accepted as images besides ``image/*``: what browsers and curl send for a
#: file whose type they cannot tell.
_GENERIC = {"application/octet-stream", ""}


@dataclass(frozen=True)
class Upload:
    """One uploaded image: the client's file name (no directories, at most 200
    characters; never used as a path) and its bytes."""

    name: str
    data: bytes


def _client_name(upload: UploadFile, field: str, i: int) -> str:
    raw = upload.filename or f"{field}#{i + 1}"
    base = PureWindowsPath(PurePosixPath(raw).name).name or f"{field}#{i + 1}"
    return "".join(c for c in base if c.isprintable())[:200]


async def read_form(request: Request, limits: Limits) -> FormData:
    """The request's multipart form, with Starlette's own caps set from ``limits`` (text
    fields of at most 64 kB, at most ``max_images`` files per field list)."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise Problem(
            "not-an-image",
            f"send images as multipart/form-data file fields, not {ctype.split(';')[0] or 'no content type'} "
            "(the service never fetches URLs or reads paths)",
        )
    try:
        return await request.form(max_files=limits.max_images * 2 + 2, max_fields=64, max_part_size=64 * 1024)
    except Problem:
        raise
    except Exception as exc:  # malformed multipart, too many parts
        detail = str(getattr(exc, "detail", exc))
        if "Too many files" in detail:  # Starlette's own cap, past the per-field check of files()
            raise Problem(
                "too-many-images", f"more than {limits.max_images} images in one request; that is the limit"
            ) from None
        raise Problem("bad-request", f"the multipart body cannot be read: {detail}") from None


async def files(form: FormData, field: str, limits: Limits, required: bool = True) -> list[Upload]:
    """Every file of ``field`` in ``form`` (module doc for what is refused)."""
    values = form.getlist(field)
    if not values and required:
        raise Problem("invalid-field", f"no {field!r} field: send one or more image files in it")
    if len(values) > limits.max_images:
        raise Problem(
            "too-many-images",
            f"{len(values)} images in {field!r}; the limit is {limits.max_images} per request",
        )
    out = []
    for i, v in enumerate(values):
        if not isinstance(v, UploadFile):
            text = str(v)[:60]
            what = "a URL" if "://" in text else "text"
            raise Problem(
                "invalid-field",
                f"field {field!r} holds {what}, not a file: upload the image's bytes "
                "(the service never fetches URLs or reads paths)",
            )
        ctype = (v.content_type or "").split(";")[0].strip().lower()
        if not ctype.startswith("image/") and ctype not in _GENERIC:
            raise Problem("not-an-image", f"{field!r} part {i + 1} is {ctype}, not an image")
        data = await v.read()
        out.append(Upload(_client_name(v, field, i), data))
    return out


def decode(upload: Upload, limits: Limits) -> Image:
    """The upload as RGB uint8; raises faceprint's image errors (mapped to 400/413)."""
    from ..errors import InvalidImageError
    from ..io import load_image

    if not upload.data:
        raise InvalidImageError(f"{upload.name}: empty file (0 bytes)")
    try:
        return load_image(upload.data, limits.max_pixels)
    except InvalidImageError as exc:
        raise type(exc)(f"{upload.name}: {str(exc).removeprefix('image bytes: ')}") from None


def text_field(form: FormData, name: str, default: str | None = None) -> str | None:
    v = form.get(name)
    if v is None:
        return default
    if isinstance(v, UploadFile):
        raise Problem("invalid-field", f"field {name!r} must be text, not a file")
    return str(v)


def int_field(form: FormData, name: str, default: int, lo: int, hi: int) -> int:
    raw = text_field(form, name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise Problem("invalid-field", f"field {name!r} must be an integer, got {raw[:40]!r}") from None
    if not lo <= v <= hi:
        raise Problem("invalid-field", f"field {name!r} must be in [{lo}, {hi}], got {v}")
    return v


def float_field(form: FormData, name: str, lo: float, hi: float) -> float | None:
    raw = text_field(form, name)
    if raw is None or raw == "":
        return None
    try:
        v = float(raw)
    except ValueError:
        raise Problem("invalid-field", f"field {name!r} must be a number, got {raw[:40]!r}") from None
    if not lo <= v <= hi:
        raise Problem("invalid-field", f"field {name!r} must be in [{lo}, {hi}], got {v}")
    return v


def multipart_doc(fields: dict[str, str], files_: dict[str, str]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for a multipart endpoint read by hand: ``files_`` are
    file fields (arrays of binary), ``fields`` text ones; used as ``openapi_extra``."""
    props: dict[str, Any] = {
        k: {"type": "array", "items": {"type": "string", "format": "binary"}, "description": d}
        for k, d in files_.items()
    }
    props.update({k: {"type": "string", "description": d} for k, d in fields.items()})
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": props, "required": list(files_)}
                }
            },
        }
    }
