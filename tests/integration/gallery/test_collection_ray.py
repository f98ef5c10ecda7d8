"""Indexing on a local Ray runtime (``faceprint index --ray``, extra ``[distributed]``):
the same faces as without Ray, on SQLite (driver writes) and PostgreSQL (actors write),
a worker killed mid-run, and Ray addresses that do not answer."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from faceprint.collections.collection import Collection
from faceprint.collections.distributed import RayError, start
from faceprint.errors import InvalidArgumentError
from faceprint.gallery import open_gallery
from faceprint.recognizer import Recognizer

from .test_collection import _photos
from .test_gallery_cli import one_error, run_cli

pytest.importorskip("ray", reason="faceprint[distributed] is not installed (the dev extra includes it)")


def _faces(db: Path) -> tuple[int, list[tuple[object, ...]]]:
    with closing(sqlite3.connect(db)) as c:
        if c.execute("SELECT count(*) FROM sqlite_master WHERE name = 'photos'").fetchone()[0] == 0:
            return 0, []  # not indexed yet
        photos = c.execute("SELECT count(*) FROM photos WHERE error IS NULL").fetchone()[0]
        faces = c.execute("SELECT image_sha256, face_index, round(x1), round(y1) FROM photo_faces").fetchall()
    return int(photos), sorted(faces)


def _actor_pids() -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(ln.split()[0]) for ln in out.splitlines() if "IndexActor" in ln and "ps -eo" not in ln]


def test_ray_with_a_worker_killed_mid_run_indexes_every_photo_once(tmp_path: Path) -> None:
    """Two actors on a local runtime (2 CPUs); one is SIGKILLed once some batches are
    stored and before all are. The run still ends with exit 0, every photo is stored
    once, and the faces equal an in-process run's."""
    photos = _photos(
        tmp_path / "p",
        people=(
            "John_Bolton",
            "Jennifer_Lopez",
            "Paul_Wolfowitz",
            "Ricardo_Lagos",
            "Zhu_Rongji",
            "John_Snow",
        ),
    )
    n = len(photos)
    clean, ray_db = tmp_path / "clean.sqlite", tmp_path / "ray.sqlite"
    assert run_cli("index", str(tmp_path / "p"), "--gallery", str(clean)).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "faceprint.cli.main", "index", "--ray", str(tmp_path / "p"), "--workers", "2",
         "--gallery", str(ray_db), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ},
    )  # fmt: skip
    killed, stored_then = None, -1
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            pids = _actor_pids()
            stored = _faces(ray_db)[0] if ray_db.exists() else 0
            if pids and 0 < stored < n:
                killed, stored_then = pids[0], stored
                os.kill(killed, signal.SIGKILL)
                break
            time.sleep(0.05)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed is not None, "no actor was seen while the run was under way"
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["indexed"] == n and summary["failed"] == [], summary
    assert 0 < stored_then < n
    assert _faces(ray_db) == _faces(clean)  # every photo once, the same faces


def test_ray_on_postgres_actors_write_and_match_in_process(recognizer: Recognizer, tmp_path: Path) -> None:
    from .pg import shared_server

    _photos(tmp_path / "p", people=("John_Bolton", "Jennifer_Lopez"))
    url = shared_server().create_database()
    with open_gallery(url, recognizer) as g:
        col = Collection(g)
        s = col.index([tmp_path / "p"], ray="local", workers=2)
        assert not s.failed and s.indexed > 0
        ray_faces = col.store.faces()
        again = col.index([tmp_path / "p"], ray="local", workers=2)
        assert (again.indexed, again.already) == (0, s.indexed)
    with open_gallery(tmp_path / "plain.sqlite", recognizer) as g:
        col = Collection(g)
        plain = col.index([tmp_path / "p"])
        plain_faces = col.store.faces()
    assert (s.indexed, s.faces, s.rejected) == (plain.indexed, plain.faces, plain.rejected)
    assert sorted(ray_faces.image_sha256) == sorted(plain_faces.image_sha256)


def test_ray_addresses_that_do_not_answer_fail_fast(tmp_path: Path) -> None:
    t = time.monotonic()
    with pytest.raises(RayError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:1"):
        start("127.0.0.1:1")
    assert time.monotonic() - t < 15
    with pytest.raises(InvalidArgumentError, match="expected HOST:PORT"):
        start("http://example:80")
    _photos(tmp_path / "p", people=("John_Bolton",), take=1)
    res = run_cli(
        "index", str(tmp_path / "p"), "--ray", "127.0.0.1:1", "--gallery", str(tmp_path / "g.sqlite")
    )
    one_error(res, "cannot reach the Ray cluster at 127.0.0.1:1")
