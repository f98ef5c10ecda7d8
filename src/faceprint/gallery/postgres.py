"""PostgreSQL + pgvector gallery store (extra ``[postgres]``: psycopg 3 and pgvector).

Select it with a URL: ``postgresql://user@host:5432/dbname`` (``postgres://`` works too; libpq
options such as ``?sslmode=require`` pass through). The database needs the pgvector extension:
the store runs ``CREATE EXTENSION IF NOT EXISTS vector`` on first open, which needs a superuser
(or a user allowed to create it); otherwise an administrator runs ``CREATE EXTENSION vector;``
once in that database.

:class:`PostgresStore` is the :class:`~.records.Store`: what it reads and writes. The schema,
the connection (timeouts, reconnection, masked URLs) and the write transactions are
:class:`~.postgres_connection.PgConnection`'s (:mod:`.postgres_connection`, where
:data:`SCHEMA_VERSION`, :data:`CONNECT_TIMEOUT_S` and :data:`PING_AFTER_S` are explained).
Search is server-side through pgvector's HNSW index: ``ORDER BY vector <=> query`` (cosine
distance; similarity = 1 - distance). Values always travel as query parameters (never
formatted into SQL), so names with quotes, slashes or any unicode are stored as given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..errors import (
    GalleryError,
    IncompatibleEmbeddingError,
    NameTakenError,
    UnknownFaceError,
    UnknownPersonError,
)
from ..types import Box
from .postgres_connection import CONNECT_TIMEOUT_S, PING_AFTER_S, SCHEMA_VERSION, PgConnection
from .records import (
    FaceRecord,
    Person,
    Snapshot,
    changed_while_reembedding,
    check_metadata,
    check_name,
    check_replacement,
    check_vectors,
    new_person_id,
    now_iso,
)

if TYPE_CHECKING:
    import psycopg

__all__ = ["CONNECT_TIMEOUT_S", "EF_SEARCH", "PING_AFTER_S", "SCHEMA_VERSION", "PostgresStore"]

#: HNSW candidate list size per query (pgvector's default is 40). 200 gives recall@1 of 1.0 on
#: 2,000 random 128-D unit vectors (the test), where 40 does not; raised to ``k`` when larger.
EF_SEARCH = 200

_FACE_COLS = (
    "f.face_id, p.name, f.vector, f.model, f.image_sha256, f.x1, f.y1, f.x2, f.y2, f.score, f.added_at"
)


class PostgresStore(PgConnection):
    """A gallery in a PostgreSQL database with pgvector; see the module docstring."""

    #: The server searches (HNSW, approximate): no index file is kept beside the data.
    index_path: Path | None = None
    #: (generation, count) of the last :meth:`count_people`
    _people_count: tuple[int, int] | None = None

    def _person_id(self, conn: psycopg.Connection[Any], name: str, action: str) -> int:
        row = conn.execute("SELECT id FROM faceprint.people WHERE name = %s", (name,)).fetchone()
        if row is None:
            raise UnknownPersonError(f"gallery {self.location}: cannot {action} {name!r}: no such person")
        return int(row[0])

    def _name_free(self, conn: psycopg.Connection[Any], name: str, action: str) -> None:
        """Raise NameTakenError when ``name`` is a person's (inside a write: the meta row
        lock serialises writers, so nobody takes it before the commit)."""
        if conn.execute("SELECT 1 FROM faceprint.people WHERE name = %s", (name,)).fetchone():
            raise NameTakenError(f"gallery {self.location}: cannot {action}: {name!r} already exists")

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
        were all skipped is not created (an existing one with no faces stays)."""
        check_name(person)
        if not faces:
            return [], []
        model, dim, vecs = check_vectors(self.location, faces)
        meta = _jsonb(self._psycopg, check_metadata(self.location, metadata or {}))

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
                        "INSERT INTO faceprint.people (name, metadata, created_at, uid) "
                        "VALUES (%s, %s, %s, %s) RETURNING id",
                        (person, meta, stamp, new_person_id()),
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
        """The number of people with at least one face (see :class:`~.records.Store`).
        Every identify asks for it (the operating point); the count is kept with the
        generation it was read at (one statement: one snapshot) and counted again only
        when the generation has moved, since every write of faces moves it."""
        gen = self.generation()
        cached = self._people_count
        if cached is not None and cached[0] == gen:
            return cached[1]
        sql = (
            "SELECT (SELECT generation FROM faceprint.meta WHERE id = 1), "
            "count(DISTINCT person_id) FROM faceprint.faces"
        )
        row = self._rows("count people", sql)[0]
        self._people_count = (int(row[0] or 0), int(row[1]))
        return self._people_count[1]

    def create_person(self, name: str, metadata: Mapping[str, Any] | None = None) -> Person:
        """Create ``name`` with no faces in one transaction (see :class:`~.records.Store`)."""
        check_name(name)
        meta = check_metadata(self.location, metadata or {})
        person = Person(name, meta, 0, now_iso(), new_person_id())

        def body(conn: psycopg.Connection[Any]) -> None:
            self._name_free(conn, name, f"create {name!r}")
            conn.execute(
                "INSERT INTO faceprint.people (name, metadata, created_at, uid) VALUES (%s, %s, %s, %s)",
                (name, _jsonb(self._psycopg, meta), person.created_at, person.id),
            )

        self._writing(f"create {name!r}", body)
        return person

    def remove_face(self, face_id: str) -> str:
        """Delete the face ``face_id`` in one transaction (as :meth:`remove_person` deletes);
        returns its person's name (the person stays, maybe with no faces)."""

        def body(conn: psycopg.Connection[Any]) -> str:
            row = conn.execute(
                "DELETE FROM faceprint.faces f USING faceprint.people p "
                "WHERE f.face_id = %s AND p.id = f.person_id RETURNING p.name",
                (face_id,),
            ).fetchone()
            if row is None:
                raise UnknownFaceError(
                    f"gallery {self.location}: cannot remove face {face_id!r}: no such face"
                )
            return str(row[0])

        return self._writing(f"remove face {face_id!r}", body)

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
            if old != new:
                self._name_free(conn, new, f"rename {old!r} to {new!r}")
            conn.execute("UPDATE faceprint.people SET name = %s WHERE id = %s", (new, pid))

        self._writing(f"rename {old!r}", body)

    def set_metadata(self, name: str, metadata: Mapping[str, Any]) -> None:
        meta = _jsonb(self._psycopg, check_metadata(self.location, metadata))
        sql = "UPDATE faceprint.people SET metadata = %s WHERE id = %s"
        self._writing(
            f"set the metadata of {name!r}",
            lambda c: c.execute(sql, (meta, self._person_id(c, name, "set the metadata of"))),
        )

    def people(self) -> list[Person]:
        rows = self._rows(
            "list people",
            "SELECT p.name, p.metadata, count(f.seq), p.created_at, p.uid FROM faceprint.people p "
            "LEFT JOIN faceprint.faces f ON f.person_id = p.id GROUP BY p.id ORDER BY p.name",
        )
        return [Person(r[0], dict(r[1]), int(r[2]), r[3], r[4]) for r in rows]

    def person(self, name: str) -> tuple[Person, list[FaceRecord]]:
        return self._person_where("name", name, f"read {name!r}")

    def person_by_id(self, person_id: str) -> tuple[Person, list[FaceRecord]]:
        return self._person_where("uid", person_id, f"read the person with id {person_id!r}")

    def _person_where(self, column: str, value: str, action: str) -> tuple[Person, list[FaceRecord]]:
        """The person whose ``column`` ("name" or "uid") is ``value``, and their faces,
        read in one transaction."""

        def q(conn: psycopg.Connection[Any]) -> tuple[Person, list[FaceRecord]]:
            with conn.transaction():
                row = conn.execute(
                    f"SELECT id, name, metadata, created_at, uid FROM faceprint.people WHERE {column} = %s",
                    (value,),
                ).fetchone()
                if row is None:
                    raise UnknownPersonError(f"gallery {self.location}: cannot {action}: no such person")
                rows = conn.execute(
                    f"SELECT {_FACE_COLS} FROM faceprint.faces f "
                    "JOIN faceprint.people p ON p.id = f.person_id WHERE f.person_id = %s ORDER BY f.seq",
                    (row[0],),
                ).fetchall()
            faces = [_face(r) for r in rows]
            return Person(row[1], dict(row[2]), len(faces), row[3], row[4]), faces

        return self._run(action, q)

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

    def replace_vectors(
        self, model: str, dim: int, vectors: Mapping[str, NDArray[np.float32]], drop: Sequence[str] = ()
    ) -> None:
        """Re-embed the gallery in one transaction holding the meta row lock (see
        :class:`~.records.Store`). Same dimension: the vectors are updated in place and
        pgvector's HNSW index follows. Another dimension (or an unbound gallery): the index
        is dropped, the column untyped, the vectors written, then the column typed
        ``vector(dim)`` and the index built again, all inside the same transaction."""
        vecs = check_replacement(self.location, dim, vectors, drop)
        expected = set(vecs) | set(drop)

        def body(conn: psycopg.Connection[Any]) -> None:
            bound = conn.execute("SELECT model, dim FROM faceprint.meta WHERE id = 1").fetchone()
            found = {str(r[0]) for r in conn.execute("SELECT face_id FROM faceprint.faces")}
            if found != expected:
                raise changed_while_reembedding(self.location, expected, found)
            if drop:
                conn.execute("DELETE FROM faceprint.faces WHERE face_id = ANY(%s)", (list(drop),))
            retype = bound is None or bound[1] is None or int(bound[1]) != dim
            if retype:
                conn.execute("DROP INDEX IF EXISTS faceprint.faces_hnsw")
                conn.execute("ALTER TABLE faceprint.faces ALTER COLUMN vector TYPE vector")
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE faceprint.faces SET vector = %s, model = %s WHERE face_id = %s",
                    [(v, model, f) for f, v in vecs.items()],
                )
            if retype:
                self._bind(conn, model, dim)
            else:
                conn.execute("UPDATE faceprint.meta SET model = %s WHERE id = 1", (model,))
            conn.execute("DELETE FROM faceprint.settings WHERE key IN ('threshold', 'calibration')")

        self._writing("re-embed its faces", body)
        self._people_count = None

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
            sql = (
                "SELECT n.face_id, p.name, 1 - n.d FROM "
                "(SELECT face_id, person_id, vector <=> %s AS d "
                f"FROM faceprint.faces ORDER BY d LIMIT {int(k)}) n "
                "JOIN faceprint.people p ON p.id = n.person_id ORDER BY n.d"
            )
            with conn.transaction():
                conn.execute(f"SET LOCAL hnsw.ef_search = {min(max(EF_SEARCH, int(k)), 1000)}")
                # Pipeline mode: every query goes out before any answer is awaited, so a
                # group photo costs one round trip to a remote server, not one per face.
                with conn.pipeline():
                    cursors = [conn.cursor() for _ in q]
                    for cur, vec in zip(cursors, q, strict=True):
                        cur.execute(sql, (vec,))
                rows = [cur.fetchall() for cur in cursors]
            return [[(r[0], r[1], float(r[2])) for r in rs] for rs in rows]

        return self._run("search faces", run)

    def centroids(self, names: Sequence[str]) -> dict[str, NDArray[np.float32]]:
        """Each named person's centroid: the mean of their face vectors re-normalised to unit
        length (the gallery's person-level score, see :mod:`.scoring`), computed by the server
        (pgvector's ``avg``) in one round trip. Unknown names, and people with no face, are
        absent from the result."""
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

    def __repr__(self) -> str:
        return f"PostgresStore({self.location!r})"


def _jsonb(psycopg: Any, metadata: Mapping[str, Any]) -> Any:
    """``metadata`` (checked by :func:`~.records.check_metadata`) as a jsonb parameter."""
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
