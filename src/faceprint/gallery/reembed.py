"""Re-embed a gallery with another model (``faceprint gallery reembed``).

Why: a gallery is bound to the model id of its vectors, so a new model (a MODEL_DIR from
``faceprint train``, flip TTA, another embedder) cannot search it: the similarities of two
models mean nothing to each other. The gallery keeps no photos, only, per face, the
sha256 of its source image's bytes and the box (xyxy pixels) of the face in it. So:

1. :func:`scan_images` hashes the image files under the folders given (recursively) and
   keeps the ones whose sha256 some stored face names;
2. :func:`plan_reembed` loads each such image once, detects its faces with the
   recognizer's detector, matches every stored face of that image to the detected face
   whose box overlaps its stored box best (IoU >= :data:`MIN_IOU`; else the face is
   *not found*), and embeds the matches with the recognizer's embedder, in batches;
3. :func:`apply_reembed` writes the new vectors and binds the gallery to the new model id
   in ONE store transaction (:meth:`~.records.Store.replace_vectors`), so a failure or a
   kill leaves the gallery exactly as it was. A face whose image is missing, unreadable,
   or whose face is not found stops it (nothing is written) unless ``drop_missing``: then
   those faces are deleted in the same transaction. The threshold and calibration stored
   with the gallery were cosine similarities of the old model, so they are cleared; the
   target false-alarm rate stays.

Nothing here prints: the CLI reports (:mod:`faceprint.cli.gallery`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..errors import FaceprintError, GalleryError
from ..models import sha256_file
from ..types import Face, Image
from .enrolment import IMAGE_SUFFIXES
from .records import FaceRecord, Store
from .scoring import VIEWS_SETTING

if TYPE_CHECKING:
    from ..recognizer import Recognizer

#: Least IoU between a stored box and a detected one for them to be the same face.
MIN_IOU = 0.5
#: Images loaded, detected and embedded together (bounds memory).
CHUNK = 16
#: Settings of the old model's similarities, cleared by a re-embedding.
CLEARED_SETTINGS = ("threshold", "calibration")

Progress = Callable[[int], None]


@dataclass(frozen=True)
class MissingFace:
    """A stored face that could not be re-embedded, and why. ``image`` is the file found
    for its sha256, when one was."""

    face_id: str
    person: str
    image_sha256: str | None
    reason: str
    image: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "face_id": self.face_id,
            "person": self.person,
            "image_sha256": self.image_sha256,
            "image": self.image,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class ReembedPlan:
    """New vectors (unit, ``dim``-D, of ``model``) by face id, and the faces that could not
    be re-embedded; ``faces`` counts every face of the gallery; ``old_model`` is the id it
    is bound to now (``None`` while unbound)."""

    model: str
    dim: int
    old_model: str | None
    faces: int
    vectors: Mapping[str, NDArray[np.float32]]
    missing: tuple[MissingFace, ...]


@dataclass(frozen=True)
class ReembedReport:
    """What :func:`apply_reembed` did: ``written`` is False when nothing was (faces
    missing without ``drop_missing``, or the gallery already holds the model's vectors);
    ``dropped`` lists the faces deleted, ``missing`` the ones that stopped it; ``cleared``
    the settings of the old model that were cleared."""

    gallery: str
    old_model: str | None
    model: str
    faces: int
    reembedded: int
    written: bool
    dropped: tuple[MissingFace, ...] = ()
    missing: tuple[MissingFace, ...] = ()
    cleared: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gallery": self.gallery,
            "old_model": self.old_model,
            "model": self.model,
            "faces": self.faces,
            "reembedded": self.reembedded,
            "written": self.written,
            "dropped": [m.to_dict() for m in self.dropped],
            "missing": [m.to_dict() for m in self.missing],
            "cleared": list(self.cleared),
        }


def image_files(dirs: Sequence[str | Path]) -> list[Path]:
    """Every image file (by suffix, :data:`~.enrolment.IMAGE_SUFFIXES`)
    under ``dirs``, recursively, hidden files and folders skipped, in a stable order.
    Raises :class:`GalleryError` for a folder that does not exist."""
    out: list[Path] = []
    for d in dirs:
        root = Path(d).expanduser()
        if not root.is_dir():
            raise GalleryError(f"expected a folder of the enrolled photos, found no directory at {root}")
        for top, subdirs, names in os.walk(root):
            subdirs[:] = sorted(s for s in subdirs if not s.startswith("."))
            out.extend(
                Path(top) / n
                for n in sorted(names)
                if not n.startswith(".") and Path(n).suffix.lower() in IMAGE_SUFFIXES
            )
    return out


def scan_images(files: Sequence[Path], wanted: set[str], progress: Progress | None = None) -> dict[str, Path]:
    """sha256 of the bytes -> the first of ``files`` with it, for the sha256s in ``wanted``
    (the stored faces' images); stops hashing once every wanted image is found. A file
    that cannot be read is skipped (its faces, if any, are then reported missing).
    ``progress(n)`` is called as files are hashed."""
    found: dict[str, Path] = {}
    for path in files:
        if len(found) == len(wanted):
            break
        try:
            sha = sha256_file(path)
        except OSError:
            sha = ""
        if sha in wanted and sha not in found:
            found[sha] = path
        if progress is not None:
            progress(1)
    return found


def stored_faces(store: Store) -> list[FaceRecord]:
    """Every face of the gallery, read as one snapshot."""
    with store.transaction(readonly=True):
        return [f for p in store.people() if p.faces for f in store.person(p.name)[1]]


def _match(record: FaceRecord, detected: Sequence[Face]) -> tuple[Face | None, str]:
    """The detected face that is ``record``'s (best IoU with its stored box, at least
    :data:`MIN_IOU`), or ``None`` and why not."""
    if record.box is None:
        return None, "no box is stored for it"
    if not detected:
        return None, "face not found: the detector found no face in its image"
    ious = [record.box.iou(f.box) for f in detected]
    best = int(np.argmax(ious))
    if ious[best] < MIN_IOU:
        return None, (
            f"face not found: no detected face overlaps its stored box enough "
            f"(best IoU {ious[best]:.2f} of {len(detected)} face(s), need {MIN_IOU})"
        )
    return detected[best], ""


def plan_reembed(
    store: Store,
    recognizer: Recognizer,
    images: Mapping[str, Path],
    faces: Sequence[FaceRecord] | None = None,
    progress: Progress | None = None,
) -> ReembedPlan:
    """The new vectors of ``store``'s faces (``faces``: read now when ``None``) made by
    ``recognizer`` from the image files ``images`` (sha256 -> path, :func:`scan_images`),
    and the faces that cannot be re-embedded (module doc). ``progress(n)`` is called as
    images are done. Writes nothing."""
    from ..io import load_image

    bound = store.model()
    views = store.get_setting(VIEWS_SETTING) == "1"  # enrolled with views: re-embedded the same way
    records = stored_faces(store) if faces is None else list(faces)
    missing: list[MissingFace] = []
    by_image: dict[str, list[FaceRecord]] = {}
    for r in records:
        if r.image_sha256 is None:
            missing.append(MissingFace(r.face_id, r.person, None, "no image sha256 is stored for it"))
        elif r.image_sha256 not in images:
            missing.append(
                MissingFace(
                    r.face_id, r.person, r.image_sha256, "its image was not found in the folders given"
                )
            )
        else:
            by_image.setdefault(r.image_sha256, []).append(r)
    vectors: dict[str, NDArray[np.float32]] = {}
    shas = sorted(by_image)
    for start in range(0, len(shas), CHUNK):
        chunk = shas[start : start + CHUNK]
        loaded: list[tuple[str, Image]] = []
        for sha in chunk:
            try:
                loaded.append((sha, load_image(images[sha])))
            except (FaceprintError, OSError) as exc:
                missing.extend(
                    MissingFace(
                        r.face_id, r.person, sha, f"its image cannot be read: {exc}", str(images[sha])
                    )
                    for r in by_image[sha]
                )
        detected = recognizer.detector.detect_batch([img for _, img in loaded]) if loaded else []
        chosen: list[list[Face]] = []
        owners: list[list[FaceRecord]] = []
        for (sha, _), found in zip(loaded, detected, strict=True):
            mine: list[Face] = []
            whose: list[FaceRecord] = []
            for r in by_image[sha]:
                face, why = _match(r, found)
                if face is None:
                    missing.append(MissingFace(r.face_id, r.person, sha, why, str(images[sha])))
                else:
                    mine.append(face)
                    whose.append(r)
            chosen.append(mine)
            owners.append(whose)
        embedded = recognizer.embed_batch([img for _, img in loaded], chosen, views=views)
        for rs, fs in zip(owners, embedded, strict=True):
            for r, f in zip(rs, fs, strict=True):
                assert f.embedding is not None
                vectors[r.face_id] = np.asarray(f.embedding, dtype=np.float32)
        if progress is not None:
            progress(len(chunk))
    order = {r.face_id: i for i, r in enumerate(records)}
    missing.sort(key=lambda m: order[m.face_id])
    return ReembedPlan(
        model=recognizer.model_id,
        dim=int(recognizer.embedder.dim),
        old_model=bound[0] if bound else None,
        faces=len(records),
        vectors=vectors,
        missing=tuple(missing),
    )


def apply_reembed(store: Store, plan: ReembedPlan, drop_missing: bool = False) -> ReembedReport:
    """Write ``plan`` in one transaction (:meth:`~.records.Store.replace_vectors`), unless
    faces are missing and ``drop_missing`` is False (then nothing is written and the
    report lists them). With ``drop_missing`` the missing faces are deleted in the same
    transaction. Raises :class:`GalleryError` when the gallery changed since the plan was
    made (nothing is written then either)."""
    if plan.missing and not drop_missing:
        return ReembedReport(
            store.location, plan.old_model, plan.model, plan.faces, 0, False, missing=plan.missing
        )
    cleared = tuple(k for k in CLEARED_SETTINGS if store.get_setting(k) is not None)
    drop = [m.face_id for m in plan.missing]
    store.replace_vectors(plan.model, plan.dim, plan.vectors, drop)
    return ReembedReport(
        store.location,
        plan.old_model,
        plan.model,
        plan.faces,
        len(plan.vectors),
        True,
        dropped=plan.missing,
        cleared=cleared,
    )
