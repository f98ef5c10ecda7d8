"""Photo collections (issue 12) on real LFW photos, on SQLite and PostgreSQL: index,
cluster, name, correct, find a person's photos; bad input; a killed run resumed."""

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
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import IO

import numpy as np
import pytest
from PIL import Image as PILImage

from conftest import LFW, need
from faceprint.collections.collection import Collection
from faceprint.collections.indexer import PhotoFile, analyse, list_photos
from faceprint.errors import GalleryError, NameTakenError, UnknownClusterError
from faceprint.gallery import open_gallery
from faceprint.gallery.gallery import Gallery
from faceprint.quality import DEFAULT_GATE
from faceprint.recognizer import Recognizer

from .test_gallery_cli import one_error, run_cli
from .test_gallery_durability import HOOK

#: Four LFW people with 7-8 photos each: enough for clusters, fast to index (~2 s).
PEOPLE = ("Ricardo_Lagos", "Paul_Wolfowitz", "Jennifer_Lopez", "John_Bolton")


def _photos(dest: Path, people: tuple[str, ...] = PEOPLE, skip: int = 0, take: int = 99) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for p in people:
        for src in sorted(need(LFW / p).glob("*.jpg"))[skip : skip + take]:
            shutil.copy(src, dest / src.name)
            out.append(dest / src.name)
    return out


def _nth_match(stream: IO[str], pattern: re.Pattern[str], n: int, timeout: float) -> str | None:
    """Everything read from ``stream`` up to its ``n``-th line matching ``pattern`` (one
    reader thread, so a hung child cannot hang the test), or None."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen, found, deadline = [], 0, time.monotonic() + timeout
    while found < n:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        if line is None:
            return None
        seen.append(line)
        found += bool(pattern.search(line))
    return "".join(seen)


def _person(path: str) -> str:
    return Path(path).name.rsplit("_", 1)[0]


def _clusters_by_person(col: Collection) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for f in col.view(propose=False).face_dicts():
        if f["cluster"] is not None:
            out.setdefault(f["cluster"], []).append(_person(f["image"]))
    return out


def test_index_cluster_name_and_find_photos(gallery: Gallery, tmp_path: Path) -> None:
    """The whole loop: every big cluster is one person, each person one cluster; naming a
    cluster enrols its faces; ``photos`` finds them; a second run indexes nothing."""
    photos = _photos(tmp_path / "photos")
    col = Collection(gallery)
    s = col.index([tmp_path / "photos"])
    assert (s.indexed, s.already, s.failed) == (len(photos), 0, [])
    assert s.faces >= len(photos)
    again = col.index([tmp_path / "photos"])
    assert (again.indexed, again.already) == (0, len(photos))
    assert col.counts()["faces"] == s.faces  # nothing duplicated

    run = col.cluster()
    assert run.mode == "full" and run.threshold == pytest.approx(0.94)
    by = _clusters_by_person(col)
    for cid, names in by.items():
        assert len(set(names)) == 1, f"cluster {cid} mixes people: {names}"
    big = {names[0]: cid for cid, names in by.items() if len(names) >= 4}
    assert set(big) == set(PEOPLE), by  # every person found, none split into two big clusters

    lopez = big["Jennifer_Lopez"]
    _, n = col.name(lopez, "Jennifer Lopez")
    assert n == len(by[lopez])
    person, faces = gallery.person("Jennifer Lopez")
    assert person.faces == n and all(f.model == gallery.model for f in faces)
    hits = col.photos("Jennifer Lopez")
    assert {_person(h.images[0]) for h in hits} == {"Jennifer_Lopez"}
    assert len({h.images[0] for h in hits}) == n
    assert all(h.source == "named" for h in hits)
    # the enrolled person now identifies a new photo of her
    new = sorted((LFW / "Jennifer_Lopez").glob("*.jpg"))[0]
    assert gallery.identify([new])[0][0].label == "Jennifer Lopez"


def test_incremental_faces_join_clusters_and_names_stay(gallery: Gallery, tmp_path: Path) -> None:
    _photos(tmp_path / "a", take=4)
    col = Collection(gallery)
    col.index([tmp_path / "a"])
    col.cluster()
    by = _clusters_by_person(col)
    bolton = next(c for c, n in by.items() if n[0] == "John_Bolton" and len(n) >= 3)
    col.name(bolton, "John Bolton")
    _photos(tmp_path / "b", skip=4)
    s = col.index([tmp_path / "b"])
    assert s.indexed > 0
    run = col.cluster()
    assert run.mode == "incremental"
    view = col.view(propose=False)
    named = [c for c in view.clusters if c.person == "John Bolton"]
    assert len(named) == 1 and named[0].id == bolton  # the id and the name stayed
    by = _clusters_by_person(col)
    assert set(by[bolton]) == {"John_Bolton"}
    assert len(by[bolton]) > 4  # the new photos of him joined his cluster
    assert {_person(h.images[0]) for h in col.photos("John Bolton")} == {"John_Bolton"}


def test_corrections_survive_reclustering(gallery: Gallery, tmp_path: Path) -> None:
    _photos(tmp_path / "p")
    col = Collection(gallery)
    col.index([tmp_path / "p"])
    col.cluster()
    by = _clusters_by_person(col)
    ids = {n[0]: c for c, n in by.items() if len(n) >= 4}
    a, b = ids["Ricardo_Lagos"], ids["Paul_Wolfowitz"]
    size = col.merge(a, b)  # a wrong merge, on purpose: the user says so, it is kept
    assert size == len(by[a]) + len(by[b])
    members = next(c.faces for c in col.view(propose=False).clusters if c.id == a)
    moved = members[-2:]
    # split two faces off the merged cluster, and remove one face of Lopez's
    lopez = next(c.faces for c in col.view(propose=False).clusters if c.id == ids["Jennifer_Lopez"])
    gone = lopez[0]
    new = col.split(a, list(moved))
    col.remove_face(gone)
    for _ in range(2):
        col.cluster(recluster=True)
        view = col.view(propose=False)
        where = {fid: c.id for c in view.clusters for fid in c.faces}
        rest = [x for x in members if x not in moved]
        assert len({where.get(x) for x in rest}) == 1, "the merge was not kept"
        assert where.get(rest[0]) is not None
        assert all(where.get(x) != where.get(rest[0]) for x in moved), "the split was not kept"
        assert where.get(gone) not in {where.get(x) for x in lopez[1:]}, "the removed face came back"
    assert new != a


def test_two_faces_of_one_photo_are_never_one_cluster(gallery: Gallery, tmp_path: Path) -> None:
    """Side-by-side pictures of one man make photos with two faces of the same person:
    the cannot-link keeps them in different clusters (or one of them unclustered)."""
    src = sorted(need(LFW / "Paul_Wolfowitz").glob("*.jpg"))
    (tmp_path / "p").mkdir()
    for i in range(3):
        a, b = PILImage.open(src[i]), PILImage.open(src[i + 3])
        both = PILImage.new("RGB", (500, 250))
        both.paste(a, (0, 0))
        both.paste(b, (250, 0))
        both.save(tmp_path / "p" / f"pair{i}.jpg", quality=95)
    for s in src[6:]:
        shutil.copy(s, tmp_path / "p" / s.name)
    col = Collection(gallery)
    col.index([tmp_path / "p"])
    col.cluster()
    view = col.view(propose=False)
    per_photo: dict[str, list[int]] = {}
    for f in view.face_dicts():
        if f["cluster"] is not None:
            per_photo.setdefault(f["image_sha256"], []).append(f["cluster"])
    assert per_photo and all(len(c) == len(set(c)) for c in per_photo.values()), per_photo
    assert any(len(c) == 2 for c in per_photo.values())  # both faces were clustered somewhere


def test_enrolled_person_is_proposed_not_merged(gallery: Gallery, tmp_path: Path) -> None:
    lfw = sorted(need(LFW / "John_Bolton").glob("*.jpg"))
    rep = gallery.enroll("John Bolton", [lfw[0]], face="largest")
    assert rep.ok
    _photos(tmp_path / "p", people=("John_Bolton", "Jennifer_Lopez"), skip=1)
    col = Collection(gallery)
    col.index([tmp_path / "p"])
    col.cluster()
    view = col.view()
    proposed = {c.id: c.proposed.identity for c in view.clusters if c.proposed is not None}
    by = _clusters_by_person(col)
    assert [by[c][0] for c in proposed] == ["John_Bolton"]
    assert all(c.person is None for c in view.clusters)  # proposed, not named
    with pytest.raises(NameTakenError, match="--merge"):
        col.name(next(iter(proposed)), "John Bolton")
    col.name(next(iter(proposed)), "John Bolton", merge=True)
    assert gallery.person("John Bolton")[0].faces > 1


def test_bad_input_is_reported_and_never_stops_the_run(gallery: Gallery, tmp_path: Path) -> None:
    good = _photos(tmp_path / "p", people=("John_Bolton",), take=3)
    d = tmp_path / "p"
    (d / "empty.jpg").write_bytes(b"")
    (d / "notes.jpg").write_text("not an image")
    (d / "readme.txt").write_text("not a photo either")
    (d / "truncated.jpg").write_bytes(good[0].read_bytes()[:400])
    sub = d / "sub"
    sub.mkdir()
    os.symlink(d, sub / "loop")  # a symlink loop
    os.symlink(tmp_path / "nowhere.jpg", d / "dangling.jpg")
    shutil.copy(good[1], sub / "copy_of_1.jpg")  # the same bytes under two paths
    col = Collection(gallery)
    s = col.index([d, tmp_path / "missing_folder"], recursive=True)
    failed = dict(s.failed)
    assert failed[str(d / "empty.jpg")] == "empty file (0 bytes)"
    assert "cannot identify" in failed[str(d / "notes.jpg")] or "not" in failed[str(d / "notes.jpg")]
    assert str(d / "truncated.jpg") in failed
    assert failed[str(tmp_path / "missing_folder")] == "no such file or folder"
    assert "link" in failed[str(d / "dangling.jpg")]
    assert s.not_images == 1
    assert (s.indexed, s.duplicates) == (3, 1)
    c = col.counts()
    assert (c["photos"], c["images"]) == (4, 3)  # two paths, one face set
    paths = col.store.paths()
    assert sorted(len(v) for v in paths.values()) == [1, 1, 2]
    # the failures are retried on the next run, the rest skipped
    s2 = col.index([d], recursive=True)
    assert (s2.indexed, s2.already) == (0, 4) and len(s2.failed) == 4


def test_a_photo_that_vanishes_or_changes_after_listing(recognizer: Recognizer, tmp_path: Path) -> None:
    src = sorted(need(LFW / "John_Bolton").glob("*.jpg"))
    p = tmp_path / "a.jpg"
    shutil.copy(src[0], p)
    listed = PhotoFile(str(p), "0" * 64, 1, 0.0)
    p.unlink()
    (r,) = analyse(recognizer, DEFAULT_GATE, [listed])
    assert r.error == "the file disappeared before it could be read"
    shutil.copy(src[1], p)  # other bytes under the listed path: the bytes read are what count
    (r,) = analyse(recognizer, DEFAULT_GATE, [listed])
    assert r.error is None and r.image_sha256 != "0" * 64 and r.faces


def test_unreadable_folder_is_a_problem_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root reads every folder, so the permission error is raised where the listing meets
    it (this machine's CI runs as root)."""
    (tmp_path / "locked").mkdir()
    real = os.scandir

    def scandir(path: str) -> object:
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    out = list_photos([tmp_path], recursive=True)
    assert out.problems == [(str(tmp_path / "locked"), "cannot read the folder (Permission denied)")]


def test_unknown_ids_and_conflicting_names(gallery: Gallery, tmp_path: Path) -> None:
    _photos(tmp_path / "p", people=("John_Bolton", "Jennifer_Lopez"))
    col = Collection(gallery)
    col.index([tmp_path / "p"])
    col.cluster()
    with pytest.raises(UnknownClusterError, match="no cluster 999"):
        col.name(999, "x")
    with pytest.raises(UnknownClusterError, match="no indexed face 99999"):
        col.remove_face(99999)
    view = col.view(propose=False)
    a, b = view.clusters[0].id, view.clusters[1].id
    col.name(a, "First")
    col.name(b, "Second")
    with pytest.raises(GalleryError, match="different people"):
        col.merge(a, b)
    with pytest.raises(GalleryError, match="already named 'First'"):
        col.name(a, "Other")


@pytest.mark.parametrize("workers", [2])
def test_worker_processes_index_the_same_as_one_process(
    recognizer: Recognizer, tmp_path: Path, workers: int
) -> None:
    _photos(tmp_path / "p", people=("John_Bolton", "Jennifer_Lopez"))
    counts = []
    for w in (1, workers):
        with open_gallery(tmp_path / f"g{w}.sqlite", recognizer) as g:
            col = Collection(g)
            s = col.index([tmp_path / "p"], workers=w)
            assert not s.failed
            counts.append(col.counts())
            faces = col.store.faces()
            counts.append(sorted(zip(faces.image_sha256, [b.x1 for b in faces.boxes], strict=True)))
    assert counts[0] == counts[2]
    assert [(s, round(x)) for s, x in counts[1]] == [(s, round(x)) for s, x in counts[3]]


def test_sigkill_mid_index_then_resume_equals_a_clean_run(recognizer: Recognizer, tmp_path: Path) -> None:
    """A child indexes 21 photos (batches of 8); the test hook holds every commit; it is
    SIGKILLed inside the second batch's transaction. The next run finishes the job: the
    counts and face sets equal a run that was never killed, nothing duplicated."""
    _photos(tmp_path / "p", people=("John_Bolton", "Jennifer_Lopez", "Paul_Wolfowitz"), take=7)
    clean = tmp_path / "clean.sqlite"
    killed = tmp_path / "killed.sqlite"
    assert run_cli("index", str(tmp_path / "p"), "--gallery", str(clean)).returncode == 0
    # every commit pauses 2 s; the third is the second batch's (the first binds the model)
    env = {**os.environ, "FACEPRINT_TEST_SLEEP_BEFORE_COMMIT": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "faceprint.cli.main", "index", str(tmp_path / "p"), "--gallery", str(killed)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        seen = _nth_match(proc.stderr, HOOK, 3, timeout=300)
        assert seen is not None, "the child never reached its third commit"
    finally:
        proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    with closing(sqlite3.connect(killed)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        # the first batch is in, whole; the second not at all
        assert db.execute("SELECT count(*) FROM photos").fetchone()[0] == 8
        assert db.execute("SELECT count(*) FROM photo_images").fetchone()[0] == 8
        faces = db.execute("SELECT sum(faces) FROM photo_images").fetchone()[0]
        assert db.execute("SELECT count(*) FROM photo_faces").fetchone()[0] == faces
    res = run_cli("index", str(tmp_path / "p"), "--gallery", str(killed), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["indexed"] == 13 and out["already_indexed"] == 8
    sets = []
    for g in (clean, killed):
        with closing(sqlite3.connect(g)) as db:
            sets.append(
                sorted(db.execute("SELECT image_sha256, face_index, round(x1) FROM photo_faces").fetchall())
            )
            assert db.execute("SELECT count(*) FROM photos").fetchone()[0] == 21
    assert sets[0] == sets[1]


def test_cli_index_cluster_report_photos(tmp_path: Path) -> None:
    from html_check import parse_report

    _photos(tmp_path / "p", people=("John_Bolton", "Jennifer_Lopez"))
    g = str(tmp_path / "g.sqlite")
    res = run_cli("index", str(tmp_path / "p"), "--gallery", g)
    assert res.returncode == 0, res.stderr
    assert "photos indexed" in res.stdout
    res = run_cli(
        "cluster", "--gallery", g, "--json", str(tmp_path / "c.json"), "--report", str(tmp_path / "c.html")
    )
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "c.json").read_text())
    assert {"faces", "clusters", "counts"} <= set(data)
    f0 = data["faces"][0]
    assert Path(f0["image"]).is_file() and len(f0["box"]) == 4 and "cluster" in f0
    sizes = [c["size"] for c in data["clusters"]]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] >= 5
    parsed = parse_report((tmp_path / "c.html").read_text())
    assert parsed.external == [] and len(parsed.imgs) >= sum(min(s, 24) for s in sizes)
    big = data["clusters"][0]["id"]
    res = run_cli("cluster", "name", str(big), "Somebody", "--gallery", g)
    assert res.returncode == 0 and "Somebody" in res.stdout, res.stderr
    res = run_cli("photos", "Somebody", "--gallery", g, "--json")
    assert res.returncode == 0, res.stderr
    hits = json.loads(res.stdout)["photos"]
    assert len(hits) == data["clusters"][0]["size"] and all(h["source"] == "named" for h in hits)
    q = sorted((LFW / "John_Bolton").glob("*.jpg"))[0]
    res = run_cli("photos", "--image", str(q), "--gallery", g, "--json")
    assert res.returncode == 0, res.stderr
    assert {_person(h["image"]) for h in json.loads(res.stdout)["photos"]} == {"John_Bolton"}
    # errors: one line, exit 1
    one_error(run_cli("cluster", "name", "999", "X", "--gallery", g), "no cluster 999")
    one_error(run_cli("cluster", "name", str(big), "Somebody Else", "--gallery", g), "already named")
    one_error(run_cli("cluster", "--gallery", str(tmp_path / "nope.sqlite")), "no gallery at")
    one_error(run_cli("photos", "Nobody", "--gallery", g), "Nobody")
    one_error(run_cli("index", str(tmp_path / "nothing"), "--gallery", g), "nothing indexed")
    res = run_cli("photos", "--gallery", g)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert np.isfinite(data["threshold"])


def test_two_processes_indexing_one_folder_at_once_store_each_photo_once(tmp_path: Path) -> None:
    """Two ``faceprint index`` runs on the same folder and SQLite gallery at the same time:
    their batches wait for each other's write lock, and the idempotent inserts leave each
    photo and face once, the same as one run."""
    _photos(tmp_path / "p", people=("John_Bolton", "Jennifer_Lopez", "Paul_Wolfowitz"), take=7)
    one, both = tmp_path / "one.sqlite", tmp_path / "both.sqlite"
    assert run_cli("index", str(tmp_path / "p"), "--gallery", str(one)).returncode == 0
    args = [
        sys.executable,
        "-m",
        "faceprint.cli.main",
        "index",
        str(tmp_path / "p"),
        "--gallery",
        str(both),
        "--json",
    ]
    procs = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    done = [json.loads(o)["indexed"] + json.loads(o)["already_indexed"] for o, _ in outs]
    assert done == [21, 21]
    sets = []
    for g in (one, both):
        with closing(sqlite3.connect(g)) as db:
            assert db.execute("SELECT count(*) FROM photos").fetchone()[0] == 21
            sets.append(sorted(db.execute("SELECT image_sha256, face_index FROM photo_faces").fetchall()))
    assert sets[0] == sets[1]
