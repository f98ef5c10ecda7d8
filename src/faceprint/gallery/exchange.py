"""Gallery export and import: a versioned JSON-lines file that round-trips bit-exactly.

The format is documented in :data:`EXPORT_DOC`; a reader refuses a newer
``format_version`` than :data:`~.records.EXPORT_FORMAT_VERSION`. Person ids
(:attr:`~.records.Person.id`) are written for the record but not kept on import: an
imported person gets a new id (a person already in the target gallery keeps theirs), so
URLs that addressed people of the exported gallery do not carry over.
"""

from __future__ import annotations

import base64
import json
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GalleryError, IncompatibleEmbeddingError, NameTakenError
from ..files import atomic_write
from ..types import Box
from .records import EXPORT_FORMAT_VERSION, FaceRecord, Store, check_name, now_iso, upgrade_model_id
from .scoring import VIEWS_SETTING

EXPORT_DOC = """faceprint gallery export, JSON lines (UTF-8), one JSON object per line:

line 1, the header: {"format": "faceprint-gallery", "format_version": 1, "model": the model id
  ("network@version+<sha8>", "+flip"; files of older releases hold "name@version", upgraded on
  import as galleries are on open) or null, "dim": int or null, "people": int, "faces": int,
  "settings": {key: value}, "exported_at": ISO 8601 UTC}
  ("enrol_views": "1" when some faces were enrolled with views, kept on import)
then one line per person: {"id": str, "name": str, "metadata": {...}, "created_at": str,
  "faces": [{"face_id": str, "model": str, "image_sha256": str or null, "box":
  {"x1","y1","x2","y2"} or null, "score": float or null, "added_at": str, "vector": base64 of
  the little-endian float32 bytes}]}
"faces" may be empty (a person created without faces, or whose faces were all removed).
"id" is the person's id in the exported gallery (files of older releases have none); an
import gives every new person a new id.

Vectors are stored as their exact bytes, so an export/import round trip is bit-exact.
A reader refuses a format_version above the one it knows."""


def _face_line(f: FaceRecord) -> dict[str, Any]:
    out = f.to_dict()
    out.pop("person")
    out["vector"] = base64.b64encode(np.asarray(f.vector, dtype="<f4").tobytes()).decode("ascii")
    return out


def export_store(store: Store, path: Path, *, force: bool = False) -> int:
    """Write ``store`` to ``path`` (see :data:`EXPORT_DOC`): everything is read in one
    read-only transaction, so a concurrent write is in the file whole or not at all; the
    file is written atomically (temp file + rename), owner-only (0600: it holds biometric
    data), and an existing file is replaced only with ``force``."""
    if path.exists() and not force:  # early, before reading a large gallery; checked again below
        raise GalleryError(f"{path} already exists: pass --force to overwrite it")
    lines = []
    n_faces = 0
    with store.transaction(readonly=True):
        bound = store.model()
        people = store.people()
        settings = {
            k: v for k in ("threshold", "far", VIEWS_SETTING) if (v := store.get_setting(k)) is not None
        }
        for p in people:
            person, faces = store.person(p.name)
            n_faces += len(faces)
            body = {
                "id": person.id,
                "name": person.name,
                "metadata": dict(person.metadata),
                "created_at": person.created_at,
            }
            lines.append(json.dumps({**body, "faces": [_face_line(f) for f in faces]}, ensure_ascii=False))
    header = {
        "format": "faceprint-gallery",
        "format_version": EXPORT_FORMAT_VERSION,
        "model": bound[0] if bound else None,
        "dim": bound[1] if bound else None,
        "people": len(people),
        "faces": n_faces,
        "settings": settings,
        "exported_at": now_iso(),
    }

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(json.dumps(header, ensure_ascii=False) + "\n")
            fh.writelines(line + "\n" for line in lines)

    try:
        atomic_write(path, write, overwrite=force)  # owner-only (0600) when new; never widened
    except FileExistsError:
        raise GalleryError(f"{path} already exists: pass --force to overwrite it") from None
    except OSError as exc:
        raise GalleryError(f"cannot write gallery export {path}: {exc.strerror or exc}") from None
    return n_faces


def _read_face(d: dict[str, Any], person: str, dim: int) -> FaceRecord:
    vec = np.frombuffer(base64.b64decode(d["vector"], validate=True), dtype="<f4").astype(np.float32)
    if vec.shape != (dim,):
        raise ValueError(f"face {d.get('face_id')}: expected a {dim}-D vector, found {vec.shape[0]}-D")
    b = d.get("box")
    box = Box(float(b["x1"]), float(b["y1"]), float(b["x2"]), float(b["y2"])) if b else None
    score = None if d.get("score") is None else float(d["score"])
    model = upgrade_model_id(str(d["model"])) or str(d["model"])
    return FaceRecord(str(d["face_id"]), person, vec, model, d.get("image_sha256"), box, score,
                      str(d.get("added_at") or ""))  # fmt: skip


def _read_export(path: Path) -> tuple[dict[str, Any], list[tuple[str, list[FaceRecord], dict[str, Any]]]]:
    """The header and every person of the export file ``path``, each line checked; the
    first bad line raises :class:`GalleryError` naming it."""
    try:
        fh = path.open(encoding="utf-8")
    except OSError as exc:
        raise GalleryError(f"cannot read gallery export {path}: {exc.strerror}") from None
    people = []
    with fh:
        try:
            header = json.loads(fh.readline() or "null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            header = None
        if not isinstance(header, dict) or header.get("format") != "faceprint-gallery":
            raise GalleryError(f"{path}: expected a faceprint gallery export (JSON lines), found other data")
        version = header.get("format_version")
        if not isinstance(version, int) or version > EXPORT_FORMAT_VERSION or version < 1:
            raise GalleryError(
                f"{path}: export format_version {version!r}, this faceprint reads versions 1 to "
                f"{EXPORT_FORMAT_VERSION}; upgrade faceprint to import it"
            )
        model, dim = header.get("model"), header.get("dim")
        if isinstance(model, str):  # an older faceprint's id, in its current form
            model = header["model"] = upgrade_model_id(model) or model
        no = 1
        try:
            for i, line in enumerate(fh, start=2):
                no = i  # for the messages below
                if not line.strip():
                    continue
                d = json.loads(line)
                name = check_name(d["name"])
                faces = [_read_face(f, name, int(dim or 0)) for f in d["faces"]]
                if model is not None and any(f.model != model for f in faces):
                    raise ValueError(f"a face of another model than the header's {model}")
                people.append((name, faces, d.get("metadata") or {}))
        except UnicodeDecodeError as exc:
            raise GalleryError(f"{path}, line {no + 1}: not UTF-8 text ({exc.reason})") from None
        except (ValueError, KeyError, TypeError, AttributeError, GalleryError) as exc:
            raise GalleryError(f"{path}, line {no}: malformed person record ({exc})") from None
    return header, people


def import_store(store: Store, path: Path) -> tuple[int, int]:
    """Add every person of the export file ``path`` to ``store``: the whole file is read
    and checked first, then written in ONE transaction, so a bad line N, or a failure
    half-way, imports nothing. Faces already there are skipped; a person with no faces in
    the file is created when the gallery has nobody of that name; new people get new ids
    (module doc). The file's ``threshold`` and ``far`` are taken only where the gallery
    has none. Refuses files of a newer format version and vectors of another model than
    the store's."""
    header, people = _read_export(path)
    model, dim = header.get("model"), header.get("dim")
    added = skipped = 0
    with store.transaction():
        bound = store.model()
        if model is not None and bound is not None and (model, dim) != bound:
            raise IncompatibleEmbeddingError(
                f"{path} holds {dim}-D vectors of {model}; gallery {store.location} holds {bound[1]}-D "
                f"vectors of {bound[0]}"
            )
        for name, faces, metadata in people:
            if not faces:
                with suppress(NameTakenError):  # already there: kept as it is, like its faces
                    store.create_person(name, metadata)
                continue
            a, s = store.add_faces(name, faces, metadata or None)
            added, skipped = added + len(a), skipped + len(s)
        for key, value in (header.get("settings") or {}).items():
            if key in ("threshold", "far") and store.get_setting(key) is None:
                store.set_setting(key, str(value))
            # faces enrolled with views: their stricter threshold comes along
            elif key == VIEWS_SETTING and str(value) == "1":
                store.set_setting(key, "1")
    return added, skipped
