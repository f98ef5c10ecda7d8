"""One SQLite gallery file: its layout, opening it safely, and its transactions.

Why a module of its own: everything that keeps a user's gallery file from being damaged
or mistaken -- checking that a file is ours before touching it, WAL, read-only places,
the transaction discipline -- is separate from what the store reads and writes
(:class:`~.sqlite.SqliteStore`, built on :class:`SqliteFile`).

Layout (schema version :data:`SCHEMA_VERSION`; the file's ``application_id`` header field
is :data:`APPLICATION_ID`, so a faceprint gallery can be told from any other SQLite file):

* ``meta(key, value)``: ``schema_version``, ``model`` (``name@version``), ``dim`` and
  ``generation``, the counter bumped in the same transaction as every write so a search
  index built from a :class:`~.records.Snapshot` knows when it is stale;
* ``settings(key, value)``: per-gallery settings (e.g. ``threshold``, ``far``);
* ``people(id, name UNIQUE, metadata JSON, created_at)``;
* ``faces(id, face_id UNIQUE, person_id -> people ON DELETE CASCADE, model, vector BLOB of
  little-endian float32, image_sha256, x1, y1, x2, y2, score, added_at)``.

Why it is safe with data a user cannot lose:

* every write is ONE ``BEGIN IMMEDIATE`` transaction (:meth:`SqliteFile._write`): a crash
  (even SIGKILL) leaves the gallery as before or after the call, never half-written;
* ``busy_timeout``: a second process that wants to write waits for the first instead of
  failing, so two processes enrolling at once lose nothing;
* a file that is not SQLite, a foreign SQLite schema or a newer schema version raises
  :class:`~faceprint.errors.GalleryError` and is never modified, let alone recreated;
* a file that does not exist yet is created by the first write only, so reading a
  gallery that was never written (or sits in a read-only place) creates nothing.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import GalleryError
from .records import pause_before_commit

SCHEMA_VERSION = 1
#: ``PRAGMA application_id`` of a faceprint gallery: "FPRG" in ASCII.
APPLICATION_ID = 0x46505247
_HEADER = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY,
    face_id TEXT NOT NULL UNIQUE,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    model TEXT NOT NULL,
    vector BLOB NOT NULL,
    image_sha256 TEXT,
    x1 REAL, y1 REAL, x2 REAL, y2 REAL,
    score REAL,
    added_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS faces_person ON faces(person_id);
CREATE INDEX IF NOT EXISTS faces_sha ON faces(person_id, image_sha256);
"""


class SqliteFile:
    """The SQLite gallery file at ``path``, opened on first need (module doc).

    ``busy_timeout`` (seconds) is how long a write waits for another process's write
    lock before failing with a clear :class:`GalleryError`.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 60.0) -> None:
        self.path = Path(path).expanduser()
        self.location = str(self.path)
        self.busy_timeout = float(busy_timeout)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._readonly = False
        if self.path.is_dir():
            raise GalleryError(f"gallery {self.path}: expected an SQLite file, found a directory")
        if self.path.exists():
            self._open()

    # -- opening ------------------------------------------------------------------------
    def _check_header(self) -> None:
        try:
            with self.path.open("rb") as fh:
                head = fh.read(len(_HEADER))
        except OSError as exc:
            raise GalleryError(f"gallery {self.path}: cannot read it ({exc.strerror})") from None
        if head and head != _HEADER:
            raise GalleryError(
                f"gallery {self.path}: expected an SQLite database, found other data "
                f"(first bytes {head[:8]!r}); the file was left untouched"
            )

    def _connect(self, readonly: bool, immutable: bool = False) -> sqlite3.Connection:
        if readonly:
            query = "mode=ro&immutable=1" if immutable else "mode=ro"
            target, uri = f"{self.path.resolve().as_uri()}?{query}", True
        else:
            target, uri = str(self.path), False
        conn = sqlite3.connect(
            target, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False, uri=uri
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _open(self) -> None:
        """Open (creating the file only when it does not exist), check that it is ours,
        then switch to WAL and create the schema when it is new."""
        existed = self.path.exists()
        if existed:
            self._check_header()
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise GalleryError(f"gallery {self.path}: cannot create its directory ({exc})") from None
        readonly = False
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connect(readonly=False)
            tables, app_id = self._inspect(conn)
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            msg = str(exc)
            if not existed or not any(w in msg for w in ("readonly", "read-only", "unable to open")):
                raise self._error("open", exc) from None
            # A WAL file in a read-only directory cannot create its -wal/-shm files: read
            # it read-only, and as immutable when even that needs them (nobody can write
            # there anyway, so nothing changes under the reader).
            conn, tables, app_id = self._open_readonly()
            readonly = True
        if tables and ("meta" not in tables or app_id != APPLICATION_ID):
            conn.close()
            raise GalleryError(
                f"gallery {self.path}: expected a faceprint gallery, found another SQLite database "
                f"(tables: {', '.join(sorted(tables)[:5])}); the file was left untouched"
            )
        if tables:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else -1
            if version != SCHEMA_VERSION:
                conn.close()
                who = (
                    "a newer faceprint; upgrade faceprint" if version > SCHEMA_VERSION else "an unknown tool"
                )
                raise GalleryError(
                    f"gallery {self.path}: schema version {version}, this faceprint reads version "
                    f"{SCHEMA_VERSION} (written by {who}); the file was left untouched"
                )
        self._conn, self._readonly = conn, readonly
        if not readonly:
            try:
                self._init_schema(conn)
            except sqlite3.DatabaseError as exc:
                # e.g. a read-only file that SQLite opened: keep reading, refuse writes later
                if "readonly" not in str(exc) and "read-only" not in str(exc):
                    raise self._error("initialise", exc) from None
                self._readonly = True

    def _open_readonly(self) -> tuple[sqlite3.Connection, set[str], int]:
        last: sqlite3.Error | None = None
        for immutable in (False, True):
            try:
                conn = self._connect(readonly=True, immutable=immutable)
                tables, app_id = self._inspect(conn)
                return conn, tables, app_id
            except sqlite3.DatabaseError as exc:
                last = exc
        assert last is not None
        raise self._error("open", last) from None

    def _inspect(self, conn: sqlite3.Connection) -> tuple[set[str], int]:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        return {str(r[0]) for r in rows}, app_id

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a committed enrolment survives a power cut too, not only a process crash.
        conn.execute("PRAGMA synchronous = FULL")
        if conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'meta'").fetchone()[0]:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            # one statement at a time: executescript() would COMMIT the open transaction
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.executemany(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                [("schema_version", str(SCHEMA_VERSION)), ("generation", "0")],
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _error(self, action: str, exc: sqlite3.Error) -> GalleryError:
        msg = str(exc)
        if "readonly" in msg or "read-only" in msg:
            return GalleryError(
                f"gallery {self.path}: cannot {action}: the file or its directory is read-only ({msg})"
            )
        if "locked" in msg or "busy" in msg:
            return GalleryError(
                f"gallery {self.path}: cannot {action}: another process held its write lock for more "
                f"than {self.busy_timeout:.0f} s ({msg})"
            )
        if "not a database" in msg or "malformed" in msg or "corrupt" in msg:
            return GalleryError(f"gallery {self.path}: the file is corrupt ({msg}); it was left untouched")
        hint = " (is its directory missing or read-only?)" if "unable to open" in msg else ""
        return GalleryError(f"gallery {self.path}: cannot {action} ({msg}){hint}")

    # -- transactions ---------------------------------------------------------------------
    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction that also bumps ``generation``."""
        with self._lock:
            if self._conn is None:
                self._open()
            conn = self._conn
            assert conn is not None
            if self._readonly:
                raise GalleryError(
                    f"gallery {self.path}: cannot {action}: the file or its directory is read-only"
                )
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error(action, exc) from None
            try:
                yield conn
                conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
                pause_before_commit(conn, "faces")
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._error(action, exc) from None
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection | None]:
        """A consistent read transaction; ``None`` while the file does not exist."""
        with self._lock:
            if self._conn is None and self.path.exists():
                self._open()
            conn = self._conn
            if conn is None:
                yield None
                return
            try:
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._error("read", exc) from None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
