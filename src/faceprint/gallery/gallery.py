"""``Gallery``: enrol people, identify faces (1:N, open set), find lookalikes.

A gallery couples a :class:`~.records.Store` (persistence, source of truth) with a
:class:`~faceprint.recognizer.Recognizer` (detect -> align -> embed). Conventions:

* similarities are cosine similarities of unit vectors (higher = more alike);
* enrolment (which face of a photo, refusals reported not raised, duplicates by sha256,
  one transaction per person) follows :mod:`.enrolment`;
* people are ranked by their centroid's similarity (see :mod:`.scoring`) among the owners
  of the most similar faces; the threshold is the per-call argument, else the one stored
  with the gallery, else the open-set threshold for the gallery's current number of
  people at the target stranger false-alarm rate (stored ``far`` or 1%), derived again at
  every call;
* the gallery is bound to the embedder of its first enrolment: vectors of another model
  raise :class:`~faceprint.errors.IncompatibleEmbeddingError`.

Candidate faces come from the store's own ``search_faces`` when it has one (PostgreSQL +
pgvector), else from an index over ``store.snapshot()`` (exact, or HNSW persisted at the
store's ``index_path``), brought up to date when the store's generation moves
(:func:`~.index.refresh_index`: enrolments since the graph was built are searched exactly
beside it until there are enough to justify a rebuild).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..errors import FaceprintError, GalleryError, IncompatibleEmbeddingError
from ..types import Face, Match, Recognition
from .enrolment import FaceChoice, Progress, as_list, check_face_choice, commit, extract, plan_dir
from .exchange import export_store, import_store
from .records import FaceRecord, Person, Snapshot, Store, check_name
from .results import EnrollReport, Identification, OperatingPoint
from .scoring import DEFAULT_FAR, open_set_threshold

if TYPE_CHECKING:
    from ..io import ImageInput
    from ..recognizer import Recognizer


def _vectors(faces: Sequence[Face]) -> NDArray[np.float32]:
    if not faces:
        return np.zeros((0, 0), np.float32)
    return np.stack([np.asarray(f.embedding, dtype=np.float32) for f in faces])


class Gallery:
    """Enrol, identify and search people in ``store`` with ``recognizer`` (created on
    first use when ``None``, so listing a gallery loads no model)."""

    def __init__(self, store: Store, recognizer: Recognizer | None = None) -> None:
        self.store = store
        self._recognizer = recognizer
        self._index: tuple[int, Snapshot, Any] | None = None
        self._groups: tuple[int, dict[str, NDArray[np.intp]]] | None = None  # person -> snapshot rows

    @property
    def recognizer(self) -> Recognizer:
        if self._recognizer is None:
            from ..recognizer import Recognizer

            self._recognizer = Recognizer()
        return self._recognizer

    @property
    def model(self) -> str:
        """``name@version`` of the recognizer's vectors (``+flip`` with flip averaging)."""
        from ..embedding import model_id

        r = self.recognizer
        return model_id(r.embedder) + ("+flip" if r.flip else "")

    def check_model(self) -> tuple[str, int] | None:
        """Raise :class:`IncompatibleEmbeddingError` when this gallery's vectors come from
        another model than its recognizer's; returns the bound (model, dim), if any."""
        bound = self.store.model()
        if bound is not None and bound != (self.model, self.recognizer.embedder.dim):
            raise IncompatibleEmbeddingError(
                f"gallery {self.store.location} holds {bound[1]}-D vectors of {bound[0]}; this recognizer "
                f"makes {self.recognizer.embedder.dim}-D vectors of {self.model} (use --embedder "
                f"{bound[0].split('@')[0]}, or another gallery)"
            )
        return bound

    # -- enrolment (see :mod:`.enrolment`) ----------------------------------------------
    def enroll(
        self,
        name: str,
        images: Sequence[ImageInput],
        face: FaceChoice = "single",
        metadata: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> EnrollReport:
        """Add the face of each image to ``name`` (created when new); see :mod:`.enrolment`."""
        check_name(name)
        self.check_model()
        check_face_choice(face)
        ((_, pending),) = extract(
            self.recognizer, self.model, self.store, [(name, as_list(images))], face, progress
        )
        return commit(self.store, self.model, name, pending, metadata)

    def enroll_dir(
        self, root: str | Path, face: FaceChoice = "single", progress: Progress | None = None
    ) -> list[EnrollReport]:
        """Enrol ``root/<name>/<images>``: one transaction per person, while detection and
        embedding run in batches that span people (LFW-like folders hold 1-2 photos)."""
        plan = plan_dir(root)
        self.check_model()
        check_face_choice(face)
        people = extract(self.recognizer, self.model, self.store, plan, face, progress)
        return [commit(self.store, self.model, n, p, None) for n, p in people]

    # -- search -----------------------------------------------------------------------
    def operating_point(self, threshold: float | None = None) -> OperatingPoint:
        """The threshold ``identify`` uses now, and where it comes from (module doc)."""
        bound = self.store.model()
        model = bound[0] if bound else self.model
        people = self._count_people()
        if threshold is not None:
            return OperatingPoint(float(threshold), "argument", model, people)
        stored = self.store.get_setting("threshold")
        if stored is not None:
            cal = self.calibration()
            if cal is not None and float(cal["threshold"]) == float(stored):
                if bound is not None and cal.get("model") != bound[0]:
                    raise IncompatibleEmbeddingError(
                        f"gallery {self.store.location} was calibrated with {cal.get('model')} but holds "
                        f"vectors of {bound[0]}: calibrate it again with its own embedder"
                    )
                note = f"TAR {cal.get('tar')} at FAR {cal.get('far_target')} on {cal.get('source')}"
                return OperatingPoint(float(stored), "calibrated", model, people, cal.get("far_target"), note)
            return OperatingPoint(float(stored), "gallery", model, people)
        far = float(self.store.get_setting("far") or DEFAULT_FAR)
        try:
            return OperatingPoint(open_set_threshold(model, people, far), "open-set", model, people, far)
        except GalleryError as exc:
            return OperatingPoint(
                self._default_threshold(model), "embedder default", model, people, None, str(exc)
            )

    def _default_threshold(self, model: str) -> float:
        """The recognizer's 1:1 threshold; without a recognizer yet, the class default of
        the bound model's embedder (so listing or configuring loads no model)."""
        if self._recognizer is not None:
            return self._recognizer.threshold
        from ..registry import embedders

        name = model.split("@")[0]
        try:
            cls = embedders.resolve(name)
        except FaceprintError:
            return self.recognizer.threshold
        attr = "flip_threshold" if model.endswith("+flip") else "default_threshold"
        return float(getattr(cls, attr, cls.default_threshold))

    def _count_people(self) -> int:
        count = getattr(self.store, "count_people", None)
        return int(count()) if callable(count) else len(self.store.people())

    def _local_index(self) -> None:
        """Bring the in-process search index up to the store's generation: the HNSW graph of a
        large gallery is updated with the faces enrolled or removed since, not rebuilt."""
        gen = self.store.generation()
        if self._index is None or self._index[0] != gen:
            from .index import refresh_index

            snap = self.store.snapshot()
            path = getattr(self.store, "index_path", None)
            old = self._index[2] if self._index is not None else None
            self._index = (snap.generation, snap, refresh_index(old, snap, path) if snap.face_ids else None)

    def search_faces(self, queries: NDArray[np.float32], k: int) -> list[list[tuple[str, str, float]]]:
        """The ``k`` most similar enrolled faces of each query: (face_id, person, similarity)."""
        own = getattr(self.store, "search_faces", None)
        if callable(own):
            result: list[list[tuple[str, str, float]]] = own(queries, k)
            return result
        self._local_index()
        assert self._index is not None
        _, snap, index = self._index
        if index is None:
            return [[] for _ in range(len(queries))]
        sims, rows = index.search(queries, k)
        return [
            [(snap.face_ids[r], snap.persons[r], float(s)) for s, r in zip(srow, rrow, strict=True) if r >= 0]
            for srow, rrow in zip(sims, rows, strict=True)
        ]

    def centroids(self, names: Sequence[str]) -> dict[str, NDArray[np.float32]]:
        """Each named person's centroid (mean face vector re-normalised to unit length); the
        store computes them when it can (PostgreSQL), else the local snapshot does."""
        own = getattr(self.store, "centroids", None)
        if callable(own):
            result: dict[str, NDArray[np.float32]] = own(names)
            return result
        self._local_index()
        assert self._index is not None
        _, snap, _ = self._index
        if self._groups is None or self._groups[0] != snap.generation:
            persons = np.asarray(snap.persons, dtype=object)
            order = np.argsort(persons, kind="stable")
            uniq, starts = np.unique(persons[order], return_index=True)
            bounds = np.append(starts, len(order))
            rows = {str(n): order[bounds[i] : bounds[i + 1]] for i, n in enumerate(uniq)}
            self._groups = (snap.generation, rows)
        groups = self._groups[1]
        out: dict[str, NDArray[np.float32]] = {}
        for name in names:
            r = groups.get(name)
            if r is not None:
                v = snap.vectors[r].sum(axis=0, dtype=np.float64)
                out[name] = (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)
        return out

    def rank(self, queries: NDArray[np.float32], top_k: int) -> list[tuple[Match, ...]]:
        """The ``top_k`` best people for each row of ``queries`` (unit vectors of the gallery's
        model, e.g. ``Face.embedding``), best first, by person-level score, whatever the
        threshold. Evaluators call this with vectors they embedded themselves.

        People are scored by their centroid (see :mod:`.scoring`: it beat the best single
        face on LFW dev) among the people owning the ``10 * top_k`` (at least 50) faces
        most similar to the probe. When a query's candidates fill the whole ``k`` yet name
        fewer than ``top_k`` people (people with many faces), the search is repeated with a
        larger ``k``, up to every face. ``Match.face_id`` is the person's most similar face.
        """
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim != 2 or len(queries) == 0:
            return []
        k = max(50, 10 * top_k)
        while True:
            cands = self.search_faces(queries, k)
            short = any(len(c) == k and len({p for _, p, _ in c}) < top_k for c in cands)
            if not short:
                break
            k *= 4
        best_faces: list[dict[str, str]] = []
        for cand in cands:
            best_face: dict[str, str] = {}
            for fid, person, _ in cand:  # candidates are best first: keep each person's best
                best_face.setdefault(person, fid)
            best_faces.append(best_face)
        cent = self.centroids(sorted({p for bf in best_faces for p in bf}))
        out: list[tuple[Match, ...]] = []
        for q, best_face in zip(queries, best_faces, strict=True):
            names = [p for p in best_face if p in cent]  # a person removed meanwhile drops out
            sims = np.array([float(np.dot(cent[p], q)) for p in names], dtype=np.float64)
            ranked = sorted(zip(names, sims.tolist(), strict=True), key=lambda t: (-t[1], t[0]))
            out.append(tuple(Match(p, s, best_face[p]) for p, s in ranked[:top_k]))
        return out

    def identify(
        self,
        images: Sequence[ImageInput],
        top_k: int = 1,
        threshold: float | None = None,
        progress: Progress | None = None,
    ) -> Identification:
        """Name every face of every image, or ``"unknown"`` below the threshold."""
        if top_k < 1:
            raise GalleryError(f"top_k must be at least 1, got {top_k}")
        self.check_model()
        op = self.operating_point(threshold)
        images = as_list(images)
        per_image = self.recognizer.process_batch(images, progress=progress)
        flat = [f for fs in per_image for f in fs]
        ranked = iter(self.rank(_vectors(flat), top_k))
        results = tuple(tuple(Recognition(f, next(ranked), op.threshold) for f in fs) for fs in per_image)
        labels = tuple(str(im) if not isinstance(im, np.ndarray | bytes) else f"image #{i + 1}"
                       for i, im in enumerate(images))  # fmt: skip
        return Identification(labels, results, op)

    def lookalike(self, image: ImageInput, top_k: int = 5) -> Recognition:
        """The ``top_k`` nearest enrolled *people* to the largest face of ``image``,
        whatever the threshold (``Recognition.threshold`` is the operating point's)."""
        self.check_model()
        faces = self.recognizer.process(image)
        if not faces:
            from ..recognizer import no_face_error

            label = str(image) if isinstance(image, str | Path) else "image"
            raise no_face_error(label, self.recognizer.detector_name)
        probe = max(faces, key=lambda f: f.box.area)
        (matches,) = self.rank(_vectors([probe]), top_k)
        return Recognition(probe, matches, self.operating_point().threshold)

    # -- management -------------------------------------------------------------------
    def people(self) -> list[Person]:
        return self.store.people()

    def person(self, name: str) -> tuple[Person, list[FaceRecord]]:
        return self.store.person(name)

    def remove(self, name: str) -> int:
        """Delete ``name`` and every vector of theirs; returns the number of faces removed."""
        return self.store.remove_person(name)

    def rename(self, old: str, new: str) -> None:
        self.store.rename_person(old, check_name(new))

    def set_metadata(self, name: str, metadata: Mapping[str, Any]) -> None:
        self.store.set_metadata(name, metadata)

    def set_threshold(self, value: float | None) -> None:
        """Store a fixed threshold with the gallery (``None``: back to the open-set one)."""
        if value is not None and not -1.0 <= value <= 1.0:
            raise GalleryError(f"a threshold is a cosine similarity in [-1, 1], got {value}")
        self.store.set_setting("calibration", None)
        self.store.set_setting("threshold", None if value is None else repr(float(value)))

    def calibration(self) -> dict[str, Any] | None:
        """The record stored by :meth:`set_calibration`, if any."""
        raw = self.store.get_setting("calibration")
        if raw is None:
            return None
        try:
            rec = json.loads(raw)
        except ValueError:
            return None
        return rec if isinstance(rec, dict) and "threshold" in rec else None

    def set_calibration(self, record: Mapping[str, Any]) -> None:
        """Store a threshold calibrated on the user's data (``faceprint calibrate``), with its
        record (``threshold``, ``model``, ``far_target``, ``tar``, ``source``...). A gallery
        bound to another model refuses it: similarities of two models are not comparable."""
        bound = self.store.model()
        model = str(record.get("model", ""))
        if bound is not None and model != bound[0]:
            raise IncompatibleEmbeddingError(
                f"gallery {self.store.location} holds vectors of {bound[0]}; this calibration was made with "
                f"{model or 'an unknown model'} (calibrate with the gallery's embedder)"
            )
        thr = float(record["threshold"])
        if not -1.0 <= thr <= 1.0:
            raise GalleryError(f"a threshold is a cosine similarity in [-1, 1], got {thr}")
        self.store.set_setting("calibration", json.dumps(dict(record), sort_keys=True))
        self.store.set_setting("threshold", repr(thr))

    def set_far(self, value: float | None) -> None:
        """Store the target stranger false-alarm rate of the open-set threshold."""
        if value is not None and not 0.0 < value < 1.0:
            raise GalleryError(f"a false-alarm rate is in (0, 1), got {value}")
        self.store.set_setting("far", None if value is None else repr(float(value)))

    def export(self, path: str | Path) -> int:
        """Write the whole gallery to ``path`` (see :data:`EXPORT_DOC`); returns faces written."""
        return export_store(self.store, Path(path))

    def import_(self, path: str | Path) -> tuple[int, int]:
        """Add the people of an export file; returns (faces added, faces skipped)."""
        return import_store(self.store, Path(path))

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
