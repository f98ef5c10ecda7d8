"""The FastAPI application: routes, error documents, limits, security headers, the page.

:func:`create_app` builds it from a :class:`~.config.ServiceConfig` (or takes a ready
:class:`~.engine.Service`, as the tests do); :func:`app_from_env` is the factory uvicorn's
worker processes call. Every error leaves as a problem document (:mod:`.problems`):
faceprint's own errors through :func:`~.problems.from_error`, FastAPI's validation
errors as 422 ``invalid-field``, anything unexpected as a 500 with a log id.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..errors import FaceprintError
from .config import ServiceConfig
from .engine import Service
from .limits import BodyLimit, InFlight
from .problems import PREFIX, TYPES, Problem, from_error, internal
from .streams import StreamHub

#: Seconds a stopping process waits for the models to finish loading (see ``lifespan``).
LOAD_WAIT_AT_EXIT_S = 60.0

_STATUS_SLUGS = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized", 403: "forbidden"}

#: The page loads nothing from elsewhere; the camera and uploaded photos are shown from
#: ``blob:`` URLs; reports are shown through the report viewer (:data:`REPORT_VIEWER`).
_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
    "frame-src 'self'; connect-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)

#: The page's report viewer: it gets a ``faceprint eval`` report's HTML from the page and
#: shows it in a sandboxed ``blob:`` frame. A ``blob:`` document inherits the CSP of the
#: document that made it, and these reports carry inline CSS and ``data:`` images, so the
#: viewer (not the page, which keeps ``style-src 'self'``) allows inline styles; it may be
#: framed by the page only, runs only its own script and fetches nothing.
REPORT_VIEWER = "/static/report.html"
_REPORT_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src data:; "
    "frame-src blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)


class SecurityHeaders:
    """Headers every answer carries: no sniffing, no framing (the report viewer: by the page
    only), no referrer, the page's CSP (the viewer's own), and ``Cache-Control: no-store``
    on the API (answers name people)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        api = path.startswith("/v1/")
        docs = path in ("/docs", "/redoc")
        viewer = path == REPORT_VIEWER

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"SAMEORIGIN" if viewer else b"DENY"),
                ]
                if viewer:
                    headers.append((b"content-security-policy", _REPORT_CSP.encode()))
                elif not docs:  # Swagger UI loads its own assets: it keeps FastAPI's defaults
                    headers.append((b"content-security-policy", _CSP.encode()))
                if api:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def _problem_response(request: Request, problem: Problem) -> JSONResponse:
    svc: Service | None = getattr(request.app.state, "service", None)
    secrets = svc.secrets if svc is not None else ()
    return JSONResponse(
        problem.body(secrets),
        status_code=problem.status_code,
        headers=problem.headers,
        media_type="application/problem+json",
    )


def _install_errors(app: FastAPI) -> None:
    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if isinstance(exc, Problem):
            return _problem_response(request, exc)
        slug = _STATUS_SLUGS.get(exc.status_code, "bad-request" if exc.status_code < 500 else "internal")
        p = Problem(slug, str(exc.detail), exc.headers)
        p.status_code = exc.status_code
        return _problem_response(request, p)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errs = exc.errors()
        where = "; ".join(
            f"{'.'.join(str(x) for x in e.get('loc', ()) if x != 'body') or 'body'}: {e.get('msg')}"
            for e in errs[:5]
        )
        fields = [
            {"field": ".".join(str(x) for x in e.get("loc", ())), "message": str(e.get("msg", ""))}
            for e in errs[:20]
        ]
        return _problem_response(request, Problem("invalid-field", where, extra={"errors": fields}))

    async def on_faceprint(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FaceprintError)
        return _problem_response(request, from_error(exc))

    async def on_other(request: Request, exc: Exception) -> Response:
        return _problem_response(request, internal(exc))

    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(FaceprintError, on_faceprint)
    app.add_exception_handler(Exception, on_other)


def create_app(config: ServiceConfig | None = None, service: Service | None = None) -> FastAPI:
    """The service for ``config`` (or around a ready ``service``). Models start loading in
    a background thread when the app starts (``/v1/ready`` says when they are in)."""
    svc = service if service is not None else Service(config or ServiceConfig())
    streams = StreamHub(svc)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader: threading.Thread | None = None
        if not svc.loaded.is_set():
            loader = threading.Thread(target=svc.load_models, name="faceprint-load", daemon=True)
            loader.start()
        restore_signals = streams.stop_on_signals()
        yield
        restore_signals()
        # A stop (Ctrl-C) while the models load waits for the loading to end: a process
        # that exits while onnxruntime or OpenCV is still starting its threads is aborted
        # by the C++ runtime ("terminate called without an active exception", SIGABRT).
        deadline = time.monotonic() + LOAD_WAIT_AT_EXIT_S
        while loader is not None and loader.is_alive() and time.monotonic() < deadline:
            await anyio.sleep(0.05)
        # streams first: their threads use the gallery and the models
        await anyio.to_thread.run_sync(streams.close)
        if service is None:
            svc.close()

    app = FastAPI(
        title="faceprint",
        version=__version__,
        summary="Offline face recognition: detect, verify, identify, enrol, with honest unknowns.",
        description=(
            "Send images as multipart/form-data files and an API key in `X-API-Key`. Errors are "
            f"problem documents whose `type` is `{PREFIX}<slug>`; slugs: "
            + ", ".join(f"`{k}` ({v[0]})" for k, v in TYPES.items())
            + ". Similarities are cosine similarities; boxes are xyxy pixels."
        ),
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.service = svc
    app.state.streams = streams
    _install_errors(app)

    from .routes import admin, calibration, people, recognition, system
    from .routes import streams as stream_routes

    for module in (system, recognition, people, admin, calibration, stream_routes):
        app.include_router(module.router)
    _install_page(app)

    # added last = outermost: the body limit runs before anything reads the body
    app.add_middleware(InFlight, max_in_flight=svc.config.limits.max_in_flight)
    app.add_middleware(SecurityHeaders)
    lim = svc.config.limits
    app.add_middleware(
        BodyLimit,
        max_bytes=lim.max_body_bytes,
        per_path={"/v1/calibrate": max(lim.max_body_bytes, lim.max_zip_bytes)},
    )
    return app


def _install_page(app: FastAPI) -> None:
    static = resources.files("faceprint.server") / "static"
    index = static / "index.html"
    if not index.is_file():
        return
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(index), media_type="text/html; charset=utf-8")


def app_from_env() -> FastAPI:
    """The factory uvicorn's worker processes call (``faceprint serve --workers N``)."""
    return create_app(ServiceConfig.from_env())
