"""SqliteStore without any model: schema, transactions, generation, refusals of files
that are not ours (left byte-for-byte untouched), names, settings."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import numpy as np
import pytest

from faceprint.errors import GalleryError, IncompatibleEmbeddingError
from faceprint.gallery import default_location, open_store
from faceprint.gallery.records import FaceRecord
from faceprint.gallery.sqlite import APPLICATION_ID, SCHEMA_VERSION, SqliteStore
from faceprint.types import Box

RNG = np.random.default_rng(0)


def faces(person: str, n: int, model: str = "m@1", dim: int = 8, sha: str = "img") -> list[FaceRecord]:
    v = RNG.standard_normal((n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return [
        FaceRecord(uuid.uuid4().hex, person, v[i], model, f"{sha}{i}", Box(1, 2, 3.5, 4), 0.9)
        for i in range(n)
    ]


def test_new_file_is_created_by_the_first_write_only(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "g.sqlite"
    s = SqliteStore(path)
    assert s.people() == [] and s.model() is None and s.generation() == 0 and s.get_setting("x") is None
    assert len(s.snapshot().face_ids) == 0
    assert not path.exists()
    s.add_faces("a", faces("a", 2))
    assert path.exists()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(
        SCHEMA_VERSION
    )
    conn.close()
    s.close()


def test_add_dedupe_snapshot_generation(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "g.sqlite")
    recs = faces("a", 3)
    added, skipped = s.add_faces("a", recs, {"k": "v"})
    assert len(added) == 3 and not skipped and s.generation() == 1
    assert s.model() == ("m@1", 8)
    again = faces("a", 2)  # same sha256 values img0, img1: skipped
    added, skipped = s.add_faces("a", again)
    assert not added and len(skipped) == 2
    snap = s.snapshot()
    assert snap.persons == ("a",) * 3 and snap.face_ids == tuple(r.face_id for r in recs)
    assert snap.vectors.dtype == np.float32
    assert snap.vectors.tobytes() == np.stack([r.vector for r in recs]).tobytes()
    person, stored = s.person("a")
    assert person.metadata == {"k": "v"} and person.faces == 3
    assert stored[0].box == Box(1, 2, 3.5, 4) and stored[0].score == pytest.approx(0.9)
    s.add_faces("a", faces("a", 1, sha="other"), {"k2": 1})
    assert s.person("a")[0].metadata == {"k": "v", "k2": 1}  # merged


def test_writes_are_refused_for_another_model_and_bad_vectors(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "g.sqlite")
    s.add_faces("a", faces("a", 1))
    gen = s.generation()
    with pytest.raises(IncompatibleEmbeddingError, match="m@1"):
        s.add_faces("b", faces("b", 1, model="other@2"))
    with pytest.raises(IncompatibleEmbeddingError):
        s.add_faces("b", faces("b", 1, dim=16))
    bad = faces("b", 1)[0]
    with pytest.raises(GalleryError, match="finite"):
        s.add_faces("b", [FaceRecord("x", "b", np.full(8, np.nan, np.float32), "m@1")])
    assert [p.name for p in s.people()] == ["a"] and s.generation() == gen
    assert bad.model == "m@1"


def test_remove_rename_metadata_settings(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "g.sqlite")
    name = 'O\'Neil/"x" 王; DROP TABLE faces'
    s.add_faces(name, faces(name, 2))
    s.add_faces("b", faces("b", 1))
    s.rename_person(name, "c")
    with pytest.raises(GalleryError, match="already exists"):
        s.rename_person("c", "b")
    with pytest.raises(GalleryError, match="no such person"):
        s.rename_person(name, "d")
    s.set_metadata("c", {"a": [1, 2]})
    assert s.person("c")[0].metadata == {"a": [1, 2]}
    assert s.remove_person("c") == 2
    with pytest.raises(GalleryError, match="no such person"):
        s.remove_person("c")
    assert s.snapshot().persons == ("b",)
    assert sqlite3.connect(tmp_path / "g.sqlite").execute("SELECT count(*) FROM faces").fetchone()[0] == 1
    s.set_setting("threshold", "0.5")
    assert s.get_setting("threshold") == "0.5"
    s.set_setting("threshold", None)
    assert s.get_setting("threshold") is None


def _refused_untouched(path: Path, match: str) -> None:
    before = path.read_bytes()
    with pytest.raises(GalleryError, match=match):
        SqliteStore(path)
    assert path.read_bytes() == before


def test_not_sqlite_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite"
    path.write_bytes(b"this is my thesis, not a database\n" * 100)
    _refused_untouched(path, "expected an SQLite database")


def test_garbled_sqlite_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite"
    s = SqliteStore(path)
    s.add_faces("a", faces("a", 3))
    s.close()
    data = bytearray(path.read_bytes())
    data[100:2000] = RNG.integers(0, 256, 1900, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    _refused_untouched(path, "corrupt|malformed|not a database")


def test_foreign_schema_and_future_version_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "other.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE users (id INTEGER, name TEXT)")
    conn.commit()
    conn.close()
    _refused_untouched(foreign, "another SQLite database")
    future = tmp_path / "future.sqlite"
    writer = SqliteStore(future)
    writer.add_faces("a", faces("a", 1))
    writer.close()
    conn = sqlite3.connect(future)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    _refused_untouched(future, "newer faceprint")
    with pytest.raises(GalleryError, match="directory"):
        SqliteStore(tmp_path)


def test_default_location_and_backend_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEPRINT_HOME", str(tmp_path))
    monkeypatch.delenv("FACEPRINT_GALLERY", raising=False)
    assert default_location() == str(tmp_path / "gallery.sqlite")
    monkeypatch.setenv("FACEPRINT_GALLERY", str(tmp_path / "x.sqlite"))
    store = open_store(None)
    assert isinstance(store, SqliteStore) and store.location == str(tmp_path / "x.sqlite")
    assert store.index_path == tmp_path / "x.sqlite.index"


def test_person_ranking_reaches_past_people_with_many_faces(tmp_path: Path) -> None:
    """60 faces of one person closer than anyone else must not hide the second person."""
    from faceprint.gallery.gallery import Gallery

    q = np.zeros(8, np.float32)
    q[0] = 1.0
    near = q + 0.05 * RNG.standard_normal((60, 8)).astype(np.float32)
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    far = np.zeros(8, np.float32)
    far[1] = 1.0
    s = SqliteStore(tmp_path / "g.sqlite")
    s.add_faces("many", [FaceRecord(uuid.uuid4().hex, "many", v, "dlib@resnet_v1+55533b28") for v in near])
    s.add_faces("one", [FaceRecord(uuid.uuid4().hex, "one", far, "dlib@resnet_v1+55533b28")])
    g = Gallery(s)  # no recognizer is needed to rank stored vectors
    (matches,) = g.rank(q[None, :], top_k=2)
    assert [m.identity for m in matches] == ["many", "one"]
    assert matches[1].similarity == pytest.approx(0.0, abs=1e-6)
    op = g.operating_point()
    assert op.people == 2 and op.model == "dlib@resnet_v1+55533b28" and -1 < op.threshold < 1
    assert g._recognizer is None  # the fallback threshold needed no model


# -- schema version 1 (no person ids), as faceprint 0.1 wrote it ---------------------------
V1_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);
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


def v1_gallery(path: Path, people: dict[str, int], model: str = "dlib@resnet_v1") -> dict[str, list[str]]:
    """A schema-version-1 gallery file built by the old DDL (WAL, application id, user
    version 1), with ``people`` (name -> number of faces) of ``model``; returns each
    person's face ids."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(V1_DDL)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    meta = [("schema_version", "1"), ("generation", "7"), ("model", model), ("dim", "8")]
    conn.executemany("INSERT INTO meta VALUES (?, ?)", meta)
    out: dict[str, list[str]] = {}
    for name, n in people.items():
        pid = conn.execute(
            "INSERT INTO people (name, metadata, created_at) VALUES (?, ?, ?)",
            (name, '{"k": 1}', "2024-01-01T00:00:00+00:00"),
        ).lastrowid
        for rec in faces(name, n, model=model):
            conn.execute(
                "INSERT INTO faces (face_id, person_id, model, vector, added_at) VALUES (?, ?, ?, ?, ?)",
                (rec.face_id, pid, model, rec.vector.astype("<f4").tobytes(), "2024-01-01T00:00:00+00:00"),
            )
            out.setdefault(name, []).append(rec.face_id)
    conn.close()
    return out


def test_version_1_file_is_upgraded_on_open(tmp_path: Path) -> None:
    from faceprint.gallery.records import upgrade_model_id

    path = tmp_path / "old.sqlite"
    ids = v1_gallery(path, {"ada": 2, "bob": 1, "O'Neil 王": 3})
    s = SqliteStore(path)
    people = s.people()
    assert [(p.name, p.faces, dict(p.metadata)) for p in people] == [
        ("O'Neil 王", 3, {"k": 1}), ("ada", 2, {"k": 1}), ("bob", 1, {"k": 1})
    ]  # fmt: skip
    pids = [p.id for p in people]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in pids) and len(set(pids)) == 3
    for p in people:
        person, recs = s.person_by_id(p.id)
        assert person == p and [f.face_id for f in recs] == ids[p.name]
    assert s.model() == (upgrade_model_id("dlib@resnet_v1"), 8)  # the model-id upgrade ran too
    assert s.generation() == 7  # the data did not change: search indexes stay valid
    s.close()
    conn = sqlite3.connect(path)
    version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    assert version == str(SCHEMA_VERSION)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):  # ids are unique by the schema
        conn.execute("UPDATE people SET uid = ? WHERE name = 'bob'", (pids[0],))
    conn.close()
    again = SqliteStore(path)  # upgraded once: the ids stay
    assert [p.id for p in again.people()] == pids
    new = again.create_person("cyd")
    bound = again.model()
    assert new.id not in pids and bound is not None
    assert again.add_faces("ada", faces("ada", 1, model=bound[0]))[0]
    again.close()


def test_a_failed_upgrade_leaves_the_version_1_file_as_it_was(tmp_path: Path) -> None:
    """The upgrade is one transaction: a failure at its last step (here a trigger that
    refuses to change the schema version) leaves no column, no ids, no index."""
    path = tmp_path / "old.sqlite"
    v1_gallery(path, {"ada": 2}, model="m@1")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TRIGGER no_bump BEFORE UPDATE ON meta WHEN NEW.key = 'schema_version' "
                 "BEGIN SELECT RAISE(ABORT, 'version bump refused'); END")  # fmt: skip
    conn.commit()
    conn.close()
    with pytest.raises(GalleryError, match=r"upgrade it from schema version 1 to 2 .*version bump refused"):
        SqliteStore(path)
    conn = sqlite3.connect(path)
    assert "uid" not in {r[1] for r in conn.execute("PRAGMA table_info(people)")}
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "1"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM faces").fetchone()[0] == 2
    conn.close()


def test_a_read_only_version_1_file_is_refused_untouched() -> None:
    """Nothing can be written there, so it cannot be upgraded: a clear error, the file
    unchanged. Root ignores permissions, so as root the check runs as ``nobody`` (in a
    directory of /tmp, which ``nobody`` can reach)."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    as_root = os.geteuid() == 0
    if as_root and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot drop privileges to test permissions")
    base = Path(tempfile.mkdtemp(prefix="faceprint-ro-v1-"))
    path = base / "old.sqlite"
    v1_gallery(path, {"ada": 1}, model="m@1")
    before = path.read_bytes()
    path.chmod(0o444)
    base.chmod(0o555)
    code = (
        "import sys\nfrom faceprint.gallery.sqlite import SqliteStore\n"
        "from faceprint.errors import GalleryError\n"
        "try:\n    SqliteStore(sys.argv[1]).people()\nexcept GalleryError as e:\n    print(e)\n"
    )
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if as_root else []
    src = str(Path(__file__).resolve().parents[2] / "src")
    try:
        res = subprocess.run([*prefix, sys.executable, "-c", code, str(path)], capture_output=True,
                             text=True, timeout=120, env={**os.environ, "PYTHONPATH": src})  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert "schema version 1 to 2" in res.stdout and "read-only" in res.stdout, res.stdout
        assert "open it once where it can be written" in res.stdout
        assert path.read_bytes() == before and sorted(p.name for p in base.iterdir()) == ["old.sqlite"]
    finally:
        base.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


class _InterruptAfter:
    """A connection that raises KeyboardInterrupt just after running a chosen statement:
    where Python delivers a Ctrl-C that arrived while SQLite ran it."""

    def __init__(self, conn: sqlite3.Connection, statement: str) -> None:
        self.conn, self.statement = conn, statement

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        cur = self.conn.execute(sql, *args)
        if sql == self.statement:
            self.statement = ""  # once
            raise KeyboardInterrupt
        return cur

    def __getattr__(self, name: str) -> object:
        return getattr(self.conn, name)


@pytest.mark.parametrize("statement", ["BEGIN IMMEDIATE", "BEGIN"])
def test_ctrl_c_just_after_begin_leaves_no_transaction_open(tmp_path: Path, statement: str) -> None:
    s = SqliteStore(tmp_path / "g.sqlite")
    s.add_faces("a", faces("a", 1, sha="a"))
    real = s._conn
    assert real is not None
    s._conn = _InterruptAfter(real, statement)  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        if statement == "BEGIN":
            s.people()
        else:
            s.add_faces("b", faces("b", 1, sha="b"))
    assert not real.in_transaction  # rolled back, so no write lock is held either
    s._conn = real
    assert [p.name for p in s.people()] == ["a"]
    other = SqliteStore(tmp_path / "g.sqlite")
    other.add_faces("c", faces("c", 1, sha="c"))  # another writer gets the lock
    assert sorted(p.name for p in s.people()) == ["a", "c"]
    other.close()
    s.close()


def test_a_transaction_an_interrupt_left_open_is_rolled_back_by_the_next_call(tmp_path: Path) -> None:
    """The window the try cannot cover: a Ctrl-C inside contextlib's ``__enter__`` after the
    generator's BEGIN, so neither its rollback nor ``__exit__`` runs until it is collected."""
    s = SqliteStore(tmp_path / "g.sqlite")
    s.add_faces("a", faces("a", 1, sha="a"))
    assert s._conn is not None
    s._conn.execute("BEGIN IMMEDIATE")
    s._conn.execute("DELETE FROM faces")  # an unfinished write nobody will commit
    assert [p.name for p in s.people()] == ["a"]  # not "cannot start a transaction within a transaction"
    s.add_faces("b", faces("b", 1, sha="b"))
    assert sorted(p.name for p in s.people()) == ["a", "b"]
    s.close()
