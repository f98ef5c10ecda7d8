"""Durability with real processes and real files: SIGKILL inside an enrolment's transaction
(SQLite and PostgreSQL), two writers at once, a corrupt file, a read-only directory."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import IO

import pytest

from conftest import LFW, need
from faceprint.errors import GalleryError
from faceprint.gallery import open_gallery, open_store
from faceprint.gallery.gallery import Gallery
from faceprint.gallery.sqlite import SqliteStore
from faceprint.recognizer import Recognizer

from .conftest import KNN

#: The child: one ``enroll`` call (one transaction) per person, a line per finished call,
#: and, after each call, the persisted HNSW index refreshed like a searching process would.
CHILD = r"""
import json, sys
from faceprint.gallery import open_gallery
from faceprint.gallery.index import ann_available, open_index
g = open_gallery(sys.argv[1])
for name, paths in json.loads(sys.argv[2]):
    rep = g.enroll(name, paths, face="largest")
    print(json.dumps({"name": name, "added": len(rep.added)}), flush=True)
    if ann_available():
        open_index(g.store.snapshot(), g.store.index_path, kind="ann")
"""


def lfw_plan(images: int, per_person: int, skip: int = 0) -> list[tuple[str, list[str]]]:
    """People of LFW dev with at least 2 photos, up to ``per_person`` each, ``images`` in all."""
    root = need(LFW)
    plan: list[tuple[str, list[str]]] = []
    total = 0
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        photos = sorted(str(p) for p in d.glob("*.jpg"))[:per_person]
        if len(photos) < 2:
            continue
        if skip > 0:
            skip -= 1
            continue
        plan.append((d.name, photos))
        total += len(photos)
        if total >= images:
            break
    return plan


def child(gallery: Path, plan: list[tuple[str, list[str]]]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(gallery), json.dumps(plan)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


#: The killed child: one ``enroll`` call (one transaction) with the test hook on, so it
#: stops inside the transaction, after its writes and before COMMIT, and says so on stderr.
KILLED_CHILD = r"""
import json, logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
from faceprint.gallery import open_gallery, open_store
name, paths = json.loads(sys.argv[2])
rep = open_gallery(sys.argv[1]).enroll(name, paths, face="largest")
print("committed", len(rep.added), flush=True)
"""
HOOK = re.compile(r"test hook: (\d+) faces in the open transaction; sleeping")


def _wait_for(stream: IO[str], pattern: re.Pattern[str], timeout: float) -> tuple[re.Match[str] | None, str]:
    """The first line of ``stream`` matching ``pattern`` (read on a thread, so a child that
    hangs cannot hang the test; ``None`` at the end of the stream or after ``timeout``), and
    everything read up to it."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for ln in stream:
            lines.put(ln)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None, "".join(seen)
        if line is None:
            return None, "".join(seen)
        seen.append(line)
        m = pattern.search(line)
        if m:
            return m, "".join(seen)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigkill_inside_the_enrolment_transaction_leaves_the_person_out(
    tmp_path: Path, recognizer: Recognizer, backend: str
) -> None:
    """A child enrols one person; the test hook holds it after the writes, before COMMIT;
    it is SIGKILLed there. The reopened gallery is as before the call (the person absent,
    not half there), and enrolling the person again works."""
    if backend == "postgres":
        from .pg import shared_server

        location = shared_server().create_database()
    else:
        location = str(tmp_path / "g.sqlite")
    with open_gallery(location, recognizer) as g:
        g.enroll("biden", [KNN / "train" / "biden" / "biden.jpg"])
        generation = g.store.snapshot().generation
    (name, photos), *_ = lfw_plan(4, 4)
    with_face = [p for p in photos if recognizer.detect(p)]
    assert len(with_face) >= 2
    env = {**os.environ, "FACEPRINT_TEST_SLEEP_BEFORE_COMMIT": "600"}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_CHILD, location, json.dumps([name, photos])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        m, err = _wait_for(proc.stderr, HOOK, timeout=300)
        assert m is not None, f"the child never reached the hook: {err}"
        # the writes really happened, inside the open transaction: it sees biden + the new faces
        assert int(m.group(1)) == 1 + len(with_face), err
        other = open_store(location)  # and no one else sees them before COMMIT
        try:
            assert {p.name: p.faces for p in other.people()} == {"biden": 1}
        finally:
            other.close()
    finally:
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    assert proc.stdout is not None and "committed" not in proc.stdout.read()

    with open_gallery(location, recognizer) as g:
        assert {p.name: p.faces for p in g.people()} == {"biden": 1}, "half-written or committed"
        snap = g.store.snapshot()
        assert len(snap.face_ids) == 1 and snap.generation == generation
        rep = g.enroll(name, photos, face="largest")
        assert len(rep.added) == len(with_face)
        assert {p.name: p.faces for p in g.people()} == {"biden": 1, name: len(with_face)}
        snap = g.store.snapshot()
        assert [h[0][0] for h in g.store.search_faces(snap.vectors, 1)] == list(snap.face_ids)
    if backend == "sqlite":
        with closing(sqlite3.connect(location)) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_two_processes_enrolling_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "new" / "g.sqlite"  # both start on a gallery that does not exist yet
    plans = [lfw_plan(16, 2), lfw_plan(16, 2, skip=8)]
    assert not {n for n, _ in plans[0]} & {n for n, _ in plans[1]}
    procs = [child(path, p) for p in plans]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    reported = {json.loads(ln)["name"]: json.loads(ln)["added"] for o, _ in outs for ln in o.splitlines()}
    assert len(reported) == 16
    store = SqliteStore(path)
    assert {p.name: p.faces for p in store.people()} == {n: k for n, k in reported.items() if k}
    assert sum(reported.values()) == len(store.snapshot().face_ids) >= 30
    store.close()


def test_corrupt_gallery_is_refused_and_left_as_it_was(tmp_path: Path, recognizer: Recognizer) -> None:
    path = tmp_path / "g.sqlite"
    with Gallery(SqliteStore(path), recognizer) as g:
        g.enroll("biden", [KNN / "train" / "biden" / "biden.jpg"])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] + b"\x00garbage" * 500)
    before = path.read_bytes()
    with (
        pytest.raises(GalleryError, match=r"corrupt|malformed|not a database"),
        open_gallery(path, recognizer) as g,
    ):
        g.people()
        g.identify([KNN / "train" / "biden" / "biden2.jpg"])
    assert path.read_bytes() == before
    path.write_bytes(b"%PDF-1.7 not a gallery")
    with pytest.raises(GalleryError, match="expected an SQLite database"):
        open_gallery(path, recognizer)
    assert path.read_bytes() == b"%PDF-1.7 not a gallery"


def test_read_only_gallery_directory(recognizer: Recognizer) -> None:
    """Reading works, enrolling is a clear GalleryError. Root ignores permissions, so as
    root the check runs in a child dropped to the ``nobody`` user."""
    as_root = os.geteuid() == 0
    if as_root and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot drop privileges to test permissions")
    base = Path(tempfile.mkdtemp(prefix="faceprint-ro-"))
    home = Path(tempfile.mkdtemp(prefix="faceprint-ro-home-"))
    try:
        base.chmod(0o755)
        home.chmod(0o777)
        path = base / "g.sqlite"
        with Gallery(SqliteStore(path), recognizer) as g:
            g.enroll("biden", [KNN / "train" / "biden" / "biden.jpg"])
        path.chmod(0o444)
        base.chmod(0o555)
        before = path.read_bytes()
        cmd = [sys.executable, "-m", "faceprint.cli.main"]
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if as_root else []
        env = {**os.environ, "FACEPRINT_HOME": str(home), "HOME": str(home)}
        listed = subprocess.run([*prefix, *cmd, "gallery", "list", "--gallery", str(path)],
                                capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.startswith("biden")
        img = str(KNN / "train" / "obama" / "obama.jpg")
        res = subprocess.run([*prefix, *cmd, "enroll", "obama", img, "--gallery", str(path)],
                             capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
        assert res.returncode == 1 and "Traceback" not in res.stderr
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "read-only" in errors[0] and str(path) in errors[0]
        assert path.read_bytes() == before
    finally:
        base.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
