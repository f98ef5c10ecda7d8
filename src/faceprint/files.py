"""Files written whole or not at all: :func:`atomic_write`.

Why: faceprint writes files that another process may read at any moment, or that a crash
must not leave half-written -- gallery exports, index caches, built models, reports. They
all follow one recipe, kept here once:

* the data goes to a temporary file ``.<name>.<random>.tmp`` in the target's own
  directory (same filesystem, so the rename is atomic), created with the parent
  directories when they are missing;
* the temporary file is renamed onto the target with ``os.replace``: a reader sees the
  old file or the new one, never a mix; on any failure (or interrupt) it is removed and
  the target is left as it was;
* ``mode``: the permissions of the new file; ``None`` keeps ``mkstemp``'s owner-only
  0600 (for files of the user's own data);
* ``fsync``: the data is flushed to disk before the rename, for files that must survive a
  power cut, not only a process crash.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write"]


def atomic_write(
    path: Path, write: Callable[[Path], object], *, mode: int | None = 0o644, fsync: bool = False
) -> None:
    """Call ``write(tmp)`` to fill a temporary file, then move it onto ``path`` atomically
    (see the module doc for ``mode`` and ``fsync``). Exceptions from ``write`` or the file
    system propagate unchanged, after the temporary file is removed."""
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
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
