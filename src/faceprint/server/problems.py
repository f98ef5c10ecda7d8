"""Every error the service answers is a problem document (RFC 9457): JSON with ``type``,
``title``, ``status`` and ``detail``, served as ``application/problem+json``.

``type`` is a stable URN, ``urn:faceprint:problem:<slug>``, that clients can switch on
(:data:`TYPES` lists every slug with its status and title). ``detail`` is one line for a
person to read. Neither ever holds a stack trace or a path of the server's disk:
:func:`scrub` removes the gallery's location, the service's files and any absolute path
before a message leaves the process; an unexpected exception is logged with its trace
and answered 500 with an id to find it in the log.

faceprint's own errors map to problems in :func:`from_error`, in one place, so a route
raises what the library raises and never picks a status itself.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.exceptions import HTTPException

from .. import errors as e

log = logging.getLogger("faceprint.server")

PREFIX = "urn:faceprint:problem:"

#: slug -> (HTTP status, title).
TYPES: dict[str, tuple[int, str]] = {
    "bad-image": (400, "The image cannot be read"),
    "bad-request": (400, "The request cannot be read"),
    "no-face": (422, "No face found"),
    "multiple-faces": (422, "Several faces where one was expected"),
    "unauthorized": (401, "A valid API key is needed"),
    "forbidden": (403, "This key's role does not allow the operation"),
    "source-not-allowed": (403, "The source is not on the operator's stream allow-list"),
    "not-found": (404, "No such resource"),
    "method-not-allowed": (405, "Method not allowed"),
    "name-taken": (409, "The name is taken"),
    "model-mismatch": (409, "The gallery holds vectors of another model"),
    "stream-running": (409, "The source is already being streamed"),
    "too-large": (413, "The request body is too large"),
    "image-too-large": (413, "The image has too many pixels"),
    "too-many-images": (413, "Too many images in one request"),
    "not-an-image": (415, "The upload is not an image"),
    "invalid-field": (422, "A field is missing or invalid"),
    "bad-archive": (422, "The archive is refused"),
    "rate-limited": (429, "Too many requests for this key"),
    "internal": (500, "Internal error"),
    "source-unavailable": (502, "The stream's source cannot be read"),
    "overloaded": (503, "The service is busy"),
    "unavailable": (503, "A backend of the service is unavailable"),
    "timeout": (504, "The request took too long"),
}


class Problem(HTTPException):
    """An error answer: ``slug`` picks status and title from :data:`TYPES`. A subclass of
    Starlette's ``HTTPException`` so that an error raised while FastAPI reads a body (a
    body over the limit) keeps its status instead of becoming a generic 400."""

    def __init__(
        self,
        slug: str,
        detail: str,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        status, self.title = TYPES[slug]
        super().__init__(status_code=status, detail=detail, headers=dict(headers or {}))
        self.slug = slug
        self.extra = dict(extra or {})

    def body(self, secrets: Iterable[str] = ()) -> dict[str, Any]:
        return {
            "type": PREFIX + self.slug,
            "title": self.title,
            "status": self.status_code,
            "detail": scrub(str(self.detail), secrets),
            **self.extra,
        }


_ABS_PATH = re.compile(r"(?<![\w:/.])(?:~|[A-Za-z]:)?(?:/[\w.@+-]+){2,}/?")


def scrub(message: str, secrets: Iterable[str] = ()) -> str:
    """``message`` on one line without the strings in ``secrets`` (the gallery's location,
    the service database's path: replaced by what they are) and without anything shaped
    like an absolute path (two or more ``/``-separated parts), replaced by ``<path>``."""
    out = " ".join(message.split())
    for s in sorted({s for s in secrets if s}, key=len, reverse=True):
        out = out.replace(s, "<server path>")
    out = out.replace("gallery <server path>: ", "")  # the library names its gallery; a client knows it
    return _ABS_PATH.sub("<path>", out)


def from_error(exc: e.FaceprintError) -> Problem:
    """The problem for one of faceprint's own errors (module doc)."""
    msg = str(exc)
    slug = "internal"
    if isinstance(exc, e.ImageTooLargeError):
        slug = "image-too-large"
    elif isinstance(exc, e.InvalidImageError):
        slug = "bad-image"
    elif isinstance(exc, e.NoFaceError):
        slug = "no-face"
    elif isinstance(exc, e.MultipleFacesError):
        slug = "multiple-faces"
    elif isinstance(exc, e.IncompatibleEmbeddingError):
        slug = "model-mismatch"
    elif isinstance(exc, e.InvalidArgumentError):
        slug = "invalid-field"
    elif isinstance(exc, e.GalleryError):
        slug = _gallery_slug(exc)
    elif isinstance(exc, e.EvaluationError | e.VideoError):
        slug = "invalid-field"
    elif isinstance(exc, e.ModelUnavailableError | e.MissingExtraError):
        slug = "unavailable"
    headers = {"Retry-After": "5"} if slug == "unavailable" else None
    return Problem(slug, msg, headers)


def _gallery_slug(exc: e.GalleryError) -> str:
    if isinstance(exc, e.UnknownPersonError | e.UnknownFaceError):
        return "not-found"
    if isinstance(exc, e.NameTakenError):
        return "name-taken"
    if isinstance(exc, e.GalleryUnavailableError):
        return "unavailable"
    return "invalid-field"  # a value the gallery refuses: a blank name, bad metadata


def internal(exc: BaseException) -> Problem:
    """A 500 for an unexpected exception: the trace goes to the log under a fresh id, the
    client gets only the id."""
    ref = uuid.uuid4().hex[:12]
    log.error("internal error %s", ref, exc_info=exc)
    return Problem("internal", f"an internal error occurred; the server log has it under id {ref}")
