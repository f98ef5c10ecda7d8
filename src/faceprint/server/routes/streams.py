"""Streams: recognise an allow-listed camera, file or network source in the background
and follow its events live (:mod:`..streams` runs them).

* ``POST /v1/streams`` (admin), ``{"source": "<an allow-list entry>", ...settings}``: 201
  with the stream (``id``, ``source`` described without passwords or folders, ``state``,
  ``events`` URL) and a ``Location``. A source not on the allow-list: 403
  ``source-not-allowed`` (whatever the key, the operator has not allowed it: an access
  refusal, not a malformed value; the answer never repeats what was sent). The source
  already streaming: 409 ``stream-running``; allowed but unreadable (a camera absent, a
  file gone): 502 ``source-unavailable``.
* ``GET /v1/streams/sources`` (admin): the allow-list, passwords masked.
* ``GET /v1/streams`` (read): running and finished streams, newest first; ``GET
  /v1/streams/{id}`` one of them.
* ``DELETE /v1/streams/{id}`` (admin): stop it and release the source; answers the stream
  as it ended (a finished stream stays as it is). Unknown ids: 404.
* ``GET /v1/streams/{id}/events`` (read): ``text/event-stream``. Every event is one
  ``faceprint watch --events`` line: ``id: <n>``, ``event: <kind>``, ``data: <the JSON
  line>``. ``n`` counts from 0, the ``run_started`` header; then ``track_started``,
  ``identified``, ``track_ended``; the last is ``run_ended`` (``state``: ``ended`` at the
  source's end or ``max_frames``, ``stopped`` by DELETE or shutdown, ``failed`` with an
  ``error``; ``frames`` processed, ``dropped``), after which the response ends. A comment
  line (``: keep-alive``) goes out on an idle stream every 15 s. A client that reconnects
  with ``Last-Event-ID`` resumes after that event (a browser's ``EventSource`` does so by
  itself); once a stream has ended and the client has seen all of it, the answer is 204,
  which tells ``EventSource`` to stop reconnecting. A client that falls :data:`~..streams.QUEUE`
  events behind is disconnected (module :mod:`..streams`).

Starting and stopping are audited with the key's name.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints
from starlette.types import Receive, Scope, Send

from ..auth import ADMIN, READ, service
from ..streams import QUEUE, LiveStream, StreamHub, StreamOptions, Subscription

router = APIRouter(prefix="/v1", tags=["streams"])

Source = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class StreamStart(BaseModel):
    """``source``: an entry of the allow-list (``GET /v1/streams/sources``), exactly as listed;
    a camera index may be a number. The rest are ``faceprint watch``'s settings."""

    model_config = ConfigDict(extra="forbid")
    source: Source | Annotated[StrictInt, Field(ge=0)]
    detect_every: int = Field(default=1, ge=1, le=100, description="run the detector every N frames")
    embed_every: int = Field(default=10, ge=1, le=10_000, description="re-embed a track every N frames")
    min_frames: int = Field(default=3, ge=1, le=1000, description="embeddings a track needs to be named")
    max_age: int = Field(default=30, ge=0, le=10_000, description="frames a track survives unseen")
    max_fps: float | None = Field(default=None, gt=0, le=1000, description="process at most N frames/s")
    threshold: float | None = Field(
        default=None, ge=-1.0, le=1.0, description="fixed threshold (default: the gallery's)"
    )
    max_frames: int | None = Field(default=None, ge=1, description="stop after N processed frames")
    reconnect: bool = Field(default=True, description="reopen a camera or network stream that drops")
    realtime: bool = Field(
        default=False, description="play a file at its own frame rate (dropping what cannot be kept up with)"
    )


def hub(request: Request) -> StreamHub:
    streams: StreamHub = request.app.state.streams
    return streams


@router.post("/streams", dependencies=[ADMIN], status_code=201)
async def start_stream(request: Request, body: StreamStart, response: Response) -> dict[str, Any]:
    svc = service(request)
    options = StreamOptions(**body.model_dump(exclude={"source"}))
    stream = await svc.run(hub(request).start, str(body.source), options, models=False)
    svc.db.audit(str(request.state.key.name), "stream.start", stream.id, {"source": stream.description})
    response.headers["Location"] = f"/v1/streams/{stream.id}"
    return stream.to_dict()


@router.get("/streams", dependencies=[READ])
async def list_streams(request: Request) -> dict[str, Any]:
    return {"streams": [s.to_dict() for s in hub(request).streams()]}


@router.get("/streams/sources", dependencies=[ADMIN])
async def stream_sources(request: Request) -> dict[str, Any]:
    """The sources an admin may start (the operator's allow-list, passwords masked)."""
    return {"sources": hub(request).allowed()}


@router.get("/streams/{stream_id}", dependencies=[READ])
async def get_stream(request: Request, stream_id: str) -> dict[str, Any]:
    return hub(request).get(stream_id).to_dict()


@router.delete("/streams/{stream_id}", dependencies=[ADMIN])
async def stop_stream(request: Request, stream_id: str) -> dict[str, Any]:
    svc = service(request)
    stream = await svc.run(hub(request).stop, stream_id, models=False)
    svc.db.audit(
        str(request.state.key.name), "stream.stop", stream.id,
        {"source": stream.description, "state": stream.state, "frames": stream.frames},
    )  # fmt: skip
    return stream.to_dict()


class EventStream(StreamingResponse):
    """``text/event-stream`` that lets its subscription go however the response ends
    (finished, client gone, server shutting down)."""

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncIterator[bytes],
        status_code: int = 200,  # FastAPI documents the route with this default
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(content, status_code, headers={"X-Accel-Buffering": "no"})
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


async def _events(request: Request, sub: Subscription, keepalive_s: float) -> AsyncIterator[bytes]:
    """The wire side of one subscription (module doc); checks about once a second whether
    the client is still there, so a gone client is let go within a second or two."""
    yield b"retry: 3000\n\n"  # EventSource: reconnect after 3 s
    last = time.monotonic()
    while True:
        for event in sub.take():
            yield event.frame
            last = time.monotonic()
            if event.kind == "run_ended":
                return
        if sub.lagged:
            yield (
                f": this client fell {QUEUE} events behind and is disconnected; "
                "reconnect with Last-Event-ID to resume\n\n"
            ).encode()
            return
        if not await sub.wait(min(1.0, keepalive_s)):
            if await request.is_disconnected():
                return
            if time.monotonic() - last >= keepalive_s:
                yield b": keep-alive\n\n"
                last = time.monotonic()


def _last_id(raw: str | None) -> int | None:
    """``Last-Event-ID`` as an event number; anything else starts from the beginning."""
    if raw is None or not raw.strip().isdigit() or len(raw.strip()) > 18:
        return None
    return int(raw.strip())


@router.get(
    "/streams/{stream_id}/events",
    dependencies=[READ],
    response_class=EventStream,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "the stream's events (module doc)"},
        204: {"description": "the stream has ended and this client has seen every event"},
    },
)
async def stream_events(
    request: Request,
    stream_id: str,
    last_event_id: Annotated[str | None, Header(description="resume after this event id")] = None,
) -> Response:
    """The stream's events as Server-Sent Events, the same as ``faceprint watch --events``
    (wire format in the module doc)."""
    streams = hub(request)
    stream: LiveStream = streams.get(stream_id)
    sub = stream.subscribe(_last_id(last_event_id), asyncio.get_running_loop())
    if sub is None:
        return Response(status_code=204)
    return EventStream(_events(request, sub, streams.keepalive_s), on_close=lambda: stream.unsubscribe(sub))
