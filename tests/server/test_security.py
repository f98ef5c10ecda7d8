"""The API under abuse: keys and roles, limits, hostile uploads and archives, hostile ids
and names. Real service, real models, real hashed keys; the body-size limits are also
checked on the wire against a real uvicorn server. Every answer of every test is checked
for what must never leave the server: a path of its disk or a stack trace."""

from __future__ import annotations

import io
import os
import resource
import socket
import struct
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import REPO
from tests.server.archives import bomb, lfw_zip, lying, with_symlink, zip_of
from tests.server.conftest import Api, running_api

from faceprint.server.config import Limits

Photo = Callable[[str, str], bytes]
MB = 1024 * 1024


# -- every answer is checked --------------------------------------------------------------
@pytest.fixture
def seen(tmp_path: Path) -> Iterator[list[tuple[str, int, str]]]:
    """(request, status, body) of every answer a test got; at the end, none may hold a
    server path (the test's tmp dir with the gallery and key database, the home and
    faceprint home dirs, the temporary dir, the code's and Python's location) or a trace."""
    answers: list[tuple[str, int, str]] = []
    yield answers
    assert answers, "no answer was checked"
    forbidden = [
        str(tmp_path),
        str(Path.home()),
        os.environ.get("FACEPRINT_HOME", "") or "<none>",
        str(Path(tempfile.gettempdir()) / "faceprint-calibrate"),
        str(REPO),
        sys.prefix,
        "Traceback",
        'File "',
    ]
    for what, status, body in answers:
        for bad in forbidden:
            assert bad not in body, f"{what} -> {status} holds {bad!r}: {body[:300]}"


def _watch(api: Api, answers: list[tuple[str, int, str]]) -> Api:
    def hook(response: Any) -> None:
        response.read()
        answers.append(
            (f"{response.request.method} {response.request.url.path}", response.status_code, response.text)
        )

    api.client.event_hooks["response"].append(hook)
    return api


@pytest.fixture
def api(tmp_path: Path, shared_recognizer: Any, seen: list[tuple[str, int, str]]) -> Iterator[Api]:
    with running_api(tmp_path / "svc", shared_recognizer) as a:
        yield _watch(a, seen)


@pytest.fixture
def make_api(
    tmp_path: Path, shared_recognizer: Any, seen: list[tuple[str, int, str]]
) -> Callable[..., AbstractContextManager[Api]]:
    """``make_api(limits=Limits(...))``: a service with other settings, answers checked."""

    @contextmanager
    def make(**config: Any) -> Iterator[Api]:
        root = Path(tempfile.mkdtemp(dir=tmp_path))
        with running_api(root, shared_recognizer, **config) as a:
            yield _watch(a, seen)

    return make


def _problem(r: Any, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    assert body["type"] == f"urn:faceprint:problem:{slug}" and body["status"] == status, body
    assert body["title"] and body["detail"], body
    return body


def _img(data: bytes, name: str = "a.jpg", ctype: str = "image/jpeg") -> dict[str, Any]:
    return {"image": (name, data, ctype)}


# -- keys and roles -----------------------------------------------------------------------
def test_no_key_a_wrong_malformed_or_revoked_key_is_401(api: Api, photo: Photo) -> None:
    c = api.client
    good = api.keys["admin"]
    key_id = good.split("_")[1]
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/v1/whoami", {}),
        ("GET", "/v1/people", {}),
        ("POST", "/v1/identify", {"files": _img(photo("obama", "obama.jpg"))}),
        ("PUT", "/v1/settings/threshold", {"json": {"threshold": 0.5}}),
        ("POST", "/v1/calibrate", {"files": {"archive": ("a.zip", b"PK", "application/zip")}}),
        ("GET", "/v1/audit", {}),
    ]
    wrong = [
        None,  # no header
        "",
        "hello",
        "fpk_zzz",
        good[:-1] + ("A" if good[-1] != "A" else "B"),  # the admin key's id with a wrong secret
        "fpk_0123456789ab_" + "A" * 43,  # well formed, unknown
        good + "x",
        good.upper(),
    ]
    for method, path, kw in calls:
        for key in wrong:
            headers = {} if key is None else {"X-API-Key": key}
            r = c.request(method, path, headers=headers, **kw)
            body = _problem(r, 401, "unauthorized")
            assert r.headers["www-authenticate"] == "ApiKey"
            assert key_id not in body["detail"] and (not key or key not in r.text)
            assert (
                r.headers["x-content-type-options"] == "nosniff" and r.headers["cache-control"] == "no-store"
            )
    # a key is read from its header only: never from the URL
    _problem(c.get(f"/v1/whoami?api_key={good}&X-API-Key={good}"), 401, "unauthorized")
    _problem(c.get("/v1/whoami", headers={"Authorization": f"Bearer {good}"}), 401, "unauthorized")
    assert c.get("/v1/health").status_code == 200 and c.get("/v1/ready").status_code == 200

    key, info = api.service.keys.create("admin", "temporary")
    assert c.get("/v1/whoami", headers={"X-API-Key": key}).json()["name"] == "temporary"
    api.service.keys.revoke(info.key_id)
    for method, path, kw in calls:
        _problem(c.request(method, path, headers={"X-API-Key": key}, **kw), 401, "unauthorized")


def test_each_role_boundary_is_403(api: Api, photo: Photo) -> None:
    c = api.client
    probe = _img(photo("obama", "obama.jpg"))
    # read: may read, may not recognise
    assert c.get("/v1/people", headers=api.headers("read")).status_code == 200
    body = _problem(c.post("/v1/identify", files=probe, headers=api.headers("read")), 403, "forbidden")
    assert "'read'" in body["detail"] and "'recognise'" in body["detail"]
    for path in ("/v1/detect", "/v1/verify", "/v1/lookalike"):
        _problem(c.post(path, files=probe, headers=api.headers("read")), 403, "forbidden")
    # recognise: may identify, may not enrol
    assert c.post("/v1/identify", files=probe, headers=api.headers("recognise")).status_code == 200
    _problem(c.post("/v1/people", json={"name": "A"}, headers=api.headers("recognise")), 403, "forbidden")
    # enrol: may enrol, may not change settings, calibrate or read the audit log
    r = c.post("/v1/people", json={"name": "A"}, headers=api.headers("enrol"))
    assert r.status_code == 201
    pid = r.json()["id"]
    for who in ("read", "recognise"):
        for method, path, kw in [
            ("PATCH", f"/v1/people/{pid}", {"json": {"name": "B"}}),
            ("DELETE", f"/v1/people/{pid}", {}),
            ("POST", f"/v1/people/{pid}/faces", {"files": probe}),
        ]:
            _problem(c.request(method, path, headers=api.headers(who), **kw), 403, "forbidden")
    h = api.headers("enrol")
    _problem(c.put("/v1/settings/threshold", json={"threshold": 0.1}, headers=h), 403, "forbidden")
    _problem(c.get("/v1/settings/threshold", headers=h), 403, "forbidden")
    _problem(c.get("/v1/audit", headers=h), 403, "forbidden")
    zipped = {"archive": ("a.zip", lfw_zip(people=2, per_person=2), "application/zip")}
    _problem(c.post("/v1/calibrate", files=zipped, headers=h), 403, "forbidden")
    # admin may
    assert (
        c.put("/v1/settings/threshold", json={"threshold": 0.1}, headers=api.headers("admin")).status_code
        == 200
    )
    assert api.service.gallery.operating_point().threshold == 0.1


def test_rate_limit_is_429_with_retry_after(make_api: Callable[..., AbstractContextManager[Api]]) -> None:
    with make_api(limits=Limits(rate_per_second=1, burst=2)) as api:
        c, h = api.client, api.headers("read")
        got = [c.get("/v1/whoami", headers=h) for _ in range(3)]
        assert [r.status_code for r in got[:2]] == [200, 200]
        body = _problem(got[2], 429, "rate-limited")
        assert int(got[2].headers["retry-after"]) >= 1 and "1 requests per second" in body["detail"]
        # wrong secrets for a key id spend that key's bucket (no free guessing)...
        wrong = {"X-API-Key": h["X-API-Key"][:-1] + ("A" if h["X-API-Key"][-1] != "A" else "B")}
        _problem(c.get("/v1/whoami", headers=wrong), 429, "rate-limited")
        # ...and never another key's
        assert c.get("/v1/whoami", headers=api.headers("admin")).status_code == 200
        time.sleep(int(got[2].headers["retry-after"]))
        assert c.get("/v1/whoami", headers=h).status_code == 200


# -- body size, on the test client and on the wire ----------------------------------------
def test_an_11_mb_body_is_413_with_content_length_and_chunked(api: Api) -> None:
    c = api.client
    big = b"x" * (11 * MB)
    multipart = {"Content-Type": "multipart/form-data; boundary=b"}
    for headers in ({}, api.headers("recognise")):  # refused before the key is even checked
        r = c.post("/v1/identify", content=big, headers={**multipart, **headers})
        _problem(r, 413, "too-large")

    def chunks() -> Iterator[bytes]:
        for _ in range(11):
            yield b"x" * MB

    r = c.post("/v1/identify", content=chunks(), headers={**multipart, **api.headers("recognise")})
    assert "content-length" not in r.request.headers
    _problem(r, 413, "too-large")
    # a JSON body FastAPI reads itself keeps the 413 too (not a generic 400)
    as_json = {"Content-Type": "application/json", **api.headers("enrol")}
    _problem(c.post("/v1/people", content=chunks(), headers=as_json), 413, "too-large")
    assert c.get("/v1/people", headers=api.headers("read")).json()["total"] == 0
    # a real upload just over the limit (a file field), as a browser sends it
    files = {"image": ("big.jpg", b"\xff\xd8" + bytes(11 * MB), "image/jpeg")}
    _problem(c.post("/v1/detect", files=files, headers=api.headers("recognise")), 413, "too-large")


@contextmanager
def _serving(app: Any) -> Iterator[int]:
    """``app`` on a real uvicorn server on 127.0.0.1 (a free port), in a thread."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _answer(s: socket.socket) -> tuple[int, dict[str, str], str]:
    """Status, headers and body of the HTTP/1.1 answer on ``s`` (Content-Length framed)."""
    s.settimeout(20)
    raw = b""
    while b"\r\n\r\n" not in raw:
        got = s.recv(65536)
        assert got, f"connection closed before an answer: {raw!r}"
        raw += got
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        got = s.recv(65536)
        if not got:
            break
        rest += got
    return int(lines[0].split()[1]), headers, rest[:n].decode()


def test_the_body_limit_holds_on_the_wire(api: Api, seen: list[tuple[str, int, str]]) -> None:
    """Against a real server: a declared 11 MB body is refused before one byte of it is
    sent; a chunked one is cut off just past 10 MB, before it ends."""
    key = api.keys["recognise"]
    part = (
        b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
    )
    with _serving(api.client.app) as port:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(
                b"POST /v1/identify HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key.encode() + b"\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\n"
                b"Content-Length: " + str(11 * MB).encode() + b"\r\n\r\n"
            )
            status, headers, body = _answer(s)  # no byte of the body was sent
            seen.append(("wire content-length", status, body))
            assert status == 413 and "too-large" in body, body
            assert headers["connection"] == "close"

        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(
                b"POST /v1/identify HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key.encode() + b"\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b"\xff" * (256 * 1024)
            s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            for _ in range(40):  # 10 MB and the part's header: just over; and the body never ends
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            status, _, body = _answer(s)
            seen.append(("wire chunked", status, body))
            assert status == 413 and "too-large" in body, body


def test_calibrate_has_its_own_body_limit(make_api: Callable[..., AbstractContextManager[Api]]) -> None:
    """A calibration archive may be larger than an image upload (``max_zip_bytes``), and no
    larger."""
    with make_api(limits=Limits(max_body_bytes=MB, max_zip_bytes=2 * MB)) as api:
        c, h = api.client, api.headers("admin")
        blob = os.urandom(MB + MB // 2)
        _problem(c.post("/v1/identify", files=_img(blob), headers=api.headers("recognise")), 413, "too-large")
        r = c.post("/v1/calibrate", files={"archive": ("a.zip", blob, "application/zip")}, headers=h)
        _problem(r, 422, "bad-archive")  # past the body limit: read, and not a zip
        r = c.post("/v1/calibrate", files={"archive": ("a.zip", blob + blob, "application/zip")}, headers=h)
        _problem(r, 413, "too-large")


# -- hostile images -----------------------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A PNG of a few hundred bytes whose header declares ``width`` x ``height`` RGB pixels
    (7.5 GB decoded at the defaults)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + 3 * 1024), 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def jpeg_bomb(side: int = 60_000) -> bytes:
    """A 16 x 16 baseline JPEG whose frame header (SOF0) claims ``side`` x ``side`` pixels."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 150)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    at = data.index(b"\xff\xc0")  # marker, length (2), precision (1), height (2), width (2)
    struct.pack_into(">HH", data, at + 5, side, side)
    return bytes(data)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def test_a_decompression_bomb_is_413_without_being_decoded(api: Api, photo: Photo) -> None:
    c, h = api.client, api.headers("admin")
    pid = c.post("/v1/people", json={"name": "Bomb"}, headers=h).json()["id"]
    bombs = {"bomb.png": (png_bomb(), "image/png"), "bomb.jpg": (jpeg_bomb(), "image/jpeg")}
    assert all(len(data) < 200_000 for data, _ in bombs.values())
    before = _peak_mb()
    for name, (data, ctype) in bombs.items():
        for path, field in [
            ("/v1/detect", "image"),
            ("/v1/identify", "image"),
            ("/v1/lookalike", "image"),
            (f"/v1/people/{pid}/faces", "image"),
        ]:
            r = c.post(path, files={field: (name, data, ctype)}, headers=h)
            body = _problem(r, 413, "image-too-large")
            assert name in body["detail"] and "pixels" in body["detail"], body
        other = photo("obama", "obama2.jpg")
        files = {"image_a": ("ok.jpg", other, "image/jpeg"), "image_b": (name, data, ctype)}
        _problem(c.post("/v1/verify", files=files, headers=h), 413, "image-too-large")
    # 7.5 GB (PNG) or 10.8 GB (JPEG) decoded: the process never came near that
    assert _peak_mb() - before < 500
    assert c.get(f"/v1/people/{pid}", headers=h).json()["enrolled"] == []


def test_a_decompression_bomb_in_a_calibration_archive_is_a_failed_image(api: Api) -> None:
    entries = _entries(lfw_zip())
    first = next(iter(entries))
    entries[first] = png_bomb()  # one person's photo, renamed .jpg: read by content
    before = _peak_mb()
    r = _calibrate(api, zip_of(entries))
    assert r.status_code == 200, r.text
    assert r.json()["failed_images"] == 1 and r.json()["images"] == 51
    assert _peak_mb() - before < 500


def test_the_rate_limiter_forgets_refilled_buckets() -> None:
    """Buckets are keyed by claimed key ids, which anyone can invent: the table stays
    bounded by the ids seen within one refill time."""
    from faceprint.server.limits import RateLimiter

    rate = RateLimiter(rate=1e9, burst=2)  # every bucket refills at once
    for i in range(3 * RateLimiter.PRUNE_AT):
        rate.take(f"{i:012x}")
    assert len(rate._buckets) <= RateLimiter.PRUNE_AT
    slow = RateLimiter(rate=1e-9, burst=1)  # nothing refills: every bucket is kept
    for i in range(RateLimiter.PRUNE_AT + 5):
        slow.take(f"{i:012x}")
    assert len(slow._buckets) == RateLimiter.PRUNE_AT + 5
    with pytest.raises(Exception, match="limited"):
        slow.take(f"{0:012x}")


def test_a_non_image_with_an_image_type_is_400_and_other_types_415(api: Api, photo: Photo) -> None:
    c, h = api.client, api.headers("admin")
    pid = c.post("/v1/people", json={"name": "P"}, headers=h).json()["id"]
    jpeg = photo("obama", "obama.jpg")
    fakes = {
        "doc.jpg": b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n",
        "script.png": b"<script>alert(1)</script>",
        "cut.jpg": jpeg[:300],  # a real JPEG's first bytes
        "zip.jpg": zip_of({"a.txt": b"x"}),
        "empty.jpg": b"",
    }
    for name, data in fakes.items():
        for path in ("/v1/detect", "/v1/identify", f"/v1/people/{pid}/faces"):
            body = _problem(c.post(path, files=_img(data, name), headers=h), 400, "bad-image")
            assert name in body["detail"], body
    for ctype in ("text/plain", "application/pdf", "text/html"):
        _problem(c.post("/v1/detect", files=_img(jpeg, "a.jpg", ctype), headers=h), 415, "not-an-image")
    _problem(c.post("/v1/detect", json={"image": "aGVsbG8="}, headers=h), 415, "not-an-image")


def test_a_url_or_path_in_an_image_field_is_422_and_never_fetched(api: Api) -> None:
    c, h = api.client, api.headers("admin")
    pid = c.post("/v1/people", json={"name": "P"}, headers=h).json()["id"]
    for value in ("http://169.254.169.254/latest/meta-data/", "file:///etc/passwd", "/etc/passwd"):
        for path, field in [
            ("/v1/detect", "image"),
            ("/v1/identify", "image"),
            (f"/v1/people/{pid}/faces", "image"),
            ("/v1/verify", "image_a"),
            ("/v1/calibrate", "archive"),
        ]:
            r = c.post(path, files={field: (None, value)}, headers=h)  # a text part
            body = _problem(r, 422, "invalid-field")
            assert "never fetches URLs" in body["detail"], body
            assert ("a URL" if "://" in value else "text") in body["detail"]
            assert "root:" not in r.text
        r = c.post("/v1/identify", data={"image": value}, headers=h)  # a urlencoded form
        assert "never fetches URLs" in _problem(r, 415, "not-an-image")["detail"]


def test_too_many_images_is_413(api: Api) -> None:
    c, h = api.client, api.headers("admin")
    for n in (17, 40, 200):
        files = [("image", (f"{i}.jpg", b"\xff\xd8 not decoded", "image/jpeg")) for i in range(n)]
        body = _problem(c.post("/v1/detect", files=files, headers=h), 413, "too-many-images")
        assert "16" in body["detail"], body


# -- hostile ids and names ----------------------------------------------------------------
def test_a_path_as_person_or_face_id_is_404(api: Api, photo: Photo) -> None:
    c, h = api.client, api.headers("admin")
    pid = c.post("/v1/people", json={"name": "P"}, headers=h).json()["id"]
    bad_ids = [
        "../../etc/passwd",
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "..%5C..%5Cwindows%5Cwin.ini",
        "....//....//etc/passwd",
        "%00",
        "' OR '1'='1",
        pid.upper(),
        pid + "0",
    ]
    for bad in bad_ids:
        for method, path, kw in [
            ("GET", f"/v1/people/{bad}", {}),
            ("PATCH", f"/v1/people/{bad}", {"json": {"name": "Q"}}),
            ("DELETE", f"/v1/people/{bad}", {}),
            ("POST", f"/v1/people/{bad}/faces", {"files": _img(photo("obama", "obama.jpg"))}),
            ("DELETE", f"/v1/people/{pid}/faces/{bad}", {}),
            ("GET", f"/v1/reports/{bad}", {}),
        ]:
            r = c.request(method, path, headers=h, **kw)
            assert r.status_code in (404, 405), (method, path, r.text)
            assert "root:" not in r.text and "[fonts]" not in r.text
    assert c.get(f"/v1/people/{pid}", headers=h).json()["name"] == "P"


def test_sql_metacharacters_in_names_are_stored_verbatim(api: Api, photo: Photo) -> None:
    c, h = api.client, api.headers("admin")
    names = [
        "Robert'); DROP TABLE people;--",
        'x" OR 1=1 --',
        "100% _wild\\card_",
        "'; DELETE FROM faces; SELECT '",
        "Ünïcødé 名前 ‮evil",
    ]
    ids = {}
    for name in names:
        r = c.post("/v1/people", json={"name": name, "metadata": {"note": name}}, headers=h)
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
        got = c.get(f"/v1/people/{ids[name]}", headers=h).json()
        assert got["name"] == name and got["metadata"] == {"note": name}
    listed = c.get("/v1/people", headers=h).json()
    assert listed["total"] == len(names) and {p["name"] for p in listed["people"]} == set(names)
    for q, want in [("%", {names[2]}), ("_", {names[2]}), ("'", {names[0], names[3]}), ("DROP", {names[0]})]:
        got = {p["name"] for p in c.get("/v1/people", params={"q": q}, headers=h).json()["people"]}
        assert got == want, q
    # enrol, identify, rename: the name travels verbatim
    bobby = names[0]
    r = c.post(f"/v1/people/{ids[bobby]}/faces", files=_img(photo("obama", "obama.jpg")), headers=h)
    assert r.status_code == 201, r.text
    r = c.post("/v1/identify", files=_img(photo("obama", "obama2.jpg")), headers=h)
    assert r.json()["images"][0]["faces"][0]["label"] == bobby
    renamed = "Robert'); UPDATE people SET name='x';--"
    assert c.patch(f"/v1/people/{ids[bobby]}", json={"name": renamed}, headers=h).json()["name"] == renamed
    _problem(c.post("/v1/people", json={"name": renamed}, headers=h), 409, "name-taken")
    assert c.get("/v1/people", headers=h).json()["total"] == len(names)
    assert len(api.service.store.people()) == len(names)
    assert any(e["detail"].get("name") == renamed for e in api.service.db.audit_log())


# -- hostile calibration archives ---------------------------------------------------------
def _calibrate(api: Api, data: bytes) -> Any:
    files = {"archive": ("evil.zip", data, "application/zip")}
    return api.client.post("/v1/calibrate", files=files, headers=api.headers("admin"))


def _leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("faceprint-calibrate-*")}


def test_zip_bombs_and_lying_headers_are_422(make_api: Callable[..., AbstractContextManager[Api]]) -> None:
    before = _leftovers()
    good = lfw_zip()
    with make_api(limits=Limits(max_zip_files=60, max_zip_bytes=8 * MB)) as api:
        body = _problem(_calibrate(api, bomb("p1/bomb.jpg", 32 * MB)), 422, "bad-archive")
        assert "'p1/bomb.jpg'" in body["detail"] and "zip bomb" in body["detail"], body
        # a bomb hidden among real people refuses the whole archive
        with zipfile.ZipFile(io.BytesIO(bomb("zz/bomb.jpg", 32 * MB))) as zf:
            inner = zf.read("zz/bomb.jpg")
        mixed = zip_of({**{n: d for n, d in _entries(good).items()}, "zz/bomb.jpg": inner})
        assert "zip bomb" in _problem(_calibrate(api, mixed), 422, "bad-archive")["detail"]
        # a header declaring less than the entry holds: unpacking stops at the declared size
        liar = lying(zip_of({"p1/a.jpg": os.urandom(200_000)}), 1000)
        body = _problem(_calibrate(api, liar), 422, "bad-archive")
        assert "'p1/a.jpg'" in body["detail"], body
        # declared sizes over the limit, too many entries
        stored = zip_of({f"p{i}/a.jpg": os.urandom(3 * MB) for i in range(3)}, zipfile.ZIP_STORED)
        assert "limit is 8388608" in _problem(_calibrate(api, stored), 422, "bad-archive")["detail"]
        many = zip_of({f"p{i}/a.jpg": b"x" for i in range(61)})
        assert "61 entries; the limit is 60" in _problem(_calibrate(api, many), 422, "bad-archive")["detail"]
        # encrypted entries
        enc = bytearray(zip_of({"p1/a.jpg": b"x" * 100}))
        enc[enc.find(b"PK\x03\x04") + 6] |= 1
        enc[enc.find(b"PK\x01\x02") + 8] |= 1
        assert "encrypted" in _problem(_calibrate(api, bytes(enc)), 422, "bad-archive")["detail"]
        assert api.service.gallery.calibration() is None
        assert not any(e["action"] == "settings.calibrate" for e in api.service.db.audit_log())
    assert _leftovers() == before


def _entries(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../evil.jpg", "'..' part"),
        ("p1/../../evil.jpg", "'..' part"),
        ("..\\..\\evil.jpg", "'..' part"),
        ("p1/..", "'..' part"),
        ("/tmp/evil.jpg", "absolute path"),
        ("\\evil.jpg", "absolute path"),
        ("C:/evil.jpg", "drive letter"),
        ("c:evil.jpg", "drive letter"),
    ],
)
def test_path_traversal_in_a_calibration_zip_is_422(api: Api, name: str, why: str) -> None:
    """One bad entry refuses the whole archive, before anything is unpacked."""
    before = _leftovers()
    data = zip_of({**_entries(lfw_zip()), name: b"\xff\xd8 payload"})
    body = _problem(_calibrate(api, data), 422, "bad-archive")
    assert why in body["detail"] and "whole archive" in body["detail"], body
    if not name.startswith("/"):  # an absolute name is shown scrubbed, as any absolute path
        assert repr(name) in body["detail"], body
    assert not (Path(tempfile.gettempdir()) / "evil.jpg").exists()
    assert api.service.gallery.calibration() is None
    assert _leftovers() == before


def test_a_symlink_in_a_calibration_zip_is_422(api: Api) -> None:
    data = with_symlink("p1/link.jpg", "/etc/passwd", _entries(lfw_zip()))
    body = _problem(_calibrate(api, data), 422, "bad-archive")
    assert "'p1/link.jpg'" in body["detail"] and "symbolic link" in body["detail"], body
    assert "root:" not in body["detail"]


# -- load: in flight and timeouts ---------------------------------------------------------
def test_beyond_max_in_flight_is_503_with_retry_after(
    make_api: Callable[..., AbstractContextManager[Api]], photo: Photo
) -> None:
    """An identify waits for the models (held by the test): it is in flight, and the next
    request is refused at once. (Should the second request win the race to the only
    place, the identify is refused instead and sent again.)"""
    with make_api(limits=Limits(max_in_flight=1)) as api:
        c = api.client
        image = _img(photo("obama", "obama.jpg"))
        answers: list[Any] = []
        threads: list[threading.Thread] = []

        def slow() -> None:
            t = threading.Thread(
                target=lambda: answers.append(
                    c.post("/v1/identify", files=image, headers=api.headers("recognise"))
                )
            )
            t.start()
            threads.append(t)

        r: Any = None
        lock: threading.Lock = api.service.model_lock
        with lock:  # the models are busy: an identify stays in flight
            slow()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                time.sleep(0.1)
                if not threads[-1].is_alive():  # it lost the race
                    slow()
                    continue
                r = c.get("/v1/people", headers=api.headers("read"))
                if r.status_code == 503:
                    break
            body = _problem(r, 503, "overloaded")
            assert int(r.headers["retry-after"]) >= 1 and "limit is 1" in body["detail"]
            assert c.get("/v1/health").status_code == 200  # probes are never refused
        for t in threads:
            t.join(30)
        assert [a.status_code for a in answers][-1] == 200, answers
        assert {a.status_code for a in answers} <= {200, 503}
        assert c.get("/v1/people", headers=api.headers("read")).status_code == 200


def test_a_request_over_the_timeout_is_504(
    make_api: Callable[..., AbstractContextManager[Api]], photo: Photo
) -> None:
    with make_api(limits=Limits(timeout_s=1.0)) as api:
        lock: threading.Lock = api.service.model_lock
        with lock:
            t0 = time.monotonic()
            r = api.client.post(
                "/v1/identify", files=_img(photo("obama", "obama.jpg")), headers=api.headers("recognise")
            )
            assert time.monotonic() - t0 < 5
        body = _problem(r, 504, "timeout")
        assert "within 1 s" in body["detail"]
        time.sleep(0.3)  # the abandoned thread gets the models, answers nobody, and is done
        with lock:
            pass
        r = api.client.post(
            "/v1/identify", files=_img(photo("obama", "obama.jpg")), headers=api.headers("recognise")
        )
        assert r.status_code == 200, r.text
