"""PostgreSQL + pgvector gallery store (extra ``[postgres]``: psycopg 3 and pgvector).

Select it with a URL: ``postgresql://user@host:5432/dbname`` (``postgres://`` works too; libpq
options such as ``?sslmode=require`` pass through). The database needs the pgvector extension:
the store runs ``CREATE EXTENSION IF NOT EXISTS vector`` on first open, which needs a superuser
(or a user allowed to create it); otherwise an administrator runs ``CREATE EXTENSION vector;``
once in that database.

**Schema** (version :data:`SCHEMA_VERSION`, created on first open in schema ``faceprint``):
``meta`` (one row: schema version, bound model ``name@version``, dim, ``generation``),
``settings``, ``people`` (unique name, jsonb metadata) and ``faces`` (``vector`` column, box,
score, sha256, ``ON DELETE CASCADE`` to its person, ``UNIQUE (person_id, image_sha256)``). The
dimension is unknown until the first enrolment binds the model; that transaction types the
column ``vector(dim)`` and builds the HNSW index (``vector_cosine_ops``), so the search is
server-side: ``ORDER BY vector <=> query`` (cosine distance; similarity = 1 - distance).

**Transactions and concurrency.** Every write is one transaction that first locks the ``meta``
row (``SELECT ... FOR UPDATE``) and bumps ``generation`` in it, so concurrent writers from any
number of processes are serialised, nothing is lost, and a crash leaves the gallery as it was
before the call or after it. Values always travel as query parameters (never formatted into SQL),
so names with quotes, slashes or any unicode are stored as given.

**Connection failures.** One connection per store, opened on demand with a connect timeout of
:data:`CONNECT_TIMEOUT_S`. A failure to connect, or a server that goes away mid-operation, raises
:class:`~faceprint.errors.GalleryError` ("cannot reach PostgreSQL at ...") and drops the
connection; the next call connects again. A connection idle for more than :data:`PING_AFTER_S`
is checked first, so a server restarted between two calls costs no error. Error messages show the
URL with its password masked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from ..config import mask_url
from ..errors import GalleryError, IncompatibleEmbeddingError, MissingExtraError
from ..types import Box
from .records import FaceRecord, Person, Snapshot, check_name, check_vectors, now_iso

if TYPE_CHECKING:
    import psycopg

SCHEMA_VERSION = 1
CONNECT_TIMEOUT_S = 5
PING_AFTER_S = 1.0
#: HNSW candidate list size per query (pgvector's default is 40). 200 gives recall@1 of 1.0 on
#: 2,000 random 128-D unit vectors (the test), where 40 does not; raised to ``k`` when larger.
EF_SEARCH = 200
#: pgvector's HNSW index handles at most 2,000 dimensions; beyond that the search is exact.
HNSW_MAX_DIM = 2000

_INSTALL = "pip install 'faceprint[postgres]'"
_SCHEMA_DDL = """
CREATE SCHEMA IF NOT EXISTS faceprint;
CREATE TABLE IF NOT EXISTS faceprint.meta (
    id integer PRIMARY KEY CHECK (id = 1),
    schema_version integer NOT NULL,
    model text,
    dim integer,
    generation bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS faceprint.settings (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS faceprint.people (
    id bigserial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at text NOT NULL
);
CREATE TABLE IF NOT EXISTS faceprint.faces (
    seq bigserial PRIMARY KEY,
    face_id text NOT NULL UNIQUE,
    person_id bigint NOT NULL REFERENCES faceprint.people (id) ON DELETE CASCADE,
    vector vector NOT NULL,
    model text NOT NULL,
    image_sha256 text,
    x1 double precision, y1 double precision, x2 double precision, y2 double precision,
    score double precision,
    added_at text NOT NULL,
    UNIQUE (person_id, image_sha256)
);
CREATE INDEX IF NOT EXISTS faces_person ON faceprint.faces (person_id);
"""
_FACE_COLS = (
    "f.face_id, p.name, f.vector, f.model, f.image_sha256, f.x1, f.y1, f.x2, f.y2, f.score, f.added_at"
)

T = TypeVar("T")


def _import_psycopg() -> Any:
    try:
        import pgvector.psycopg
        import psycopg
    except ImportError as exc:
        raise MissingExtraError(
            f"the PostgreSQL gallery needs psycopg and pgvector ({exc.name} is missing): run {_INSTALL}"
        ) from exc
    return psycopg, pgvector.psycopg


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PostgresStore:
    """A gallery in a PostgreSQL database with pgvector; see the module docstring."""

    def __init__(self, url: str) -> None:
        self._psycopg, self._pgvector = _import_psycopg()
        self._url = url
        self.location = mask_url(url)
        self._conn: psycopg.Connection[Any] | None = None
        self._last_used = 0.0
        self._lock = threading.RLock()  # one connection: one transaction at a time across threads
        self._run("open the gallery", lambda conn: None)  # connects and creates the schema

    # ----------------------------------------------------------------- connection handling
    def _scrub(self, text: str) -> str:
        """``text`` without the URL's password, should libpq ever echo it."""
        try:
            password = self._psycopg.conninfo.conninfo_to_dict(self._url).get("password")
        except self._psycopg.Error:
            return mask_url(text)
        return mask_url(text.replace(str(password), "***") if password else text)

    def _connect(self) -> psycopg.Connection[Any]:
        pg = self._psycopg
        try:
            conn: psycopg.Connection[Any] = pg.connect(
                self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
            )
        except pg.Error as exc:
            raise GalleryError(
                f"cannot reach PostgreSQL at {self.location}: {self._scrub(_first_line(exc))}"
            ) from None
        try:
            self._ensure_schema(conn)
            self._pgvector.register_vector(conn)
        except pg.Error as exc:
            conn.close()
            raise GalleryError(
                f"cannot open the gallery schema at {self.location}: {self._scrub(_first_line(exc))}"
            ) from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        """Create the extension and tables once; refuse a schema from a newer faceprint.

        The DDL runs only while ``faceprint.meta`` is missing, so a user with read/write rights
        on an existing gallery needs no CREATE privilege; an advisory lock serialises processes
        that open a new gallery at the same moment."""
        exists = conn.execute("SELECT to_regclass('faceprint.meta') IS NOT NULL").fetchone()
        if not (exists and exists[0]):
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('faceprint.schema'))")
                if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone() is None:
                    try:
                        with conn.transaction():
                            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                    except self._psycopg.Error as exc:
                        raise GalleryError(
                            f"the pgvector extension is not installed in the database at {self.location} "
                            f"and could not be created ({_first_line(exc)}): ask an administrator to run "
                            "'CREATE EXTENSION vector;' in that database"
                        ) from None
                conn.execute(_SCHEMA_DDL)
                conn.execute(
                    "INSERT INTO faceprint.meta (id, schema_version) VALUES (1, %s) ON CONFLICT DO NOTHING",
                    (SCHEMA_VERSION,),
                )
        row = conn.execute("SELECT schema_version FROM faceprint.meta WHERE id = 1").fetchone()
        found = int(row[0]) if row else SCHEMA_VERSION
        if found > SCHEMA_VERSION:
            raise GalleryError(
                f"the gallery at {self.location} has schema version {found}, newer than this faceprint "
                f"supports ({SCHEMA_VERSION}): upgrade faceprint"
            )

    def _live(self) -> psycopg.Connection[Any]:
        """The open connection, (re)connecting when it is missing, closed or found dead."""
        conn = self._conn
        if conn is not None and not conn.closed and time.monotonic() - self._last_used > PING_AFTER_S:
            try:
                conn.execute("SELECT 1")
            except self._psycopg.Error:
                conn.close()
        if conn is None or conn.closed:
            self._conn = conn = self._connect()
        return conn

    def _run(self, what: str, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``fn`` on a live connection, turning every database failure into GalleryError."""
        with self._lock:
            return self._run_locked(what, fn)

    def _run_locked(self, what: str, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        conn = self._live()
        try:
            return fn(conn)
        except self._psycopg.Error as exc:
            if conn.closed or conn.broken:
                self._conn = None
                conn.close()
                raise GalleryError(
                    f"cannot reach PostgreSQL at {self.location}: lost the connection while trying to "
                    f"{what}: {self._scrub(_first_line(exc))} (the server rolls back an unfinished "
                    "write; retry once it is back)"
                ) from None
            raise GalleryError(
                f"PostgreSQL gallery at {self.location}: cannot {what}: {self._scrub(_first_line(exc))}"
            ) from None
        finally:
            self._last_used = time.monotonic()

    @contextmanager
    def _write(self, conn: psycopg.Connection[Any]) -> Iterator[tuple[str | None, int | None]]:
        """A write transaction holding the meta row lock; bumps ``generation`` on success."""
        with conn.transaction():
            row = conn.execute("SELECT model, dim FROM faceprint.meta WHERE id = 1 FOR UPDATE").fetchone()
            yield (row[0], row[1]) if row else (None, None)
            conn.execute("UPDATE faceprint.meta SET generation = generation + 1 WHERE id = 1")

    def _writing(self, what: str, body: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``body`` inside one locked write transaction (see :meth:`_write`)."""

        def tx(conn: psycopg.Connection[Any]) -> T:
            with self._write(conn):
                return body(conn)

        return self._run(what, tx)

    def _person_id(self, conn: psycopg.Connection[Any], name: str, action: str) -> int:
        row = conn.execute("SELECT id FROM faceprint.people WHERE name = %s", (name,)).fetchone()
        if row is None:
            raise GalleryError(f"gallery {self.location}: cannot {action} {name!r}: no such person")
        return int(row[0])

    def _rows(self, what: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of one read-only query."""
        return self._run(what, lambda conn: conn.execute(sql, params).fetchall())

    # ----------------------------------------------------------------- Store protocol
    def model(self) -> tuple[str, int] | None:
        rows = self._rows("read the bound model", "SELECT model, dim FROM faceprint.meta WHERE id = 1")
        return (str(rows[0][0]), int(rows[0][1])) if rows and rows[0][0] is not None else None

    def add_faces(
        self, person: str, faces: Sequence[FaceRecord], metadata: Mapping[str, Any] | None = None
    ) -> tuple[list[FaceRecord], list[FaceRecord]]:
        """Add ``faces`` to ``person`` in one transaction (see :class:`~.records.Store`).

        Same semantics as ``SqliteStore``: ``metadata`` is merged into the person's (new keys
        win); a face is skipped when its ``image_sha256`` is already enrolled for ``person`` or
        its ``face_id`` exists; with no faces nothing is written, and a new person whose faces
        were all skipped is not created."""
        check_name(person)
        if not faces:
            return [], []
        model, dim, vecs = check_vectors(self.location, faces)
        meta = _jsonb(self._psycopg, metadata or {})

        def tx(conn: psycopg.Connection[Any]) -> tuple[list[FaceRecord], list[FaceRecord]]:
            with self._write(conn) as (bound, bound_dim):
                if bound is None:
                    self._bind(conn, model, dim)
                elif bound != model or bound_dim != dim:
                    raise IncompatibleEmbeddingError(
                        f"gallery {self.location} holds {bound_dim}-D vectors of {bound}; got {dim}-D "
                        f"vectors of {model} (use the gallery's embedder, or another gallery)"
                    )
                stamp = now_iso()
                row = conn.execute("SELECT id FROM faceprint.people WHERE name = %s", (person,)).fetchone()
                pid0 = row[0] if row else None
                shas = conn.execute("SELECT image_sha256 FROM faceprint.faces WHERE person_id = %s", (pid0,))
                known = {r[0] for r in shas if r[0] is not None}
                ids = [f.face_id for f in faces]
                taken = {
                    r[0]
                    for r in conn.execute(
                        "SELECT face_id FROM faceprint.faces WHERE face_id = ANY(%s)", (ids,)
                    )
                }
                added: list[tuple[FaceRecord, NDArray[np.float32]]] = []
                skipped: list[FaceRecord] = []
                for f, vec in zip(faces, vecs, strict=True):
                    if f.face_id in taken or (f.image_sha256 is not None and f.image_sha256 in known):
                        skipped.append(f)
                        continue
                    taken.add(f.face_id)
                    if f.image_sha256 is not None:
                        known.add(f.image_sha256)
                    added.append((replace(f, person=person, added_at=f.added_at or stamp), vec))
                if row is None and not added:
                    return [], skipped
                if row is None:
                    row = conn.execute(
                        "INSERT INTO faceprint.people (name, metadata, created_at) "
                        "VALUES (%s, %s, %s) RETURNING id",
                        (person, meta, stamp),
                    ).fetchone()
                elif metadata:
                    conn.execute(
                        "UPDATE faceprint.people SET metadata = metadata || %s WHERE id = %s", (meta, row[0])
                    )
                pid = int(row[0]) if row else 0
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO faceprint.faces (face_id, person_id, vector, model, image_sha256, "
                        "x1, y1, x2, y2, score, added_at)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        [(r.face_id, pid, v, model, r.image_sha256,
                          *((r.box.x1, r.box.y1, r.box.x2, r.box.y2) if r.box else (None,) * 4),
                          None if r.score is None else float(r.score), r.added_at) for r, v in added],
                    )  # fmt: skip
            return [r for r, _ in added], skipped

        return self._run(f"enrol {person!r}", tx)

    def count_people(self) -> int:
        return int(self._rows("count people", "SELECT count(*) FROM faceprint.people")[0][0])

    def _bind(self, conn: psycopg.Connection[Any], model: str, dim: int) -> None:
        """Bind the gallery to ``model``: type the vector column and build the HNSW index."""
        conn.execute(f"ALTER TABLE faceprint.faces ALTER COLUMN vector TYPE vector({int(dim)})")
        if dim <= HNSW_MAX_DIM:
            conn.execute(
                "CREATE INDEX IF NOT EXISTS faces_hnsw ON faceprint.faces "
                "USING hnsw (vector vector_cosine_ops)"
            )
        conn.execute("UPDATE faceprint.meta SET model = %s, dim = %s WHERE id = 1", (model, dim))

    def remove_person(self, name: str) -> int:
        def body(conn: psycopg.Connection[Any]) -> int:
            pid = self._person_id(conn, name, "remove")
            n = conn.execute("SELECT count(*) FROM faceprint.faces WHERE person_id = %s", (pid,)).fetchone()
            conn.execute("DELETE FROM faceprint.people WHERE id = %s", (pid,))  # faces: ON DELETE CASCADE
            return int(n[0]) if n else 0

        return self._writing(f"remove {name!r}", body)

    def rename_person(self, old: str, new: str) -> None:
        check_name(new)

        def body(conn: psycopg.Connection[Any]) -> None:
            pid = self._person_id(conn, old, "rename")
            if (
                old != new
                and conn.execute("SELECT 1 FROM faceprint.people WHERE name = %s", (new,)).fetchone()
            ):
                raise GalleryError(
                    f"gallery {self.location}: cannot rename {old!r} to {new!r}: {new!r} already exists"
                )
            conn.execute("UPDATE faceprint.people SET name = %s WHERE id = %s", (new, pid))

        self._writing(f"rename {old!r}", body)

    def set_metadata(self, name: str, metadata: Mapping[str, Any]) -> None:
        meta = _jsonb(self._psycopg, metadata)
        sql = "UPDATE faceprint.people SET metadata = %s WHERE id = %s"
        self._writing(
            f"set the metadata of {name!r}",
            lambda c: c.execute(sql, (meta, self._person_id(c, name, "set the metadata of"))),
        )

    def people(self) -> list[Person]:
        rows = self._rows(
            "list people",
            "SELECT p.name, p.metadata, count(f.seq), p.created_at FROM faceprint.people p "
            "LEFT JOIN faceprint.faces f ON f.person_id = p.id GROUP BY p.id ORDER BY p.name",
        )
        return [Person(r[0], dict(r[1]), int(r[2]), r[3]) for r in rows]

    def person(self, name: str) -> tuple[Person, list[FaceRecord]]:
        def q(conn: psycopg.Connection[Any]) -> tuple[Person, list[FaceRecord]]:
            with conn.transaction():
                row = conn.execute(
                    "SELECT id, metadata, created_at FROM faceprint.people WHERE name = %s", (name,)
                ).fetchone()
                if row is None:
                    raise GalleryError(f"gallery {self.location}: cannot read {name!r}: no such person")
                rows = conn.execute(
                    f"SELECT {_FACE_COLS} FROM faceprint.faces f "
                    "JOIN faceprint.people p ON p.id = f.person_id WHERE f.person_id = %s ORDER BY f.seq",
                    (row[0],),
                ).fetchall()
            faces = [_face(r) for r in rows]
            return Person(name, dict(row[1]), len(faces), row[2]), faces

        return self._run(f"read {name!r}", q)

    def snapshot(self) -> Snapshot:
        def q(conn: psycopg.Connection[Any]) -> Snapshot:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                meta = conn.execute("SELECT generation, dim FROM faceprint.meta WHERE id = 1").fetchone()
                with conn.cursor(binary=True) as cur:  # binary vectors: no text parsing
                    rows = cur.execute(
                        "SELECT f.face_id, p.name, f.vector FROM faceprint.faces f "
                        "JOIN faceprint.people p ON p.id = f.person_id ORDER BY f.seq"
                    ).fetchall()
            gen, dim = (int(meta[0]), int(meta[1] or 0)) if meta else (0, 0)
            vectors = np.stack([_vec(r[2]) for r in rows]) if rows else np.zeros((0, dim), np.float32)
            return Snapshot(gen, tuple(r[0] for r in rows), tuple(r[1] for r in rows), vectors)

        return self._run("read a snapshot", q)

    def generation(self) -> int:
        rows = self._rows("read the generation", "SELECT generation FROM faceprint.meta WHERE id = 1")
        return int(rows[0][0]) if rows else 0

    def get_setting(self, key: str) -> str | None:
        rows = self._rows(
            f"read setting {key!r}", "SELECT value FROM faceprint.settings WHERE key = %s", (key,)
        )
        return str(rows[0][0]) if rows else None

    def set_setting(self, key: str, value: str | None) -> None:
        params: tuple[str, ...] = (key,) if value is None else (key, value, value)
        sql = (
            "DELETE FROM faceprint.settings WHERE key = %s"
            if value is None
            else "INSERT INTO faceprint.settings VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = %s"
        )
        self._writing(f"write setting {key!r}", lambda conn: conn.execute(sql, params))

    def search_faces(self, queries: NDArray[np.float32], k: int) -> list[list[tuple[str, str, float]]]:
        """The ``k`` most similar faces to each query row, best first: (face_id, person, cosine
        similarity). Runs on the server through the HNSW index (``hnsw.ef_search`` =
        max(:data:`EF_SEARCH`, k)); an unbound gallery answers empty lists."""
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or k < 1:
            raise GalleryError(f"expected (Q, D) query vectors and k >= 1, got shape {q.shape} and k={k}")

        def run(conn: psycopg.Connection[Any]) -> list[list[tuple[str, str, float]]]:
            bound = conn.execute("SELECT model, dim FROM faceprint.meta WHERE id = 1").fetchone()
            if bound is None or bound[1] is None:
                return [[] for _ in range(len(q))]
            if int(bound[1]) != q.shape[1]:
                raise IncompatibleEmbeddingError(
                    f"gallery {self.location} holds {bound[1]}-D vectors of {bound[0]}; "
                    f"got {q.shape[1]}-D query vectors (use the gallery's embedder)"
                )
            out: list[list[tuple[str, str, float]]] = []
            with conn.transaction():
                conn.execute(f"SET LOCAL hnsw.ef_search = {min(max(EF_SEARCH, int(k)), 1000)}")
                for vec in q:
                    rows = conn.execute(
                        "SELECT n.face_id, p.name, 1 - n.d FROM "
                        "(SELECT face_id, person_id, vector <=> %s AS d "
                        f"FROM faceprint.faces ORDER BY d LIMIT {int(k)}) n "
                        "JOIN faceprint.people p ON p.id = n.person_id ORDER BY n.d",
                        (vec,),
                    ).fetchall()
                    out.append([(r[0], r[1], float(r[2])) for r in rows])
            return out

        return self._run("search faces", run)

    def centroids(self, names: Sequence[str]) -> dict[str, NDArray[np.float32]]:
        """Each named person's centroid: the mean of their face vectors re-normalised to unit
        length (the gallery's person-level score, see :mod:`.scoring`), computed by the server
        (pgvector's ``avg``) in one round trip. Unknown names are absent from the result."""
        if not names:
            return {}

        def q(conn: psycopg.Connection[Any]) -> dict[str, NDArray[np.float32]]:
            with conn.cursor(binary=True) as cur:
                rows = cur.execute(
                    "SELECT p.name, avg(f.vector) FROM faceprint.faces f "
                    "JOIN faceprint.people p ON p.id = f.person_id "
                    "WHERE p.name = ANY(%s) GROUP BY p.name",
                    (list(names),),
                ).fetchall()
            out: dict[str, NDArray[np.float32]] = {}
            for name, mean in rows:
                v = _vec(mean)
                norm = float(np.linalg.norm(v))
                out[name] = v / norm if norm > 0 else v
            return out

        return self._run("read person centroids", q)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"PostgresStore({self.location!r})"


def _jsonb(psycopg: Any, metadata: Mapping[str, Any]) -> Any:
    import json

    try:
        json.dumps(dict(metadata))
    except (TypeError, ValueError) as exc:
        raise GalleryError(f"person metadata must be JSON-serialisable: {exc}") from None
    return psycopg.types.json.Jsonb(dict(metadata))


def _vec(value: Any) -> NDArray[np.float32]:
    """A pgvector value (``pgvector.Vector``, or text in older adapters) as a float32 array."""
    if hasattr(value, "to_numpy"):
        return np.asarray(value.to_numpy(), dtype=np.float32)
    if isinstance(value, str):
        return np.asarray([float(x) for x in value.strip("[]").split(",")], dtype=np.float32)
    return np.asarray(value, dtype=np.float32)


def _face(r: Sequence[Any]) -> FaceRecord:
    box = Box(float(r[5]), float(r[6]), float(r[7]), float(r[8])) if r[5] is not None else None
    return FaceRecord(
        face_id=r[0], person=r[1], vector=_vec(r[2]), model=r[3],
        image_sha256=r[4], box=box, score=None if r[9] is None else float(r[9]), added_at=r[10],
    )  # fmt: skip
