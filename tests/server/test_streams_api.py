"""Streams through the API: an allow-listed clip recognised in the background, its events as
Server-Sent Events (the same as ``faceprint watch --events``), stopping, listing, roles, and
the allow-list refusing everything else (security: paths, traversal, URLs)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import SHARED, need
from tests.server.conftest import Api, running_api

VIDEO = SHARED / "data" / "video"
HAMILTON = VIDEO / "short_hamilton_clip.mp4"
LMM = "Lin-Manuel Miranda"
RTSP = "rtsp://admin:hunter2@127.0.0.1:9/live"  # a closed port: allowed but unreachable
SSE = tuple[int | None, str, dict[str, Any]]


def parse_sse(text: str) -> tuple[list[SSE], list[str]]:
    """``(id, event, data)`` per event and the comment lines of a ``text/event-stream`` body."""
    events: list[SSE] = []
    comments: list[str] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                comments.append(line[1:].strip())
            elif ": " in line:
                k, v = line.split(": ", 1)
                fields[k] = v
        if "data" in fields:
            eid = int(fields["id"]) if "id" in fields else None
            events.append((eid, fields["event"], json.loads(fields["data"])))
    return events, comments


@pytest.fixture
def clip() -> Path:
    return need(HAMILTON)


@pytest.fixture
def stream_api(tmp_path: Path, shared_recognizer: Any, clip: Path) -> Iterator[Api]:
    """A service whose allow-list holds the Hamilton clip, an absent camera and an
    unreachable RTSP URL with a password; Miranda enrolled through the API."""
    ref = need(VIDEO / "refs" / "lin-manuel-miranda.png")
    with running_api(tmp_path, shared_recognizer, streams=(str(clip), "7", RTSP)) as api:
        h = api.headers("enrol")
        r = api.client.post("/v1/people", json={"name": LMM}, headers=h)
        assert r.status_code == 201, r.text
        files = {"image": ("lmm.png", ref.read_bytes(), "image/png")}
        r = api.client.post(f"/v1/people/{r.json()['id']}/faces?face=largest", files=files, headers=h)
        assert r.status_code == 201, r.text
        yield api


def _open_fds(path: Path) -> int:
    fd_dir = Path("/proc/self/fd")
    n = 0
    for fd in fd_dir.iterdir() if fd_dir.is_dir() else ():
        with contextlib.suppress(OSError):  # an fd closed meanwhile
            n += os.readlink(fd) == str(path)
    return n


def test_a_stream_names_miranda_in_its_events(stream_api: Api, clip: Path) -> None:
    c, admin, read = stream_api.client, stream_api.headers("admin"), stream_api.headers("read")
    r = c.post("/v1/streams", json={"source": str(clip)}, headers=read)
    assert r.status_code == 403 and r.json()["type"].endswith(":forbidden")  # read cannot start
    body = {"source": str(clip), "detect_every": 2, "max_frames": 150}
    r = c.post("/v1/streams", json=body, headers=admin)
    assert r.status_code == 201, r.text
    s = r.json()
    sid = s["id"]
    assert len(sid) == 32 and r.headers["location"] == f"/v1/streams/{sid}"
    assert s["source"] == "file short_hamilton_clip.mp4 (640x360, 29.97 fps, 275 frames)"
    assert s["state"] == "running" and s["settings"]["max_frames"] == 150
    assert str(clip.parent) not in r.text

    r = c.get(f"/v1/streams/{sid}/events", headers=read)  # the whole stream, to its end
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events, _ = parse_sse(r.text)
    assert [e[0] for e in events] == list(range(len(events)))  # ids count from the header
    _, kind, head = events[0]
    assert kind == head["event"] == "run_started"
    assert head["source"] == s["source"] and head["model"] == stream_api.service.recognizer.model_id
    assert head["detector"] == "yunet" and head["gallery"] == "<server path>"
    assert all(k == d["event"] for _, k, d in events)  # data is the watch --events line
    kinds = {k for _, k, _ in events[1:-1]}
    assert kinds == {"track_started", "identified", "track_ended"}
    assert any(k == "identified" and d["name"] == LMM for _, k, d in events)
    named = [d for _, k, d in events if k == "track_ended" and d["label"] == LMM]
    assert named and all(d["label"] in (LMM, "unknown") for _, k, d in events if k == "track_ended")
    _, kind, end = events[-1]
    assert kind == "run_ended" and end["state"] == "ended" and end["frames"] == 150

    listed = c.get("/v1/streams", headers=read).json()["streams"]
    assert [(x["id"], x["state"], x["frames"]) for x in listed] == [(sid, "ended", 150)]
    assert listed[0]["ended"] and listed[0]["started"] == head["started"]
    # a client that saw everything is told to stop (204); one that resumes gets the rest
    last = events[-1][0]
    r = c.get(f"/v1/streams/{sid}/events", headers={**read, "Last-Event-ID": str(last)})
    assert r.status_code == 204
    r = c.get(f"/v1/streams/{sid}/events", headers={**read, "Last-Event-ID": str(last - 2)})
    assert [e[0] for e in parse_sse(r.text)[0]] == [last - 1, last]
    assert _open_fds(clip) == 0  # the file is let go at the end
    audit = [(e["action"], e["actor"], e["target"]) for e in stream_api.service.db.audit_log(3)]
    assert audit[0] == ("stream.start", "test-admin", sid)


def test_only_allow_listed_sources_start(stream_api: Api, clip: Path) -> None:
    c, admin = stream_api.client, stream_api.headers("admin")
    r = c.get("/v1/streams/sources", headers=admin)
    assert r.json()["sources"] == [str(clip), "7", "rtsp://admin:***@127.0.0.1:9/live"]
    assert c.get("/v1/streams/sources", headers=stream_api.headers("read")).status_code == 403
    refused = [
        "../../etc/passwd", "/etc/passwd", str(clip.parent / ".." / clip.parent.name / clip.name),
        clip.name, f"{clip} ", f"file://{clip}", "http://127.0.0.1:9/x.mp4",
        "rtsp://admin:guess@127.0.0.1:9/live", "0", 0, "07",
    ]  # fmt: skip
    for bad in refused:
        r = c.post("/v1/streams", json={"source": bad}, headers=admin)
        assert r.status_code == 403, (bad, r.text)
        p = r.json()
        assert p["type"].endswith(":source-not-allowed") and "allow-list" in p["detail"]
        assert str(clip.parent) not in r.text and "passwd" not in r.text
        assert len(str(bad)) < 4 or str(bad) not in r.text  # never repeated
    for bad_body in ({"source": ""}, {"source": True}, {"source": -1}, {"source": "7", "detect_every": 0},
                     {"source": "7", "unknown": 1}, {}):  # fmt: skip
        r = c.post("/v1/streams", json=bad_body, headers=admin)
        assert r.status_code == 422 and r.json()["type"].endswith(":invalid-field"), (bad_body, r.text)
    # allowed but unreadable: 502, without the password; the masked form names the entry
    for source in ("7", 7, "rtsp://admin:***@127.0.0.1:9/live"):
        r = c.post("/v1/streams", json={"source": source}, headers=admin)
        assert r.status_code == 502 and r.json()["type"].endswith(":source-unavailable"), r.text
        assert "hunter2" not in r.text
    assert c.get("/v1/streams", headers=admin).json()["streams"] == []


def test_an_empty_allow_list_refuses_every_source(tmp_path: Path, shared_recognizer: Any, clip: Path) -> None:
    with running_api(tmp_path, shared_recognizer) as api:
        r = api.client.post("/v1/streams", json={"source": str(clip)}, headers=api.headers("admin"))
        assert r.status_code == 403 and "--stream" in r.json()["detail"]
        assert str(clip) not in r.text
        paths = api.client.get("/openapi.json").json()["paths"]
        assert set(paths["/v1/streams"]) == {"get", "post"} and "delete" in paths["/v1/streams/{stream_id}"]
        events = paths["/v1/streams/{stream_id}/events"]["get"]["responses"]
        assert "text/event-stream" in events["200"]["content"] and "204" in events


def _read_until_keepalive(api: Api, sid: str, out: list[SSE]) -> None:
    """Read a stream's events up to its first keep-alive comment, then hang up (a client
    going away)."""
    with api.client.stream("GET", f"/v1/streams/{sid}/events", headers=api.headers("read")) as r:
        buf = ""
        for chunk in r.iter_text():
            buf += chunk
            events, comments = parse_sse(buf)
            if "keep-alive" in comments:
                out += events
                return


def test_delete_stops_a_stream_and_clients_come_and_go(stream_api: Api, clip: Path) -> None:
    c, admin, read = stream_api.client, stream_api.headers("admin"), stream_api.headers("read")
    r = c.post("/v1/streams", json={"source": str(clip)}, headers=admin)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    stream = stream_api.client.app.state.streams.get(sid)
    # the API is served between the stream's frames, not after the stream
    ref = need(VIDEO / "refs" / "lin-manuel-miranda.png").read_bytes()
    r = c.post("/v1/identify", files={"image": ("p.png", ref, "image/png")}, headers=admin)
    assert r.status_code == 200 and r.json()["images"][0]["faces"][0]["label"] == LMM
    assert stream.running
    r = c.post("/v1/streams", json={"source": str(clip)}, headers=admin)
    assert r.status_code == 409 and r.json()["id"] == sid  # one stream per source
    assert c.delete(f"/v1/streams/{sid}", headers=read).status_code == 403

    # two clients at once; both get the header first, then keep-alives while the stream
    # waits for the models (held here); each is let go when it hangs up
    got: list[list[SSE]] = [[], []]
    stream_api.client.app.state.streams.keepalive_s = 0.3
    with stream_api.service.model_lock:
        frames = stream.frames
        readers = [threading.Thread(target=_read_until_keepalive, args=(stream_api, sid, g)) for g in got]
        for t in readers:
            t.start()
        for t in readers:
            t.join(30)
        assert stream.frames <= frames + 1
    assert [g[0][1] for g in got] == ["run_started", "run_started"] and got[0] == got[1]
    deadline = time.monotonic() + 10
    while stream.subscribers and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stream.subscribers == 0

    r = c.delete(f"/v1/streams/{sid}", headers=admin)
    assert r.status_code == 200 and r.json()["state"] == "stopped", r.text
    assert 0 < r.json()["frames"] < 275
    assert _open_fds(clip) == 0  # the file is let go
    events, _ = parse_sse(c.get(f"/v1/streams/{sid}/events", headers=read).text)
    assert events[0][1] == "run_started" and events[-1][1] == "run_ended"
    assert events[-1][2]["state"] == "stopped"
    started = {d["track_id"] for _, k, d in events if k == "track_started"}
    assert started == {d["track_id"] for _, k, d in events if k == "track_ended"}  # every track ends
    assert c.get("/v1/streams", headers=read).json()["streams"][0]["state"] == "stopped"
    assert c.delete(f"/v1/streams/{sid}", headers=admin).json()["state"] == "stopped"  # idempotent
    for bad in ("0" * 32, "../../etc/passwd"):
        assert c.delete(f"/v1/streams/{bad}", headers=admin).status_code == 404
        assert c.get(f"/v1/streams/{bad}/events", headers=read).status_code == 404
    assert c.get(f"/v1/streams/{sid}/events").status_code == 401
    actions = [e["action"] for e in stream_api.service.db.audit_log(3)]
    assert actions[:3] == ["stream.stop", "stream.stop", "stream.start"]


def test_shutdown_stops_running_streams(tmp_path: Path, shared_recognizer: Any, clip: Path) -> None:
    with running_api(tmp_path, shared_recognizer, streams=(str(clip),)) as api:
        body = {"source": str(clip), "realtime": True}  # ~9 s at the clip's own pace
        r = api.client.post("/v1/streams", json=body, headers=api.headers("admin"))
        assert r.status_code == 201, r.text
        stream = api.client.app.state.streams.get(r.json()["id"])
    assert stream.state == "stopped" and _open_fds(clip) == 0


def test_a_slow_client_is_cut_off_not_waited_for() -> None:
    """The stream's thread never blocks on a client: one that falls QUEUE events behind is
    marked lagged (its response then ends; it resumes with Last-Event-ID)."""
    from faceprint.server.streams import QUEUE, Event, Subscription

    loop = asyncio.new_event_loop()
    try:
        backlog = [Event.of(i, {"event": "track_started"}) for i in range(5)]
        sub = Subscription(backlog, loop)
        t0 = time.monotonic()
        for i in range(5, 5 + QUEUE + 100):
            sub.offer(Event.of(i, {"event": "track_started"}))
        assert time.monotonic() - t0 < 1.0 and sub.lagged
        taken = sub.take()
        assert [e.id for e in taken] == list(range(5 + QUEUE))  # what came before the gap
        assert b"id: 0\nevent: track_started\ndata: " in taken[0].frame
    finally:
        loop.close()
