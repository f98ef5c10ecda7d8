"""PostgresStore against a real PostgreSQL 16 + pgvector server (pgserver's binaries).

The server is started by the fixtures of tests/integration/gallery/pg.py on 127.0.0.1 and a unix
socket in a temporary directory; every test gets a fresh database. Without pgserver or psycopg
the tests skip with the reason. The shared Store contract suite (tests/integration/gallery/) runs
against PostgreSQL too through its ``store_factory`` fixture; this file holds what only a server
shows: the HNSW search, concurrent processes, a server that goes away, privileges, masking.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gallery.pg import ThrowawayServer, pg_server, pg_url, throwaway_server
from numpy.typing import NDArray

from faceprint.errors import GalleryError, IncompatibleEmbeddingError, MissingExtraError, UnknownFaceError
from faceprint.gallery.records import FaceRecord
from faceprint.types import Box

__all__ = ["pg_server", "pg_url"]  # fixtures imported for their side effect of registering

psycopg = pytest.importorskip(
    "psycopg", reason="psycopg is not installed (pip install 'faceprint[postgres]')"
)
from faceprint.gallery.postgres import CONNECT_TIMEOUT_S, PING_AFTER_S, PostgresStore  # noqa: E402

MODEL = "dlib@resnet_v1+55533b28"  # the current id of the stock weights
REPO = Path(__file__).resolve().parents[2]


def unit(n: int, dim: int = 128, seed: int = 0) -> NDArray[np.float32]:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    out: NDArray[np.float32] = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    return out


def face(vec: NDArray[np.float32], sha: str | None = None, model: str = MODEL) -> FaceRecord:
    return FaceRecord(uuid.uuid4().hex, "", vec, model, sha, Box(10.0, 20.5, 110.0, 140.25), 0.97)


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    s = PostgresStore(pg_url)
    yield s
    s.close()


def test_add_skip_duplicates_and_round_trip(store: PostgresStore) -> None:
    v = unit(4)
    added, skipped = store.add_faces("Ann", [face(v[0], "a"), face(v[1], "b"), face(v[2], "a")], {"team": 1})
    assert [f.image_sha256 for f in added] == ["a", "b"] and [f.image_sha256 for f in skipped] == ["a"]
    added, skipped = store.add_faces("Ann", [face(v[3], "b"), face(v[3], None), face(v[3], None)])
    assert len(added) == 2 and len(skipped) == 1  # faces without a sha are never duplicates
    person, faces = store.person("Ann")
    assert person.faces == 4 and person.metadata == {"team": 1} and person.created_at
    assert [f.face_id for f in faces][:2] == [f.face_id for f in store.person("Ann")[1]][:2]
    first = faces[0]
    assert np.array_equal(first.vector, v[0]) and first.vector.dtype == np.float32
    assert first.box == Box(10.0, 20.5, 110.0, 140.25) and first.score == pytest.approx(0.97)
    assert first.model == MODEL and first.person == "Ann" and first.added_at
    # the same image for another person is not a duplicate; a known face_id is skipped
    assert len(store.add_faces("Bob", [face(v[0], "a")])[0]) == 1
    assert store.add_faces("Bob", [first]) == ([], [first])
    # metadata merges (new keys win); no faces writes nothing; all-skipped creates no person
    gen = store.generation()
    assert store.add_faces("Ann", [], {"x": 1}) == ([], []) and store.generation() == gen
    store.add_faces("Ann", [face(v[3], "c")], {"team": 2, "x": 1})
    assert store.person("Ann")[0].metadata == {"team": 2, "x": 1}
    assert store.add_faces("Cid", [first])[0] == [] and "Cid" not in {p.name for p in store.people()}
    with pytest.raises(IncompatibleEmbeddingError, match="mixes"):
        store.add_faces("Ann", [face(v[0], "m"), face(v[1], "n", model="other@1")])
    with pytest.raises(GalleryError, match="expected finite 128-D"):
        store.add_faces("Ann", [face(v[0], "m"), face(np.full(128, np.nan, np.float32), "n")])
    assert store.count_people() == 2


def test_binds_model_and_refuses_others(store: PostgresStore) -> None:
    assert store.model() is None
    assert store.search_faces(unit(1), 3) == [[]]
    store.add_faces("Ann", [face(unit(1)[0])])
    assert store.model() == (MODEL, 128)
    gen = store.generation()
    with pytest.raises(IncompatibleEmbeddingError, match="dlib@v0"):
        store.add_faces("Ann", [face(unit(1)[0], model="dlib@v0")])
    with pytest.raises(IncompatibleEmbeddingError, match="512-D"):
        store.add_faces("Cid", [face(unit(1, 512)[0])])
    with pytest.raises(IncompatibleEmbeddingError, match="64-D"):
        store.search_faces(unit(2, 64), 1)
    assert store.generation() == gen and [p.name for p in store.people()] == ["Ann"]


def test_remove_cascades_to_every_vector(store: PostgresStore, pg_url: str) -> None:
    store.add_faces("Ann", [face(v) for v in unit(5)])
    store.add_faces("Bob", [face(v) for v in unit(2, seed=1)])
    assert store.remove_person("Ann") == 5
    assert [p.name for p in store.people()] == ["Bob"]
    assert store.snapshot().persons == ("Bob", "Bob")
    with psycopg.connect(pg_url) as conn:  # not one orphaned row left in the table itself
        assert conn.execute("SELECT count(*) FROM faceprint.faces").fetchone() == (2,)
    with pytest.raises(GalleryError, match="cannot remove 'Ann': no such person"):
        store.remove_person("Ann")


def test_rename_metadata_and_unknown_names(store: PostgresStore) -> None:
    store.add_faces("Ann", [face(unit(1)[0])], {"a": 1})
    store.add_faces("Bob", [face(unit(1, seed=2)[0])])
    store.rename_person("Ann", "Anna")
    assert [p.name for p in store.people()] == ["Anna", "Bob"]
    assert store.person("Anna")[1][0].person == "Anna"
    with pytest.raises(GalleryError, match="already exists"):
        store.rename_person("Anna", "Bob")
    store.set_metadata("Anna", {"role": "chair", "n": [1, 2]})
    assert store.person("Anna")[0].metadata == {"role": "chair", "n": [1, 2]}
    for call in (
        lambda: store.rename_person("Nobody", "X"),
        lambda: store.person("Nobody"),
        lambda: store.set_metadata("Nobody", {}),
        lambda: store.remove_person("Nobody"),
    ):
        with pytest.raises(GalleryError, match="'Nobody': no such person"):
            call()
    with pytest.raises(GalleryError, match="non-blank"):
        store.add_faces("  ", [face(unit(1)[0])])


@pytest.mark.parametrize(
    "name",
    ["Zoë Ångström-李", 'O\'Brien "Jr"', "AC/DC\\back", "Robert'); DROP TABLE faceprint.people;--", "😀 x"],
)
def test_names_are_stored_as_given(store: PostgresStore, name: str) -> None:
    store.add_faces(name, [face(unit(1)[0])])
    assert [p.name for p in store.people()] == [name]
    store.rename_person(name, name + "2")
    assert store.remove_person(name + "2") == 1


def test_generation_snapshot_and_settings(store: PostgresStore) -> None:
    assert store.generation() == 0
    snap = store.snapshot()
    assert snap.generation == 0 and snap.vectors.shape[0] == 0 and snap.face_ids == ()
    v = unit(3)
    store.add_faces("Ann", [face(v[0]), face(v[1])])
    store.add_faces("Bob", [face(v[2])])
    assert store.generation() == 2
    snap = store.snapshot()
    assert snap.generation == 2 and snap.persons == ("Ann", "Ann", "Bob")
    assert snap.vectors.dtype == np.float32 and np.array_equal(snap.vectors, v)
    assert store.get_setting("threshold") is None
    store.set_setting("threshold", "0.61")
    assert store.get_setting("threshold") == "0.61" and store.generation() == 3
    store.set_setting("threshold", None)
    assert store.get_setting("threshold") is None and store.generation() == 4
    with pytest.raises(GalleryError):
        store.remove_person("Nobody")
    assert store.generation() == 4  # a failed write commits nothing


def test_search_faces_hnsw_matches_exact(store: PostgresStore, pg_url: str) -> None:
    """~2,000 random unit vectors (the hardest case for HNSW): recall@1 against numpy >= 0.99."""
    vecs = unit(2000, seed=3)
    for p in range(100):
        store.add_faces(f"p{p:03d}", [face(v) for v in vecs[p * 20 : (p + 1) * 20]])
    snap = store.snapshot()
    queries = np.concatenate([unit(150, seed=4), vecs[::40] + 0.05 * unit(50, seed=5)]).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    sims = queries @ snap.vectors.T
    exact = np.argsort(-sims, axis=1)[:, :5]
    got = store.search_faces(queries, 5)
    recall1 = np.mean([got[i][0][0] == snap.face_ids[exact[i, 0]] for i in range(len(queries))])
    assert recall1 >= 0.99, recall1
    for i, hits in enumerate(got[:20]):  # similarities are cosine, best first, person attached
        assert len(hits) == 5 and [h[2] for h in hits] == sorted((h[2] for h in hits), reverse=True)
        fid, person, sim = hits[0]
        j = snap.face_ids.index(fid)
        assert person == snap.persons[j] and sim == pytest.approx(float(sims[i, j]), abs=1e-5)
    with psycopg.connect(pg_url) as conn:  # the server really answers through the HNSW index
        plan = conn.execute(
            "EXPLAIN SELECT face_id FROM faceprint.faces ORDER BY vector <=> %s::vector LIMIT 5",
            (str([float(x) for x in queries[0]]),),
        ).fetchall()
    assert "faces_hnsw" in " ".join(r[0] for r in plan)


WORKER = """
import sys, uuid
import numpy as np
from faceprint.gallery.postgres import PostgresStore
from faceprint.gallery.records import FaceRecord
url, tag = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(abs(hash(tag)) % 2**32)
store = PostgresStore(url)  # both processes create the schema and bind the model at once
for i in range(30):
    v = rng.normal(size=(2, 128)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    store.add_faces(f"{tag}-{i}", [FaceRecord(uuid.uuid4().hex, "", v[0], "m@1", f"{tag}{i}")])
    store.add_faces("shared", [FaceRecord(uuid.uuid4().hex, "", v[1], "m@1", f"{tag}s{i}"),
                               FaceRecord(uuid.uuid4().hex, "", v[1], "m@1", f"same{i}")])
store.close()
"""


def test_two_processes_adding_at_once_lose_nothing(pg_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, pg_url, tag], env=env, stderr=subprocess.PIPE, text=True
        )
        for tag in ("a", "b")
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    store = PostgresStore(pg_url)
    people = {p.name: p.faces for p in store.people()}
    assert len(people) == 61 and all(people[f"{t}-{i}"] == 1 for t in "ab" for i in range(30))
    assert people["shared"] == 30 + 30 + 30  # each process's own images, and each "same" image once
    assert store.generation() == 120 and store.model() == ("m@1", 128)
    store.close()


def test_server_restart_mid_use() -> None:
    """Stop the server under a live store: a bounded GalleryError, then the next call works."""
    with throwaway_server() as server:
        store = PostgresStore(server.create_database())
        store.add_faces("Ann", [face(v, f"s{i}") for i, v in enumerate(unit(3))])
        gen = store.generation()
        for mode, idle in (("fast", 0.0), ("immediate", PING_AFTER_S + 0.2)):
            server.stop(mode)
            time.sleep(idle)  # idle: the store pings first, then cannot connect at all
            t0 = time.monotonic()
            with pytest.raises(
                GalleryError, match=r"cannot reach PostgreSQL at postgresql://postgres@127\.0\.0\.1"
            ):
                store.add_faces("Bob", [face(unit(1, seed=9)[0])])
            with pytest.raises(GalleryError, match="cannot reach PostgreSQL"):
                store.people()
            assert time.monotonic() - t0 < 2 * CONNECT_TIMEOUT_S + 2
            server.start()
            assert store.generation() == gen and [p.name for p in store.people()] == ["Ann"]
        added, _ = store.add_faces("Bob", [face(unit(1, seed=9)[0])])
        assert len(added) == 1 and store.generation() == gen + 1
        store.close()


def test_server_killed_mid_enrolment_leaves_all_or_nothing() -> None:
    """A server crash during one large enrolment: afterwards the person is fully there or absent."""
    import threading

    with throwaway_server() as server:
        store = PostgresStore(server.create_database())
        store.add_faces("Ann", [face(unit(1)[0])])
        big = [face(v) for v in unit(20000, seed=11)]
        killer = threading.Timer(0.5, server.stop, args=("immediate",))
        killer.start()
        t0 = time.monotonic()
        try:
            store.add_faces("Big", big)
            finished = True
        except GalleryError as exc:
            finished = False
            assert "cannot reach PostgreSQL" in str(exc)
        elapsed = time.monotonic() - t0
        killer.join()
        server.start()
        people = {p.name: p.faces for p in store.people()}
        assert people == ({"Ann": 1, "Big": 20000} if finished else {"Ann": 1}), (finished, elapsed)
        assert store.snapshot().vectors.shape[0] == sum(people.values())
        store.close()


def test_unreachable_server_error_hides_the_password(pg_server: ThrowawayServer) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://alice:s3cr%21t-pw@127.0.0.1:{port}/db?password=other-pw"
    with pytest.raises(GalleryError, match="cannot reach PostgreSQL at") as info:
        PostgresStore(url)
    msg = str(info.value)
    assert "s3cr" not in msg and "other-pw" not in msg and "alice:***@" in msg, msg


def test_missing_extension_without_privilege_is_explained(pg_server: ThrowawayServer) -> None:
    name = f"np_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{name}" LOGIN')
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')
    with pytest.raises(GalleryError, match=r"CREATE EXTENSION vector;"):
        PostgresStore(f"postgresql://{name}@127.0.0.1:{pg_server.port}/{name}")
    with psycopg.connect(pg_server.url(name), autocommit=True) as conn:  # an administrator does it once
        conn.execute("CREATE EXTENSION vector")
    store = PostgresStore(f"postgresql://{name}@127.0.0.1:{pg_server.port}/{name}")
    store.add_faces("Ann", [face(unit(1)[0])])
    assert store.search_faces(unit(1), 1)[0][0][1] == "Ann"
    store.close()


def test_newer_schema_is_refused(store: PostgresStore, pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE faceprint.meta SET schema_version = 99")
    with pytest.raises(GalleryError, match="schema version 99"):
        PostgresStore(pg_url)


def test_remove_face_deletes_its_row_and_keeps_the_person(store: PostgresStore, pg_url: str) -> None:
    ann = [face(v) for v in unit(3)]
    store.add_faces("Ann", ann)
    gen = store.generation()
    assert store.remove_face(ann[1].face_id) == "Ann" and store.generation() == gen + 1
    assert store.remove_face(ann[0].face_id) == "Ann" and store.remove_face(ann[2].face_id) == "Ann"
    assert [(p.name, p.faces) for p in store.people()] == [("Ann", 0)]
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM faceprint.faces").fetchone() == (0,)
    with pytest.raises(UnknownFaceError, match="no such face"):
        store.remove_face(ann[1].face_id)
    assert store.search_faces(unit(1), 3) == [[]] and store.count_people() == 0


#: The schema faceprint wrote before person ids (schema version 1).
V1_DDL = """
CREATE SCHEMA IF NOT EXISTS faceprint;
CREATE TABLE faceprint.meta (
    id integer PRIMARY KEY CHECK (id = 1), schema_version integer NOT NULL, model text, dim integer,
    generation bigint NOT NULL DEFAULT 0
);
CREATE TABLE faceprint.settings (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE faceprint.people (
    id bigserial PRIMARY KEY, name text NOT NULL UNIQUE, metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at text NOT NULL
);
CREATE TABLE faceprint.faces (
    seq bigserial PRIMARY KEY, face_id text NOT NULL UNIQUE,
    person_id bigint NOT NULL REFERENCES faceprint.people (id) ON DELETE CASCADE,
    vector vector(128) NOT NULL, model text NOT NULL, image_sha256 text,
    x1 double precision, y1 double precision, x2 double precision, y2 double precision,
    score double precision, added_at text NOT NULL, UNIQUE (person_id, image_sha256)
);
CREATE INDEX faces_person ON faceprint.faces (person_id);
CREATE INDEX faces_hnsw ON faceprint.faces USING hnsw (vector vector_cosine_ops);
"""


def v1_database(url: str, people: dict[str, int]) -> dict[str, list[str]]:
    """A version-1 gallery (the old DDL) bound to the legacy id ``dlib@resnet_v1``, holding
    ``people`` (name -> number of faces); returns each person's face ids."""
    out: dict[str, list[str]] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(V1_DDL)
        conn.execute("INSERT INTO faceprint.meta VALUES (1, 1, 'dlib@resnet_v1', 128, 5)")
        for i, (name, n) in enumerate(people.items()):
            pid = conn.execute(
                "INSERT INTO faceprint.people (name, metadata, created_at) "
                "VALUES (%s, %s, 'then') RETURNING id",
                (name, psycopg.types.json.Jsonb({"k": i})),
            ).fetchone()[0]
            for v in unit(n, seed=100 + i):
                fid = uuid.uuid4().hex
                conn.execute(
                    "INSERT INTO faceprint.faces (face_id, person_id, vector, model, added_at) "
                    "VALUES (%s, %s, %s::vector, 'dlib@resnet_v1', 'then')",
                    (fid, pid, str([float(x) for x in v])),
                )
                out.setdefault(name, []).append(fid)
    return out


def test_version_1_database_is_upgraded_on_open(pg_url: str) -> None:
    from faceprint.gallery.records import upgrade_model_id

    ids = v1_database(pg_url, {"Ann": 2, "Bob": 1, "O'Neil 王": 3})
    store = PostgresStore(pg_url)
    people = store.people()
    assert [(p.name, p.faces, dict(p.metadata)) for p in people] == [
        ("Ann", 2, {"k": 0}), ("Bob", 1, {"k": 1}), ("O'Neil 王", 3, {"k": 2})
    ]  # fmt: skip
    pids = [p.id for p in people]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in pids) and len(set(pids)) == 3
    for p in people:
        person, recs = store.person_by_id(p.id)
        assert person == p and [f.face_id for f in recs] == ids[p.name]
    assert store.model() == (upgrade_model_id("dlib@resnet_v1"), 128)  # the model-id upgrade ran too
    assert store.generation() == 5
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT schema_version FROM faceprint.meta").fetchone() == (2,)
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("UPDATE faceprint.people SET uid = %s WHERE name = 'Bob'", (pids[0],))
        with pytest.raises(psycopg.errors.NotNullViolation):
            conn.execute("UPDATE faceprint.people SET uid = NULL WHERE name = 'Bob'")
    store.close()
    again = PostgresStore(pg_url)  # upgraded once: the ids stay
    assert [p.id for p in again.people()] == pids
    assert again.create_person("Cid").id not in pids
    assert again.search_faces(unit(1, seed=100), 1)[0][0][:2] == (ids["Ann"][0], "Ann")
    again.close()


def test_version_1_upgrade_needs_the_owner(pg_server: ThrowawayServer, pg_url: str) -> None:
    """A user with read/write rights but not the tables' ownership cannot upgrade: a clear
    error and nothing changed; once the owner opened it, that user works on it."""
    v1_database(pg_url, {"Ann": 1})
    role = f"rw_{uuid.uuid4().hex[:8]}"
    dbname = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'GRANT USAGE ON SCHEMA faceprint TO "{role}"')
        conn.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA faceprint TO "{role}"')
        conn.execute(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA faceprint TO "{role}"')
    rw_url = f"postgresql://{role}@127.0.0.1:{pg_server.port}/{dbname}"
    with pytest.raises(GalleryError, match=r"schema version 1 to 2 .*open it once as the owner"):
        PostgresStore(rw_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT schema_version FROM faceprint.meta").fetchone() == (1,)
        cols = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'people'")}  # fmt: skip
        assert "uid" not in cols
    PostgresStore(pg_url).close()  # the owner upgrades it
    rw = PostgresStore(rw_url)
    (ann,) = rw.people()
    assert rw.person_by_id(ann.id)[0].name == "Ann" and rw.create_person("Bob").faces == 0
    rw.close()


def test_missing_psycopg_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from faceprint.gallery.postgres import PostgresStore\n"
        "from faceprint.errors import MissingExtraError\n"
        "try:\n    PostgresStore('postgresql://localhost/x')\n"
        "except MissingExtraError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'faceprint[postgres]'" in out.stdout, out.stderr
    assert issubclass(MissingExtraError, ImportError)


def test_server_restarted_between_two_quick_calls_costs_no_error() -> None:
    """A restart that takes less than PING_AFTER_S between two calls (a busy service never
    idles that long): the server's goodbye on the idle socket makes the store reconnect
    first, so the next call succeeds instead of failing on the dead session."""
    with throwaway_server() as server:
        store = PostgresStore(server.create_database())
        store.add_faces("Ann", [face(unit(1)[0], "a")])
        for _ in range(2):
            t0 = time.monotonic()
            server.stop("fast")
            server.start()
            assert [p.name for p in store.people()] == ["Ann"], time.monotonic() - t0
        added, _ = store.add_faces("Bob", [face(unit(1, seed=3)[0], "b")])
        assert len(added) == 1 and store.count_people() == 2
        store.close()
