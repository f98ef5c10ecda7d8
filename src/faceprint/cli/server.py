"""``faceprint serve`` and ``faceprint keys create|list|revoke``.

``serve`` refuses to listen on a non-loopback address while no API key exists: a face
gallery must never be open to a network by accident. Keys live in the service database
(``FACEPRINT_SERVICE_DB``, default ``service.sqlite`` beside the default gallery), hashed;
``keys create`` prints a key once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from . import common
from .gallery import GalleryOpt

keys_app = typer.Typer(help="Create, list and revoke the service's API keys.", no_args_is_help=True)

ServiceDbOpt = Annotated[
    Path | None,
    typer.Option(
        "--service-db", help="the service's keys and audit file (default: beside the default gallery)"
    ),
]


def _missing_extra(exc: ImportError) -> typer.Exit:
    return common.fail(
        f"the service needs its extra ({exc.name or exc} is missing): run pip install 'faceprint[server]'"
    )


def _keyring(service_db: Path | None) -> object:
    try:
        from ..server.keys import KeyRing
        from ..server.servicedb import ServiceDB
    except ImportError as exc:
        raise _missing_extra(exc) from None
    from ..config import get_settings

    return KeyRing(ServiceDB(service_db or get_settings().service_db))


@keys_app.command("create")
def keys_create(
    role: Annotated[
        str, typer.Option(help="read, recognise, enrol or admin (each may do what the lower ones may)")
    ],
    name: Annotated[str | None, typer.Option(help="a name for the audit log (default: role + id)")] = None,
    service_db: ServiceDbOpt = None,
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from ..server.keys import KeyRing, check_role

    check_role(role)
    ring = _keyring(service_db)
    assert isinstance(ring, KeyRing)
    key, info = ring.create(role, name)
    common.out.print(key, highlight=False, soft_wrap=True)
    common.err.print(
        f"created key {info.key_id} ({info.name}, role {info.role}); it is shown only now: store it safely",
        highlight=False,
    )


@keys_app.command("list")
def keys_list(
    all_: Annotated[bool, typer.Option("--all", help="include revoked keys")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    service_db: ServiceDbOpt = None,
) -> None:
    """Every key: id, name, role, created and last used (never the key itself)."""
    from ..server.keys import KeyRing

    ring = _keyring(service_db)
    assert isinstance(ring, KeyRing)
    keys = ring.list(include_revoked=all_)
    if as_json:
        common.print_json([k.to_dict() for k in keys])
        return
    from rich.table import Table

    t = Table("key id", "name", "role", "created", "last used", "revoked")
    for k in keys:
        t.add_row(k.key_id, k.name, k.role, k.created_at, k.last_used_at or "never", k.revoked_at or "")
    common.wide_out().print(t)


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="the key's id or name (see faceprint keys list)")],
    service_db: ServiceDbOpt = None,
) -> None:
    """Revoke a key; a running service refuses it from its next request."""
    from ..server.keys import KeyRing

    ring = _keyring(service_db)
    assert isinstance(ring, KeyRing)
    info = ring.revoke(key)
    common.err.print(f"revoked key {info.key_id} ({info.name})", highlight=False)


def _check_address(host: str, port: int) -> None:
    """Fail with one line now when ``host:port`` cannot be listened on (in use, not an
    address of this machine, a privileged port), as uvicorn would bind it; uvicorn itself
    would log its own ``ERROR:`` line and exit 3 after the models started loading."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        why = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            why += ": another process listens there (another faceprint serve?); pick another --port"
        raise common.fail(f"cannot listen on {host}:{port}: {why}") from None


def serve(
    host: Annotated[
        str, typer.Option(help="address to listen on; non-loopback needs an API key to exist")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    gallery: GalleryOpt = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="processes, each with its own models")] = 1,
    detector: common.DetectorOpt = None,
    embedder: common.EmbedderOpt = None,
    parallel: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=32,
            help="identify batches run at once per worker, each on its own model copy "
            "(default: one per core, at most 4)",
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="threads per model copy (default: cores / copies)")
    ] = None,
    stream: Annotated[
        list[str] | None,
        typer.Option(
            "--stream", help="a source admins may start as a stream (camera index, file, rtsp:// URL); repeat"
        ),
    ] = None,
    reports: Annotated[
        Path | None, typer.Option(help="folder of faceprint eval HTML reports to show on the page")
    ] = None,
    service_db: ServiceDbOpt = None,
    max_body_mb: Annotated[float, typer.Option(min=0.01, help="largest request body, MB")] = 10.0,
    max_images: Annotated[int, typer.Option(min=1, help="images per request")] = 16,
    max_faces: Annotated[int, typer.Option(min=1, help="faces searched per image (the largest)")] = 64,
    rate: Annotated[float, typer.Option(min=0.001, help="requests per second per key (token bucket)")] = 20.0,
    burst: Annotated[int, typer.Option(min=1, help="requests a key may send at once")] = 40,
    max_in_flight: Annotated[
        int, typer.Option(min=1, help="requests served at once per process; more get 503")
    ] = 32,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="seconds a request may take; longer gets 504")
    ] = 30.0,
    calibrate_timeout: Annotated[
        float, typer.Option(min=1.0, help="seconds POST /v1/calibrate may take (it embeds a whole archive)")
    ] = 1800.0,
) -> None:
    """Serve the REST API (/v1, docs at /docs) and the web page (/) with uvicorn."""
    try:
        import uvicorn

        from ..server.config import CONFIG_ENV, LOOPBACK_HOSTS, Limits, ServiceConfig
        from ..server.keys import KeyRing
        from ..server.servicedb import ServiceDB
    except ImportError as exc:
        raise _missing_extra(exc) from None
    from ..config import get_settings, mask_url
    from ..gallery import default_location

    db_path = service_db or get_settings().service_db
    ring = KeyRing(ServiceDB(db_path))
    n_keys = ring.count()
    if host not in LOOPBACK_HOSTS and n_keys == 0:
        raise common.fail(
            f"refusing to listen on {host} with no API key: anyone who can reach it could read and change "
            "the gallery. Create one first: faceprint keys create --role admin"
        )
    from ..gallery import is_postgres_url

    where = gallery or default_location()
    new = not is_postgres_url(where) and not Path(where).exists()
    for src in stream or ():
        if not src.strip():
            raise common.usage("--stream: an empty source")
    if stream and workers > 1:
        raise common.usage(
            "--stream needs --workers 1: a stream lives in the process that started it, and another "
            "worker could not list, follow or stop it"
        )
    limits = Limits(
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        max_images=max_images,
        max_faces=max_faces,
        rate_per_second=rate,
        burst=burst,
        max_in_flight=max_in_flight,
        timeout_s=timeout,
        calibrate_timeout_s=calibrate_timeout,
    )
    config = ServiceConfig(
        gallery=gallery,
        service_db=str(db_path),
        detector=detector,
        embedder=embedder,
        threads=threads,
        parallel=parallel,
        streams=tuple(stream or ()),
        reports=None if reports is None else str(reports),
        limits=limits,
    )
    # Open everything once here, so a bad gallery or database fails with one line now
    # rather than in every worker.
    from ..server.engine import Service

    Service(config).close()
    _check_address(host, port)
    os.environ[CONFIG_ENV] = config.to_json()
    shown = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL is bracketed
    common.err.print(
        f"faceprint serve: http://{shown}:{port}/ (API docs at /docs), {'new ' if new else ''}gallery "
        f"{mask_url(where)}, "
        f"{n_keys} API key(s), {workers} worker(s)",
        highlight=False,
    )
    if n_keys == 0:
        common.err.print(
            "no API key yet: create one with faceprint keys create --role admin", highlight=False
        )
    uvicorn.run(
        "faceprint.server.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
