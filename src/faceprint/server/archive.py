"""Labelled zip archives sent to the service (``POST /v1/calibrate``), unpacked safely.

An archive holds one folder per person, ``<person>/<image>`` (what ``faceprint calibrate
--dir DIR`` reads), optionally under one common top folder (``DIR/<person>/<image>``, what
zipping ``DIR`` gives). It comes from a client, so nothing in it is trusted:

* **Paths:** an entry whose name is absolute (``/x``, ``\\x``), has a drive letter
  (``C:``), a ``..`` part or a NUL, or that is a symbolic link or another special file,
  refuses the *whole* archive (422 ``bad-archive`` naming the entry): such an archive was
  made to escape, and half of it is no calibration set. Entry names are never used as
  paths anyway: images are written as ``<dest>/<person index>/<image index><suffix>``.
* **Size:** at most ``max_files`` entries and ``max_bytes`` uncompressed in all, checked
  on the declared sizes before anything is written *and* counted on the bytes actually
  unpacked (a header can lie; :mod:`zipfile` also stops at the declared size and checks
  the CRC). An entry of 64 KiB or more that claims to expand more than
  :data:`MAX_RATIO` times (photos compress by a few percent) is a zip bomb: refused
  before it is unpacked.
* **Methods:** stored or deflated entries only; encrypted entries are refused.
* **Content:** only image files (the suffixes :func:`~faceprint.evaluation.folders.read_labelled_dir`
  reads) in person folders are unpacked. Folders, hidden files (``.x``, ``__MACOSX/``),
  other files and files outside a person folder are skipped and listed in
  :attr:`Unpacked.ignored`: the same images the CLI would read from the unpacked folder.

The destination is a private directory the caller creates and removes.
"""

from __future__ import annotations

import re
import stat
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from ..evaluation.folders import IMAGE_SUFFIXES
from .problems import Problem

#: Largest expansion (uncompressed / compressed) accepted for an entry of
#: :data:`RATIO_FLOOR` bytes or more.
MAX_RATIO = 100
RATIO_FLOOR = 64 * 1024
_CHUNK = 1024 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
#: What :mod:`zipfile` raises for an entry whose data is corrupt or not what it declares.
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError, RuntimeError)


@dataclass(frozen=True)
class Unpacked:
    """What was unpacked under ``root``: ``people`` maps each person's folder name (from the
    archive) to their number of images; ``ignored`` names the entries skipped (at most 20,
    ``n_ignored`` counts them all); ``bytes`` unpacked in all."""

    root: Path
    people: dict[str, int]
    ignored: tuple[str, ...]
    n_ignored: int
    bytes: int

    @property
    def images(self) -> int:
        return sum(self.people.values())


class Stopped(Exception):
    """Raised inside the unpacking thread when its caller gave up on it (a timeout)."""


def _show(name: str) -> str:
    return repr(name[:200])


def refuse(entry: str, why: str) -> Problem:
    return Problem("bad-archive", f"entry {_show(entry)} {why}; the whole archive is refused")


def _parts(info: zipfile.ZipInfo) -> list[str]:
    """The entry's path parts, or a refusal for a name or type that could escape."""
    name = info.filename
    if "\x00" in name:
        raise refuse(name, "has a NUL character in its name")
    if name.startswith(("/", "\\")):
        raise refuse(name, "is an absolute path")
    if _DRIVE.match(name):
        raise refuse(name, "starts with a drive letter")
    parts = [p for p in re.split(r"[/\\]", name) if p not in ("", ".")]
    if ".." in parts:
        raise refuse(name, "has a '..' part (path traversal)")
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_IFMT(mode):  # unix attributes are present
        if stat.S_ISLNK(mode):
            raise refuse(name, "is a symbolic link")
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise refuse(name, "is not a regular file or folder")
    if info.flag_bits & 0x1:
        raise refuse(name, "is encrypted")
    if info.compress_type not in _METHODS:
        raise refuse(
            name, f"uses compression method {info.compress_type}; only stored or deflated are accepted"
        )
    return parts


def _check_sizes(infos: list[zipfile.ZipInfo], max_bytes: int, max_files: int) -> None:
    if len(infos) > max_files:
        raise Problem("bad-archive", f"the archive has {len(infos)} entries; the limit is {max_files}")
    declared = 0
    for info in infos:
        declared += info.file_size
        if info.file_size >= RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise refuse(
                info.filename,
                f"expands {info.compress_size} bytes to {info.file_size} "
                f"(more than {MAX_RATIO} times: a zip bomb)",
            )
    if declared > max_bytes:
        raise Problem("bad-archive", f"the archive unpacks to {declared} bytes; the limit is {max_bytes}")


def _labelled(infos: list[zipfile.ZipInfo]) -> tuple[list[tuple[zipfile.ZipInfo, str, str]], list[str]]:
    """(entry, person, suffix) for every image in a person folder, and the skipped names."""
    entries = [(info, _parts(info)) for info in infos]  # every entry is checked, skipped or not
    images: list[tuple[zipfile.ZipInfo, list[str]]] = []
    ignored: list[str] = []
    for info, parts in entries:
        hidden = any(p.startswith(".") or p == "__MACOSX" for p in parts)
        if info.is_dir() or not parts:
            continue
        if hidden or PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_SUFFIXES:
            ignored.append(info.filename)
        else:
            images.append((info, parts))
    # DIR/<person>/<image>: one common top folder is the archive's, not a person (an image
    # right under it has no label, as in DIR itself)
    tops = {parts[0] for _, parts in images}
    strip = 1 if len(tops) == 1 and any(len(parts) == 3 for _, parts in images) else 0
    out = []
    for info, parts in images:
        rel = parts[strip:]
        if len(rel) != 2:  # not <person>/<image>: no label (top level) or nested deeper
            ignored.append(info.filename)
            continue
        out.append((info, rel[0], PurePosixPath(rel[1]).suffix.lower()))
    return out, ignored


def unpack_labelled(
    archive: IO[bytes],
    dest: Path,
    max_bytes: int,
    max_files: int,
    stop: Callable[[], bool] = lambda: False,
) -> Unpacked:
    """Unpack the images of the labelled zip ``archive`` (a seekable binary file) into the
    existing empty directory ``dest`` (module doc), or raise a 422 ``bad-archive``
    :class:`~.problems.Problem` saying why not. ``stop()`` is asked between files; when it
    answers true, :class:`Stopped` is raised."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise Problem("bad-archive", f"the archive is not a readable zip file ({exc})") from None
    with zf:
        infos = zf.infolist()
        _check_sizes(infos, max_bytes, max_files)
        images, ignored = _labelled(infos)
        people = sorted({person for _, person, _ in images})
        index = {person: i for i, person in enumerate(people)}
        counts = dict.fromkeys(people, 0)
        total = 0
        for person in people:
            (dest / f"{index[person]:05d}").mkdir(mode=0o700)  # dest must exist: never recreated
        for info, person, suffix in images:
            if stop():
                raise Stopped
            target = dest / f"{index[person]:05d}" / f"{counts[person]:05d}{suffix}"
            written = 0
            try:
                with zf.open(info) as src, open(target, "xb") as out:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        total += len(chunk)
                        if written > info.file_size:
                            raise refuse(
                                info.filename, f"holds more than the {info.file_size} bytes it declares"
                            )
                        if total > max_bytes:
                            raise Problem(
                                "bad-archive", f"the archive unpacks to more than {max_bytes} bytes"
                            )
                        out.write(chunk)
            except _CORRUPT as exc:
                raise refuse(info.filename, f"cannot be unpacked ({exc})") from None
            if written != info.file_size:
                raise refuse(info.filename, f"holds {written} bytes but declares {info.file_size}")
            counts[person] += 1
    return Unpacked(dest, counts, tuple(ignored[:20]), len(ignored), total)
