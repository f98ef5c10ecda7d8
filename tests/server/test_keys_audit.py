"""Keys are stored hashed and checked at every request; the audit log only grows."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from faceprint.errors import InvalidArgumentError
from faceprint.server.keys import KeyRing, UnknownKeyError, allows
from faceprint.server.limits import RateLimiter
from faceprint.server.problems import Problem, scrub
from faceprint.server.servicedb import ServiceDB, ServiceDBError


def test_a_key_is_stored_only_as_a_salted_hash(tmp_path: Path) -> None:
    db = ServiceDB(tmp_path / "svc" / "service.sqlite")
    ring = KeyRing(db)
    key, _ = ring.create("enrol", "door")
    key2, _ = ring.create("enrol", "door-2")
    raw = (tmp_path / "svc" / "service.sqlite").read_bytes()
    secret = key.split("_", 2)[2]
    assert secret.encode() not in raw and key.encode() not in raw
    (h1,), (h2,) = db.query("SELECT hash FROM keys ORDER BY created_at, name")
    assert h1.startswith("$argon2id$") and h1 != h2
    assert stat.S_IMODE((tmp_path / "svc" / "service.sqlite").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "svc").stat().st_mode) == 0o700
    assert ring.verify(key) is not None and ring.verify(key).name == "door"  # type: ignore[union-attr]
    assert ring.verify(key2).name == "door-2"  # type: ignore[union-attr]
    wrong = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert ring.verify(wrong) is None  # same key id, wrong secret: the cache must not vouch for it
    assert ring.verify("fpk_000000000000_" + secret) is None
    assert ring.verify("not a key") is None


def test_revocation_takes_effect_in_another_process_view(tmp_path: Path) -> None:
    path = tmp_path / "service.sqlite"
    server = KeyRing(ServiceDB(path))
    key, info = server.create("admin", "ops")
    assert server.verify(key) is not None  # now cached as verified in this "process"
    KeyRing(ServiceDB(path)).revoke(info.key_id)  # the CLI, with its own connection
    assert server.verify(key) is None
    with pytest.raises(UnknownKeyError, match="no live key"):
        KeyRing(ServiceDB(path)).revoke("ops")
    assert [k.revoked_at is not None for k in server.list(include_revoked=True)] == [True]


def test_roles_are_ranked_and_unknown_roles_refused(tmp_path: Path) -> None:
    assert allows("admin", "read") and allows("enrol", "recognise") and not allows("recognise", "enrol")
    with pytest.raises(InvalidArgumentError, match="unknown role"):
        KeyRing(ServiceDB(tmp_path / "s.sqlite")).create("root")


def test_the_audit_log_refuses_updates_and_deletes(tmp_path: Path) -> None:
    path = tmp_path / "service.sqlite"
    db = ServiceDB(path)
    db.audit("ops", "person.delete", "abc", {"faces": 2})
    conn = sqlite3.connect(path)
    for sql in ("UPDATE audit SET actor = 'x'", "DELETE FROM audit"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(sql)
    (entry,) = db.audit_log()
    assert entry["actor"] == "ops" and entry["detail"] == {"faces": 2}


def test_a_foreign_file_or_a_directory_is_not_a_service_database(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(ServiceDBError, match="something else"):
        ServiceDB(other)
    (tmp_path / "dir").mkdir()
    with pytest.raises(ServiceDBError, match="directory"):
        ServiceDB(tmp_path / "dir")
    (tmp_path / "junk").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ServiceDBError):
        ServiceDB(tmp_path / "junk")


def test_rate_limiter_refills_and_says_when_to_retry() -> None:
    rl = RateLimiter(rate=1.0, burst=2)
    rl.take("k")
    rl.take("k")
    with pytest.raises(Problem) as e:
        rl.take("k")
    assert e.value.status_code == 429 and e.value.headers["Retry-After"] == "1"
    rl.take("other")  # buckets are per key


def test_scrub_removes_server_paths() -> None:
    msg = "gallery /srv/faces/gallery.sqlite: cannot write /home/ann/x.db (see ~/.local/share/f)"
    out = scrub(msg, ["/srv/faces/gallery.sqlite"])
    assert "/srv" not in out and "/home" not in out and "~/.local" not in out
    assert scrub("AC/DC and Tom's name") == "AC/DC and Tom's name"
