"""The service's own SQLite file: API keys and the audit log (``Settings.service_db``).

Kept apart from the gallery, so one service database serves an SQLite or a PostgreSQL
gallery alike, and ``faceprint keys`` works with no gallery and no model loaded.

* ``keys(key_id, name, role, hash, created_at, last_used_at, revoked_at)``: a key is
  ``fpk_<key_id>_<secret>``; only its Argon2id hash is stored (argon2-cffi, salted, slow
  by design), so a stolen file yields no usable key. ``key_id`` (12 hex) is public: it
  finds the row without trying every hash.
* ``audit(seq, at, actor, action, target, detail)``: append-only; triggers refuse UPDATE
  and DELETE, so the log can only grow through this code.

The file is private like a gallery (0600 in a 0700 directory), in WAL mode, and every
write is one transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import FaceprintError
from ..files import make_private_dir

SCHEMA_VERSION = 1
#: ``PRAGMA application_id``: "FPSV" in ASCII, so a gallery is never mistaken for it.
APPLICATION_ID = 0x46505356

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


class ServiceDBError(FaceprintError):
    """The service database cannot be opened, read or written."""


class ServiceDB:
    """The service database at ``path``, created on first open (module doc). Safe to share
    between threads (one connection, one lock) and between processes (SQLite locking,
    ``busy_timeout`` seconds of waiting)."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.RLock()
        if self.path.is_dir():
            raise ServiceDBError(f"service database {self.path} is a directory, not a file")
        make_private_dir(self.path.parent)
        new = not self.path.exists()
        try:
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            if new:
                self.path.chmod(0o600)
            app_id = self._conn.execute("PRAGMA application_id").fetchone()[0]
            tables = self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables and app_id != APPLICATION_ID:
                raise ServiceDBError(
                    f"{self.path} is an SQLite file of something else, not a service database"
                )
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA secure_delete = ON")
            # idempotent DDL, run by every opener; executescript commits on its own
            self._conn.executescript(
                "BEGIN IMMEDIATE;" + _SCHEMA + f"PRAGMA application_id = {APPLICATION_ID};"
                f"INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');"
                "COMMIT;"
            )
        except sqlite3.DatabaseError as exc:
            raise ServiceDBError(f"cannot open service database {self.path}: {exc}") from None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: writers queue, readers go on)."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise ServiceDBError(f"service database {self.path} is busy: {exc}") from None
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return list(self._conn.execute(sql, args).fetchall())
            except sqlite3.DatabaseError as exc:
                raise ServiceDBError(f"service database {self.path}: {exc}") from None

    # -- audit ------------------------------------------------------------------------
    def audit(
        self, actor: str, action: str, target: str = "", detail: Mapping[str, Any] | None = None
    ) -> None:
        """Append one entry: ``actor`` (a key's name, or ``cli`` for ``faceprint keys``) did
        ``action`` to ``target``, at the current UTC time."""
        from ..gallery.records import now_iso

        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                (now_iso(), actor, action, target, json.dumps(dict(detail or {}), ensure_ascii=False)),
            )

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        """The last ``limit`` entries, newest first."""
        rows = self.query(
            "SELECT seq, at, actor, action, target, detail FROM audit ORDER BY seq DESC LIMIT ?", (limit,)
        )
        return [
            {"seq": s, "at": at, "actor": a, "action": ac, "target": t, "detail": json.loads(d)}
            for s, at, a, ac, t, d in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
