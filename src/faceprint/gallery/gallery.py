"""``Gallery``: enrol people, identify faces (1:N, open set), find lookalikes.

A gallery couples a :class:`~.records.Store` (persistence, source of truth) with a
:class:`~faceprint.recognizer.Recognizer` (detect -> align -> embed). Conventions:

* similarities are cosine similarities of unit vectors (higher = more alike);
* enrolment (which face of a photo, refusals reported not raised, duplicates by sha256,
  one transaction per person) follows :mod:`.enrolment`;
* ``identify``, ``lookalike`` and enrolment ask one :class:`~faceprint.quality.QualityGate`
  (``gate=``, default :data:`~faceprint.quality.DEFAULT_GATE`, the one ``watch`` uses)
  before a face is searched or enrolled: a face it rejects (tiny, blurred, turned away)
  is reported ``unknown`` with its ``reason``, or refused at enrolment, never named;
* people are ranked by their centroid's similarity (see :mod:`.scoring`) among the owners
  of the most similar faces; the threshold is the per-call argument, else the one stored
  with the gallery, else the open-set threshold for the gallery's current number of
  people at the target stranger false-alarm rate (stored ``far`` or 1%), derived again at
  every call from the impostor distribution calibrated on the user's faces, else the one
  shipped for the model (:meth:`Gallery.operating_point`);
* the gallery is bound to the model id of its first enrolment (``network@version+<sha8>``,
  ``+flip``: :func:`faceprint.embedding.model_id`): vectors of other weights, or made with
  or without flip when the gallery's were not, raise
  :class:`~faceprint.errors.IncompatibleEmbeddingError` naming both ids and how to convert
  the gallery (:meth:`Gallery.reembed`, ``faceprint gallery reembed``).

Candidate faces and centroids come from the store (:class:`~.records.Store`): SQLite
searches in process (exact up to :data:`~.index.EXACT_MAX_SIZE` faces, HNSW above;
:mod:`.local_search`), PostgreSQL on the server (pgvector HNSW, approximate).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..errors import FaceprintError, GalleryError, IncompatibleEmbeddingError
from ..quality import DEFAULT_GATE, QualityGate
from ..types import Face, Image, Match, Recognition
from .enrolment import FaceChoice, Progress, as_list, check_face_choice, commit, extract, plan_dir
from .exchange import export_store, import_store
from .records import FaceRecord, Person, Store, check_name, upgrade_model_id
from .reembed import ReembedReport
from .results import EnrollReport, Identification, OperatingPoint
from .scoring import (
    DEFAULT_FAR,
    VIEWS_SETTING,
    ImpostorDistribution,
    find_distribution,
    missing_reason,
    open_set_threshold,
    registered_distribution,
    views_id,
)

if TYPE_CHECKING:
    from ..io import ImageInput
    from ..recognizer import Recognizer


def _vectors(faces: Sequence[Face]) -> NDArray[np.float32]:
    if not faces:
        return np.zeros((0, 0), np.float32)
    return np.stack([np.asarray(f.embedding, dtype=np.float32) for f in faces])


def _mismatch_hint(bound: str, mine: str) -> str:
    """What to change so that vectors of ``mine`` fit a gallery bound to ``bound``."""
    if upgrade_model_id(bound) is not None:  # not migrated: the file could not be written
        return "an older faceprint wrote it; open it once where it can be written to upgrade its model id"
    from ..embedding.fused import is_fused_id

    if is_fused_id(bound) or is_fused_id(mine):
        if bound.removesuffix("+flip") == mine.removesuffix("+flip"):
            return "use --flip" if bound.endswith("+flip") else "drop --flip"
        return (
            "vectors of a fused embedder never mix with a plain one's or another fusion's: "
            "use the embedder that filled it"
        )
    b_parts, m_parts = bound.split("+"), mine.split("+")
    if b_parts[0] != m_parts[0]:
        return f"use the embedder of {b_parts[0].split('@')[0]}"
    if b_parts[1:2] != m_parts[1:2]:
        return "the weights differ (a fine-tuned or swapped model file): use the weights that filled it"
    return "use --flip" if bound.endswith("+flip") else "drop --flip"


def _reembed_hint(embedder: str, flip: bool) -> str:
    """How to convert a gallery to the vectors of ``embedder`` (``faceprint gallery reembed``)."""
    return (
        f"or re-embed the gallery with this model: faceprint gallery reembed --embedder {embedder}"
        + (" --flip" if flip else "")
        + " --images DIR (DIR holds the enrolled photos)"
    )


class Gallery:
    """Enrol, identify and search people in ``store`` with ``recognizer`` (created on
    first use when ``None``, so listing a gallery loads no model)."""

    def __init__(
        self, store: Store, recognizer: Recognizer | None = None, enrol_views: bool | None = None
    ) -> None:
        """``enrol_views``: average each enrolled face's views
        (:data:`~faceprint.recognizer.VIEW_ZOOMS`); ``None`` (the default) turns them on
        where the model has an impostor distribution for them, so that the open-set
        threshold stays calibrated (:meth:`enrolment_views`)."""
        self.store = store
        self._recognizer = recognizer
        self.enrol_views = enrol_views

    @property
    def recognizer(self) -> Recognizer:
        if self._recognizer is None:
            from ..recognizer import Recognizer

            self._recognizer = Recognizer()
        return self._recognizer

    @property
    def model(self) -> str:
        """The id of the recognizer's vectors (``network@version+<sha8>``, ``+flip`` with
        flip averaging; :func:`faceprint.embedding.model_id`)."""
        return self.recognizer.model_id

    def check_model(self) -> tuple[str, int] | None:
        """Raise :class:`IncompatibleEmbeddingError` when this gallery's vectors come from
        another model than its recognizer's; returns the bound (model, dim), if any."""
        bound = self.store.model()
        if bound is not None and bound != (self.model, self.recognizer.embedder.dim):
            rec = self.recognizer
            raise IncompatibleEmbeddingError(
                f"gallery {self.store.location} holds {bound[1]}-D vectors of {bound[0]}; this recognizer "
                f"makes {rec.embedder.dim}-D vectors of {self.model} "
                f"({_mismatch_hint(bound[0], self.model)}, {_reembed_hint(rec.embedder.name, rec.flip)}, "
                "or use another gallery)"
            )
        return bound

    # -- enrolment (see :mod:`.enrolment`) ----------------------------------------------
    def enrolment_views(self) -> bool:
        """Whether enrolment averages each face's views: the constructor's choice, else
        on when an impostor distribution of the model against view-averaged faces exists
        (shipped for dlib's ResNet; a MODEL_DIR has none, so its faces are one crop)."""
        if self.enrol_views is not None:
            return self.enrol_views
        return self._distribution(views_id(self.model)) is not None

    def _views(self) -> bool:
        """:meth:`enrolment_views`, and when on, the gallery marked as holding such faces
        BEFORE they are committed (:meth:`operating_point` then uses their distribution):
        a crash in between leaves a stricter threshold, never a laxer one."""
        views = self.enrolment_views()
        if views and self.store.get_setting(VIEWS_SETTING) != "1":
            self.store.set_setting(VIEWS_SETTING, "1")
        return views

    def enroll(
        self,
        name: str,
        images: Sequence[ImageInput],
        face: FaceChoice = "single",
        metadata: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
        gate: QualityGate = DEFAULT_GATE,
    ) -> EnrollReport:
        """Add the face of each image to ``name`` (created when new); see :mod:`.enrolment`.
        A chosen face that fails ``gate`` is refused with the reason."""
        check_name(name)
        self.check_model()
        check_face_choice(face)
        views = self._views()
        ((_, pending),) = extract(
            self.recognizer, self.model, self.store, [(name, as_list(images))], face, progress, gate, views
        )
        return commit(self.store, self.model, name, pending, metadata)

    def enroll_id(
        self,
        person_id: str,
        images: Sequence[ImageInput],
        face: FaceChoice = "single",
        progress: Progress | None = None,
        gate: QualityGate = DEFAULT_GATE,
    ) -> EnrollReport:
        """Add the face of each image to the person whose id is ``person_id``, who must
        exist (:class:`UnknownPersonError` otherwise). Why not ``enroll(name)``: the faces
        are embedded first, outside any transaction, and the person may be renamed or
        deleted meanwhile by another client. The commit re-reads the person by id in the
        same transaction: a renamed person gets the faces under the new name, a deleted one
        is not brought back under the old name."""
        self.check_model()
        check_face_choice(face)
        person, _ = self.store.person_by_id(person_id)
        views = self._views()
        plan = [(person.name, as_list(images))]
        ((_, pending),) = extract(self.recognizer, self.model, self.store, plan, face, progress, gate, views)
        with self.store.transaction():
            now, _ = self.store.person_by_id(person_id)
            return commit(self.store, self.model, now.name, pending, None)

    def enroll_dir(
        self,
        root: str | Path,
        face: FaceChoice = "single",
        progress: Progress | None = None,
        gate: QualityGate = DEFAULT_GATE,
    ) -> list[EnrollReport]:
        """Enrol ``root/<name>/<images>``: one transaction per person, while detection and
        embedding run in batches that span people (LFW-like folders hold 1-2 photos)."""
        plan = plan_dir(root)
        self.check_model()
        check_face_choice(face)
        views = self._views()
        people = extract(self.recognizer, self.model, self.store, plan, face, progress, gate, views)
        return [commit(self.store, self.model, n, p, None) for n, p in people]

    # -- a new model (see :mod:`.reembed`) -----------------------------------------------
    def reembed(self, image_dirs: Sequence[str | Path], drop_missing: bool = False) -> ReembedReport:
        """Re-embed every face with this gallery's recognizer from the enrolled photos found
        (by sha256) under ``image_dirs``, and bind the gallery to the recognizer's model,
        in one transaction (:mod:`.reembed`). Faces whose photo or face is not found stop
        it (``ReembedReport.written`` is False, ``missing`` lists them) unless
        ``drop_missing`` deletes them. A gallery already bound to the model is left as it is."""
        from .reembed import apply_reembed, image_files, plan_reembed, scan_images, stored_faces

        bound = self.store.model()
        if bound is not None and bound == (self.model, self.recognizer.embedder.dim):
            n = len(self.store.snapshot().face_ids)
            return ReembedReport(self.store.location, bound[0], self.model, n, 0, False)
        faces = stored_faces(self.store)
        wanted = {f.image_sha256 for f in faces if f.image_sha256}
        images = scan_images(image_files(image_dirs), wanted)
        plan = plan_reembed(self.store, self.recognizer, images, faces)
        return apply_reembed(self.store, plan, drop_missing)

    # -- search -----------------------------------------------------------------------
    def operating_point(self, threshold: float | None = None) -> OperatingPoint:
        """The threshold ``identify`` uses now, and where it comes from (module doc).

        In order: the argument; a threshold stored with the gallery; the open-set
        threshold for the gallery's number of people at its stranger false-alarm rate,
        from the impostor distribution ``faceprint calibrate --gallery`` stored
        (``"calibrated"``), else the one shipped for the model (``"open-set"``), else the
        embedder's 1:1 threshold with a note saying why (``"embedder default"``). A corrupt
        shipped or stored distribution raises :class:`GalleryError`."""
        bound = self.store.model()
        model = bound[0] if bound else self.model
        people = self.store.count_people()
        if threshold is not None:
            return OperatingPoint(float(threshold), "argument", model, people)
        cal = self.calibration()
        if cal is not None and bound is not None and cal.get("model") != bound[0]:
            raise IncompatibleEmbeddingError(
                f"gallery {self.store.location} was calibrated with {cal.get('model')} but holds "
                f"vectors of {bound[0]}: calibrate it again with its own embedder"
            )
        stored = self.store.get_setting("threshold")
        if stored is not None:
            if cal is not None and "impostors" not in cal and float(cal["threshold"]) == float(stored):
                note = (
                    f"a 1:1 threshold for FAR {cal.get('far_target')} stored by an older faceprint "
                    "calibrate: it does not grow with the number of people; run faceprint calibrate "
                    "--gallery again"
                )
                return OperatingPoint(float(stored), "calibrated", model, people, None, note)
            return OperatingPoint(float(stored), "gallery", model, people)
        far = float(self.store.get_setting("far") or DEFAULT_FAR)
        views = self.store.get_setting(VIEWS_SETTING) == "1"  # some faces enrolled with views
        if cal is not None and "impostors" in cal:
            dist = ImpostorDistribution(cal["impostors"], f"gallery {self.store.location} calibration")
            note = (
                f"impostor distribution of {cal.get('impostor_pairs')} different-person pairs of "
                f"{cal.get('source')}; 1:1 there: TAR {cal.get('tar')} at FAR {cal.get('far_target')}"
            )
            if views:
                note += (
                    "; faces enrolled with views score strangers slightly higher than the one-crop "
                    "pairs calibrated here (1.2-1.4x as many for dlib's ResNet on LFW dev)"
                )
            t = open_set_threshold(dist, people, far)
            return OperatingPoint(t, "calibrated", model, people, far, note)
        shipped = self._distribution(views_id(model)) if views else None
        if shipped is None:
            shipped = self._distribution(model)
        if shipped is None:
            default = self._default_threshold(model)
            note = f"{missing_reason(model)}; using the embedder's 1:1 threshold"
            return OperatingPoint(default, "embedder default", model, people, None, note)
        notes = []
        if registered_distribution(shipped.model) is shipped:  # a MODEL_DIR's, fitted on its training data
            notes.append(
                f"impostor distribution of {shipped.source} ({shipped.raw.get('pairs')} different-person "
                f"pairs of {shipped.raw.get('source')})"
            )
        if views and shipped.model == views_id(model):
            notes.append(f"faces enrolled with views: the impostor distribution {shipped.model}")
        elif views:
            notes.append(
                f"faces enrolled with views, but {model} has no impostor distribution for them: the "
                "one-crop distribution is used, which names strangers more often than the target "
                "(1.2-1.4x as often for dlib's ResNet on LFW dev); enrol with --no-views to keep "
                "the target"
            )
        note = "; ".join(notes)
        t = open_set_threshold(shipped, people, far)
        return OperatingPoint(t, "open-set", model, people, far, note)

    def _distribution(self, model: str) -> ImpostorDistribution | None:
        """The impostor distribution of ``model`` (:func:`~.scoring.find_distribution`). A
        MODEL_DIR embedder registers its own when it is built; when this gallery has not
        built its recognizer yet and the configured default embedder is a MODEL_DIR
        (``FACEPRINT_EMBEDDER``), its distributions are registered from its files first,
        without loading its graph, so the first operating point is already the right one."""
        dist = find_distribution(model)
        if dist is not None or self._recognizer is not None:
            return dist
        from ..recognizer import default_embedder_name
        from ..registry import is_model_dir

        name = default_embedder_name()
        if not is_model_dir(name):
            return None
        from ..embedding.model_dir import register_model_dir

        register_model_dir(name)
        return find_distribution(model)

    def _default_threshold(self, model: str) -> float:
        """The recognizer's 1:1 threshold; without a recognizer yet, the class default of
        the bound model's embedder (so listing or configuring loads no model)."""
        if self._recognizer is not None:
            return self._recognizer.threshold
        from ..embedding.fused import fusion_of_id
        from ..registry import embedders

        fusion = fusion_of_id(model)
        if fusion is not None:
            return fusion.flip_threshold if model.endswith("+flip") else fusion.default_threshold
        name = model.split("@")[0]
        try:
            cls = embedders.resolve(name)
        except FaceprintError:  # a network of no registered embedder (a MODEL_DIR's): ask the recognizer
            return self.recognizer.threshold
        attr = "flip_threshold" if model.endswith("+flip") else "default_threshold"
        return float(getattr(cls, attr, cls.default_threshold))

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
            cands = self.store.search_faces(queries, k)
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
        cent = self.store.centroids(sorted({p for bf in best_faces for p in bf}))
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
        gate: QualityGate = DEFAULT_GATE,
        max_faces: int | None = None,
    ) -> Identification:
        """Name every face of every image, or ``"unknown"`` below the threshold; a face that
        fails ``gate`` is not embedded and comes back ``unknown`` with its ``reason``.
        ``max_faces``: only the largest that many faces of an image are searched (a
        service's cap on work per request); ``Identification.dropped`` counts the rest."""
        if top_k < 1:
            raise GalleryError(f"top_k must be at least 1, got {top_k}")
        self.check_model()
        op = self.operating_point(threshold)
        images = as_list(images)
        verdicts: list[list[tuple[Face, str | None]]] = []  # per image, every face in detector order
        dropped: list[int] = []

        def passing(faces: list[Face], image: Image) -> list[Face]:
            if max_faces is not None and len(faces) > max_faces:
                keep = set(sorted(range(len(faces)), key=lambda i: -faces[i].box.area)[:max_faces])
                dropped.append(len(faces) - max_faces)
                faces = [f for i, f in enumerate(faces) if i in keep]
            else:
                dropped.append(0)
            verdicts.append([(f, gate.reason(image, f)) for f in faces])
            return [f for f, why in verdicts[-1] if why is None]

        per_image = self.recognizer.process_batch(images, select=passing, progress=progress)
        flat = [f for fs in per_image for f in fs]
        ranked = iter(self.rank(_vectors(flat), top_k))
        results: list[tuple[Recognition, ...]] = []
        for embedded, verdict in zip(per_image, verdicts, strict=True):
            kept = iter(embedded)
            results.append(tuple(
                Recognition(next(kept), next(ranked), op.threshold) if why is None
                else Recognition(f, (), op.threshold, why)
                for f, why in verdict
            ))  # fmt: skip
        labels = tuple(str(im) if not isinstance(im, np.ndarray | bytes) else f"image #{i + 1}"
                       for i, im in enumerate(images))  # fmt: skip
        return Identification(labels, tuple(results), op, tuple(dropped) if any(dropped) else ())

    def lookalike(self, image: ImageInput, top_k: int = 5, gate: QualityGate = DEFAULT_GATE) -> Recognition:
        """The ``top_k`` nearest enrolled *people* to the largest face of ``image``,
        whatever the threshold (``Recognition.threshold`` is the operating point's). When
        that face fails ``gate`` nobody is searched: no matches, and the ``reason``."""
        from ..io import load_image

        self.check_model()
        img = load_image(image)
        faces = self.recognizer.detector.detect(img)
        if not faces:
            from ..recognizer import no_face_error

            label = str(image) if isinstance(image, str | Path) else "image"
            raise no_face_error(label, self.recognizer.detector_name)
        probe = max(faces, key=lambda f: f.box.area)
        threshold = self.operating_point().threshold
        why = gate.reason(img, probe)
        if why is not None:
            return Recognition(probe, (), threshold, why)
        (probe,) = self.recognizer.embed(img, [probe])
        (matches,) = self.rank(_vectors([probe]), top_k)
        return Recognition(probe, matches, threshold)

    # -- management -------------------------------------------------------------------
    def people(self) -> list[Person]:
        return self.store.people()

    def person(self, name: str) -> tuple[Person, list[FaceRecord]]:
        return self.store.person(name)

    def person_by_id(self, person_id: str) -> tuple[Person, list[FaceRecord]]:
        """The person whose stable id (:attr:`~.records.Person.id`) is ``person_id``, and
        their faces; raises :class:`~faceprint.errors.UnknownPersonError`."""
        return self.store.person_by_id(person_id)

    def create_person(self, name: str, metadata: Mapping[str, Any] | None = None) -> Person:
        """Create ``name`` with no faces yet (enrol them later); returns the person with
        their new id. Raises :class:`~faceprint.errors.NameTakenError` when the name is in
        use. A person with no faces is never a match and does not count in the open-set
        threshold's number of people."""
        return self.store.create_person(check_name(name), metadata)

    def remove(self, name: str) -> int:
        """Delete ``name`` and every vector of theirs; returns the number of faces removed."""
        return self.store.remove_person(name)

    def remove_face(self, face_id: str) -> str:
        """Delete one face and its vector from every file; returns the name of its person,
        who stays (maybe with no faces). Raises :class:`~faceprint.errors.UnknownFaceError`."""
        return self.store.remove_face(face_id)

    def rename(self, old: str, new: str) -> None:
        self.store.rename_person(old, check_name(new))

    def set_metadata(self, name: str, metadata: Mapping[str, Any]) -> None:
        self.store.set_metadata(name, metadata)

    def set_threshold(self, value: float | None) -> None:
        """Store a fixed threshold with the gallery (``None``: back to the open-set one)."""
        if value is not None and not -1.0 <= value <= 1.0:
            raise GalleryError(f"a threshold is a cosine similarity in [-1, 1], got {value}")
        with self.store.transaction():  # never a threshold with another one's calibration
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
        """Store a calibration made on the user's faces (``faceprint calibrate --gallery``):
        its record (``model``, ``threshold`` and ``tar`` at the 1:1 ``far_target``,
        ``source``...) and ``impostors``, the impostor distribution fitted to its
        different-person scores (:func:`~.scoring.fit_distribution`). From then on the
        open-set threshold comes from that distribution, so it still grows with the number
        of people; a threshold stored earlier is cleared. A gallery bound to another model
        refuses it: similarities of two models are not comparable."""
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
        impostors = record.get("impostors")
        if not isinstance(impostors, Mapping):
            raise GalleryError(
                "a gallery calibration needs the impostor distribution of its data ('impostors')"
            )
        dist = ImpostorDistribution(dict(impostors), "calibration")
        if dist.model != model:
            raise GalleryError(f"calibration of {model} carries an impostor distribution of {dist.model}")
        with self.store.transaction():  # the record and the cleared threshold together, or neither
            self.store.set_setting("calibration", json.dumps(dict(record), sort_keys=True))
            self.store.set_setting("threshold", None)

    def set_far(self, value: float | None) -> None:
        """Store the target stranger false-alarm rate of the open-set threshold."""
        if value is not None and not 0.0 < value < 1.0:
            raise GalleryError(f"a false-alarm rate is in (0, 1), got {value}")
        self.store.set_setting("far", None if value is None else repr(float(value)))

    def export(self, path: str | Path, force: bool = False) -> int:
        """Write the whole gallery, read as one snapshot, to ``path`` (see
        :data:`EXPORT_DOC`); an existing file is replaced only with ``force``. Returns the
        number of faces written."""
        return export_store(self.store, Path(path), force=force)

    def import_(self, path: str | Path) -> tuple[int, int]:
        """Add the people of an export file, all in one transaction after the whole file
        was checked (a bad line imports nothing); returns (faces added, faces skipped)."""
        return import_store(self.store, Path(path))

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
