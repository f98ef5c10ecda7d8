"""Fixtures for the page's tests in a real browser: a real ``faceprint serve`` process on
127.0.0.1 (a fresh SQLite gallery, service database and ``FACEPRINT_HOME`` in the test's
tmp dir, an admin key made with ``faceprint keys create``), and Debian's Chromium driven
by Playwright (its own browser download cannot work here: ``executable_path`` points at
the system one; ``.ci/run`` installs it).

Every page a test opens records console errors and uncaught exceptions, and the test
fails on any it did not expect. Screenshots go to ``<tmp_path>/screens``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import GALLERY, SHARED, need

pytest.importorskip("fastapi", reason="the [server] extra is not installed")
pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

KNN = GALLERY / "face_recognition_knn" / "train"
VIDEO = SHARED / "data" / "video"
CLI = [sys.executable, "-m", "faceprint.cli.main"]


def chromium_path() -> str:
    """Debian's Chromium (``FACEPRINT_CHROMIUM`` overrides), or skip saying how to get it
    (fail under ``FACEPRINT_REQUIRE_BROWSER``, which ``.ci/run`` sets after installing it)."""
    found = os.environ.get("FACEPRINT_CHROMIUM") or shutil.which("chromium")
    if not found or not Path(found).exists():
        why = "no chromium here: apt-get install chromium (the page's tests drive the system browser)"
        if os.environ.get("FACEPRINT_REQUIRE_BROWSER", "").strip().lower() in {"1", "true", "yes", "on"}:
            pytest.fail(f"{why} (FACEPRINT_REQUIRE_BROWSER is set)", pytrace=False)
        pytest.skip(why)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(root: Path) -> dict[str, str]:
    """The server's environment: this checkout's code, a home of its own, no network."""
    import faceprint

    env = dict(os.environ)
    src = str(Path(faceprint.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    env["FACEPRINT_HOME"] = str(root / "home")
    env["FACEPRINT_OFFLINE"] = "1"
    return env


@dataclass
class Server:
    """A running ``faceprint serve``: ``url`` (ending in ``/``), an admin ``key``, and
    ``call`` for the API (JSON in and out; multipart with ``files``)."""

    url: str
    key: str
    root: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        files: list[Path] | None = None,
        key: str | None = None,
    ) -> tuple[int, Any]:
        headers = {"X-API-Key": key or self.key, "Accept": "application/json"}
        data: bytes | None = None
        if files is not None:
            boundary = "faceprint-test-boundary"
            parts = []
            for f in files:
                parts.append(
                    f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{f.name}"\r\n'
                    "Content-Type: application/octet-stream\r\n\r\n".encode()
                    + f.read_bytes()
                    + b"\r\n"
                )
            data = b"".join(parts) + f"--{boundary}--\r\n".encode()
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path.lstrip("/"), data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as res:
                return res.status, json.loads(res.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def enrol(self, name: str, *photos: Path) -> str:
        """Create ``name`` and enrol ``photos`` through the API; answers the person's id."""
        status, person = self.call("POST", "/v1/people", {"name": name})
        assert status == 201, person
        status, report = self.call("POST", f"/v1/people/{person['id']}/faces", files=list(photos))
        assert status == 201, report
        return str(person["id"])

    def create_key(self, role: str, name: str) -> str:
        """A new key of ``role``, made by ``faceprint keys create`` in the server's database."""
        return create_key(self.root, role, name)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def create_key(root: Path, role: str, name: str) -> str:
    """``faceprint keys create`` in the service database under ``root``; answers the key."""
    args = ["keys", "create", "--role", role, "--name", name, "--service-db", str(root / "service.sqlite")]
    made = subprocess.run([*CLI, *args], env=_env(root), capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def start_server(root: Path, *extra: str) -> Server:
    """Start ``faceprint serve`` on a free loopback port and wait for ``/v1/ready``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "reports").mkdir(exist_ok=True)
    env = _env(root)
    service_db = root / "service.sqlite"
    key = create_key(root, "admin", "browser-test")
    log = root / "serve.log"
    for _ in range(3):  # another process may take the free port first
        port = _free_port()
        with log.open("wb") as out:
            serve = ["serve", "--port", str(port), "--gallery", str(root / "gallery.sqlite")]
            serve += ["--service-db", str(service_db), "--reports", str(root / "reports"), *extra]
            proc = subprocess.Popen(
                [*CLI, *serve],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = Server(f"http://127.0.0.1:{port}/", key, root, proc, log)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(server.url + "v1/ready", timeout=2) as res:
                    if res.status == 200:
                        return server
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        stop_server(server)
        if "address already in use" not in server.log_tail():
            break
    pytest.fail(f"faceprint serve did not become ready:\n{server.log_tail()}")


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=15)


@pytest.fixture(autouse=True)
def _chromium() -> str:
    """Skip (or fail) before starting anything when there is no browser to drive."""
    return chromium_path()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``serve(*args)``: a fresh ``faceprint serve`` with extra command-line ``args``,
    stopped after the test."""
    need(KNN)
    started: list[Server] = []

    def start(*args: str) -> Server:
        srv = start_server(tmp_path / f"service{len(started)}", *args)
        started.append(srv)
        return srv

    try:
        yield start
    finally:
        for srv in started:
            stop_server(srv)


@pytest.fixture
def server(serve: Callable[..., Server]) -> Server:
    """A fresh ``faceprint serve`` for one test."""
    return serve()


@dataclass
class Console:
    """What a page said that a user never should see: console errors and uncaught
    exceptions. ``expect(text)`` allows one error containing ``text`` (e.g. the 401 of a
    deliberately wrong key)."""

    errors: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)

    def expect(self, text: str) -> None:
        self.expected.append(text)

    def unexpected(self) -> list[str]:
        left = list(self.expected)
        out = []
        for e in self.errors:
            hit = next((x for x in left if x in e), None)
            if hit is None:
                out.append(e)
            else:
                left.remove(hit)
        return out


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture
def launch(playwright_driver: Any) -> Iterator[Callable[..., Any]]:
    """``launch(*args)``: a Chromium started with extra command-line ``args``; closed after the test."""
    path = chromium_path()
    browsers: list[Any] = []

    def start(*args: str) -> Any:
        browser = playwright_driver.chromium.launch(executable_path=path, args=list(args))
        browsers.append(browser)
        return browser

    yield start
    for b in browsers:
        b.close()


@dataclass
class Pages:
    """Opens pages that record their console; ``shot(page, name)`` saves a full-page PNG
    under the test's tmp dir."""

    launch: Callable[..., Any]
    screens: Path
    consoles: list[Console] = field(default_factory=list)

    def open(self, browser: Any = None, *, width: int = 1100, height: int = 900) -> tuple[Any, Console]:
        browser = browser or self.launch()
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.set_default_timeout(30_000)
        console = Console()
        page.on(
            "console",
            lambda m: console.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: console.errors.append(f"pageerror: {e}"))
        self.consoles.append(console)
        return page, console

    def shot(self, page: Any, name: str) -> Path:
        self.screens.mkdir(parents=True, exist_ok=True)
        path = self.screens / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def pages(launch: Callable[..., Any], tmp_path: Path) -> Iterator[Pages]:
    """Pages for the test; it fails if any page logged a console error it did not expect."""
    p = Pages(launch, tmp_path / "screens")
    yield p
    bad = [e for c in p.consoles for e in c.unexpected()]
    assert not bad, "the page logged errors:\n" + "\n".join(bad)


def sign_in(page: Any, server: Server) -> None:
    """Open the page and sign in with the server's admin key, through the form."""
    page.goto(server.url)
    page.get_by_label("API key").fill(server.key)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#who-name").wait_for()
    assert page.locator("#who-name").inner_text() == "browser-test"


def go(page: Any, section: str) -> None:
    """Open a section of the page through its tab."""
    page.get_by_role("navigation", name="Sections").get_by_role("link", name=section).click()
    page.locator(f"nav a[aria-current='page']:text-is('{section}')").wait_for()


def wait(page: Any, locator: Any, timeout: float = 30_000, state: str = "visible") -> Any:
    """``locator.wait_for``, failing with what the page's message area says (the service's
    problem documents) rather than a bare timeout."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        locator.wait_for(timeout=timeout, state=state)
    except PlaywrightTimeout:
        said = page.locator("#messages").inner_text().strip() or "(no message on the page)"
        pytest.fail(f"waited {timeout / 1000:.0f} s for {locator}; the page says:\n{said}", pytrace=False)
    return locator
