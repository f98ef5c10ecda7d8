"""Moving the default gallery out of the cache directory where faceprint 0.1 kept it.

Why: a gallery is data a user cannot lose, and ``~/.cache`` is emptied by cleaners (and
excluded from backups), so the default gallery now lives in the user data directory
(:attr:`~faceprint.config.Settings.data_dir`). A user upgrading must not find an empty
gallery there while theirs sits in the old place, so the first time the default gallery
is opened and only the old file exists, :func:`move_legacy_gallery` moves it:

* only a faceprint gallery is moved (another SQLite file or other data is left alone);
* only when no other process has it open: switching it out of WAL mode needs every other
  connection closed (and checkpoints the WAL into the file), then an exclusive lock keeps
  everyone out while the file is copied (0600 in a 0700 directory, fsynced, linked into
  place without ever replacing a file), after which the old file and its search-index
  cache are deleted -- no copy of the faces is left in the cache directory;
* two faceprint processes starting at once take turns (a lock on the data directory): the
  second finds the gallery moved, instead of opening the old file just before it goes;
* when it cannot be moved (in use, read-only, a disk error), the old file is used where it
  is, with a warning that says why and how to move it by hand: nothing looks lost.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import sqlite3
from pathlib import Path

from ..errors import GalleryError
from ..files import PRIVATE_FILE_MODE, make_private_dir
from .ann_cache import cache_files
from .sqlite_file import SqliteFile

log = logging.getLogger(__name__)


def move_legacy_gallery(old: Path, new: Path) -> Path:
    """The gallery file to use as the default: ``new``, after moving the legacy gallery
    ``old`` there when only ``old`` exists (module doc); ``old`` when that move is not
    possible now."""
    if new.exists() or not old.is_file():
        return new
    try:
        make_private_dir(new.parent)
        lock = os.open(new.parent, os.O_RDONLY)
    except OSError as exc:
        log.warning("the gallery is still in the cache directory %s (cannot create %s: %s)", old, new, exc)
        return old
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another faceprint may be moving it right now
        if new.exists() or not old.is_file():
            return new
        return _move_checked(old, new)
    finally:
        os.close(lock)  # releases the lock


def _move_checked(old: Path, new: Path) -> Path:
    try:
        SqliteFile(old).close()  # refuses anything but a faceprint gallery, untouched
    except GalleryError as exc:
        log.warning("not moving %s to %s: %s", old, new, exc)
        return new
    try:
        _move(old, new)
    except (OSError, sqlite3.Error) as exc:
        log.warning(
            "the gallery is still in the cache directory %s (could not move it to %s: %s); move it "
            "with 'mv %s %s' while no faceprint runs, or pass --gallery %s",
            old, new, exc, old, new, old,
        )  # fmt: skip
        return old
    log.warning("moved the gallery from the cache directory %s to %s", old, new)
    return new


def _move(old: Path, new: Path) -> None:
    conn = sqlite3.connect(old, timeout=0, isolation_level=None)
    try:
        # Out of WAL mode only when nobody else has it open (SQLITE_BUSY otherwise); the
        # WAL is checkpointed into the file and deleted, so the file alone is the gallery.
        mode = conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
        if str(mode).lower() != "delete":
            raise sqlite3.OperationalError(f"journal mode stays {mode}")
        conn.execute("BEGIN EXCLUSIVE")  # nobody reads or writes it until it is gone
        tmp = new.with_name(f".{new.name}.moving")
        tmp.unlink(missing_ok=True)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
            with os.fdopen(fd, "wb") as dst, old.open("rb") as src:
                os.fchmod(dst.fileno(), PRIVATE_FILE_MODE)
                shutil.copyfileobj(src, dst)
                dst.flush()
                os.fsync(dst.fileno())
            os.link(tmp, new)  # FileExistsError if a gallery appeared there meanwhile: keep both
        finally:
            tmp.unlink(missing_ok=True)
        old.unlink()
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    for suffix in ("-wal", "-shm", "-journal"):
        old.with_name(old.name + suffix).unlink(missing_ok=True)
    for p in cache_files(old.with_name(old.name + ".index")):  # a cache that holds the vectors
        p.unlink(missing_ok=True)
