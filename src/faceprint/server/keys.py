"""API keys: roles, creation (shown once), verification, listing and revocation.

Roles are ranked; a key may do what its role and every lower role may:

``read`` (list people, streams and reports) < ``recognise`` (detect, verify, identify,
lookalike) < ``enrol`` (add, rename and delete people and faces) < ``admin`` (threshold,
calibration, streams).

A key is ``fpk_<key_id>_<secret>``: 12 hex of public id, 43 characters of secret
(256 bits from :mod:`secrets`). The database keeps only an Argon2id hash of the whole key
(argon2-cffi's defaults: salted, about 50 ms and 64 MiB to try one guess). Checking that
hash on every request would cost those 50 ms each time, so a process remembers, for each
key id, the SHA-256 of the key it has already verified once; the row itself is still read
on every request, so a revocation (``faceprint keys revoke`` from another process) takes
effect at the next request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..errors import FaceprintError, InvalidArgumentError
from .servicedb import ServiceDB

ROLES = ("read", "recognise", "enrol", "admin")
_KEY = re.compile(r"^fpk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
#: How often ``last_used_at`` is written for one key (seconds): per request would make
#: every read a write.
LAST_USED_EVERY_S = 60.0


class UnknownKeyError(FaceprintError):
    """No live key has that id or name (a revoked key is no longer live)."""


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidArgumentError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    return role


def allows(role: str, needed: str) -> bool:
    """Whether a key of ``role`` may do what ``needed`` may."""
    return ROLES.index(role) >= ROLES.index(needed)


@dataclass(frozen=True)
class KeyInfo:
    """A key as listed: never its secret or its hash."""

    key_id: str
    name: str
    role: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "name": self.name,
            "role": self.role,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "revoked_at": self.revoked_at,
        }


def _hasher() -> Any:
    from argon2 import PasswordHasher

    return PasswordHasher()


class KeyRing:
    """Keys in a :class:`~.servicedb.ServiceDB` (module doc)."""

    def __init__(self, db: ServiceDB) -> None:
        self.db = db
        self._verified: dict[str, bytes] = {}  # key_id -> sha256 of the key verified once
        self._last_write: dict[str, float] = {}
        self._lock = threading.Lock()
        self._ph = _hasher()

    def create(self, role: str, name: str | None = None, actor: str = "cli") -> tuple[str, KeyInfo]:
        """A new key of ``role``: returns (the key, shown this once; its info)."""
        from ..gallery.records import now_iso

        check_role(role)
        key_id = secrets.token_hex(6)
        key = f"fpk_{key_id}_{secrets.token_urlsafe(32)}"
        name = (name or f"{role}-{key_id[:6]}").strip()
        if not name or any(ord(c) < 32 for c in name) or len(name) > 100:
            raise InvalidArgumentError(f"a key name is 1-100 printable characters, got {name!r}")
        now = now_iso()
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM keys WHERE name = ? AND revoked_at IS NULL", (name,)).fetchone():
                raise InvalidArgumentError(f"a key named {name!r} exists already; pick another --name")
            conn.execute(
                "INSERT INTO keys (key_id, name, role, hash, created_at) VALUES (?, ?, ?, ?, ?)",
                (key_id, name, role, self._ph.hash(key), now),
            )
        self.db.audit(actor, "key.create", name, {"key_id": key_id, "role": role})
        return key, KeyInfo(key_id, name, role, now, None, None)

    def list(self, include_revoked: bool = False) -> list[KeyInfo]:
        rows = self.db.query(
            "SELECT key_id, name, role, created_at, last_used_at, revoked_at FROM keys "
            + ("" if include_revoked else "WHERE revoked_at IS NULL ")
            + "ORDER BY created_at, name"
        )
        return [KeyInfo(*r) for r in rows]

    def revoke(self, key_id_or_name: str, actor: str = "cli") -> KeyInfo:
        """Revoke the live key with that id or name; raises :class:`UnknownKeyError` when none."""
        from ..gallery.records import now_iso

        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT key_id, name, role, created_at, last_used_at FROM keys "
                "WHERE (key_id = ? OR name = ?) AND revoked_at IS NULL",
                (key_id_or_name, key_id_or_name),
            ).fetchone()
            if row is None:
                raise UnknownKeyError(
                    f"no live key with id or name {key_id_or_name!r} (see faceprint keys list)"
                )
            now = now_iso()
            conn.execute("UPDATE keys SET revoked_at = ? WHERE key_id = ?", (now, row[0]))
        self.db.audit(actor, "key.revoke", row[1], {"key_id": row[0]})
        with self._lock:
            self._verified.pop(row[0], None)
        return KeyInfo(row[0], row[1], row[2], row[3], row[4], now)

    def count(self) -> int:
        return int(self.db.query("SELECT count(*) FROM keys WHERE revoked_at IS NULL")[0][0])

    def verify(self, key: str) -> KeyInfo | None:
        """The live key ``key`` is, or ``None`` (malformed, unknown, revoked or wrong)."""
        m = _KEY.match(key.strip())
        if m is None:
            return None
        key_id = m.group(1)
        rows = self.db.query(
            "SELECT key_id, name, role, created_at, last_used_at, revoked_at, hash FROM keys "
            "WHERE key_id = ? AND revoked_at IS NULL",
            (key_id,),
        )
        if not rows:
            return None
        *info, stored = rows[0]
        digest = hashlib.sha256(key.strip().encode()).digest()
        with self._lock:
            known = self._verified.get(key_id)
        if known is None or not hmac.compare_digest(known, digest):
            from argon2.exceptions import VerificationError

            try:
                self._ph.verify(stored, key.strip())
            except VerificationError:
                return None
            with self._lock:
                self._verified[key_id] = digest
        self._touch(key_id)
        return KeyInfo(*info)

    def _touch(self, key_id: str) -> None:
        """Record the use, at most once per :data:`LAST_USED_EVERY_S` per key and process."""
        from ..gallery.records import now_iso

        now = time.monotonic()
        with self._lock:
            if now - self._last_write.get(key_id, -1e9) < LAST_USED_EVERY_S:
                return
            self._last_write[key_id] = now
        try:
            with self.db.transaction() as conn:
                conn.execute("UPDATE keys SET last_used_at = ? WHERE key_id = ?", (now_iso(), key_id))
        except Exception:  # a busy database must not fail the request it serves
            with self._lock:
                self._last_write.pop(key_id, None)
