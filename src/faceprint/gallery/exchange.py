"""Gallery export and import: a versioned JSON-lines file that round-trips bit-exactly.

The format is documented in :data:`EXPORT_DOC`; a reader refuses a newer
``format_version`` than :data:`~.records.EXPORT_FORMAT_VERSION`.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GalleryError, IncompatibleEmbeddingError
from ..files import atomic_write
from ..types import Box
from .records import EXPORT_FORMAT_VERSION, FaceRecord, Store, check_name, now_iso, upgrade_model_id

EXPORT_DOC = """faceprint gallery export, JSON lines (UTF-8), one JSON object per line:

line 1, the header: {"format": "faceprint-gallery", "format_version": 1, "model": the model id
  ("network@version+<sha8>", "+flip"; files of older releases hold "name@version", upgraded on
  import as galleries are on open) or null, "dim": int or null, "people": int, "faces": int,
  "settings": {key: value}, "exported_at": ISO 8601 UTC}
then one line per person: {"name": str, "metadata": {...}, "created_at": str, "faces": [
  {"face_id": str, "model": str, "image_sha256": str or null, "box": {"x1","y1","x2","y2"} or
  null, "score": float or null, "added_at": str, "vector": base64 of the little-endian float32
  bytes}]}

Vectors are stored as their exact bytes, so an export/import round trip is bit-exact.
A reader refuses a format_version above the one it knows."""


def _face_line(f: FaceRecord) -> dict[str, Any]:
    out = f.to_dict()
    out.pop("person")
    out["vector"] = base64.b64encode(np.asarray(f.vector, dtype="<f4").tobytes()).decode("ascii")
    return out


def export_store(store: Store, path: Path) -> int:
    """Write ``store`` to ``path`` atomically (temp file + rename); see :data:`EXPORT_DOC`."""
    bound = store.model()
    people = store.people()
    settings = {k: v for k in ("threshold", "far") if (v := store.get_setting(k)) is not None}
    lines = []
    n_faces = 0
    for p in people:
        person, faces = store.person(p.name)
        n_faces += len(faces)
        body = {"name": person.name, "metadata": dict(person.metadata), "created_at": person.created_at}
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
        atomic_write(path, write, mode=None)  # owner-only (0600), as exports always were: biometric data
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


def import_store(store: Store, path: Path) -> tuple[int, int]:
    """Add every person of the export file ``path`` to ``store``, one transaction per
    person (faces already there are skipped). Refuses files of a newer format version and
    vectors of another model than the store's."""
    try:
        fh = path.open(encoding="utf-8")
    except OSError as exc:
        raise GalleryError(f"cannot read gallery export {path}: {exc.strerror}") from None
    added = skipped = 0
    with fh:
        try:
            header = json.loads(fh.readline() or "null")
        except json.JSONDecodeError:
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
        model = upgrade_model_id(model) or model if isinstance(model, str) else model
        bound = store.model()
        if model is not None and bound is not None and (model, dim) != bound:
            raise IncompatibleEmbeddingError(
                f"{path} holds {dim}-D vectors of {model}; gallery {store.location} holds {bound[1]}-D "
                f"vectors of {bound[0]}"
            )
        for no, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                name = check_name(d["name"])
                faces = [_read_face(f, name, int(dim or 0)) for f in d["faces"]]
            except (ValueError, KeyError, TypeError) as exc:
                raise GalleryError(f"{path}, line {no}: malformed person record ({exc})") from None
            a, s = store.add_faces(name, faces, d.get("metadata") or None)
            added, skipped = added + len(a), skipped + len(s)
    for key, value in (header.get("settings") or {}).items():
        if key in ("threshold", "far") and store.get_setting(key) is None:
            store.set_setting(key, str(value))
    return added, skipped
