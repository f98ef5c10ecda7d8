"""``POST /v1/calibrate`` (role ``admin``): calibrate the service's gallery on a labelled zip.

The archive (multipart file field ``archive``) holds ``<person>/<image>`` folders, what
``faceprint calibrate --dir DIR --gallery G`` reads; it is unpacked safely
(:mod:`..archive`: size-capped, zip-bomb-safe, no path traversal) into a private
temporary directory that is removed whatever happens, and calibrated by the same library
call as the CLI (:func:`faceprint.evaluation.calibration.calibrate` with
``fit_impostors``, then :meth:`Gallery.set_calibration`): the gallery keeps the impostor
distribution of these faces and identify derives its open-set threshold from it.

Unpacking and embedding run in one worker thread under the model lock (``svc.run(...,
models=True)``); that thread owns the temporary directory, so it is removed when the
thread ends, even after the request stopped waiting for it. Embedding a whole archive
takes long (about 25 ms an image here; minutes for thousands), so it has its own timeout
(``Limits.calibrate_timeout_s``, default 30 minutes, not the per-request ``timeout_s``),
and between two images it lets waiting recognition requests use the models first
(:meth:`~faceprint.server.engine.Service.yield_models`). A
calibration that times out (504) stores nothing: the thread stops at its next image, and
the record is stored only after it returns. Too few people or images for a measurable
rate is 422 before any image is embedded.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile

from ...errors import EvaluationError, IncompatibleEmbeddingError
from ..archive import Stopped, Unpacked, unpack_labelled
from ..auth import ADMIN, service
from ..problems import Problem
from ..uploads import float_field, multipart_doc, read_form, text_field

router = APIRouter(prefix="/v1", tags=["admin"])

#: The target 1:1 false-accept rate when the request names none (the rate
#: ``bench/calibrate_gallery.py`` and the CLI's help use as their example).
DEFAULT_FAR = 1e-3
_FACES = ("largest", "central")


def _archive(form: Any) -> UploadFile:
    v = form.get("archive")
    if v is None:
        raise Problem("invalid-field", "no 'archive' field: send a zip of <person>/<image> folders in it")
    if not isinstance(v, UploadFile):
        what = "a URL" if "://" in str(v)[:60] else "text"
        raise Problem(
            "invalid-field",
            f"field 'archive' holds {what}, not a file: upload the zip's bytes "
            "(the service never fetches URLs or reads paths)",
        )
    return v


def _client_name(upload: UploadFile) -> str:
    raw = (upload.filename or "archive.zip").replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c for c in raw if c.isprintable())[:100] or "archive.zip"


def _check_enough(unpacked: Unpacked, far: float) -> None:
    """422 before any model runs when the archive cannot give a gallery calibration:
    fewer than 2 people, or fewer different-person pairs than the impostor fit needs, or
    too few for ``far`` (counted as if every image had a face; the library checks again
    on the faces it found)."""
    from ...gallery.scoring import MIN_FIT_SCORES

    counts = list(unpacked.people.values())
    skipped = (
        f" ({unpacked.n_ignored} entries skipped: not images in person folders)" if unpacked.n_ignored else ""
    )
    if len(counts) < 2:
        raise Problem(
            "invalid-field",
            f"the archive holds images of {len(counts)} people{skipped}; at least 2 are needed "
            "(<person>/<image> folders) to form different-person pairs",
        )
    n = sum(counts)
    pairs = (n * n - sum(c * c for c in counts)) // 2
    if pairs < MIN_FIT_SCORES:
        raise Problem(
            "invalid-field",
            f"{n} images of {len(counts)} people give at most {pairs} different-person pairs{skipped}; "
            f"calibrating a gallery needs at least {MIN_FIT_SCORES}: add people or images",
        )
    if far * pairs < 1.0:
        raise Problem(
            "invalid-field",
            f"a false-accept rate of {far:g} is unreachable with at most {pairs} different-person pairs "
            f"(the smallest measurable is {1 / pairs:.2g}): add people or images, or aim higher",
        )


@router.post(
    "/calibrate",
    dependencies=[ADMIN],
    openapi_extra=multipart_doc(
        {
            "far": f"target 1:1 false-accept rate in (0, 1) (default {DEFAULT_FAR:g})",
            "face": "which face of each image: largest (default) or central",
        },
        {"archive": "a zip of <person>/<image> folders (at least 2 people)"},
    ),
)
async def calibrate(request: Request) -> dict[str, Any]:
    """Calibrate the gallery on the labelled faces of a zip (module doc). Answers the
    calibration record (1:1 threshold at ``far`` and its TAR, pair counts, model) as
    ``faceprint calibrate --json`` writes it, with the operating point identify uses now
    and what was read from the archive. Audited."""
    from ...evaluation.calibration import calibrate as run_calibration

    svc = service(request)
    lim = svc.config.limits
    form = await read_form(request, lim)
    try:
        upload = _archive(form)
        far = float_field(form, "far", 0.0, 1.0)
        far = DEFAULT_FAR if far is None else far
        if not 0.0 < far < 1.0:
            raise Problem("invalid-field", f"field 'far' must be in (0, 1), got {far}")
        face = text_field(form, "face", "largest") or "largest"
        if face not in _FACES:
            raise Problem(
                "invalid-field", f"field 'face' must be one of {', '.join(_FACES)}, got {face[:40]!r}"
            )
        name = _client_name(upload)
        stopped = threading.Event()

        def progress(_: int) -> None:
            if stopped.is_set():  # the request gave up (504): free the models now
                raise Stopped
            svc.yield_models()  # recognition requests go on between two images

        def work() -> tuple[Unpacked, dict[str, Any]]:
            # This thread owns the temporary folder: it is removed when the thread is
            # done, even when the request stopped waiting for it (504).
            with tempfile.TemporaryDirectory(
                prefix="faceprint-calibrate-", ignore_cleanup_errors=True
            ) as tmp:
                root = Path(tmp)  # 0700
                unpacked = unpack_labelled(
                    upload.file, root, lim.max_zip_bytes, lim.max_zip_files, stopped.is_set
                )
                _check_enough(unpacked, far)
                rec = svc.recognizer
                bound = svc.store.model()
                if bound is not None and bound[0] != rec.model_id:
                    raise IncompatibleEmbeddingError(
                        f"the gallery holds vectors of {bound[0]}; the service embeds with {rec.model_id}: "
                        "a calibration with it would be for another model"
                    )
                try:
                    record = run_calibration(
                        rec, far, dir=root, face=face, progress=progress, fit_impostors=True
                    )
                except EvaluationError as exc:  # say "the archive", never the temporary path
                    raise EvaluationError(str(exc).replace(str(root), "the archive")) from None
                return unpacked, record

        try:
            unpacked, record = await svc.run(work, models=True, timeout=lim.calibrate_timeout_s)
        finally:
            stopped.set()
    finally:
        await form.close()

    source = f"archive {name}"
    record["source"] = source
    record["impostors"]["source"] = source

    def store() -> dict[str, Any]:
        svc.gallery.set_calibration(record)
        return svc.gallery.operating_point().to_dict()

    op = await svc.run(store, models=False)
    svc.db.audit(
        str(request.state.key.name),
        "settings.calibrate",
        "",
        {
            "archive": name,
            "far": far,
            "threshold": record["threshold"],
            "people": len(unpacked.people),
            "images": unpacked.images,
            "model": record["model"],
        },
    )
    return {
        **record,
        "operating_point": op,
        "archive": {
            "name": name,
            "people": len(unpacked.people),
            "images": unpacked.images,
            "bytes": unpacked.bytes,
            "ignored": unpacked.n_ignored,
            "ignored_examples": list(unpacked.ignored),
        },
    }
