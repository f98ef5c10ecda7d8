"""``/v1/people``: list, create, read, rename, delete people; enrol and delete faces.

A person is addressed by ``id``, an opaque 32-hex id the gallery gave them (stable across
renames), never by a name or a path: anything else in its place is 404. Reading needs
role ``read``; every change needs ``enrol`` and is written to the audit log (who: the
key's name). Deleting a person erases them as the gallery defines (no vector of theirs
left in any file faceprint wrote). Photos sent for enrolment are not stored: only the
face's vector, its box and the photo's sha256 (which makes a second upload of the same
photo a no-op).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ...errors import GalleryError
from ...gallery.records import check_name
from ..auth import ENROL, READ, service
from ..problems import Problem
from ..uploads import decode, files, multipart_doc, read_form, text_field

router = APIRouter(prefix="/v1/people", tags=["people"])

_ID = re.compile(r"^[0-9a-f]{32}$")


def _check_id(kind: str, value: str) -> str:
    if not _ID.match(value):
        raise Problem("not-found", f"no {kind} with id {value[:40]!r}")
    return value


def _name(value: str) -> str:
    try:
        return check_name(value)
    except GalleryError as exc:
        raise Problem("invalid-field", str(exc)) from None


class NewPerson(BaseModel):
    """A person to create: a unique name (any unicode but control characters, not
    ``unknown``) and free JSON metadata."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)


class PersonPatch(BaseModel):
    """Rename and/or replace the metadata; absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    metadata: dict[str, Any] | None = None


def _actor(request: Request) -> str:
    return str(request.state.key.name)


@router.get("", dependencies=[READ])
async def list_people(
    request: Request,
    q: str | None = Query(default=None, max_length=200, description="case-insensitive part of a name"),
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0),
) -> dict[str, Any]:
    """Enrolled people, by name, with their number of faces; ``q`` filters by name."""
    svc = service(request)
    people = await svc.run(svc.store.people, models=False)
    if q:
        people = [p for p in people if q.casefold() in p.name.casefold()]
    return {"total": len(people), "people": [p.to_dict() for p in people[offset : offset + limit]]}


@router.post("", dependencies=[ENROL], status_code=201)
async def create_person(request: Request, body: NewPerson) -> JSONResponse:
    """Create a person with no faces yet (add photos with ``POST /v1/people/{id}/faces``).
    A taken name is 409."""
    svc = service(request)
    name = _name(body.name)
    person = await svc.run(svc.store.create_person, name, body.metadata, models=False)
    svc.db.audit(_actor(request), "person.create", person.id, {"name": name})
    return JSONResponse(person.to_dict(), status_code=201, headers={"Location": f"/v1/people/{person.id}"})


@router.get("/{person_id}", dependencies=[READ])
async def get_person(request: Request, person_id: str) -> dict[str, Any]:
    """A person and their enrolled faces (ids, boxes, model, when added; no vectors)."""
    svc = service(request)
    person, faces = await svc.run(svc.store.person_by_id, _check_id("person", person_id), models=False)
    return {**person.to_dict(), "enrolled": [f.to_dict() for f in faces]}


@router.patch("/{person_id}", dependencies=[ENROL])
async def update_person(request: Request, person_id: str, body: PersonPatch) -> dict[str, Any]:
    """Rename (409 when the new name is taken) and/or replace the metadata."""
    svc = service(request)
    pid = _check_id("person", person_id)
    new_name = None if body.name is None else _name(body.name)

    def work() -> dict[str, Any]:
        with svc.store.transaction():
            person, _ = svc.store.person_by_id(pid)
            if new_name is not None and new_name != person.name:
                svc.store.rename_person(person.name, new_name)
            if body.metadata is not None:
                svc.store.set_metadata(new_name or person.name, body.metadata)
        person, _ = svc.store.person_by_id(pid)
        return person.to_dict()

    out = await svc.run(work, models=False)
    svc.db.audit(
        _actor(request), "person.update", pid, {"name": new_name, "metadata": body.metadata is not None}
    )
    return out


@router.delete("/{person_id}", dependencies=[ENROL])
async def delete_person(request: Request, person_id: str) -> dict[str, Any]:
    """Delete the person and erase every vector of theirs."""
    svc = service(request)
    pid = _check_id("person", person_id)

    def work() -> tuple[str, int]:
        person, _ = svc.store.person_by_id(pid)
        return person.name, svc.store.remove_person(person.name)

    name, removed = await svc.run(work, models=False)
    svc.db.audit(_actor(request), "person.delete", pid, {"faces": removed})
    return {"id": pid, "name": name, "removed_faces": removed}


@router.post(
    "/{person_id}/faces",
    dependencies=[ENROL],
    status_code=201,
    openapi_extra=multipart_doc(
        {"face": "single (default: a photo must hold one face), largest, or the index N of /v1/detect"},
        {"image": "one or more photos of the person"},
    ),
)
async def add_faces(request: Request, person_id: str) -> JSONResponse:
    """Enrol one face from each photo (one transaction: all of them or none). Refused
    photos (no face, several faces, too small or poor) are listed with the reason; a photo
    enrolled before is a duplicate, not an error. 201 when a face was added, 200 when
    nothing new was, 422 when every photo was refused."""
    from ...gallery.enrolment import check_face_choice
    from ...gallery.results import EnrolledFace, Refusal

    svc = service(request)
    lim = svc.config.limits
    pid = _check_id("person", person_id)
    form = await read_form(request, lim)
    uploads = await files(form, "image", lim)
    raw_face = text_field(form, "face", "single") or "single"
    face: str | int = int(raw_face) if raw_face.isdigit() else raw_face
    try:
        check_face_choice(face)
    except Exception as exc:
        raise Problem("invalid-field", str(exc)) from None

    def work() -> dict[str, Any]:
        for u in uploads:
            decode(u, lim)  # refuse a bad or oversized image before anything is written
        report = svc.gallery.enroll_id(pid, [u.data for u in uploads], face=face)
        labels = {f"bytes #{i + 1}": u.name for i, u in enumerate(uploads)}

        def named(label: str) -> str:
            return labels.get(label, label)

        d = report.to_dict()
        d["added"] = [EnrolledFace(named(a.image), a.face_id, a.box, a.score).to_dict() for a in report.added]
        d["duplicates"] = [Refusal(named(r.image), r.reason).to_dict() for r in report.duplicates]
        d["refused"] = [Refusal(named(r.image), r.reason).to_dict() for r in report.refused]
        d["id"] = pid
        return d

    out = await svc.run(work)
    if out["added"]:
        svc.db.audit(_actor(request), "face.add", pid, {"faces": [a["face_id"] for a in out["added"]]})
    status = 201 if out["added"] else 200 if out["duplicates"] else 422
    if status == 422:
        reasons = "; ".join(f"{r['image']}: {r['reason']}" for r in out["refused"])
        raise Problem("no-face", f"no photo could be enrolled: {reasons}", extra={"refused": out["refused"]})
    return JSONResponse(out, status_code=status)


@router.delete("/{person_id}/faces/{face_id}", dependencies=[ENROL])
async def delete_face(request: Request, person_id: str, face_id: str) -> dict[str, Any]:
    """Delete one enrolled face (erased like a person's); the person stays."""
    svc = service(request)
    pid = _check_id("person", person_id)
    fid = _check_id("face", face_id)

    def work() -> str:
        with svc.store.transaction():
            _, faces = svc.store.person_by_id(pid)
            if fid not in {f.face_id for f in faces}:
                raise Problem("not-found", f"person {pid} has no face {fid}")
        return svc.store.remove_face(fid)

    name = await svc.run(work, models=False)
    svc.db.audit(_actor(request), "face.delete", pid, {"face_id": fid})
    return {"id": pid, "name": name, "face_id": fid}
