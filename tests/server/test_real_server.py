"""``faceprint serve`` as a user runs it: a real process on 127.0.0.1, driven over HTTP with
httpx, on an SQLite gallery and on the throwaway PostgreSQL of the gallery tests.

The key comes from ``faceprint keys create`` (its stdout); the process has its own
``FACEPRINT_HOME`` and service database in the test's tmp dir (tests/server/real.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.server.real import RealServer, enrol, faces_of, gallery_location, identify, real_server

Photo = Callable[[str, str], bytes]


@pytest.fixture(params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RealServer]:
    """A running ``faceprint serve`` on a fresh gallery of each kind."""
    with real_server(tmp_path, gallery_location(request.param, tmp_path)) as s:
        yield s


def test_ready_enrol_identify_delete(server: RealServer, photo: Photo) -> None:
    assert httpx.get(f"{server.url}/v1/people").status_code == 401  # no key, no gallery
    with server.client() as c:
        ready = c.get("/v1/ready").json()
        assert ready["status"] == "ready" and ready["people"] == 0, ready
        assert c.get("/v1/whoami").json()["name"] == "tests"

        r = c.post("/v1/people", json={"name": "Barack Obama", "metadata": {"desk": 7}})
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        r = enrol(c, pid, [("obama.jpg", photo("obama", "obama.jpg"))])
        assert r.status_code == 201, r.text
        assert [a["image"] for a in r.json()["added"]] == ["obama.jpg"]
        assert len(faces_of(c, pid)) == 1
        assert c.get("/v1/ready").json()["people"] == 1

        probe = photo("obama", "obama2.jpg")
        assert identify(c, probe) == ["Barack Obama"]
        assert identify(c, photo("biden", "biden.jpg")) == ["unknown"]

        r = c.delete(f"/v1/people/{pid}")
        assert r.status_code == 200 and r.json()["removed_faces"] == 1, r.text
        assert c.get(f"/v1/people/{pid}").status_code == 404
        assert identify(c, probe) == ["unknown"]
        assert c.get("/v1/people").json()["total"] == 0
    assert server.stop() in (0, 130)
    assert "Traceback" not in server.stderr()


def _stat(pid: int) -> list[str]:
    """Fields of ``/proc/<pid>/stat`` after the command name: state, ppid, ... ([] when gone)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def spawned_children(pid: int) -> list[int]:
    """The multiprocessing-spawned children of ``pid`` (uvicorn's workers; not its
    resource tracker), from /proc."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and _stat(int(d.name))[1:2] == [str(pid)]:
            try:
                if b"spawn_main" in (d / "cmdline").read_bytes():
                    found.append(int(d.name))
            except OSError:
                continue
    return sorted(found)


def alive(pid: int) -> bool:
    return _stat(pid)[:1] not in ([], ["Z"])


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker processes from /proc (Linux)")
def test_two_workers_both_answer_and_share_the_gallery(tmp_path: Path, photo: Photo) -> None:
    """``--workers 2``: two processes serve the same port and the same gallery.

    Which process answers is invisible to a client, except through what each process keeps
    for itself: its rate limiter. With a burst of one request per key per process and
    almost no refill, a key gets exactly as many answers as there are processes."""
    root = tmp_path
    with real_server(root, str(root / "g.sqlite"), "--workers", "2", "--rate", "0.001", "--burst", "1") as s:
        assert s.proc is not None
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while time.monotonic() < deadline and len(workers) < 2:
            workers = spawned_children(s.proc.pid)
            time.sleep(0.2)
        assert len(workers) == 2, workers

        answered, limited = 0, 0
        while time.monotonic() < deadline and answered < 2:
            # a new connection each time: the kernel hands it to whichever worker accepts first
            r = httpx.get(f"{s.url}/v1/whoami", headers=s.headers, timeout=30)
            if r.status_code == 200:
                answered += 1
            else:
                assert r.status_code == 429 and r.headers["retry-after"], r.text
                limited += 1
                time.sleep(0.05)
        assert answered == 2, f"only {answered} process(es) answered ({limited} rate-limited)"
        # neither process answers a third time: there are two, not more
        for _ in range(10):
            assert httpx.get(f"{s.url}/v1/whoami", headers=s.headers, timeout=30).status_code == 429
        assert s.stop() in (0, 130)
        assert "Traceback" not in s.stderr()
        assert not [p for p in workers if alive(p)], "workers left running"

        # the same gallery, default limits: what one process writes, the other one sees
        s.start("--workers", "2")
        probe = photo("obama", "obama2.jpg")

        def labels_from_fresh_connections(n: int) -> set[str]:
            seen: set[str] = set()
            for _ in range(n):
                with s.client() as c:
                    seen.update(identify_when_loaded(c, probe))
            return seen

        assert labels_from_fresh_connections(8) == {"unknown"}  # both processes searched: empty
        with s.client() as c:
            pid = c.post("/v1/people", json={"name": "Barack Obama"}).json()["id"]
            assert enrol(c, pid, [("o.jpg", photo("obama", "obama.jpg"))]).status_code == 201
        assert labels_from_fresh_connections(12) == {"Barack Obama"}
        with s.client() as c:
            assert c.delete(f"/v1/people/{pid}").status_code == 200
        assert labels_from_fresh_connections(12) == {"unknown"}
        assert s.stop() in (0, 130)
        assert "Traceback" not in s.stderr()


def identify_when_loaded(c: httpx.Client, photo: bytes, timeout: float = 60) -> list[str]:
    """:func:`identify`, retrying while a worker still loads its models (503 with Retry-After)."""
    deadline = time.monotonic() + timeout
    while True:
        r = c.post("/v1/identify", files={"image": ("probe.jpg", photo, "image/jpeg")})
        if r.status_code != 503 or "loading" not in r.text or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 200, r.text
    return [f["label"] for f in r.json()["images"][0]["faces"]]
