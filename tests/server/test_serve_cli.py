"""``faceprint keys create|list|revoke`` and ``faceprint serve``'s refusals and stops, run as
the console command: results on stdout, one ``error:`` line on stderr, exit 1 (an error) or
2 (a usage error), never a traceback."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import stat
import subprocess
import time
import uuid
from contextlib import closing
from pathlib import Path

import httpx
import numpy as np
from tests.server.real import RealServer, run_cli

KEY = re.compile(r"fpk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


def one_error_line(res: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """The one ``error:`` line of a failed command (exit ``code``, no traceback)."""
    assert res.returncode == code, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    db = tmp_path / "svc" / "service.sqlite"
    made = run_cli(
        "keys", "create", "--role", "enrol", "--name", "door camera", "--service-db", str(db), home=tmp_path
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert made.stdout == key + "\n" and KEY.fullmatch(key), made.stdout  # the key, alone, once
    assert key not in made.stderr and "shown only now" in made.stderr
    key_id = key.split("_")[1]
    other = run_cli("keys", "create", "--role", "read", "--service-db", str(db), home=tmp_path)
    assert other.returncode == 0, other.stderr
    other_id = other.stdout.strip().split("_")[1]
    assert stat.S_IMODE(db.stat().st_mode) == 0o600  # a private file, like a gallery

    with closing(sqlite3.connect(db)) as conn:
        hashes = [h for (h,) in conn.execute("SELECT hash FROM keys")]
    assert len(hashes) == 2 and all(h.startswith("$argon2id$") for h in hashes)
    secrets = [
        key,
        key.split("_", 2)[2],
        other.stdout.strip(),
        other.stdout.strip().split("_", 2)[2],
        *hashes,
    ]

    table = run_cli("keys", "list", "--service-db", str(db), home=tmp_path)
    listed = run_cli("keys", "list", "--json", "--service-db", str(db), home=tmp_path)
    for res in (table, listed):
        assert res.returncode == 0, res.stderr
        for s in secrets:
            assert s not in res.stdout and s not in res.stderr
        assert "argon2" not in res.stdout
    assert "door camera" in table.stdout and key_id in table.stdout and "never" in table.stdout
    rows = json.loads(listed.stdout)
    assert {(r["key_id"], r["name"], r["role"]) for r in rows} == {
        (key_id, "door camera", "enrol"),
        (other_id, f"read-{other_id[:6]}", "read"),
    }
    assert set(rows[0]) == {"key_id", "name", "role", "created_at", "last_used_at", "revoked_at"}

    # revoke by name, then by id; a revoked key is gone from the list, shown with --all
    res = run_cli("keys", "revoke", "door camera", "--service-db", str(db), home=tmp_path)
    assert res.returncode == 0 and key_id in res.stderr, res.stderr
    res = run_cli("keys", "revoke", other_id, "--service-db", str(db), home=tmp_path)
    assert res.returncode == 0 and other_id in res.stderr, res.stderr
    assert json.loads(run_cli("keys", "list", "--json", "--service-db", str(db), home=tmp_path).stdout) == []
    every = json.loads(
        run_cli("keys", "list", "--all", "--json", "--service-db", str(db), home=tmp_path).stdout
    )
    assert len(every) == 2 and all(r["revoked_at"] for r in every)
    again = run_cli("keys", "revoke", "door camera", "--service-db", str(db), home=tmp_path)
    one_error_line(again, 1, "no live key", "door camera")

    with closing(sqlite3.connect(db)) as conn:
        actions = [a for (a,) in conn.execute("SELECT action FROM audit ORDER BY seq")]
    assert actions == ["key.create", "key.create", "key.revoke", "key.revoke"]


def test_keys_bad_role_and_bad_service_db(tmp_path: Path) -> None:
    db = tmp_path / "service.sqlite"
    res = run_cli("keys", "create", "--role", "root", "--service-db", str(db), home=tmp_path)
    one_error_line(res, 2, "unknown role 'root'", "read, recognise, enrol, admin")
    assert res.stdout == "" and not db.exists()  # nothing printed, nothing created
    folder = tmp_path / "a-folder"
    folder.mkdir()
    for args in (("create", "--role", "admin"), ("list",), ("revoke", "x")):
        res = run_cli("keys", *args, "--service-db", str(folder), home=tmp_path)
        one_error_line(res, 1, "is a directory")
        assert res.stdout == ""
    assert list(folder.iterdir()) == []


def test_serve_refuses_a_network_address_without_a_key(tmp_path: Path) -> None:
    db = tmp_path / "service.sqlite"
    res = run_cli(
        "serve",
        "--host",
        "0.0.0.0",
        "--service-db",
        str(db),
        "--gallery",
        str(tmp_path / "g.sqlite"),
        home=tmp_path,
    )
    one_error_line(res, 1, "refusing to listen on 0.0.0.0 with no API key", "faceprint keys create")
    # a revoked key is no key
    made = run_cli(
        "keys", "create", "--role", "admin", "--name", "gone", "--service-db", str(db), home=tmp_path
    )
    assert run_cli("keys", "revoke", "gone", "--service-db", str(db), home=tmp_path).returncode == 0
    res = run_cli("serve", "--host", "0.0.0.0", "--service-db", str(db), home=tmp_path)
    one_error_line(res, 1, "refusing to listen on 0.0.0.0")
    assert made.stdout.strip() not in res.stderr
    assert not (tmp_path / "g.sqlite").exists()


def _real_gallery(path: Path) -> bytes:
    """A small valid SQLite gallery at ``path`` (50 people, random unit vectors); its bytes."""
    from faceprint.gallery.records import FaceRecord
    from faceprint.gallery.sqlite import SqliteStore
    from faceprint.types import Box

    store = SqliteStore(path)
    vecs = np.random.default_rng(0).normal(size=(50, 128)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    for i, v in enumerate(vecs):
        face = FaceRecord(uuid.uuid4().hex, "", v, "dlib@resnet_v1+55533b28", f"s{i}", Box(1, 2, 30, 40), 0.9)
        store.add_faces(f"person {i}", [face])
    store.close()
    return path.read_bytes()


def test_serve_refuses_a_bad_gallery_or_service_db_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "service.sqlite"
    folder = tmp_path / "folder"
    folder.mkdir()
    text = tmp_path / "notes.sqlite"
    text.write_text("not a gallery\n")
    good = _real_gallery(tmp_path / "good.sqlite")
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(good[: len(good) // 3] + b"\x00garbage" * 500)
    cut = tmp_path / "cut.sqlite"
    cut.write_bytes(good[: len(good) // 2])
    cases = [
        (folder, "found a directory"),
        (text, "expected an SQLite database"),
        (corrupt, "corrupt"),
        (cut, "corrupt"),
    ]
    for path, needle in cases:
        before = path.read_bytes() if path.is_file() else None
        res = run_cli("serve", "--gallery", str(path), "--service-db", str(db), home=tmp_path)
        one_error_line(res, 1, needle)
        if before is not None:
            assert path.read_bytes() == before, f"{path.name} was changed"
    res = run_cli("serve", "--service-db", str(folder), home=tmp_path)
    one_error_line(res, 1, "is a directory")
    # an unreachable PostgreSQL: its URL shown without the password
    res = run_cli(
        "serve",
        "--gallery",
        "postgresql://fp:s3cret-pw@127.0.0.1:1/gallery",
        "--service-db",
        str(db),
        home=tmp_path,
    )
    line = one_error_line(res, 1, "cannot reach PostgreSQL")
    assert "s3cret-pw" not in line


def test_serve_refuses_an_address_it_cannot_listen_on(tmp_path: Path) -> None:
    db = tmp_path / "service.sqlite"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = run_cli(
            "serve",
            "--port",
            str(port),
            "--service-db",
            str(db),
            "--gallery",
            str(tmp_path / "g.sqlite"),
            home=tmp_path,
        )
        one_error_line(res, 1, f"cannot listen on 127.0.0.1:{port}", "in use", "--port")
    assert run_cli("keys", "create", "--role", "read", "--service-db", str(db), home=tmp_path).returncode == 0
    res = run_cli("serve", "--host", "no-such-host.invalid", "--service-db", str(db), home=tmp_path)
    one_error_line(res, 1, "cannot listen on no-such-host.invalid")


def test_ctrl_c_stops_serve_cleanly_while_loading_and_when_ready(tmp_path: Path) -> None:
    """SIGINT, as a terminal's Ctrl-C sends it, while the models load (a process that exits
    then was aborted by the C++ runtime) and once ready: exit 0 or 130, no traceback, and
    the port is free again."""
    server = RealServer(tmp_path, str(tmp_path / "g.sqlite"))
    try:
        during_load = 0
        for _ in range(3):
            server.start(wait=False)
            server.wait_for_log(r"faceprint serve: http://127\.0\.0\.1:\d+/")
            deadline = time.monotonic() + 60
            status = None
            while status is None and time.monotonic() < deadline:
                try:  # the first answer: 503 while the models load, 200 once they are in
                    status = httpx.get(f"{server.url}/v1/ready", timeout=0.5).status_code
                except httpx.HTTPError:
                    time.sleep(0.02)
            during_load += status == 503
            rc = server.stop()
            log = server.stderr()
            assert rc in (0, 130), (rc, log)
            assert "Traceback" not in log and "terminate called" not in log and "Error" not in log, log
            if during_load:
                break
        assert during_load, "never caught the models loading"

        server.start()
        assert server.stop() in (0, 130)
        assert "Traceback" not in server.stderr()
        with socket.socket() as again:  # nothing left listening
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            again.bind(("127.0.0.1", server.port))
    finally:
        server.close()
