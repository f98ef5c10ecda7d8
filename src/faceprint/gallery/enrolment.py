"""Enrolment: from a person's photos to the faces committed for them.

Why a module of its own: enrolment is a pipeline (read, de-duplicate, detect, choose,
embed, commit) with its own rules, separate from searching a gallery;
:class:`~.gallery.Gallery` calls it from ``enroll`` and ``enroll_dir``. Conventions:

* a face in an enrolment photo is chosen by ``face``: ``"single"`` (the photo must hold
  exactly one face), ``"largest"``, ``"central"`` (nearest the image centre) or an index
  into the detector's faces (the ``#i`` that ``faceprint detect`` prints);
* the chosen face must pass the quality gate (:mod:`faceprint.quality`): a face too
  small or too poor to be searched later is refused with the reason and the option that
  lowers the gate, since a gallery vector made from 20 px is noise that names strangers;
* refusals are reported (:class:`~.results.Refusal`), never raised, so one bad photo does
  not stop a batch;
* the same image (by sha256 of its bytes; of dtype, shape and pixels for arrays) enrolled
  twice for one person is a no-op, reported as a duplicate;
* detection and embedding run :data:`CHUNK` images at a time, across people, while all
  faces of one person are committed in ONE store transaction.
"""

from __future__ import annotations

import hashlib
import math
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import FaceprintError, GalleryError, UnknownPersonError
from ..quality import TOO_SMALL, QualityGate
from ..selection import central_face, largest_face
from ..types import Box, Face, Image
from .records import FaceRecord, Store, check_name
from .results import EnrolledFace, EnrollReport, Refusal

if TYPE_CHECKING:
    from ..io import ImageInput
    from ..recognizer import Recognizer

Progress = Callable[[int], None]
FaceChoice = str | int
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: Images detected and embedded together during an enrolment (bounds memory).
CHUNK = 16


def as_list(images: Sequence[ImageInput] | ImageInput) -> list[ImageInput]:
    """``images`` as a list; one path, bytes or array alone is a list of one (a bare
    string would otherwise be iterated character by character)."""
    if isinstance(images, str | os.PathLike | bytes | bytearray | memoryview | np.ndarray):
        return [images]
    return list(images)


def check_face_choice(face: FaceChoice) -> None:
    if face not in ("single", "largest", "central") and (isinstance(face, bool) or not isinstance(face, int)):
        raise GalleryError(f"face must be 'single', 'largest', 'central' or an index, got {face!r}")


def _images(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)


def plan_dir(root: str | Path) -> list[tuple[str, list[Path]]]:
    """``(name, images)`` of each person folder of ``root/<name>/<images>`` that holds
    images, by name; raises GalleryError when there is none, a name is invalid, or
    ``root`` is one level too high (a folder of person folders instead of photos)."""
    base = Path(root)
    if not base.is_dir():
        raise GalleryError(f"expected a directory of person folders (DIR/<name>/*.jpg), found {base}")
    folders = sorted(p for p in base.iterdir() if p.is_dir())
    plan: list[tuple[str, list[Path]]] = [(d.name, _images(d)) for d in folders]
    # DIR/train/<name>/*.jpg given as DIR: "train" is no person, and a sibling "test" full
    # of photos of several people would be enrolled as one. Enrol nothing, say where to point.
    for d, (_, fs) in zip(folders, plan, strict=True):
        inner = next((sub for sub in sorted(d.iterdir()) if sub.is_dir() and _images(sub)), None)
        if not fs and inner is not None:
            raise GalleryError(
                f"{base} looks one level too high: {d.name}/ holds person folders "
                f"({d.name}/{inner.name}/...), not photos; nothing enrolled: give --from-dir {d}"
            )
    plan = [(n, fs) for n, fs in plan if fs]
    if not plan:
        raise GalleryError(f"{base}: expected one folder of images per person (DIR/<name>/*.jpg), found none")
    for n, _ in plan:
        check_name(n)
    return plan


def _source(image: ImageInput, i: int) -> tuple[str, ImageInput, str]:
    """(label, what to decode, sha256 of the bytes; of dtype+shape+pixels for arrays)."""
    if isinstance(image, np.ndarray):
        h = hashlib.sha256(f"{image.dtype}{image.shape}".encode())
        h.update(np.ascontiguousarray(image).tobytes())
        return f"array #{i + 1}", image, h.hexdigest()
    if isinstance(image, bytes | bytearray | memoryview):
        data = bytes(image)
        return f"bytes #{i + 1}", data, hashlib.sha256(data).hexdigest()
    path = Path(image)
    try:
        data = path.read_bytes()
    except OSError as exc:
        from ..errors import InvalidImageError

        raise InvalidImageError(f"{path}: cannot read ({exc.strerror})") from None
    return str(path), data, hashlib.sha256(data).hexdigest()


@dataclass
class Pending:
    """One person's enrolment before its transaction: what to add, what was refused."""

    records: list[FaceRecord] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # face_id -> image label
    dups: list[Refusal] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    known: set[str] | None = None  # sha256 of the images already enrolled for the person


def _choose(faces: list[Face], face: FaceChoice, shape: tuple[int, ...]) -> Face | str:
    """The face to enrol, or the reason for refusing the image. ``"central"`` is the face
    nearest the image centre (how LFW-style datasets label their photos)."""
    if not faces:
        return "no face found"
    if face in ("largest", "central"):
        chosen = largest_face(faces) if face == "largest" else central_face(faces, shape)
        assert chosen is not None
        return chosen
    if isinstance(face, int) and not isinstance(face, bool):
        if 0 <= face < len(faces):
            return faces[face]
        return f"face index {face} asked for, but {len(faces)} face(s) found (indexes 0-{len(faces) - 1})"
    if len(faces) > 1:
        return (
            f"{len(faces)} faces found, expected one; pick one with face='largest' "
            "(--face largest) or an index"
        )
    return faces[0]


def _gated(image: Image, face: Face, gate: QualityGate) -> Face | str:
    """``face`` when it passes ``gate``, else the refusal: the reason, the measure and the
    option that lowers the gate (``--min-face-size`` / ``--min-quality``; 0 disables)."""
    quality, why = gate.check(image, face) if gate.active else (1.0, None)
    if why is None:
        return face
    b = face.box
    side = min(b.width, b.height)
    if why == TOO_SMALL:
        return (
            f"face too small: {side:.0f} px, expected at least {gate.min_face_px:g} px "
            "(lower it with --min-face-size, 0 disables)"
        )
    shown = math.floor(quality * 1000) / 1000  # never rounded up to the limit it missed
    return (
        f"face {why} (quality {shown:.3f}, expected at least {gate.min_quality:g}; "
        "lower it with --min-quality, 0 disables)"
    )


def _known_images(store: Store, name: str) -> set[str]:
    try:
        return {f.image_sha256 for f in store.person(name)[1] if f.image_sha256}
    except UnknownPersonError:  # a new person
        return set()


def extract(
    recognizer: Recognizer,
    model: str,
    store: Store,
    plan: Sequence[tuple[str, Sequence[ImageInput]]],
    face: FaceChoice,
    progress: Progress | None,
    gate: QualityGate,
    views: bool = False,
) -> Iterator[tuple[str, Pending]]:
    """Detect, choose and embed the faces of every person of ``plan`` with ``recognizer``
    (whose vectors are ``model``), CHUNK images at a time across people; yields each
    person as soon as all their images are done. ``face`` is checked by the caller
    (:func:`check_face_choice`); a chosen face that fails ``gate`` is refused. ``views``:
    each vector averages the face's enrolment views (:data:`~faceprint.recognizer.VIEW_ZOOMS`)."""
    from ..io import load_image

    flat = [(pi, i, im) for pi, (_, ims) in enumerate(plan) for i, im in enumerate(ims)]
    last = np.cumsum([len(ims) for _, ims in plan]) - 1  # flat index of each person's last image
    pending = [Pending() for _ in plan]
    done = 0
    for start in range(0, len(flat) + 1, CHUNK):
        part: list[tuple[int, str, Image, str]] = []
        for pi, i, image in flat[start : start + CHUNK]:
            name, p = plan[pi][0], pending[pi]
            if p.known is None:
                p.known = _known_images(store, name)
            try:
                label, data, sha = _source(image, i)
                if sha in p.known:
                    p.dups.append(Refusal(label, f"already enrolled for {name!r} (sha256 {sha[:12]})"))
                    continue
                p.known.add(sha)
                part.append((pi, label, load_image(data), sha))
            except FaceprintError as exc:
                where = f"image #{i + 1}" if isinstance(image, np.ndarray | bytes) else str(image)
                p.refused.append(
                    Refusal(where, str(exc).removeprefix("image bytes: ").removeprefix(f"{where}: "))
                )
        chosen: list[tuple[int, str, Image, str, Face]] = []
        found = recognizer.detector.detect_batch([img for _, _, img, _ in part]) if part else []
        for (pi, label, img, sha), faces in zip(part, found, strict=True):
            pick = _choose(faces, face, img.shape)
            if not isinstance(pick, str):
                pick = _gated(img, pick, gate)
            if isinstance(pick, str):
                pending[pi].refused.append(Refusal(label, pick))
            else:
                chosen.append((pi, label, img, sha, pick))
        embedded = recognizer.embed_batch([c[2] for c in chosen], [[c[4]] for c in chosen], views=views)
        for (pi, label, _, sha, _), (f,) in zip(chosen, embedded, strict=True):
            assert f.embedding is not None
            fid = uuid.uuid4().hex
            pending[pi].records.append(FaceRecord(fid, plan[pi][0], f.embedding, model, sha, f.box, f.score))
            pending[pi].labels[fid] = label
        end = start + CHUNK
        while done < len(plan) and last[done] < end:
            yield plan[done][0], pending[done]
            done += 1
        if progress is not None and start < len(flat):
            progress(min(CHUNK, len(flat) - start))


def commit(
    store: Store, model: str, name: str, p: Pending, metadata: Mapping[str, Any] | None
) -> EnrollReport:
    """One transaction for all of ``name``'s new faces."""
    added, skipped = store.add_faces(name, p.records, metadata) if p.records else ([], [])
    dups = p.dups + [Refusal(p.labels[s.face_id], f"already enrolled for {name!r}") for s in skipped]
    return EnrollReport(
        person=name,
        model=model,
        added=tuple(
            EnrolledFace(p.labels[a.face_id], a.face_id, a.box or Box(0, 0, 0, 0), float(a.score or 0))
            for a in added
        ),
        duplicates=tuple(dups),
        refused=tuple(p.refused),
    )
