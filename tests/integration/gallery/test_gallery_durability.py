"""Durability with real processes and real files: SIGKILL in the middle of a large
enrolment, two writers at once, a corrupt file, a read-only directory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import LFW, need
from faceprint.errors import GalleryError
from faceprint.gallery import open_gallery
from faceprint.gallery.gallery import Gallery
from faceprint.gallery.index import ann_available, open_index
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


def test_sigkill_mid_enrolment_leaves_whole_people_and_an_agreeing_index(
    tmp_path: Path, recognizer: Recognizer
) -> None:
    plan = lfw_plan(200, 4)
    path = tmp_path / "g.sqlite"
    proc = child(path, plan)
    done: dict[str, int] = {}
    assert proc.stdout is not None
    while len(done) < len(plan) // 3:
        line = proc.stdout.readline()
        assert line, f"child ended early: {proc.wait()} {proc.stderr.read() if proc.stderr else ''}"
        rec = json.loads(line)
        done[rec["name"]] = rec["added"]
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    done.update({json.loads(ln)["name"]: json.loads(ln)["added"] for ln in proc.stdout.read().splitlines()})
    assert len(done) < len(plan), "the child finished before it was killed"

    store = SqliteStore(path)
    people = {p.name: p.faces for p in store.people()}
    order = [name for name, _ in plan]
    # only whole calls: the finished ones, plus at most the one in flight when killed
    assert set(done) <= set(people) <= set(order[: len(done) + 1])
    for name, n in done.items():
        assert people[name] == n
    paths = dict(plan)
    for name in set(people) - set(done):
        with_face = [p for p in paths[name] if recognizer.detect(p)]
        assert people[name] == len(with_face), f"{name}: half-written ({people[name]} of {len(with_face)})"

    snap = store.snapshot()
    assert len(snap.face_ids) == sum(people.values())
    g = Gallery(store, recognizer)
    hits = g.store.search_faces(snap.vectors, 1)
    assert [h[0][0] for h in hits] == list(snap.face_ids)
    if ann_available():  # the HNSW file the child left may be behind or half-saved: never trusted blindly
        _, rows = open_index(snap, store.index_path, kind="ann").search(snap.vectors, 1)
        assert rows[:, 0].tolist() == list(range(len(snap.face_ids)))
    store.close()


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
