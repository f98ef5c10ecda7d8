"""Operator routes (role ``admin``): the identification threshold and the audit log.

``GET /v1/settings/threshold`` answers the operating point identify uses now (threshold,
its source, the gallery's size, the target false-alarm rate) and ``PUT`` fixes a
threshold (``{"threshold": 0.62}``), or a target false-alarm rate for the open-set
threshold (``{"far": 0.001}``), or goes back to the derived one (``{"threshold": null}``).
Every change is audited.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from ..auth import ADMIN, service

router = APIRouter(prefix="/v1", tags=["admin"])


class ThresholdUpdate(BaseModel):
    """``threshold``: a cosine similarity in [-1, 1] to store, or null to clear it;
    ``far``: the target stranger false-alarm rate in (0, 1) of the derived threshold."""

    model_config = ConfigDict(extra="forbid")
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    far: float | None = Field(default=None, gt=0.0, lt=1.0)


@router.get("/settings/threshold", dependencies=[ADMIN])
async def get_threshold(request: Request) -> dict[str, Any]:
    svc = service(request)
    op = await svc.run(svc.gallery.operating_point, models=False)
    return op.to_dict()


@router.put("/settings/threshold", dependencies=[ADMIN])
async def put_threshold(request: Request, body: ThresholdUpdate) -> dict[str, Any]:
    svc = service(request)
    fields = body.model_fields_set

    def work() -> dict[str, Any]:
        if "threshold" in fields:
            svc.gallery.set_threshold(body.threshold)
        if "far" in fields:
            svc.gallery.set_far(body.far)
        return svc.gallery.operating_point().to_dict()

    out = await svc.run(work, models=False)
    svc.db.audit(str(request.state.key.name), "settings.threshold", "", body.model_dump(exclude_unset=True))
    return out


@router.get("/audit", dependencies=[ADMIN])
async def audit_log(request: Request, limit: int = Query(default=100, ge=1, le=10_000)) -> dict[str, Any]:
    """The newest audit entries first: who (key name), what, when, on what."""
    svc = service(request)
    return {"entries": await svc.run(svc.db.audit_log, limit, models=False)}
