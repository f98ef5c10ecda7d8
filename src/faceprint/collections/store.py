"""What a photo collection reads and writes: photos, their unlabelled faces, clusters and
the user's corrections (tables in :mod:`.db`, one query set for SQLite and PostgreSQL).

Conventions: boxes are xyxy pixels of the photo as decoded (EXIF orientation applied);
vectors are unit float32 rows of the collection's model; a face's ``cluster`` is ``None``
when it is not clustered (below the quality gate, or it matched nobody).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..gallery.records import now_iso
from ..types import Box
from .db import CollectionDb, Sql

if TYPE_CHECKING:
    from ..gallery.records import Store

MUST, CANNOT = "must", "cannot"
_MODEL_KEY = "collection_model"


@dataclass(frozen=True)
class IndexedFace:
    """A face found while indexing, before it is stored (``face_index``: its rank in the
    photo's detections, highest score first)."""

    face_index: int
    box: Box
    landmarks: list[list[float]] | None
    score: float
    quality: float | None
    rejected: str | None
    vector: NDArray[np.float32]


@dataclass(frozen=True)
class PhotoResult:
    """The outcome of indexing one photo: its faces, or ``error`` (why it failed)."""

    path: str
    image_sha256: str | None
    size: int | None = None
    mtime: float | None = None
    width: int = 0
    height: int = 0
    faces: tuple[IndexedFace, ...] = ()
    error: str | None = None
    #: the bytes were already indexed under another path (or earlier): no faces to store
    duplicate: bool = False


@dataclass(frozen=True)
class StoredFaces:
    """Every stored face of a collection as columns (what clustering needs), row ``i`` =
    face ``ids[i]``."""

    ids: NDArray[np.int64]
    image_sha256: list[str]
    clusters: NDArray[np.int64]  # -1: not clustered
    rejected: list[str | None]
    vectors: NDArray[np.float32]
    boxes: list[Box] = field(default_factory=list)


class CollectionStore:
    """The collection tables of one gallery store (see the module doc)."""

    def __init__(self, store: Store) -> None:
        self.db = CollectionDb(store)
        self.location = self.db.location

    # -- the model the vectors belong to ---------------------------------------------------
    def model(self) -> str | None:
        return self.db.store.get_setting(_MODEL_KEY)

    def bind_model(self, model: str) -> None:
        if self.model() != model:
            self.db.store.set_setting(_MODEL_KEY, model)

    # -- indexing --------------------------------------------------------------------------
    def indexed(self, paths: Sequence[str]) -> dict[str, str]:
        """``path -> image_sha256`` of those of ``paths`` indexed without error."""

        def q(sql: Sql) -> dict[str, str]:
            out: dict[str, str] = {}
            for chunk in _chunks(paths, 500):
                marks = ",".join("?" * len(chunk))
                for path, sha in sql.all(
                    f"SELECT path, image_sha256 FROM {{t}}photos WHERE error IS NULL AND path IN ({marks})",
                    chunk,
                ):
                    out[str(path)] = str(sha)
            return out

        return self.db.read("read the indexed photos", q, {})

    def known_images(self, shas: Iterable[str]) -> set[str]:
        """Those of ``shas`` whose faces are stored (indexed under any path)."""
        wanted = list(dict.fromkeys(shas))

        def q(sql: Sql) -> set[str]:
            out: set[str] = set()
            for chunk in _chunks(wanted, 500):
                marks = ",".join("?" * len(chunk))
                rows = sql.all(
                    f"SELECT image_sha256 FROM {{t}}photo_images WHERE image_sha256 IN ({marks})", chunk
                )
                out.update(str(r[0]) for r in rows)
            return out

        return self.db.read("read the indexed photos", q, set())

    def add_results(self, results: Sequence[PhotoResult], model: str) -> None:
        """Store a batch of indexed photos in ONE transaction, idempotently: a face already
        stored (same image sha256 and face index) is kept as it is, a path is updated."""
        if not results:
            return
        stamp = now_iso()
        images, faces, photos = [], [], []
        for r in results:
            if r.error is None and r.image_sha256 is not None and not r.duplicate:
                images.append((r.image_sha256, r.width, r.height, len(r.faces), model, stamp))
                for f in r.faces:
                    faces.append(
                        (
                            r.image_sha256, f.face_index, f.box.x1, f.box.y1, f.box.x2, f.box.y2,
                            None if f.landmarks is None else json.dumps(f.landmarks), f.score,
                            f.quality, f.rejected, np.asarray(f.vector, "<f4").tobytes(),
                        )
                    )  # fmt: skip
            photos.append((r.path, r.image_sha256, r.size, r.mtime, stamp, r.error))

        def w(sql: Sql) -> None:
            sql.many(
                "INSERT INTO {t}photo_images (image_sha256, width, height, faces, model, indexed_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (image_sha256) DO NOTHING",
                images,
            )
            sql.many(
                "INSERT INTO {t}photo_faces (image_sha256, face_index, x1, y1, x2, y2, landmarks, score, "
                "quality, rejected, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (image_sha256, face_index) DO NOTHING",
                faces,
            )
            sql.many(
                "INSERT INTO {t}photos (path, image_sha256, size, mtime, indexed_at, error) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET "
                "image_sha256 = excluded.image_sha256, "
                "size = excluded.size, mtime = excluded.mtime, indexed_at = excluded.indexed_at, "
                "error = excluded.error",
                photos,
            )

        self.db.write("store indexed photos", w)

    def counts(self) -> dict[str, int]:
        """Photos (paths indexed without error), failed photos, distinct images, faces,
        faces below the gate, clustered faces, clusters."""

        def q(sql: Sql) -> dict[str, int]:
            p = sql.one("SELECT count(*), count(error) FROM {t}photos")
            f = sql.one(
                "SELECT count(*), count(rejected), count(cluster), count(DISTINCT cluster) "
                "FROM {t}photo_faces"
            )
            i = sql.one("SELECT count(*) FROM {t}photo_images")
            assert p is not None and f is not None and i is not None
            return {
                "photos": int(p[0]) - int(p[1]),
                "failed": int(p[1]),
                "images": int(i[0]),
                "faces": int(f[0]),
                "rejected": int(f[1]),
                "clustered": int(f[2]),
                "clusters": int(f[3]),
            }

        zero = dict.fromkeys(("photos", "failed", "images", "faces", "rejected", "clustered", "clusters"), 0)
        return self.db.read("count the collection", q, zero)

    # -- faces -----------------------------------------------------------------------------
    def faces(self, with_vectors: bool = True) -> StoredFaces:
        """Every stored face, ordered by id."""

        def q(sql: Sql) -> StoredFaces:
            cols = "id, image_sha256, cluster, rejected, x1, y1, x2, y2" + (
                ", vector" if with_vectors else ""
            )
            rows = sql.all(f"SELECT {cols} FROM {{t}}photo_faces ORDER BY id")
            return _stored(rows, with_vectors)

        return self.db.read("read the indexed faces", q, _stored([], with_vectors))

    def paths(self) -> dict[str, list[str]]:
        """``image_sha256 -> [paths]`` (sorted) of the photos indexed without error."""

        def q(sql: Sql) -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            for path, sha in sql.all(
                "SELECT path, image_sha256 FROM {t}photos WHERE error IS NULL ORDER BY path"
            ):
                out.setdefault(str(sha), []).append(str(path))
            return out

        return self.db.read("read the indexed photos", q, {})

    def failures(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of every photo whose last indexing failed."""

        def q(sql: Sql) -> list[tuple[str, str]]:
            rows = sql.all("SELECT path, error FROM {t}photos WHERE error IS NOT NULL ORDER BY path")
            return [(str(a), str(b)) for a, b in rows]

        return self.db.read("read the failed photos", q, [])

    def face(self, face_id: int) -> tuple[int | None, str | None, str | None] | None:
        """``(cluster, rejected, enrolled_face)`` of one face, or None when it does not exist."""

        def q(sql: Sql) -> tuple[int | None, str | None, str | None] | None:
            row = sql.one(
                "SELECT cluster, rejected, enrolled_face FROM {t}photo_faces WHERE id = ?", (int(face_id),)
            )
            if row is None:
                return None
            return (None if row[0] is None else int(row[0]), row[1], row[2])

        return self.db.read("read a face", q, None)

    # -- clusters --------------------------------------------------------------------------
    def cluster_people(self) -> dict[int, str | None]:
        """``cluster id -> person uid`` (None: unnamed) of every cluster that has faces."""

        def q(sql: Sql) -> dict[int, str | None]:
            rows = sql.all(
                "SELECT c.id, c.person_uid FROM {t}photo_clusters c "
                "WHERE EXISTS (SELECT 1 FROM {t}photo_faces f WHERE f.cluster = c.id)"
            )
            return {int(a): (None if b is None else str(b)) for a, b in rows}

        return self.db.read("read the clusters", q, {})

    def links(self) -> list[tuple[int, int, str]]:
        return self.db.read(
            "read the corrections", lambda sql: [(int(a), int(b), str(k)) for a, b, k in sql.all(
                "SELECT a, b, kind FROM {t}photo_links ORDER BY a, b")], []
        )  # fmt: skip

    def save_clusters(self, assignment: Mapping[int, int | None], people: Mapping[int, str | None]) -> None:
        """Set each face's cluster (``face id -> cluster or None``) and each cluster's person,
        in one transaction; clusters left without faces are dropped."""
        rows = [(c, f) for f, c in assignment.items()]

        def w(sql: Sql) -> None:
            sql.many("UPDATE {t}photo_faces SET cluster = ? WHERE id = ?", rows)
            _set_people(sql, people)

        self.db.write("store the clusters", w, exclusive=True)

    def set_person(
        self, cluster: int, person_uid: str | None, enrolled: Mapping[int, str] | None = None
    ) -> None:
        """Name ``cluster`` as ``person_uid`` (None: unnamed); ``enrolled``: the gallery face
        id made for each of its faces."""

        def w(sql: Sql) -> None:
            _set_people(sql, {cluster: person_uid})
            sql.many(
                "UPDATE {t}photo_faces SET enrolled_face = ? WHERE id = ?",
                [(e, f) for f, e in (enrolled or {}).items()],
            )

        self.db.write("name the cluster", w, exclusive=True)

    def move_faces(
        self,
        face_ids: Sequence[int],
        cluster: int | None,
        links: Sequence[tuple[int, int, str]] = (),
        *,
        unlink: bool = False,
    ) -> None:
        """Put ``face_ids`` in ``cluster`` (None: out of every cluster) and record ``links``,
        in one transaction. ``unlink``: first forget the must-links of those faces (a face
        split off or removed is no longer tied to the faces it was merged with)."""
        moved = [int(f) for f in face_ids]

        def w(sql: Sql) -> None:
            if unlink:
                sql.many(
                    "DELETE FROM {t}photo_links WHERE kind = 'must' AND (a = ? OR b = ?)",
                    [(f, f) for f in moved],
                )
            sql.many("UPDATE {t}photo_faces SET cluster = ? WHERE id = ?", [(cluster, f) for f in moved])
            add_links(sql, links)
            if cluster is not None:
                sql.run(
                    "INSERT INTO {t}photo_clusters (id, person_uid) VALUES (?, NULL) "
                    "ON CONFLICT (id) DO NOTHING",
                    (cluster,),
                )

        self.db.write("move faces between clusters", w, exclusive=True)

    def clear_enrolled(self, face_id: int) -> None:
        self.db.write(
            "forget an enrolled face",
            lambda sql: sql.run(
                "UPDATE {t}photo_faces SET enrolled_face = NULL WHERE id = ?", (int(face_id),)
            ),
            exclusive=True,
        )

    def next_cluster_id(self) -> int:
        def q(sql: Sql) -> int:
            a = sql.one("SELECT max(id) FROM {t}photo_clusters")
            b = sql.one("SELECT max(cluster) FROM {t}photo_faces")
            return max(int(x[0]) if x and x[0] is not None else -1 for x in (a, b)) + 1

        return self.db.read("read the clusters", q, 0)


def add_links(sql: Sql, links: Sequence[tuple[int, int, str]]) -> None:
    """Record constraints (each pair stored smaller id first)."""
    sql.many(
        "INSERT INTO {t}photo_links (a, b, kind) VALUES (?, ?, ?) ON CONFLICT (a, b, kind) DO NOTHING",
        [(min(a, b), max(a, b), k) for a, b, k in links if a != b],
    )


def _set_people(sql: Sql, people: Mapping[int, str | None]) -> None:
    sql.many(
        "INSERT INTO {t}photo_clusters (id, person_uid) VALUES (?, ?) "
        "ON CONFLICT (id) DO UPDATE SET person_uid = excluded.person_uid",
        [(int(c), p) for c, p in people.items()],
    )
    sql.run(
        "DELETE FROM {t}photo_clusters WHERE person_uid IS NULL AND NOT EXISTS "
        "(SELECT 1 FROM {t}photo_faces f WHERE f.cluster = {t}photo_clusters.id)"
    )


def _stored(rows: list[tuple[Any, ...]], with_vectors: bool) -> StoredFaces:
    ids = np.asarray([int(r[0]) for r in rows], np.int64)
    clusters = np.asarray([-1 if r[2] is None else int(r[2]) for r in rows], np.int64)
    if with_vectors and rows:
        vectors = np.stack([np.frombuffer(bytes(r[8]), "<f4") for r in rows]).astype(np.float32)
    else:
        vectors = np.zeros((len(rows) if not with_vectors else 0, 0), np.float32)
    return StoredFaces(
        ids=ids,
        image_sha256=[str(r[1]) for r in rows],
        clusters=clusters,
        rejected=[None if r[3] is None else str(r[3]) for r in rows],
        vectors=vectors,
        boxes=[Box(float(r[4]), float(r[5]), float(r[6]), float(r[7])) for r in rows],
    )


def _chunks(items: Sequence[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])
