"""The photo-collection tables, in the gallery's own database (SQLite file or PostgreSQL).

Why in the gallery: naming a cluster enrols its faces as a person of that gallery, and an
enrolled person anchors clusters, so the two must live (and be backed up) together. Why a
layer of its own: the queries are the same on both backends; only the DDL, the
placeholder style and the way a transaction is opened differ, and :class:`CollectionDb`
hides exactly that, so every query is written once (:mod:`.store`).

Tables (created on the first write that needs them, so a gallery that never indexed a
photo has none, and older faceprint releases still open the file: they ignore them):

* ``photo_images(image_sha256 PK, width, height, faces, model, indexed_at)``: one row per
  distinct photo content, written in the same transaction as its faces: the marker that
  its faces are all stored (a killed run leaves either all of them or none);
* ``photos(path PK, image_sha256, size, mtime, indexed_at, error)``: one row per path; two
  paths to the same bytes share one face set; ``error`` is why the photo failed (it is
  tried again on the next run);
* ``photo_faces(id, image_sha256, face_index, box, landmarks JSON, score, quality,
  rejected, vector, cluster, enrolled_face)``: unlabelled faces, ``UNIQUE(image_sha256,
  face_index)`` so a retried batch or task never duplicates a face; ``rejected`` is why the
  quality gate kept the face out of clustering (NULL: clustered); ``vector`` little-endian
  float32 bytes of the collection's model; ``enrolled_face`` the gallery face id made when
  its cluster was named;
* ``photo_clusters(id PK, person_uid)``: a cluster and the person it was named as (the
  person's stable id, so a rename in the gallery follows; a removed person leaves the
  cluster unnamed);
* ``photo_links(a, b, kind)``: the user's corrections as face-level constraints,
  ``kind`` = ``"must"`` or ``"cannot"``, kept across re-clustering.

Collection writes do not bump the gallery's ``generation`` (no person or face of the
gallery changes), so indexing photos never makes a server's search index stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ..gallery.records import Store

T = TypeVar("T")

_SQLITE_DDL = """
CREATE TABLE IF NOT EXISTS photo_images (
    image_sha256 TEXT PRIMARY KEY, width INTEGER NOT NULL, height INTEGER NOT NULL,
    faces INTEGER NOT NULL, model TEXT NOT NULL, indexed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS photos (
    path TEXT PRIMARY KEY, image_sha256 TEXT, size INTEGER, mtime REAL,
    indexed_at TEXT NOT NULL, error TEXT
);
CREATE INDEX IF NOT EXISTS photos_sha ON photos (image_sha256);
CREATE TABLE IF NOT EXISTS photo_faces (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_sha256 TEXT NOT NULL, face_index INTEGER NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    landmarks TEXT, score REAL NOT NULL, quality REAL, rejected TEXT,
    vector BLOB NOT NULL, cluster INTEGER, enrolled_face TEXT,
    UNIQUE (image_sha256, face_index)
);
CREATE INDEX IF NOT EXISTS photo_faces_cluster ON photo_faces (cluster);
CREATE TABLE IF NOT EXISTS photo_clusters (id INTEGER PRIMARY KEY, person_uid TEXT);
CREATE TABLE IF NOT EXISTS photo_links (
    a INTEGER NOT NULL, b INTEGER NOT NULL, kind TEXT NOT NULL, PRIMARY KEY (a, b, kind)
)
"""

_PG_DDL = """
CREATE TABLE IF NOT EXISTS faceprint.photo_images (
    image_sha256 text PRIMARY KEY, width integer NOT NULL, height integer NOT NULL,
    faces integer NOT NULL, model text NOT NULL, indexed_at text NOT NULL
);
CREATE TABLE IF NOT EXISTS faceprint.photos (
    path text PRIMARY KEY, image_sha256 text, size bigint, mtime double precision,
    indexed_at text NOT NULL, error text
);
CREATE INDEX IF NOT EXISTS photos_sha ON faceprint.photos (image_sha256);
CREATE TABLE IF NOT EXISTS faceprint.photo_faces (
    id bigserial PRIMARY KEY,
    image_sha256 text NOT NULL, face_index integer NOT NULL,
    x1 double precision NOT NULL, y1 double precision NOT NULL,
    x2 double precision NOT NULL, y2 double precision NOT NULL,
    landmarks text, score double precision NOT NULL, quality double precision, rejected text,
    vector bytea NOT NULL, cluster bigint, enrolled_face text,
    UNIQUE (image_sha256, face_index)
);
CREATE INDEX IF NOT EXISTS photo_faces_cluster ON faceprint.photo_faces (cluster);
CREATE TABLE IF NOT EXISTS faceprint.photo_clusters (id bigint PRIMARY KEY, person_uid text);
CREATE TABLE IF NOT EXISTS faceprint.photo_links (
    a bigint NOT NULL, b bigint NOT NULL, kind text NOT NULL, PRIMARY KEY (a, b, kind)
)
"""

#: Advisory-lock key serialising collection writers that must not interleave (clustering,
#: naming) on PostgreSQL; indexing writers need none (their inserts are idempotent).
_PG_LOCK = 0x46505043  # "FPPC"


class Sql:
    """One open transaction's cursor with the dialect hidden: queries use ``?``
    placeholders and ``{t}`` before every table name."""

    def __init__(self, conn: Any, postgres: bool) -> None:
        self._conn = conn
        self.postgres = postgres
        self._prefix = "faceprint." if postgres else ""

    def _sql(self, sql: str) -> str:
        sql = sql.replace("{t}", self._prefix)
        return sql.replace("?", "%s") if self.postgres else sql

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._conn.execute(self._sql(sql), tuple(params)).fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row = self._conn.execute(self._sql(sql), tuple(params)).fetchone()
        return None if row is None else tuple(row)

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = self._conn.execute(self._sql(sql), tuple(params))
        return int(cur.rowcount or 0)

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if self.postgres:
            with self._conn.cursor() as cur:
                cur.executemany(self._sql(sql), [tuple(r) for r in rows])
        else:
            self._conn.executemany(self._sql(sql), [tuple(r) for r in rows])


class CollectionDb:
    """Transactions on the collection tables of ``store``'s database (module doc)."""

    def __init__(self, store: Store) -> None:
        from ..gallery.sqlite import SqliteStore

        self.store = store
        self.location = store.location
        if isinstance(store, SqliteStore):
            self.postgres = False
        else:
            from ..gallery.postgres import PostgresStore

            if not isinstance(store, PostgresStore):  # pragma: no cover - a new backend adds its branch
                raise TypeError(f"photo collections do not support the store {type(store).__name__}")
            self.postgres = True
        self._ready = False

    # -- transactions ---------------------------------------------------------------------
    def read(self, what: str, fn: Callable[[Sql], T], empty: T) -> T:
        """``fn`` in one read transaction; ``empty`` when the tables do not exist yet."""
        if self.postgres:

            def pg(conn: Any) -> T:
                with conn.transaction():
                    if conn.execute("SELECT to_regclass('faceprint.photo_faces')").fetchone()[0] is None:
                        return empty
                    return fn(Sql(conn, True))

            return self.store._run(what, pg)  # type: ignore[attr-defined, no-any-return]
        with self.store._read() as conn:  # type: ignore[attr-defined]
            if conn is None:
                return empty
            found = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'photo_faces'").fetchone()
            return empty if found is None else fn(Sql(conn, False))

    def write(self, what: str, fn: Callable[[Sql], T], *, exclusive: bool = False) -> T:
        """``fn`` in one write transaction, creating the tables first when needed.
        ``exclusive``: serialised with every other exclusive writer (SQLite serialises
        every writer anyway; PostgreSQL takes an advisory transaction lock)."""
        if self.postgres:

            def pg(conn: Any) -> T:
                with conn.transaction():
                    if not self._ready:
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK + 1,))
                        for statement in _PG_DDL.split(";"):
                            if statement.strip():
                                conn.execute(statement)
                    if exclusive:
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))
                    return fn(Sql(conn, True))

            out: T = self.store._run(what, pg)  # type: ignore[attr-defined]
            self._ready = True
            return out
        with self.store._write(what, bump=False) as conn:  # type: ignore[attr-defined]
            if not self._ready:
                for statement in _SQLITE_DDL.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            result = fn(Sql(conn, False))
        self._ready = True
        return result

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Several collection and gallery writes as one transaction (the gallery store's
        :meth:`~faceprint.gallery.records.Store.transaction`): naming a cluster enrols its
        faces and records the name together or not at all."""
        with self.store.transaction():
            yield
