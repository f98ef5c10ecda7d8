"""Zip archives built at test time for ``POST /v1/calibrate``: a real labelled set from
``../shared/data/lfw-dev``, and hostile ones (bombs, traversal, links, lying headers)."""

from __future__ import annotations

import io
import stat
import struct
import zipfile
from pathlib import Path

from tests.conftest import LFW, need


def lfw_people(people: int = 17, per_person: int = 3) -> dict[str, list[Path]]:
    """The first ``people`` LFW dev people (by name) with at least ``per_person`` images,
    with their first ``per_person`` images. 17 x 3 images give 1224 different-person pairs,
    above the 1000 a gallery calibration needs, and embed in about a second."""
    root = need(LFW)
    out: dict[str, list[Path]] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        imgs = sorted(d.glob("*.jpg"))
        if len(imgs) >= per_person:
            out[d.name] = imgs[:per_person]
            if len(out) == people:
                break
    return out


def lfw_zip(
    people: int = 17, per_person: int = 3, top: str | None = None, extra: dict[str, bytes] | None = None
) -> bytes:
    """A deflated zip of ``<person>/<image>`` (under ``top/`` when given), plus ``extra``
    entries (name -> bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for person, imgs in lfw_people(people, per_person).items():
            for img in imgs:
                zf.write(img, f"{top + '/' if top else ''}{person}/{img.name}")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def zip_of(entries: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def with_symlink(name: str, target: str, base: dict[str, bytes]) -> bytes:
    """``base`` plus an entry ``name`` that is a unix symbolic link to ``target``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, data in base.items():
            zf.writestr(n, data)
        info = zipfile.ZipInfo(name)
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, target)
    return buf.getvalue()


def bomb(name: str = "p1/bomb.jpg", size: int = 64 * 1024 * 1024) -> bytes:
    """A zip whose one entry is ``size`` zero bytes deflated to about 1/1000 of that."""
    buf = io.BytesIO()
    block = bytes(1024 * 1024)
    with (
        zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
        zf.open(name, "w", force_zip64=True) as out,
    ):
        for _ in range(size // len(block)):
            out.write(block)
    return buf.getvalue()


def lying(data: bytes, declared: int) -> bytes:
    """``data`` (a one-entry zip) with the entry's declared uncompressed size set to
    ``declared`` in both its local header and the central directory: a header that lies
    about how much the entry unpacks to."""
    raw = bytearray(data)
    local = raw.find(b"PK\x03\x04")
    struct.pack_into("<I", raw, local + 22, declared)
    central = raw.find(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 24, declared)
    return bytes(raw)
