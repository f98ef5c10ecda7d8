"""Probes and what the page needs to know: ``/v1/health`` (the process answers; no key),
``/v1/ready`` (models loaded and the gallery reachable; no key; 503 otherwise),
``/v1/whoami`` (the caller's key name and role) and ``/v1/reports`` (the ``faceprint
eval`` HTML reports the operator placed in the reports folder, role ``read``).

A report is served by its file name from that folder only: a name is matched against the
folder's listing, never joined to a path, so ``../`` leads nowhere.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from ... import __version__
from ..auth import READ, service
from ..problems import Problem

router = APIRouter(prefix="/v1", tags=["system"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get("/ready")
async def ready(request: Request) -> dict[str, Any]:
    svc = service(request)
    rec = svc.recognizer  # 503 while loading or after a failed load
    try:
        people = await svc.run(svc.store.count_people, models=False)
    except Exception as exc:
        raise Problem("unavailable", f"the gallery cannot be reached: {exc}", {"Retry-After": "5"}) from None
    return {
        "status": "ready",
        "detector": rec.detector_name,
        "embedder": rec.embedder_name,
        "model": rec.model_id,
        "parallel": 1 + len(svc.copies),
        "people": people,
    }


@router.get("/whoami", dependencies=[READ])
async def whoami(request: Request) -> dict[str, Any]:
    key = request.state.key
    return {"name": key.name, "role": key.role, "key_id": key.key_id}


def _reports(request: Request) -> dict[str, Any]:
    folder = service(request).config.reports_dir
    if folder is None or not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.iterdir()) if p.suffix.lower() == ".html" and p.is_file()}


@router.get("/reports", dependencies=[READ])
async def list_reports(request: Request) -> dict[str, Any]:
    """The HTML reports in the operator's reports folder (name, size, modified time)."""
    found = _reports(request)
    return {
        "reports": [
            {
                "name": n,
                "bytes": p.stat().st_size,
                "modified": int(p.stat().st_mtime),
                "url": f"/v1/reports/{n}",
            }
            for n, p in found.items()
        ]
    }


@router.get("/reports/{name}", dependencies=[READ], response_class=FileResponse)
async def get_report(request: Request, name: str) -> FileResponse:
    path = _reports(request).get(name)
    if path is None:
        raise Problem("not-found", f"no report named {name[:80]!r}")
    return FileResponse(path, media_type="text/html; charset=utf-8")
