"""Faults under a real ``faceprint serve``: the process killed inside an enrolment, a client
that hangs up mid-upload, the PostgreSQL server restarted under the service.

Each test runs the real console command (tests/server/real.py) and checks what a user
would: what the gallery holds afterwards, and that the next request succeeds.
"""

from __future__ import annotations

import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.server.real import RealServer, enrol, faces_of, gallery_location, identify, real_server

Photo = Callable[[str, str], bytes]
#: What the gallery's test hook logs inside a write transaction, just before COMMIT.
HOOK = r"test hook: (\d+) faces in the open transaction"


def audit_actions(c: httpx.Client) -> list[str]:
    r = c.get("/v1/audit")
    assert r.status_code == 200, r.text
    return [e["action"] for e in r.json()["entries"]]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_sigkill_during_enrolment_loses_nothing_acknowledged_and_half_enrols_no_one(
    tmp_path: Path, photo: Photo, kind: str
) -> None:
    """The test hook holds every gallery write inside its transaction for a few seconds.
    One enrolment is acknowledged (201); a second one, of two photos, is SIGKILLed while
    its rows are written but not committed. After a restart the first is there, the
    second not at all (neither photo), and sending it again adds both photos."""
    server = RealServer(tmp_path, gallery_location(kind, tmp_path))
    try:
        server.start(env={"FACEPRINT_TEST_SLEEP_BEFORE_COMMIT": "2"})
        with server.client() as c:
            obama = c.post("/v1/people", json={"name": "Barack Obama"}).json()["id"]
            kit = c.post("/v1/people", json={"name": "Kit Harington"}).json()["id"]
            r = enrol(c, obama, [("o.jpg", photo("obama", "obama.jpg"))])
            assert r.status_code == 201, r.text
            acknowledged = [a["face_id"] for a in r.json()["added"]]
            assert len(acknowledged) == 1

        kit_photos = [(f, photo("kit_harington", f)) for f in ("john1.jpeg", "john2.jpeg")]
        seen = len(server.stderr())
        outcome: dict[str, Any] = {}

        def send() -> None:
            try:
                with server.client() as c2:
                    outcome["response"] = enrol(c2, kit, kit_photos)
            except httpx.HTTPError as exc:
                outcome["error"] = exc

        sender = threading.Thread(target=send)
        sender.start()
        deadline = time.monotonic() + 120
        while (m := _search_from(server, HOOK, seen)) is None:
            assert time.monotonic() < deadline, server.stderr()
            assert server.proc is not None and server.proc.poll() is None, server.stderr()
            time.sleep(0.01)
        # the open transaction sees Obama's face and both of Kit's: the rows were written
        assert int(m.group(1)) == 3, server.stderr()
        assert server.kill() == -signal.SIGKILL
        sender.join(timeout=60)
        assert "response" not in outcome and isinstance(outcome.get("error"), httpx.HTTPError), outcome

        server.start()  # without the hook
        with server.client() as c:
            assert faces_of(c, obama) == acknowledged
            assert faces_of(c, kit) == [], "a half-enrolled person"
            assert identify(c, photo("obama", "obama2.jpg")) == ["Barack Obama"]
            assert identify(c, photo("kit_harington", "john1.jpeg")) == ["unknown"]
            r = enrol(c, kit, kit_photos)  # not "duplicates": nothing of it was kept
            assert r.status_code == 201 and len(r.json()["added"]) == 2, r.text
            assert len(faces_of(c, kit)) == 2
            assert audit_actions(c)[:2] == ["face.add", "face.add"]
            assert audit_actions(c).count("face.add") == 2  # Obama's, then Kit's retry
        assert server.stop() in (0, 130)
    finally:
        server.close()


def _search_from(server: RealServer, pattern: str, start: int) -> Any:
    import re

    return re.search(pattern, server.stderr()[start:])


def _multipart(field: str, filename: str, data: bytes, boundary: str) -> bytes:
    return (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )


def _hang_up(server: RealServer, path: str, body: bytes, send: int, chunked: bool = False) -> None:
    """Send the request line, headers and ``send`` bytes of ``body`` over a raw socket,
    then close it without reading an answer."""
    boundary = "faceprintboundary"
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        f"X-API-Key: {server.key}",
        f"Content-Type: multipart/form-data; boundary={boundary}",
        "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}",
    ]
    part = body[:send]
    if chunked:
        part = f"{len(part):x}\r\n".encode() + part + b"\r\n"  # one chunk, never the last one
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + part)
        time.sleep(0.3)  # let the server start reading the body
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # SO_LINGER 0: the close is a reset, as when a phone drops off the network


def test_a_client_that_hangs_up_mid_upload_changes_nothing(tmp_path: Path, photo: Photo) -> None:
    """Five uploads dropped at different points (no body, inside the part headers, mid-image,
    just before the closing boundary, mid-chunk): the server keeps serving, writes nothing,
    and frees each request's slot (two slots only, so a leaked one would show as 503s)."""
    with (
        real_server(tmp_path, str(tmp_path / "g.sqlite"), "--max-in-flight", "2") as server,
        server.client() as c,
    ):
        pid = c.post("/v1/people", json={"name": "Barack Obama"}).json()["id"]
        data = photo("obama", "obama.jpg")
        body = _multipart("image", "o.jpg", data, "faceprintboundary")
        path = f"/v1/people/{pid}/faces"
        for send, chunked in ((0, False), (200, False), (len(body) // 2, False), (len(body) - 5, False),
                              (len(body) // 2, True)):  # fmt: skip
            _hang_up(server, path, body, send, chunked)
            assert c.get("/v1/health").status_code == 200  # still serving
            assert faces_of(c, pid) == [], f"written after a hang-up at byte {send}"
        assert server.proc is not None and server.proc.poll() is None
        # the next real request succeeds, and nothing was audited for the dropped ones
        r = enrol(c, pid, [("o.jpg", data)])
        assert r.status_code == 201, r.text
        assert len(faces_of(c, pid)) == 1
        assert audit_actions(c).count("face.add") == 1
        assert identify(c, photo("obama", "obama2.jpg")) == ["Barack Obama"]
        assert "Traceback" not in server.stderr(), server.stderr()


def test_postgres_restarted_under_the_service(tmp_path: Path, photo: Photo) -> None:
    """While PostgreSQL is down, requests that need the gallery get 503 with Retry-After
    (a problem document, no trace); the first request once it is back succeeds."""
    from tests.integration.gallery.pg import throwaway_server

    with throwaway_server() as pg:  # our own: the shared one must not stop under others
        url = pg.create_database("srv")
        with real_server(tmp_path, url) as server, server.client() as c:
            pid = c.post("/v1/people", json={"name": "Barack Obama"}).json()["id"]
            assert enrol(c, pid, [("o.jpg", photo("obama", "obama.jpg"))]).status_code == 201
            probe = photo("obama", "obama2.jpg")
            assert identify(c, probe) == ["Barack Obama"]

            pg.stop("fast")
            for method, path, kwargs in (
                ("GET", "/v1/people", {}),
                ("GET", f"/v1/people/{pid}", {}),
                ("POST", "/v1/people", {"json": {"name": "Joe Biden"}}),
                ("POST", f"/v1/people/{pid}/faces",
                 {"files": {"image": ("o2.jpg", probe, "image/jpeg")}}),
                ("GET", "/v1/ready", {}),
            ):  # fmt: skip
                r = c.request(method, path, **kwargs)
                assert r.status_code == 503, (path, r.status_code, r.text)
                assert int(r.headers["retry-after"]) > 0, r.headers
                doc = r.json()
                assert doc["type"].endswith(":unavailable") and doc["status"] == 503, doc
                assert "Traceback" not in r.text and str(pg.root) not in r.text
            assert c.get("/v1/health").status_code == 200  # the process itself is fine

            pg.start()
            r = c.get(f"/v1/people/{pid}")  # the first request after the restart
            assert r.status_code == 200, r.text
            assert len(r.json()["enrolled"]) == 1
            assert identify(c, probe) == ["Barack Obama"]
            r = c.post("/v1/people", json={"name": "Joe Biden"})
            assert r.status_code == 201, r.text
            assert enrol(c, r.json()["id"], [("b.jpg", photo("biden", "biden.jpg"))]).status_code == 201
            assert c.get("/v1/ready").json()["people"] == 2

            # a restart between two requests, with no failed request in between
            pg.stop("fast")
            pg.start()
            assert identify(c, photo("biden", "biden2.jpg")) == ["Joe Biden"]
            assert c.get("/v1/people").json()["total"] == 2
            assert "Traceback" not in server.stderr(), server.stderr()
