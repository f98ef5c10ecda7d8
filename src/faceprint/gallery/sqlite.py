"""The default gallery backend: one SQLite file (WAL mode), the source of truth.

:class:`SqliteStore` is the :class:`~.records.Store` over an SQLite file: what it reads
and writes. The file itself -- its layout (:data:`SCHEMA_VERSION`,
:data:`APPLICATION_ID`), how it is opened without ever damaging or recreating a user's
file, and the transactions -- is :class:`~.sqlite_file.SqliteFile`'s; see
:mod:`.sqlite_file`. Every write method here is one of its ``_write`` transactions, and
every read one ``_read`` transaction, so a reader sees one consistent gallery.

All SQL is parametrised, so names may hold any unicode, slashes or quotes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import (
    IncompatibleEmbeddingError,
    NameTakenError,
    UnknownFaceError,
    UnknownPersonError,
)
from ..types import Box
from .ann_cache import drop_if_holds
from .local_search import LocalSearch
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
from .sqlite_file import APPLICATION_ID, SCHEMA_VERSION, SqliteFile

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SqliteStore"]


class SqliteStore(SqliteFile):
    """A :class:`~.records.Store` in one SQLite file at ``path``.

    ``busy_timeout`` (seconds) is how long a write waits for another process's write
    lock before failing with a clear :class:`GalleryError`. ``index_path`` is where a
    search index may persist next to the file (``<file>.index``); SQLite stays the
    source of truth and the index is rebuilt when its generation is stale. Search runs in
    this process (:class:`~.local_search.LocalSearch`): exact up to
    :data:`~.index.EXACT_MAX_SIZE` faces, HNSW above.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 60.0) -> None:
        super().__init__(path, busy_timeout=busy_timeout)
        self.index_path: Path | None = self.path.with_name(self.path.name + ".index")
        self._search = LocalSearch(self, self.index_path)
        #: (generation, count_people) of the last count: every identify asks for the
        #: operating point, and counting 100k people costs tens of ms each time
        self._people_count: tuple[int, int] | None = None

    # -- Store: reads -----------------------------------------------------------------
    def model(self) -> tuple[str, int] | None:
        with self._read() as conn:
            if conn is None:
                return None
            rows = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('model', 'dim')").fetchall())
        return (str(rows["model"]), int(rows["dim"])) if "model" in rows else None

    def generation(self) -> int:
        with self._read() as conn:
            if conn is None:
                return 0
            return int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])

    def get_setting(self, key: str) -> str | None:
        with self._read() as conn:
            if conn is None:
                return None
            row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def count_people(self) -> int:
        """The number of people with at least one face (see :class:`~.records.Store`);
        counted again only when the generation has moved (every change of faces moves it),
        read in the same transaction as the count."""
        with self._read() as conn:
            if conn is None:
                return 0
            gen = int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
            cached = self._people_count
            if cached is not None and cached[0] == gen:
                return cached[1]
            n = int(conn.execute("SELECT count(DISTINCT person_id) FROM faces").fetchone()[0])
            self._people_count = (gen, n)
            return n

    def people(self) -> list[Person]:
        with self._read() as conn:
            if conn is None:
                return []
            rows = conn.execute(
                "SELECT p.name, p.metadata, p.created_at, count(f.id), p.uid FROM people p "
                "LEFT JOIN faces f ON f.person_id = p.id GROUP BY p.id ORDER BY p.name"
            ).fetchall()
        return [Person(r[0], json.loads(r[1]), int(r[3]), r[2], r[4]) for r in rows]

    def person(self, name: str) -> tuple[Person, list[FaceRecord]]:
        return self._person_where("name", name, f"cannot read {name!r}")

    def person_by_id(self, person_id: str) -> tuple[Person, list[FaceRecord]]:
        return self._person_where("uid", person_id, f"cannot read the person with id {person_id!r}")

    def _person_where(self, column: str, value: str, action: str) -> tuple[Person, list[FaceRecord]]:
        """The person whose ``column`` ("name" or "uid") is ``value``, and their faces."""
        with self._read() as conn:
            row = (
                None
                if conn is None
                else conn.execute(
                    f"SELECT id, name, metadata, created_at, uid FROM people WHERE {column} = ?", (value,)
                ).fetchone()
            )
            if conn is None or row is None:
                raise UnknownPersonError(f"gallery {self.location}: {action}: no such person")
            faces = conn.execute(
                "SELECT face_id, model, vector, image_sha256, x1, y1, x2, y2, score, added_at "
                "FROM faces WHERE person_id = ? ORDER BY id",
                (row[0],),
            ).fetchall()
        name = row[1]
        records = [
            FaceRecord(
                face_id=f[0],
                person=name,
                vector=np.frombuffer(f[2], dtype="<f4").astype(np.float32),
                model=f[1],
                image_sha256=f[3],
                box=Box(f[4], f[5], f[6], f[7]) if f[4] is not None else None,
                score=f[8],
                added_at=f[9],
            )
            for f in faces
        ]
        return Person(name, json.loads(row[2]), len(records), row[3], row[4]), records

    def snapshot(self) -> Snapshot:
        with self._read() as conn:
            if conn is None:
                return Snapshot(0, (), (), np.zeros((0, 0), dtype=np.float32))
            gen = int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
            dim_row = conn.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone()
            rows = conn.execute(
                "SELECT f.face_id, p.name, f.vector FROM faces f JOIN people p ON p.id = f.person_id "
                "ORDER BY f.id"
            ).fetchall()
        dim = int(dim_row[0]) if dim_row else 0
        vectors = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4").astype(np.float32)
        return Snapshot(
            gen, tuple(r[0] for r in rows), tuple(r[1] for r in rows), vectors.reshape(len(rows), dim)
        )

    def search_faces(self, queries: NDArray[np.float32], k: int) -> list[list[tuple[str, str, float]]]:
        """The ``k`` most similar faces of each query row, best first: (face_id, person,
        cosine similarity); searched in this process (class doc)."""
        return self._search.search_faces(queries, k)

    def centroids(self, names: Sequence[str]) -> dict[str, NDArray[np.float32]]:
        """Each named person's centroid (mean face vector re-normalised to unit length);
        unknown names and people with no face are absent."""
        return self._search.centroids(names)

    # -- Store: writes ----------------------------------------------------------------
    def add_faces(
        self, person: str, faces: Sequence[FaceRecord], metadata: Mapping[str, Any] | None = None
    ) -> tuple[list[FaceRecord], list[FaceRecord]]:
        """Add ``faces`` to ``person`` in one transaction (see :class:`~.records.Store`).

        ``metadata`` is merged into the person's (new keys win). A face is skipped when its
        ``image_sha256`` is already enrolled for ``person`` or its ``face_id`` exists.
        With no faces, nothing is written; a new person whose faces were all skipped is
        not created (a person with no faces comes only from :meth:`create_person` or
        :meth:`remove_face`).
        """
        if not faces:
            return [], []
        model, dim, _ = check_vectors(self.location, faces)
        meta = check_metadata(self.location, metadata or {})
        added: list[FaceRecord] = []
        skipped: list[FaceRecord] = []
        with self._write(f"enrol {person!r}") as conn:
            bound = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('model', 'dim')").fetchall())
            if "model" in bound and (bound["model"] != model or int(bound["dim"]) != dim):
                raise IncompatibleEmbeddingError(
                    f"gallery {self.location} holds {bound['dim']}-D vectors of {bound['model']}; "
                    f"got {dim}-D vectors of {model} (use the gallery's embedder, or another gallery)"
                )
            if "model" not in bound:
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)", [("model", model), ("dim", dim)]
                )
            stamp = now_iso()
            row = conn.execute("SELECT id, metadata FROM people WHERE name = ?", (person,)).fetchone()
            if row is None:
                cur = conn.execute(
                    "INSERT INTO people (name, metadata, created_at, uid) VALUES (?, ?, ?, ?)",
                    (person, json.dumps(meta, ensure_ascii=False), stamp, new_person_id()),
                )
                pid = int(cur.lastrowid or 0)
            else:
                pid = int(row[0])
                if meta:
                    merged = {**json.loads(row[1]), **meta}
                    conn.execute(
                        "UPDATE people SET metadata = ? WHERE id = ?",
                        (json.dumps(merged, ensure_ascii=False), pid),
                    )
            seen = {
                r[0]
                for r in conn.execute(
                    "SELECT image_sha256 FROM faces WHERE person_id = ? AND image_sha256 IS NOT NULL", (pid,)
                )
            }
            for f in faces:
                exists = conn.execute("SELECT 1 FROM faces WHERE face_id = ?", (f.face_id,)).fetchone()
                if exists or (f.image_sha256 is not None and f.image_sha256 in seen):
                    skipped.append(f)
                    continue
                b = f.box
                conn.execute(
                    "INSERT INTO faces (face_id, person_id, model, vector, image_sha256, x1, y1, x2, y2, "
                    "score, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        f.face_id, pid, f.model, np.asarray(f.vector, dtype="<f4").tobytes(), f.image_sha256,
                        b.x1 if b else None, b.y1 if b else None, b.x2 if b else None, b.y2 if b else None,
                        None if f.score is None else float(f.score), f.added_at or stamp,
                    ),
                )  # fmt: skip
                if f.image_sha256 is not None:
                    seen.add(f.image_sha256)
                added.append(
                    f
                    if f.person == person and f.added_at
                    else replace(f, person=person, added_at=f.added_at or stamp)
                )
            if not added and row is None:
                conn.execute("DELETE FROM people WHERE id = ?", (pid,))
        return added, skipped

    def create_person(self, name: str, metadata: Mapping[str, Any] | None = None) -> Person:
        """Create ``name`` with no faces in one transaction (see :class:`~.records.Store`)."""
        check_name(name)
        meta = check_metadata(self.location, metadata or {})
        person = Person(name, meta, 0, now_iso(), new_person_id())
        with self._write(f"create {name!r}") as conn:
            if conn.execute("SELECT 1 FROM people WHERE name = ?", (name,)).fetchone():
                raise NameTakenError(
                    f"gallery {self.location}: cannot create {name!r}: {name!r} already exists"
                )
            conn.execute(
                "INSERT INTO people (name, metadata, created_at, uid) VALUES (?, ?, ?, ?)",
                (name, json.dumps(meta, ensure_ascii=False), person.created_at, person.id),
            )
        return person

    def remove_face(self, face_id: str) -> str:
        """Delete the face ``face_id`` and erase it from every file, as :meth:`remove_person`
        does; returns its person's name (the person stays, maybe with no faces)."""
        with self._write(f"remove face {face_id!r}") as conn:
            row = conn.execute(
                "SELECT f.id, p.name FROM faces f JOIN people p ON p.id = f.person_id WHERE f.face_id = ?",
                (face_id,),
            ).fetchone()
            if row is None:
                raise UnknownFaceError(
                    f"gallery {self.location}: cannot remove face {face_id!r}: no such face"
                )
            conn.execute("DELETE FROM faces WHERE id = ?", (row[0],))
        self._erase_wal()
        if self.index_path is not None:
            drop_if_holds(self.index_path, {face_id})
        return str(row[1])

    def remove_person(self, name: str) -> int:
        """Delete ``name`` and their faces, then erase them from every file: the rows are
        zeroed (``secure_delete``), the WAL checkpointed and truncated
        (:meth:`~.sqlite_file.SqliteFile._erase_wal`), and the ANN cache at
        :attr:`index_path` dropped when it holds any of their faces (rebuilt on the next
        search; see :func:`~.ann_cache.drop_if_holds`)."""
        with self._write(f"remove {name!r}") as conn:
            row = conn.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise UnknownPersonError(f"gallery {self.location}: cannot remove {name!r}: no such person")
            ids = {r[0] for r in conn.execute("SELECT face_id FROM faces WHERE person_id = ?", (row[0],))}
            conn.execute("DELETE FROM faces WHERE person_id = ?", (row[0],))
            conn.execute("DELETE FROM people WHERE id = ?", (row[0],))
        self._erase_wal()
        if self.index_path is not None:
            drop_if_holds(self.index_path, ids)
        return len(ids)

    def rename_person(self, old: str, new: str) -> None:
        with self._write(f"rename {old!r}") as conn:
            if conn.execute("SELECT 1 FROM people WHERE name = ?", (old,)).fetchone() is None:
                raise UnknownPersonError(f"gallery {self.location}: cannot rename {old!r}: no such person")
            if old != new and conn.execute("SELECT 1 FROM people WHERE name = ?", (new,)).fetchone():
                raise NameTakenError(
                    f"gallery {self.location}: cannot rename {old!r} to {new!r}: {new!r} already exists"
                )
            conn.execute("UPDATE people SET name = ? WHERE name = ?", (new, old))

    def set_metadata(self, name: str, metadata: Mapping[str, Any]) -> None:
        meta = json.dumps(check_metadata(self.location, metadata), ensure_ascii=False)
        with self._write(f"set metadata of {name!r}") as conn:
            cur = conn.execute("UPDATE people SET metadata = ? WHERE name = ?", (meta, name))
            if cur.rowcount == 0:
                raise UnknownPersonError(
                    f"gallery {self.location}: cannot set the metadata of {name!r}: no such person"
                )

    def set_setting(self, key: str, value: str | None) -> None:
        with self._write(f"set {key!r}") as conn:
            if value is None:
                conn.execute("DELETE FROM settings WHERE key = ?", (key,))
            else:
                conn.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value))

    def replace_vectors(
        self, model: str, dim: int, vectors: Mapping[str, NDArray[np.float32]], drop: Sequence[str] = ()
    ) -> None:
        """Re-embed the gallery in one transaction (see :class:`~.records.Store`). The ANN
        cache is deleted before the transaction (so no process reads it as current
        meanwhile) and again after it (another process may have rebuilt it from the old
        vectors in between), the in-memory index is dropped, and the WAL truncated so the
        old vectors and the dropped faces leave no copy behind."""
        vecs = check_replacement(self.location, dim, vectors, drop)
        expected = set(vecs) | set(drop)
        self._drop_index(expected)
        with self._write("re-embed its faces") as conn:
            found = {str(r[0]) for r in conn.execute("SELECT face_id FROM faces")}
            if found != expected:
                raise changed_while_reembedding(self.location, expected, found)
            conn.executemany("DELETE FROM faces WHERE face_id = ?", [(f,) for f in drop])
            conn.executemany(
                "UPDATE faces SET vector = ?, model = ? WHERE face_id = ?",
                [(v.astype("<f4").tobytes(), model, f) for f, v in vecs.items()],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [("model", model), ("dim", str(dim))],
            )
            conn.execute("DELETE FROM settings WHERE key IN ('threshold', 'calibration')")
        self._erase_wal()
        self._drop_index(expected)

    def _drop_index(self, face_ids: set[str]) -> None:
        """Forget every search index of the faces ``face_ids``: the in-memory one (rebuilt
        from the next snapshot) and the ANN cache files when they hold any of them."""
        self._search = LocalSearch(self, self.index_path)
        if self.index_path is not None:
            drop_if_holds(self.index_path, face_ids)

    def __repr__(self) -> str:
        return f"SqliteStore({self.location!r})"
