"""Limits that keep the service answering: body size, requests in flight, rate per key.

Each refuses early and cheaply, with a problem document (:mod:`.problems`):

* :class:`BodyLimit` (ASGI middleware): a ``Content-Length`` over the limit is answered 413
  before one byte of the body is read; a chunked body is counted as it arrives and cut
  off at the limit (413), so no client makes the server buffer more than the limit.
* :class:`InFlight` (ASGI middleware): at most ``max_in_flight`` API requests are served at
  once; one more gets 503 with ``Retry-After`` at once rather than a place in an unbounded
  queue. Liveness and readiness probes and the static page are not counted.
* :class:`RateLimiter`: a token bucket per API key (``rate_per_second``, ``burst``); an
  empty bucket answers 429 with ``Retry-After`` in whole seconds.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import Problem

_EXEMPT = ("/v1/health", "/v1/ready")


async def send_problem(send: Send, problem: Problem) -> None:
    body = json.dumps(problem.body()).encode()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ] + [(k.lower().encode(), v.encode()) for k, v in (problem.headers or {}).items()]
    await send({"type": "http.response.start", "status": problem.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` (module doc); ``per_path`` gives other
    limits to exact paths (a calibration archive is larger than any image upload)."""

    def __init__(self, app: ASGIApp, max_bytes: int, per_path: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = dict(per_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope.get("path", ""), self.max_bytes)
        too_large = Problem("too-large", f"the request body is over the limit of {limit} bytes")
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_problem(send, Problem("bad-request", "Content-Length is not a number"))
                    return
                if declared > limit:
                    await send_problem(send, too_large)
                    return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise too_large
            return message

        await self.app(scope, counted, send)


class InFlight:
    """Answer 503 beyond ``max_in_flight`` concurrent API requests (module doc)."""

    def __init__(self, app: ASGIApp, max_in_flight: int, retry_after_s: int = 1) -> None:
        self.app = app
        self.max = max_in_flight
        self.retry_after = retry_after_s
        self.now = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or not path.startswith("/v1/")
            or path in _EXEMPT
            or path.endswith("/events")
        ):
            await self.app(scope, receive, send)
            return
        if self.now >= self.max:
            await send_problem(
                send,
                Problem(
                    "overloaded",
                    f"{self.now} requests are being served, the limit is {self.max}; retry shortly",
                    {"Retry-After": str(self.retry_after)},
                ),
            )
            return
        self.now += 1  # one event loop per process: no lock needed between awaits
        try:
            await self.app(scope, receive, send)
        finally:
            self.now -= 1


class RateLimiter:
    """A token bucket per key: ``burst`` requests at once, refilled at ``rate`` per second.

    Buckets are keyed by the key id a request *claims* (it is spent before the key is
    verified), so anyone can make new ones: buckets that have refilled (the same as no
    bucket) are dropped whenever the table has doubled since the last pruning, which
    bounds it by the ids seen within one refill time (``burst / rate`` seconds)."""

    #: Buckets held before the first pruning.
    PRUNE_AT = 10_000

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()
        self._prune_at = self.PRUNE_AT

    def _prune(self, now: float) -> None:
        self._buckets = {
            k: (t, at) for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate < self.burst
        }
        self._prune_at = max(self.PRUNE_AT, 2 * len(self._buckets))

    def take(self, key: str) -> None:
        """Spend one token of ``key``'s bucket, or raise a 429 problem saying when to retry."""
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) >= self._prune_at:
                self._prune(now)
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / self.rate)
                raise Problem(
                    "rate-limited",
                    f"this key is limited to {self.rate:g} requests per second (bursts of {self.burst:g})",
                    {"Retry-After": str(max(1, wait))},
                )
            self._buckets[key] = (tokens - 1.0, now)

    def snapshot(self) -> dict[str, Any]:
        return {"rate_per_second": self.rate, "burst": self.burst}
