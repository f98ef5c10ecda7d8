"""``/v1/detect``, ``/v1/verify``, ``/v1/identify`` and ``/v1/lookalike`` (role
``recognise``). Each answers the same dicts as the CLI's ``--json`` (the result types'
``to_dict``), with the client's file names as image labels. Boxes are xyxy pixels of the
uploaded image (after its EXIF rotation), similarities are cosine similarities.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request

from ...errors import NoFaceError
from ..auth import RECOGNISE, service
from ..uploads import decode, files, float_field, int_field, multipart_doc, read_form

router = APIRouter(prefix="/v1", tags=["recognition"])

_IMAGES = {"image": "one or more images (JPEG, PNG, WebP, ...)"}


@router.post("/detect", dependencies=[RECOGNISE], openapi_extra=multipart_doc({}, _IMAGES))
async def detect(request: Request) -> dict[str, Any]:
    """Every face of every image: box (xyxy pixels), detector score, 5 landmarks. At most
    ``max_faces`` per image, the largest ones (``faces_dropped`` counts the rest)."""
    svc = service(request)
    lim = svc.config.limits
    uploads = await files(await read_form(request, lim), "image", lim)

    def work() -> dict[str, Any]:
        rec = svc.recognizer
        out = []
        for up in uploads:
            img = decode(up, lim)
            faces = sorted(rec.detect(img), key=lambda f: -f.box.area)
            entry: dict[str, Any] = {
                "image": up.name,
                "width": int(img.shape[1]),
                "height": int(img.shape[0]),
                "faces": [f.to_dict() for f in faces[: lim.max_faces]],
            }
            if len(faces) > lim.max_faces:
                entry["faces_dropped"] = len(faces) - lim.max_faces
            out.append(entry)
        return {"detector": rec.detector_name, "images": out}

    return await svc.run(work)


@router.post(
    "/verify",
    dependencies=[RECOGNISE],
    openapi_extra=multipart_doc(
        {"threshold": "optional cosine-similarity threshold in [-1, 1]"},
        {"image_a": "the first face's photo", "image_b": "the second face's photo"},
    ),
)
async def verify(request: Request) -> dict[str, Any]:
    """Are the faces of ``image_a`` and ``image_b`` the same person (1:1)? The largest face
    of each photo is used (``notes`` says when there were several); the threshold is the
    embedder's 1:1 threshold unless ``threshold`` is given."""
    svc = service(request)
    lim = svc.config.limits
    form = await read_form(request, lim)
    (a,) = (await files(form, "image_a", lim))[:1]
    (b,) = (await files(form, "image_b", lim))[:1]
    threshold = float_field(form, "threshold", -1.0, 1.0)

    def work() -> dict[str, Any]:
        v = svc.recognizer.verify(decode(a, lim), decode(b, lim))
        if threshold is not None:
            v = replace(v, threshold=threshold, same=v.similarity >= threshold)
        d = v.to_dict()
        d["notes"] = [n.replace("image #1", a.name).replace("image #2", b.name) for n in d["notes"]]
        d["model"] = svc.recognizer.model_id
        return d

    try:
        return await svc.run(work)
    except NoFaceError as exc:
        msg = str(exc).replace("image #1", a.name).replace("image #2", b.name)
        raise NoFaceError(msg) from None


@router.post(
    "/identify",
    dependencies=[RECOGNISE],
    openapi_extra=multipart_doc(
        {
            "top_k": "matches per face, 1-20 (default 3)",
            "threshold": "optional cosine-similarity threshold; default: the gallery's operating point",
        },
        _IMAGES,
    ),
)
async def identify(request: Request) -> dict[str, Any]:
    """Every face of every image gets a ``label`` (a name, or ``unknown`` below the
    threshold), its similarity and top-k people, under one operating point (threshold,
    its source, gallery size, target false-alarm rate). Faces too small or too poor to be
    evidence come back ``unknown`` with a ``reason``."""
    svc = service(request)
    lim = svc.config.limits
    form = await read_form(request, lim)
    uploads = await files(form, "image", lim)
    top_k = int_field(form, "top_k", 3, 1, 20)
    threshold = float_field(form, "threshold", -1.0, 1.0)

    images = await svc.run(lambda: [decode(u, lim) for u in uploads], models=False)
    result = await svc.identify(images, top_k, threshold, lim.max_faces)
    return replace(result, images=tuple(u.name for u in uploads)).to_dict()


@router.post(
    "/lookalike",
    dependencies=[RECOGNISE],
    openapi_extra=multipart_doc({"top_k": "people to return, 1-50 (default 5)"}, {"image": "one photo"}),
)
async def lookalike(request: Request) -> dict[str, Any]:
    """The ``top_k`` enrolled people nearest to the largest face of the photo, whatever the
    threshold (the operating point's threshold is given for reference)."""
    from ...gallery.results import recognition_dict

    svc = service(request)
    lim = svc.config.limits
    form = await read_form(request, lim)
    (up,) = (await files(form, "image", lim))[:1]
    top_k = int_field(form, "top_k", 5, 1, 50)

    def work() -> dict[str, Any]:
        try:
            r = svc.gallery.lookalike(decode(up, lim), top_k=top_k)
        except NoFaceError as exc:
            raise NoFaceError(str(exc).replace("image:", f"{up.name}:", 1)) from None
        return {
            "image": up.name,
            **recognition_dict(r),
            "operating_point": svc.gallery.operating_point().to_dict(),
        }

    return await svc.run(work)
