"""Who may call what: the ``X-API-Key`` header, checked against the key ring, the role
ranking of :mod:`.keys`, and the key's rate limit.

No key, or a key that is malformed, unknown, revoked or wrong: 401. A key whose role
ranks below the operation's: 403. The rate limit is spent before the key is verified, so
guessing secrets for a known key id costs the guesser that key's bucket, not the
server's CPU (an Argon2 check is about 50 ms).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from .engine import Service
from .keys import ROLES, KeyInfo, allows
from .problems import Problem

_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="an API key from `faceprint keys create`"
)
_KEY_ID = re.compile(r"^fpk_([0-9a-f]{12})_")
_CHALLENGE = {"WWW-Authenticate": "ApiKey"}


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def require(role: str) -> Any:
    """A FastAPI dependency: the caller's :class:`KeyInfo` when its role allows ``role``."""
    if role not in ROLES:
        raise ValueError(role)

    async def check(request: Request, key: str | None = Depends(_header)) -> KeyInfo:
        svc = service(request)
        if not key:
            raise Problem(
                "unauthorized", "send an API key in the X-API-Key header", {"WWW-Authenticate": "ApiKey"}
            )
        m = _KEY_ID.match(key.strip())
        if m is None:
            raise Problem("unauthorized", "the API key is malformed", _CHALLENGE)
        svc.rate.take(m.group(1))
        info = await anyio.to_thread.run_sync(svc.keys.verify, key)
        if info is None:
            raise Problem(
                "unauthorized",
                "the API key is not valid (unknown, revoked or wrong)",
                {"WWW-Authenticate": "ApiKey"},
            )
        if not allows(info.role, role):
            raise Problem(
                "forbidden", f"a key of role {info.role!r} cannot do this; it needs role {role!r} or above"
            )
        request.state.key = info
        return info

    dep: Callable[..., Awaitable[KeyInfo]] = check
    return Depends(dep)


READ = require("read")
RECOGNISE = require("recognise")
ENROL = require("enrol")
ADMIN = require("admin")
