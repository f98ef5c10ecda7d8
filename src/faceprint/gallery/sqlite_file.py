"""One SQLite gallery file: its layout, opening it safely, and its transactions.

Why a module of its own: everything that keeps a user's gallery file from being damaged
or mistaken -- checking that a file is ours before touching it, WAL, read-only places,
the transaction discipline -- is separate from what the store reads and writes
(:class:`~.sqlite.SqliteStore`, built on :class:`SqliteFile`).

Layout (schema version :data:`SCHEMA_VERSION`; the file's ``application_id`` header field
is :data:`APPLICATION_ID`, so a faceprint gallery can be told from any other SQLite file):

* ``meta(key, value)``: ``schema_version``, ``model`` (the model id,
  ``network@version+<sha8>``; ids of older releases are upgraded on open), ``dim`` and
  ``generation``, the counter bumped in the same transaction as every write so a search
  index built from a :class:`~.records.Snapshot` knows when it is stale;
* ``settings(key, value)``: per-gallery settings (e.g. ``threshold``, ``far``);
* ``people(id, uid UNIQUE, name UNIQUE, metadata JSON, created_at)``: ``uid`` is the
  person's stable opaque id (:attr:`~.records.Person.id`, uuid4 hex; ``id`` is SQLite's
  internal row id, never shown);
* ``faces(id, face_id UNIQUE, person_id -> people ON DELETE CASCADE, model, vector BLOB of
  little-endian float32, image_sha256, x1, y1, x2, y2, score, added_at)``.

Schema versions: 1 had no ``people.uid``. A version-1 file is upgraded in place when
opened where it can be written (:meth:`SqliteFile._migrate_schema`: the column added, a
fresh uuid4 hex for every person, its unique index, the version bumped, all in one
transaction), as older model ids are (:meth:`SqliteFile._migrate_model_ids`); a
version-1 file that cannot be written is refused with the reason, untouched.

Why it is safe with data a user cannot lose:

* every write is ONE ``BEGIN IMMEDIATE`` transaction (:meth:`SqliteFile._write`): a crash
  (even SIGKILL) leaves the gallery as before or after the call, never half-written;
* ``busy_timeout``: a second process that wants to write waits for the first instead of
  failing, so two processes enrolling at once lose nothing;
* a file that is not SQLite, a foreign SQLite schema or a newer schema version raises
  :class:`~faceprint.errors.GalleryError` and is never modified, let alone recreated;
* a file that does not exist yet is created by the first write only, so reading a
  gallery that was never written (or sits in a read-only place) creates nothing;
* :meth:`SqliteFile.transaction` groups several writes (an import, a threshold with its
  calibration) into one transaction, or several reads (an export) into one snapshot.

Why it keeps biometric data private:

* a new gallery file is created 0600 (and a directory created for it 0700) whatever the
  umask, *before* SQLite opens it: SQLite gives ``-wal`` and ``-shm`` the main file's mode;
* ``secure_delete`` is on for every connection (some SQLite builds default to off), so
  deleted rows are overwritten with zeros, not left in free pages;
* :meth:`SqliteFile._erase_wal` checkpoints and truncates the WAL after a removal, so the
  removed rows' older copies in the WAL are gone too.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from ..errors import GalleryError, GalleryUnavailableError
from ..files import PRIVATE_FILE_MODE, make_private_dir
from .records import new_person_id, pause_before_commit, upgrade_calibration, upgrade_model_id

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
#: Older schema versions this faceprint upgrades in place on open (module doc).
_UPGRADABLE = frozenset({1})
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
    created_at TEXT NOT NULL,
    uid TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS people_uid ON people(uid);
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
        self._tx: str | None = None  # "write" or "read" inside transaction()
        self._erase_pending = False
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
        conn.execute("PRAGMA secure_delete = ON")  # deleted rows are zeroed, not left in free pages
        return conn

    def _open(self) -> None:
        """Open (creating the file only when it does not exist), check that it is ours,
        then switch to WAL and create the schema when it is new."""
        existed = self.path.exists()
        if existed:
            self._check_header()
        else:
            self._create_private()
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
        version = SCHEMA_VERSION
        if tables:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else -1
            if version != SCHEMA_VERSION and version not in _UPGRADABLE:
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
        if version != SCHEMA_VERSION:
            self._upgrade(conn, version)
        if tables and not self._readonly:
            try:
                self._migrate_model_ids(conn)
            except sqlite3.DatabaseError as exc:
                raise self._error("upgrade its model ids", exc) from None

    def _upgrade(self, conn: sqlite3.Connection, version: int) -> None:
        """Bring a file of the older schema ``version`` to :data:`SCHEMA_VERSION`, or close
        it and say why it cannot be (read-only: nothing can be written to it)."""
        try:
            if self._readonly:
                raise sqlite3.OperationalError("attempt to write a readonly database")
            self._migrate_schema(conn)
        except sqlite3.DatabaseError as exc:
            self._conn = None
            conn.close()
            err = str(self._error(f"upgrade it from schema version {version} to {SCHEMA_VERSION}", exc))
            hint = " (open it once where it can be written to upgrade it)" if "read-only" in err else ""
            raise GalleryError(f"{err}; it was left as it was{hint}") from None
        except BaseException:
            self._conn = None
            conn.close()
            raise

    def _migrate_schema(self, conn: sqlite3.Connection) -> None:
        """Upgrade a version-1 file in place, in ONE transaction: add ``people.uid``, give
        every person a fresh uuid4 hex (:func:`~.records.new_person_id`), index it unique
        and bump the schema version (``meta`` and ``user_version``). Another process that
        upgraded it meanwhile (seen under the write lock) leaves nothing to do."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is not None and int(row[0]) == 1:
                conn.execute("ALTER TABLE people ADD COLUMN uid TEXT NOT NULL DEFAULT ''")
                ids = [r[0] for r in conn.execute("SELECT id FROM people").fetchall()]
                conn.executemany(
                    "UPDATE people SET uid = ? WHERE id = ?", [(new_person_id(), i) for i in ids]
                )
                conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS people_uid ON people(uid)")
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                log.info("gallery %s: upgraded schema 1 to %d (person ids)", self.path, SCHEMA_VERSION)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _migrate_model_ids(self, conn: sqlite3.Connection) -> None:
        """Rewrite the model ids an older faceprint stored (``name@version``) in their current
        form (:func:`~.records.upgrade_model_id`): the bound model, every face's, and the
        calibration record's, once, in one transaction. A read-only file keeps its old ids."""
        row = conn.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
        if row is None or upgrade_model_id(str(row[0])) is None:
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()  # under the lock
            new = upgrade_model_id(str(row[0])) if row else None
            if new is not None:
                conn.execute("UPDATE meta SET value = ? WHERE key = 'model'", (new,))
                for (old,) in conn.execute("SELECT DISTINCT model FROM faces").fetchall():
                    up = upgrade_model_id(str(old))
                    if up is not None:
                        conn.execute("UPDATE faces SET model = ? WHERE model = ?", (up, old))
                cal = conn.execute("SELECT value FROM settings WHERE key = 'calibration'").fetchone()
                cal_new = upgrade_calibration(str(cal[0])) if cal else None
                if cal_new is not None:
                    conn.execute("UPDATE settings SET value = ? WHERE key = 'calibration'", (cal_new,))
                log.info("gallery %s: upgraded model id %s to %s", self.path, row[0] if row else "?", new)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _create_private(self) -> None:
        """Create the empty gallery file 0600 (its missing directories 0700) whatever the
        umask; SQLite then gives ``-wal`` and ``-shm`` the same mode."""
        try:
            make_private_dir(self.path.parent)
        except OSError as exc:
            raise GalleryError(f"gallery {self.path}: cannot create its directory ({exc})") from None
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        except FileExistsError:  # another process created it meanwhile: SQLite takes it from here
            return
        except OSError as exc:
            raise GalleryError(f"gallery {self.path}: cannot create it ({exc.strerror or exc})") from None
        try:
            os.fchmod(fd, PRIVATE_FILE_MODE)
        finally:
            os.close(fd)

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
        try:
            conn.execute("BEGIN IMMEDIATE")
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
            return GalleryUnavailableError(
                f"gallery {self.path}: cannot {action}: another process held its write lock for more "
                f"than {self.busy_timeout:.0f} s ({msg})"
            )
        if "not a database" in msg or "malformed" in msg or "corrupt" in msg:
            return GalleryError(f"gallery {self.path}: the file is corrupt ({msg}); it was left untouched")
        hint = " (is its directory missing or read-only?)" if "unable to open" in msg else ""
        return GalleryError(f"gallery {self.path}: cannot {action} ({msg}){hint}")

    # -- transactions ---------------------------------------------------------------------
    @contextmanager
    def transaction(self, readonly: bool = False) -> Iterator[None]:
        """Make every store call inside this block one transaction (see
        :meth:`~.records.Store.transaction`): writes all or nothing, with one generation
        bump; ``readonly``: reads from one snapshot, writes refused. A nested call joins
        the open transaction."""
        with self._lock:
            if self._tx is not None:
                yield
                return
            block: AbstractContextManager[object] = self._read() if readonly else self._write("write")
            with block:
                try:
                    self._tx = "read" if readonly else "write"
                    yield
                finally:
                    self._tx = None
            if self._erase_pending:
                self._erase_wal()

    @contextmanager
    def _write(self, action: str, bump: bool = True) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction that also bumps ``generation`` (unless
        ``bump`` is False: writes that change no person or face, such as a photo
        collection's tables, must not make every search index stale); inside
        :meth:`transaction`, a savepoint of it instead."""
        with self._lock:
            if self._tx is not None:
                with self._savepoint(action) as inner:
                    yield inner
                return
            if self._conn is None:
                self._open()
            conn = self._conn
            assert conn is not None
            if self._readonly:
                raise GalleryError(
                    f"gallery {self.path}: cannot {action}: the file or its directory is read-only"
                )
            self._drop_stale(conn)
            try:
                # BEGIN inside the try: a Ctrl-C raised as soon as it returns is rolled back here
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as exc:
                    raise self._error(action, exc) from None
                yield conn
                if bump:
                    conn.execute(
                        "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
                    )
                pause_before_commit(conn, "faces")
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._error(action, exc) from None
                raise

    def _drop_stale(self, conn: sqlite3.Connection) -> None:
        """Roll back a transaction nobody owns before starting one. Only a KeyboardInterrupt
        raised in the few bytecodes between a context manager's ``BEGIN`` and the code that
        would have ended it (inside ``contextlib``'s ``__enter__``) leaves one: called with no
        transaction of ours open (``_tx`` is None, lock held), so it cannot be a live one.
        Without this, Ctrl-C during an enrolment made the next read fail with "cannot start
        a transaction within a transaction" and the uncommitted person still held the write
        lock."""
        if conn.in_transaction:
            log.debug("gallery %s: rolling back a transaction an interrupt left open", self.path)
            conn.execute("ROLLBACK")

    @contextmanager
    def _savepoint(self, action: str) -> Iterator[sqlite3.Connection]:
        """A write inside :meth:`transaction`: undone alone when it fails."""
        conn = self._conn
        if self._tx != "write" or conn is None:
            raise GalleryError(f"gallery {self.path}: cannot {action} inside a read-only transaction")
        conn.execute("SAVEPOINT nested")
        try:
            yield conn
            conn.execute("RELEASE nested")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK TO nested")
                conn.execute("RELEASE nested")
            if isinstance(exc, sqlite3.Error):
                raise self._error(action, exc) from None
            raise

    def _erase_wal(self) -> None:
        """Checkpoint the WAL into the file and truncate it to zero bytes, so rows just
        deleted (zeroed by ``secure_delete``) leave no older copy in the WAL. Waits up to
        ``busy_timeout`` for other processes' readers; if they still hold it, says so."""
        with self._lock:
            if self._tx is not None:  # inside transaction(): once it has committed
                self._erase_pending = True
                return
            self._erase_pending = False
            if self._conn is None:
                return
            try:
                busy, _, _ = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.Error as exc:
                busy, reason = 1, str(exc)
            else:
                reason = "another process is reading it"
            if busy:
                log.warning(
                    "gallery %s: could not truncate its WAL (%s): removed faces stay in %s-wal until "
                    "the next removal or until every process has closed the gallery",
                    self.path, reason, self.path.name,
                )  # fmt: skip

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection | None]:
        """A consistent read transaction; ``None`` while the file does not exist. Inside
        :meth:`transaction`, that transaction."""
        with self._lock:
            if self._tx is not None:
                yield self._conn
                return
            if self._conn is None and self.path.exists():
                self._open()
            conn = self._conn
            if conn is None:
                yield None
                return
            self._drop_stale(conn)
            try:
                try:
                    conn.execute("BEGIN")  # inside the try, as in _write
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
