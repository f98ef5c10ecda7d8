"""A gallery holds faces: treat it like passwords (no model needed).

* permissions: the gallery's directory 0700 and every file it writes 0600 (SQLite file,
  ``-wal``, ``-shm``, the ANN cache, exports) whatever the umask; ``atomic_write`` never
  widens a mode;
* deleting a person erases them: no vector of theirs in any file under the gallery's
  directory afterwards, on an SQLite build whose ``secure_delete`` defaults to off;
* the default gallery lives in the user data directory, and one that an older faceprint
  left in the cache directory is moved there (or used in place, with a warning, when it
  cannot be moved now).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from faceprint.files import atomic_write
from faceprint.gallery import default_location, open_store
from faceprint.gallery.gallery import Gallery
from faceprint.gallery.hnsw import ann_available
from faceprint.gallery.records import FaceRecord
from faceprint.gallery.sqlite import SqliteStore

RNG = np.random.default_rng(7)
# ann_available imports usearch the safe way (after onnxruntime: the other order segfaults)
needs_usearch = pytest.mark.skipif(not ann_available(), reason="usearch ([ann] extra) not installed")
DIM = 128


def faces(person: str, n: int) -> list[FaceRecord]:
    v = RNG.standard_normal((n, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return [FaceRecord(uuid.uuid4().hex, person, v[i], "m@1", uuid.uuid4().hex) for i in range(n)]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


@needs_usearch
def test_modes_after_enrol_index_build_and_export(tmp_path: Path, umask: int) -> None:
    from faceprint.gallery.index import open_index

    gdir = tmp_path / "new" / "gallery"
    store = SqliteStore(gdir / "gallery.sqlite")
    store.add_faces("ada", faces("ada", 3))
    store.add_faces("bob", faces("bob", 3))
    assert mode(gdir) == 0o700 and mode(gdir.parent) == 0o700  # both created by faceprint
    db_files = [gdir / n for n in ("gallery.sqlite", "gallery.sqlite-wal", "gallery.sqlite-shm")]
    assert all(p.exists() for p in db_files)
    assert {p.name: oct(mode(p)) for p in db_files} == {p.name: "0o600" for p in db_files}

    open_index(store.snapshot(), store.index_path, kind="ann")  # builds and caches the graph
    cache = sorted(gdir.glob("gallery.sqlite.index*"))
    assert [p.name for p in cache] == [
        "gallery.sqlite.index",
        "gallery.sqlite.index.ids.npy",
        "gallery.sqlite.index.json",
    ]
    assert {p.name: oct(mode(p)) for p in cache} == {p.name: "0o600" for p in cache}

    out = tmp_path / "exports" / "backup.jsonl"
    Gallery(store).export(out)
    assert mode(out) == 0o600 and mode(out.parent) == 0o700
    assert sorted(p.name for p in gdir.iterdir()) == sorted(p.name for p in [*db_files, *cache])
    store.close()


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    """The user's own directory (here 0755) is not narrowed; only the file is private."""
    os.chmod(tmp_path, 0o755)
    store = SqliteStore(tmp_path / "g.sqlite")
    store.add_faces("ada", faces("ada", 1))
    assert mode(tmp_path) == 0o755 and mode(tmp_path / "g.sqlite") == 0o600
    store.close()


def test_atomic_write_never_widens_a_mode(tmp_path: Path, umask: int) -> None:
    target = tmp_path / "f"
    atomic_write(target, lambda t: t.write_text("a"))  # new: 0600 by default
    assert mode(target) == 0o600
    atomic_write(target, lambda t: t.write_text("b"), mode=0o644)  # replaced: never wider
    assert mode(target) == 0o600 and target.read_text() == "b"
    os.chmod(target, 0o640)
    atomic_write(target, lambda t: t.write_text("c"), mode=0o644)  # the user's 0640 is kept
    assert mode(target) == 0o640
    atomic_write(target, lambda t: t.write_text("d"))  # a private file loses group/other
    assert mode(target) == 0o600
    report = tmp_path / "report.html"
    atomic_write(report, lambda t: t.write_text("r"), mode=0o644)
    assert mode(report) == 0o644


def test_atomic_write_without_overwrite_leaves_the_target(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("old")
    with pytest.raises(FileExistsError):
        atomic_write(target, lambda t: t.write_text("new"), overwrite=False)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f"]


# -- erasure -----------------------------------------------------------------------------
@pytest.fixture
def secure_delete_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every SQLite connection starts with secure_delete off, as on builds (macOS, most
    non-Debian Pythons) where it is not compiled in as the default: faceprint must turn
    it on itself."""
    real = sqlite3.connect

    def connect(*args: object, **kwargs: object) -> sqlite3.Connection:
        conn = real(*args, **kwargs)  # type: ignore[arg-type]
        conn.execute("PRAGMA secure_delete = OFF")
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)


def _needles(vectors: list[np.ndarray]) -> list[bytes]:
    """Byte forms a file could hold a vector in: float32 (SQLite, usearch f32), its two
    halves (a partial copy), float16 (usearch f16) and float64."""
    out = []
    for v in vectors:
        f32 = np.asarray(v, "<f4").tobytes()
        out += [f32[:64], f32[-64:], np.asarray(v, "<f2").tobytes()[:64], np.asarray(v, "<f8").tobytes()[:64]]
    return out


def _found(root: Path, needles: list[bytes]) -> dict[str, int]:
    """How many ``needles`` occur in each file under ``root``."""
    hits = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            n = sum(1 for x in needles if x in data)
            if n:
                hits[p.name] = n
    return hits


@needs_usearch
def test_remove_leaves_no_vector_of_the_person_in_any_file(tmp_path: Path, secure_delete_off: None) -> None:
    from faceprint.gallery.index import open_index

    gdir = tmp_path / "g"
    store = SqliteStore(gdir / "gallery.sqlite")
    enrolled: dict[str, list[FaceRecord]] = {}
    for round_ in range(4):  # interleaved, so the victim's rows share pages with everyone's
        for person in ("ada", "bob", "cyd", "victim", "eve", "fay"):
            batch = faces(person, 12)
            store.add_faces(person, batch)
            enrolled.setdefault(person, []).extend(batch)
        if round_ == 2:  # the first rounds into the main file, the last one still in the WAL
            with sqlite3.connect(gdir / "gallery.sqlite") as conn:
                assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    open_index(store.snapshot(), store.index_path, kind="ann")  # the cache holds every vector
    victim = [f.vector for f in enrolled["victim"]]
    before = _found(gdir, [np.asarray(v, "<f4").tobytes()[:64] for v in victim])
    # The test can fail: every vector of theirs is on disk, in SQLite's files and the cache.
    assert before == {"gallery.sqlite": 36, "gallery.sqlite-wal": 12, "gallery.sqlite.index": 48}

    gallery = Gallery(store)
    assert gallery.remove("victim") == len(victim)
    assert _found(gdir, _needles(victim)) == {}
    others = [f.vector for f in enrolled["ada"]]  # the scan does see vectors that remain
    assert sum(_found(gdir, [np.asarray(v, "<f4").tobytes()[:64] for v in others]).values()) >= len(others)
    store.close()
    assert _found(gdir, _needles(victim)) == {}

    again = SqliteStore(gdir / "gallery.sqlite")  # still a working gallery, the cache rebuilt
    index = open_index(again.snapshot(), again.index_path, kind="ann")
    assert index.size == 5 * 48 and "victim" not in {p.name for p in again.people()}
    assert _found(gdir, _needles(victim)) == {}
    again.close()


@needs_usearch
def test_remove_face_leaves_no_copy_of_that_face_in_any_file(tmp_path: Path, secure_delete_off: None) -> None:
    """Removing one face erases it as removing a person does: rows zeroed, WAL truncated,
    the ANN cache that holds it dropped; the person and their other faces stay."""
    from faceprint.gallery.index import open_index

    gdir = tmp_path / "g"
    store = SqliteStore(gdir / "gallery.sqlite")
    enrolled: dict[str, list[FaceRecord]] = {}
    for round_ in range(3):
        for person in ("ada", "bob", "cyd"):
            batch = faces(person, 8)
            store.add_faces(person, batch)
            enrolled.setdefault(person, []).extend(batch)
        if round_ == 1:  # some rows in the main file, the last round still in the WAL
            with sqlite3.connect(gdir / "gallery.sqlite") as conn:
                assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    open_index(store.snapshot(), store.index_path, kind="ann")
    doomed = [enrolled["bob"][3], enrolled["bob"][20]]  # one in the main file, one in the WAL
    needles = [np.asarray(f.vector, "<f4").tobytes()[:64] for f in doomed]
    assert _found(gdir, needles) == {"gallery.sqlite": 1, "gallery.sqlite-wal": 1, "gallery.sqlite.index": 2}

    gallery = Gallery(store)
    assert [gallery.remove_face(f.face_id) for f in doomed] == ["bob", "bob"]
    assert _found(gdir, _needles([f.vector for f in doomed])) == {}
    assert not store.index_path.exists()  # the cache held them: dropped, rebuilt on the next search
    kept = [f.vector for f in enrolled["bob"] if f not in doomed]
    assert sum(_found(gdir, [np.asarray(v, "<f4").tobytes()[:64] for v in kept]).values()) >= len(kept)
    assert store.person("bob")[0].faces == 22
    hits = store.search_faces(np.stack([f.vector for f in doomed]), 5)
    assert not {h[0] for row in hits for h in row} & {f.face_id for f in doomed}
    store.close()
    assert _found(gdir, _needles([f.vector for f in doomed])) == {}


@needs_usearch
def test_remove_face_keeps_a_cache_that_never_held_it(tmp_path: Path) -> None:
    from faceprint.gallery.index import open_index

    store = SqliteStore(tmp_path / "gallery.sqlite")
    store.add_faces("ada", faces("ada", 20))
    open_index(store.snapshot(), store.index_path, kind="ann")
    late = faces("ada", 1)
    store.add_faces("ada", late)
    before = store.index_path.stat().st_mtime_ns
    assert store.remove_face(late[0].face_id) == "ada"
    assert store.index_path.exists() and store.index_path.stat().st_mtime_ns == before
    store.close()


@needs_usearch
def test_a_graph_built_while_the_person_is_removed_does_not_keep_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process removes the person while this one builds the graph from a snapshot
    that still holds them: the graph it caches must not outlive the removal."""
    import faceprint.gallery.index as index_mod

    gdir = tmp_path / "g"
    store = SqliteStore(gdir / "gallery.sqlite")
    for person in ("ada", "bob", "victim"):
        store.add_faces(person, faces(person, 10))
    _, victim = store.person("victim")
    other = SqliteStore(gdir / "gallery.sqlite")
    real = index_mod.refresh_index

    def build_while_removed(old: object, snap: object, path: Path | None = None, kind: str = "") -> object:
        other.remove_person("victim")  # commits while the graph is built from the older snapshot
        return real(old, snap, path, kind="ann")  # type: ignore[arg-type]

    monkeypatch.setattr(index_mod, "refresh_index", build_while_removed)
    store.search_faces(victim[0].vector[None, :], 3)
    assert _found(gdir, _needles([f.vector for f in victim])) == {}
    store.close()
    other.close()


@needs_usearch
def test_remove_keeps_a_cache_that_never_held_the_person(tmp_path: Path) -> None:
    """A person enrolled after the graph was built is only in the exact delta: the cache
    (minutes to rebuild at 1M faces) stays."""
    from faceprint.gallery.index import open_index

    store = SqliteStore(tmp_path / "gallery.sqlite")
    store.add_faces("ada", faces("ada", 20))
    open_index(store.snapshot(), store.index_path, kind="ann")
    store.add_faces("late", faces("late", 2))
    before = store.index_path.stat().st_mtime_ns
    store.remove_person("late")
    assert store.index_path.exists() and store.index_path.stat().st_mtime_ns == before
    store.close()


# -- default location --------------------------------------------------------------------
@pytest.fixture
def user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A fresh home and XDG data directory; FACEPRINT_HOME and FACEPRINT_GALLERY unset.
    Returns (the old cache-dir gallery path, the new default gallery path)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("FACEPRINT_HOME", raising=False)
    monkeypatch.delenv("FACEPRINT_GALLERY", raising=False)
    new = tmp_path / "data" / "faceprint" / "gallery.sqlite"
    return home / ".cache" / "faceprint" / "gallery.sqlite", new


def test_default_gallery_is_in_the_user_data_directory(user_dirs: tuple[Path, Path]) -> None:
    old, new = user_dirs
    assert default_location() == str(new)
    store = open_store(None)
    assert store.location == str(new)
    store.add_faces("ada", faces("ada", 1))
    assert mode(new) == 0o600 and mode(new.parent) == 0o700 and not old.parent.exists()
    store.close()


def test_default_path_is_stated_in_gallery_help() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "faceprint.cli.main", "gallery", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert res.returncode == 0, res.stderr
    assert "$XDG_DATA_HOME/faceprint" in res.stdout and "~/.local/share/faceprint" in res.stdout


def _legacy_gallery(old: Path) -> list[FaceRecord]:
    """A gallery where faceprint 0.1 kept it (0644 under the usual umask), with an ANN cache."""
    old.parent.mkdir(parents=True)
    recs = faces("ada", 3)
    s = SqliteStore(old)
    s.add_faces("ada", recs)
    s.close()
    os.chmod(old, 0o644)
    old.with_name("gallery.sqlite.index").write_bytes(b"graph")
    return recs


def test_legacy_gallery_is_moved_to_the_data_directory(
    user_dirs: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    old, new = user_dirs
    recs = _legacy_gallery(old)
    with caplog.at_level(logging.WARNING):
        store = open_store(None)
    assert store.location == str(new) and "moved the gallery" in caplog.text
    _, got = store.person("ada")
    assert [f.face_id for f in got] == [f.face_id for f in recs]
    assert all(np.array_equal(a.vector, b.vector) for a, b in zip(got, recs, strict=True))
    assert mode(new) == 0o600 and mode(new.parent) == 0o700
    assert list(old.parent.iterdir()) == []  # no copy of the faces is left in the cache dir
    store.add_faces("bob", faces("bob", 1))  # and it is a working gallery
    store.close()
    assert open_store(None).location == str(new)


def test_legacy_gallery_in_use_is_used_in_place(
    user_dirs: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    old, new = user_dirs
    _legacy_gallery(old)
    running = SqliteStore(old)  # another process has it open
    running.people()
    with caplog.at_level(logging.WARNING):
        store = open_store(None)
    assert store.location == str(old) and not new.exists()
    assert "still in the cache directory" in caplog.text and f"mv {old} {new}" in caplog.text
    assert [p.name for p in store.people()] == ["ada"]
    store.close()
    running.close()
    moved = open_store(None)  # once nobody uses it, it moves
    assert moved.location == str(new) and [p.name for p in moved.people()] == ["ada"]
    moved.close()


def test_foreign_file_in_the_old_place_is_left_alone(user_dirs: tuple[Path, Path]) -> None:
    old, new = user_dirs
    old.parent.mkdir(parents=True)
    old.write_bytes(b"not a gallery")
    store = open_store(None)
    assert store.location == str(new) and old.read_bytes() == b"not a gallery"
    store.close()
