"""A real ``faceprint serve`` process for the integration and fault tests.

The tests in tests/server/test_people_api.py and friends drive the app in-process through
FastAPI's test client; these drive what a user runs: the console command, uvicorn, a
socket on 127.0.0.1, real worker processes that can be killed. :class:`RealServer` holds
one service's files (a temporary ``FACEPRINT_HOME``, a gallery, a service database and an
admin key made by ``faceprint keys create``) and starts, stops and kills its process;
its stderr goes to a file the tests read (the gallery's test hook logs there).

Galleries: ``"sqlite"`` (a file in the test's tmp dir) or ``"postgres"`` (a fresh database
on the throwaway PostgreSQL of the gallery tests, tests/integration/gallery/pg.py; skipped,
saying why, where none can run). The subprocess imports the same faceprint as the test
process (its ``src`` first on ``PYTHONPATH``), so a worktree tests its own code.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx

import faceprint

#: Seconds a server may take to answer ``/v1/ready`` (models load in its background).
READY_TIMEOUT_S = 120.0
SRC = Path(faceprint.__file__).resolve().parents[1]
CLI = (sys.executable, "-m", "faceprint.cli.main")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's pick; free again once closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a faceprint subprocess: this test's settings (offline, models
    from ../shared), its own ``FACEPRINT_HOME``, this checkout's code, no test hook."""
    env = {k: v for k, v in os.environ.items() if k != "FACEPRINT_TEST_SLEEP_BEFORE_COMMIT"}
    env["FACEPRINT_HOME"] = str(home)
    env["FACEPRINT_OFFLINE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_cli(
    *args: str, home: Path, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``faceprint <args>`` to completion, output captured."""
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=cli_env(home, env), timeout=timeout, check=False
    )


def gallery_location(kind: str, root: Path) -> str:
    """A fresh gallery of ``kind`` (``sqlite`` or ``postgres``; see the module doc)."""
    if kind == "sqlite":
        return str(root / "gallery.sqlite")
    if kind == "postgres":
        from tests.integration.gallery.pg import shared_server

        return shared_server().create_database("srv")
    raise AssertionError(f"unknown gallery kind {kind}")


class RealServer:
    """One service's files under ``root`` and, while started, its ``faceprint serve``
    process on ``127.0.0.1:port`` (module doc). ``key`` is an admin key."""

    def __init__(self, root: Path, gallery: str, threads: int = 1) -> None:
        self.root = root
        self.home = root / "home"
        self.gallery = gallery
        self.service_db = root / "service.sqlite"
        self.threads = threads
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "serve-0.log"
        self._starts = 0
        made = run_cli("keys", "create", "--role", "admin", "--name", "tests", "--service-db",
                       str(self.service_db), home=self.home)  # fmt: skip
        assert made.returncode == 0, made.stderr
        self.key = made.stdout.strip()
        assert re.fullmatch(r"fpk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", self.key), made.stdout

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}

    def command(self, *extra: str) -> list[str]:
        return [
            *CLI, "serve", "--port", str(self.port), "--gallery", self.gallery,
            "--service-db", str(self.service_db), "--threads", str(self.threads), *extra,
        ]  # fmt: skip

    def start(self, *extra: str, env: Mapping[str, str] | None = None, wait: bool = True) -> None:
        """Start ``faceprint serve`` (``extra`` options, ``env`` added to its environment);
        with ``wait``, return once ``/v1/ready`` answers 200. Each start logs to its own
        file (:attr:`log`)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.log = self.root / f"serve-{self._starts}.log"
        self._starts += 1
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                self.command(*extra),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=cli_env(self.home, env),
                start_new_session=True,  # its own process group: a kill reaches every worker
            )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
        """``/v1/ready``'s answer once it is 200; fails with the server's log if the process
        exits or the time runs out."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"faceprint serve exited {self.proc.returncode}: {self.stderr()}")
            try:
                r = httpx.get(f"{self.url}/v1/ready", timeout=5)
                if r.status_code == 200:
                    out: dict[str, Any] = r.json()
                    return out
                last = r.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise AssertionError(f"not ready after {timeout:g} s ({last}): {self.stderr()}")

    def stderr(self) -> str:
        """What the current (or last) process wrote to stderr so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for_log(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        """The first match of ``pattern`` in the process's stderr, waiting for it."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = rx.search(self.stderr())
            if m:
                return m
            assert self.proc is not None
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"{pattern!r} never appeared in the server's log: {self.stderr()}")

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the server's process group (uvicorn's supervisor and its workers)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def kill(self) -> int:
        """SIGKILL every process of the server at once; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.signal(signal.SIGKILL)
        return self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30) -> int:
        """Ctrl-C (SIGINT to the main process, as a terminal sends it); SIGKILL after
        ``timeout``. Returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"faceprint serve ignored SIGINT for {timeout} s: {self.stderr()}"
                ) from None
        return self.proc.returncode

    def close(self) -> None:
        """Kill whatever of the server still runs (its whole process group)."""
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        if self.proc is not None:  # workers of a supervisor that died first
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def client(self, timeout: float = 60) -> httpx.Client:
        """An httpx client for this server with the admin key."""
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout)


@contextmanager
def real_server(
    root: Path, gallery: str, *extra: str, env: Mapping[str, str] | None = None
) -> Iterator[RealServer]:
    """A started :class:`RealServer` (``extra`` options), killed on exit."""
    server = RealServer(root, gallery)
    try:
        server.start(*extra, env=env)
        yield server
    finally:
        server.close()


def enrol(c: httpx.Client, person_id: str, photos: Sequence[tuple[str, bytes]]) -> httpx.Response:
    """``POST /v1/people/{id}/faces`` with ``photos`` (file name, JPEG bytes)."""
    return c.post(
        f"/v1/people/{person_id}/faces",
        files=[("image", (name, data, "image/jpeg")) for name, data in photos],
    )


def faces_of(c: httpx.Client, person_id: str) -> list[str]:
    """The ids of ``person_id``'s enrolled faces."""
    r = c.get(f"/v1/people/{person_id}")
    assert r.status_code == 200, r.text
    return [f["face_id"] for f in r.json()["enrolled"]]


def identify(c: httpx.Client, photo: bytes) -> list[str]:
    """The labels ``POST /v1/identify`` gives the faces of one photo."""
    r = c.post("/v1/identify", files={"image": ("probe.jpg", photo, "image/jpeg")})
    assert r.status_code == 200, r.text
    return [f["label"] for f in r.json()["images"][0]["faces"]]
