"""Files written whole or not at all: :func:`atomic_write`.

Why: faceprint writes files that another process may read at any moment, or that a crash
must not leave half-written -- gallery exports, index caches, built models, reports. They
all follow one recipe, kept here once:

* the data goes to a temporary file ``.<name>.<random>.tmp`` in the target's own
  directory (same filesystem, so the rename is atomic), created owner-only (0600) with
  the parent directories when they are missing (0700 for a private file);
* the temporary file is renamed onto the target with ``os.replace``: a reader sees the
  old file or the new one, never a mix; on any failure (or interrupt) it is removed and
  the target is left as it was;
* ``mode``: the permissions of a new file, set whatever the umask. The default 0600 is
  for the user's own data (anything holding face vectors is biometric data); a file
  meant for others (a report) passes 0644. A file that is *replaced* keeps its mode,
  less any bit ``mode`` does not allow: a rewrite never widens a mode, and a private
  file that an older version left readable by others becomes 0600;
* ``overwrite=False``: an existing target is never replaced (:class:`FileExistsError`),
  checked atomically (a hard link, not a test-then-rename race);
* ``fsync``: the data is flushed to disk before the rename, for files that must survive a
  power cut, not only a process crash.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["PRIVATE_DIR_MODE", "PRIVATE_FILE_MODE", "atomic_write", "make_private_dir"]

#: Modes of the files and directories that hold biometric data (galleries, exports).
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def make_private_dir(path: Path) -> None:
    """Create directory ``path`` (and missing parents) when it does not exist; the ones
    created here get :data:`PRIVATE_DIR_MODE` whatever the umask. An existing directory
    keeps its mode: it may be the user's own (the working directory, ``/tmp``)."""
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            d.mkdir(mode=PRIVATE_DIR_MODE)
            os.chmod(d, PRIVATE_DIR_MODE)


def atomic_write(
    path: Path,
    write: Callable[[Path], object],
    *,
    mode: int = PRIVATE_FILE_MODE,
    overwrite: bool = True,
    fsync: bool = False,
) -> None:
    """Call ``write(tmp)`` to fill a temporary file, then move it onto ``path`` atomically
    (see the module doc for ``mode``, ``overwrite`` and ``fsync``). Exceptions from
    ``write`` or the file system propagate unchanged, after the temporary file is removed."""
    if mode & 0o077 == 0:
        make_private_dir(path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        try:
            final = stat.S_IMODE(os.stat(path).st_mode) & mode
        except FileNotFoundError:
            final = mode
        os.chmod(tmp, final)  # write() may have made a new file (umask): set it explicitly
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # FileExistsError when the target exists, atomically
            except FileExistsError:
                raise
            except OSError:  # a file system without hard links: check, then rename
                if os.path.lexists(path):
                    raise FileExistsError(errno.EEXIST, "File exists", str(path)) from None
                os.replace(tmp, path)
            tmp.unlink(missing_ok=True)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
