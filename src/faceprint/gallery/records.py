"""Gallery data model and the storage interface every backend implements.

A gallery holds *people* (a unique name, a stable opaque id, free JSON metadata), each
with zero or more *faces* (a person made by :meth:`Store.create_person`, or whose faces
were removed one by one, has none: such a person has no centroid and is never a match).
A face keeps its L2-normalised vector, the id of the model that made it
(``network@version+<sha8>``, :func:`faceprint.embedding.model_id`), the source image's
sha256, the box (xyxy pixels), the detection score and when it was added. A gallery is
bound to one model id: the first enrolment binds it, and vectors of another model (other
weights, or flip TTA where the gallery has none) are refused with
:class:`~faceprint.errors.IncompatibleEmbeddingError`.

Similarity is the cosine similarity of unit vectors everywhere (higher = more alike).

Backends (:class:`Store`): SQLite (default, a file; WAL mode) and PostgreSQL + pgvector.
Every write is one transaction, so a crash leaves the gallery as it was before the call
or after it, never half-written; a person is either fully there or absent. What both
backends check and stamp the same way lives here: :func:`check_vectors` (one model, one
dimension, finite float32 vectors per enrolment) and :func:`now_iso` (``added_at``).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ..config import get_settings
from ..errors import GalleryError, IncompatibleEmbeddingError
from ..models import get_spec
from ..types import UNKNOWN, Box

log = logging.getLogger(__name__)

#: Version of the export file format (``Gallery.export``); bumped on incompatible change.
EXPORT_FORMAT_VERSION = 1


def check_name(name: str) -> str:
    """A person's name: any unicode (slashes and quotes included), not blank, no control
    characters, and not the reserved label ``"unknown"``."""
    if not isinstance(name, str) or not name.strip():
        raise GalleryError(f"a person's name must be a non-blank string, got {name!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise GalleryError(f"a person's name cannot hold control characters (newlines, tabs): {name!r}")
    if name.strip().lower() == UNKNOWN:
        raise GalleryError(f"{name!r} is reserved: identify labels faces nobody matches with it")
    return name


def new_person_id() -> str:
    """A fresh person id (:attr:`Person.id`): uuid4 hex, like face ids."""
    return uuid.uuid4().hex


def check_metadata(location: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata`` as a plain dict, refused with :class:`GalleryError` unless it is a
    mapping that JSON can hold (what both backends store)."""
    if not isinstance(metadata, Mapping):
        raise GalleryError(
            f"gallery {location}: a person's metadata must be a JSON object, got {type(metadata).__name__}"
        )
    out = dict(metadata)
    try:
        json.dumps(out, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise GalleryError(f"gallery {location}: person metadata must be JSON-serialisable: {exc}") from None
    return out


def now_iso() -> str:
    """The current UTC time, ISO 8601 with seconds precision (``added_at``, ``created_at``)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class FaceRecord:
    """One enrolled face. ``face_id`` is a stable string id (uuid4 hex)."""

    face_id: str
    person: str
    vector: NDArray[np.float32]
    model: str
    image_sha256: str | None = None
    box: Box | None = None
    score: float | None = None
    added_at: str = ""  # ISO 8601 UTC

    def to_dict(self, with_vector: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "face_id": self.face_id,
            "person": self.person,
            "model": self.model,
            "image_sha256": self.image_sha256,
            "box": self.box.to_dict() if self.box else None,
            "score": self.score,
            "added_at": self.added_at,
        }
        if with_vector:
            out["vector"] = [float(v) for v in self.vector]
        return out


@dataclass(frozen=True)
class Person:
    """An enrolled identity: unique name, free metadata, number of faces, and ``id``, a
    stable opaque id (uuid4 hex) assigned when the person is created and kept through
    renames, so a URL can address the person whatever their name becomes."""

    name: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    faces: int = 0
    created_at: str = ""
    id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "metadata": dict(self.metadata),
            "faces": self.faces,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class Snapshot:
    """All vectors of a gallery at one ``generation``: row i is face ``face_ids[i]`` of
    person ``persons[i]``. Used to build search indexes."""

    generation: int
    face_ids: tuple[str, ...]
    persons: tuple[str, ...]
    vectors: NDArray[np.float32]  # (N, dim), unit rows


class Store(Protocol):
    """Persistence and search for a gallery. Implementations: ``SqliteStore``,
    ``PostgresStore``; every capability below is part of the contract (no optional
    methods to probe for).

    ``generation`` increases with every committed write, so an index built from a
    :class:`Snapshot` knows when it is stale. Search: SQLite searches in process, exactly
    up to :data:`~.index.EXACT_MAX_SIZE` faces and with an HNSW graph above (cached at
    ``index_path``); PostgreSQL searches on the server through pgvector's HNSW index,
    which is approximate at every size. Similarities are cosine similarities.
    """

    location: str
    #: Where a search index persists beside the data (a cache, rebuilt from the store), or
    #: ``None`` when the store keeps none (the server searches).
    index_path: Path | None

    def model(self) -> tuple[str, int] | None:
        """The bound model (its id, :func:`faceprint.embedding.model_id`; dim), or ``None``
        while empty and unbound."""
        ...

    def count_people(self) -> int:
        """The number of people who have at least one face: the K of the open-set
        threshold (a person with no face cannot be named, so adds no stranger risk);
        ``len(people())`` counts everyone."""
        ...

    def search_faces(self, queries: NDArray[np.float32], k: int) -> list[list[tuple[str, str, float]]]:
        """The ``k`` most similar faces of each query row (unit vectors), best first:
        (face_id, person, cosine similarity)."""
        ...

    def centroids(self, names: Sequence[str]) -> dict[str, NDArray[np.float32]]:
        """Each named person's centroid (mean face vector re-normalised to unit length);
        unknown names, and people with no face, are absent."""
        ...

    def add_faces(
        self, person: str, faces: Sequence[FaceRecord], metadata: Mapping[str, Any] | None = None
    ) -> tuple[list[FaceRecord], list[FaceRecord]]:
        """Add ``faces`` to ``person`` (created if new, with a new id) in ONE transaction;
        binds the model on first use. Returns (added, skipped): a face whose
        ``image_sha256`` is already enrolled for that person, or whose ``face_id`` exists,
        is skipped. With no faces nothing is written; a NEW person whose faces were all
        skipped is not created (an existing person, even with no faces, stays). Raises
        IncompatibleEmbeddingError."""
        ...

    def create_person(self, name: str, metadata: Mapping[str, Any] | None = None) -> Person:
        """Create ``name`` with ``metadata`` and no faces, in one transaction; returns the
        new person (its fresh :attr:`Person.id`, 0 faces). Binds no model. Raises
        :class:`~faceprint.errors.NameTakenError` when the name is in use, GalleryError on
        a blank or reserved name or metadata JSON cannot hold."""
        ...

    def remove_person(self, name: str) -> int:
        """Delete a person and all their faces, leaving no vector of theirs in any file
        the store writes; returns the number of faces removed. Raises
        :class:`~faceprint.errors.UnknownPersonError`."""
        ...

    def remove_face(self, face_id: str) -> str:
        """Delete one face, in one transaction, under the same erasure rules as
        :meth:`remove_person`; returns the name of the person it belonged to, who stays
        (maybe with no faces). Raises :class:`~faceprint.errors.UnknownFaceError`."""
        ...

    def rename_person(self, old: str, new: str) -> None:
        """Rename ``old`` to ``new`` (the id and faces stay). Raises
        :class:`~faceprint.errors.UnknownPersonError` for ``old``,
        :class:`~faceprint.errors.NameTakenError` when ``new`` is another person's."""
        ...

    def set_metadata(self, name: str, metadata: Mapping[str, Any]) -> None:
        """Replace ``name``'s metadata. Raises :class:`~faceprint.errors.UnknownPersonError`."""
        ...

    def people(self) -> list[Person]:
        """Everyone, by name, people with no faces included."""
        ...

    def person(self, name: str) -> tuple[Person, list[FaceRecord]]:
        """The person named ``name`` and their faces in enrolment order. Raises
        :class:`~faceprint.errors.UnknownPersonError`."""
        ...

    def person_by_id(self, person_id: str) -> tuple[Person, list[FaceRecord]]:
        """The person whose :attr:`Person.id` is ``person_id`` and their faces in
        enrolment order. Raises :class:`~faceprint.errors.UnknownPersonError`."""
        ...

    def snapshot(self) -> Snapshot: ...

    def generation(self) -> int: ...

    def get_setting(self, key: str) -> str | None: ...

    def set_setting(self, key: str, value: str | None) -> None: ...

    def replace_vectors(
        self, model: str, dim: int, vectors: Mapping[str, NDArray[np.float32]], drop: Sequence[str] = ()
    ) -> None:
        """Re-embed the gallery (``faceprint gallery reembed``) in ONE transaction: each face
        ``face_id`` in ``vectors`` gets that unit vector, made by ``model`` (``dim``-D); the
        faces in ``drop`` are deleted (under the erasure rules of :meth:`remove_face`); the
        gallery is bound to ``model``; and the stored threshold and calibration, which are
        cosine similarities of the old model, are cleared (the target false-alarm rate
        stays). When the transaction runs, the gallery's faces must be exactly those of
        ``vectors`` and ``drop``: a face enrolled or removed since they were computed
        raises :class:`~faceprint.errors.GalleryError` and nothing is written. A search
        index of the old vectors (memory and cache files) is dropped. Checked like an
        enrolment's vectors (:func:`check_replacement`)."""
        ...

    def transaction(self, readonly: bool = False) -> AbstractContextManager[None]:
        """Every call on this store inside the ``with`` block is one transaction: its writes
        commit all together or not at all (an exception rolls them all back), and other
        readers see none of them until then. ``readonly``: the reads see one snapshot
        (e.g. a whole export), and writes are refused. A nested call joins the open one."""
        ...

    def close(self) -> None: ...


#: Model ids that faceprint wrote before ids carried the weights' sha256, and the network
#: (``network@version``) they name. Those releases could only load the published dlib
#: ``.dat`` (no fine-tuning existed), so its published sha256 completes their ids.
_LEGACY_IDS = {"dlib@resnet_v1": "dlib@resnet_v1", "dlib-onnx@resnet_v1": "dlib@resnet_v1"}


def upgrade_model_id(stored: str) -> str | None:
    """The current id of a model id an older faceprint stored (``dlib@resnet_v1``,
    ``dlib-onnx@resnet_v1``, each maybe with ``+flip``), or ``None`` when ``stored`` is
    current or unknown (then it is left as it is, and a mismatch names both ids)."""
    flip = stored.endswith("+flip")
    base = stored[: -len("+flip")] if flip else stored
    network = _LEGACY_IDS.get(base)
    if network is None:
        return None
    sha = get_spec("dlib").files[0].sha256[:8]
    return f"{network}+{sha}" + ("+flip" if flip else "")


def upgrade_calibration(raw: str) -> str | None:
    """The stored calibration record ``raw`` (JSON) with its legacy model id upgraded, or
    ``None`` when it needs no change (or is not a record)."""
    try:
        rec = json.loads(raw)
    except ValueError:
        return None
    new = upgrade_model_id(str(rec.get("model", ""))) if isinstance(rec, dict) else None
    return None if new is None else json.dumps({**rec, "model": new}, sort_keys=True)


def check_vectors(location: str, faces: Sequence[FaceRecord]) -> tuple[str, int, list[NDArray[np.float32]]]:
    """The one (model, dim) of the ``faces`` of one enrolment into the gallery at
    ``location``, and their vectors as float32 (what the stores keep); refuses mixed
    models, bad shapes and NaN/inf. ``faces`` is not empty."""
    model = faces[0].model
    vecs = [np.asarray(f.vector, dtype=np.float32) for f in faces]
    dim = int(vecs[0].reshape(-1).shape[0])
    for f, v in zip(faces, vecs, strict=True):
        if f.model != model:
            raise IncompatibleEmbeddingError(
                f"gallery {location}: one enrolment mixes vectors of {model} and {f.model}"
            )
        if v.ndim != 1 or v.shape[0] != dim or dim == 0 or not np.all(np.isfinite(v)):
            raise GalleryError(
                f"gallery {location}: expected finite {dim}-D vectors, "
                f"got shape {v.shape} for face {f.face_id}"
            )
    return model, dim, vecs


def check_replacement(
    location: str, dim: int, vectors: Mapping[str, NDArray[np.float32]], drop: Sequence[str]
) -> dict[str, NDArray[np.float32]]:
    """The vectors of a :meth:`Store.replace_vectors` as float32, refused with
    :class:`GalleryError` unless each is a finite ``dim``-D vector and no face is both
    re-embedded and dropped."""
    if dim < 1:
        raise GalleryError(f"gallery {location}: a model's dimension must be at least 1, got {dim}")
    both = set(vectors) & set(drop)
    if both:
        raise GalleryError(f"gallery {location}: face {sorted(both)[0]} is both re-embedded and dropped")
    out: dict[str, NDArray[np.float32]] = {}
    for face_id, v in vectors.items():
        a = np.asarray(v, dtype=np.float32)
        if a.shape != (dim,) or not np.all(np.isfinite(a)):
            raise GalleryError(
                f"gallery {location}: expected finite {dim}-D vectors, got shape {a.shape} for face {face_id}"
            )
        out[face_id] = a
    return out


def changed_while_reembedding(location: str, expected: set[str], found: set[str]) -> GalleryError:
    """The error of a :meth:`Store.replace_vectors` whose gallery changed since its vectors
    were computed (``found`` face ids instead of ``expected``)."""
    return GalleryError(
        f"gallery {location} changed while it was re-embedded ({len(found - expected)} face(s) enrolled, "
        f"{len(expected - found)} removed since): nothing was written; run faceprint gallery reembed again"
    )


def pause_before_commit(conn: Any, faces_table: str) -> None:
    """Test hook, off unless ``FACEPRINT_TEST_SLEEP_BEFORE_COMMIT`` is set: every backend
    calls it inside a write transaction (DB-API ``conn``) after its writes, just before
    COMMIT. It logs how many faces the open transaction sees (proof the writes happened)
    and sleeps, so a durability test can SIGKILL the process inside the transaction."""
    pause = get_settings().test_sleep_before_commit
    if pause > 0:
        n = conn.execute(f"SELECT count(*) FROM {faces_table}").fetchone()[0]
        log.warning("test hook: %d faces in the open transaction; sleeping %g s before COMMIT", n, pause)
        time.sleep(pause)
