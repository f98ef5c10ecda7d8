"""Throwaway PostgreSQL clusters run from the binaries the ``pgserver`` wheel ships, without pytest.

``pgserver`` (PyPI) bundles PostgreSQL 16 with pgvector, so neither CI nor a benchmark needs a
system package or a running service: :class:`ThrowawayServer` runs ``initdb`` into a temporary
directory, starts ``postgres`` listening on 127.0.0.1 (a free port) and on a unix socket in that
directory, and removes everything on :meth:`~ThrowawayServer.close`. Authentication is
``trust``; the server is reachable from this machine only.

We drive ``initdb``/``pg_ctl`` ourselves rather than through ``pgserver.get_server`` because the
tests must stop and restart the server mid-use, and because ``pgserver`` adds a system user with
``useradd`` when run as root. PostgreSQL refuses to run as root, so under root the server runs as
an existing unprivileged account (``postgres`` when it exists, else ``nobody``).

This module has no pytest dependency so that ``bench/gallery_scale.py`` can use it too; the test
fixtures in :mod:`.pg` turn :class:`PgUnavailable` into a skip.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

START_TIMEOUT_S = 60


class PgUnavailable(RuntimeError):
    """No PostgreSQL can run here (pgserver missing or without binaries, no account to run as)."""


def pg_bin_dir() -> Path:
    """The ``bin`` folder of pgserver's PostgreSQL, or :class:`PgUnavailable` saying how to get it.

    Found without importing ``pgserver``, whose import creates runtime folders and lock files.
    """
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise PgUnavailable("pgserver is not installed (pip install pgserver): no PostgreSQL to run")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").exists():
        raise PgUnavailable(f"pgserver is installed but ships no PostgreSQL binaries at {bin_dir}")
    return bin_dir


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> pwd.struct_passwd | None:
    """The account the server runs as when we are root (PostgreSQL refuses root), else None."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PgUnavailable(
        "running as root and neither a 'postgres' nor a 'nobody' account exists to run PostgreSQL"
    )


class ThrowawayServer:
    """A PostgreSQL cluster in a temporary directory, superuser ``postgres``, trust auth.

    ``settings`` are extra server parameters (``{"shared_buffers": "3GB"}``), passed as
    ``-c name=value`` at every start.
    """

    def __init__(self, settings: Mapping[str, str] | None = None) -> None:
        self.bin_dir = pg_bin_dir()
        self.user = _run_as()
        self.settings = dict(settings or {})
        self.root = Path(tempfile.mkdtemp(prefix="fp-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        try:
            if self.user is not None:
                os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
            self._pg(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            )
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def _pg(self, exe: str, *args: str) -> None:
        """Run one PostgreSQL program (as the unprivileged account under root)."""
        cmd = [str(self.bin_dir / exe), *args]
        kwargs = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        proc = subprocess.run(  # type: ignore[call-overload]
            cmd, capture_output=True, text=True, timeout=START_TIMEOUT_S + 30, cwd=self.root, **kwargs
        )
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{exe} failed ({proc.returncode}): {proc.stderr.strip()}\n{log}")

    def start(self) -> None:
        """Start (or restart) the server on the same port; returns once it accepts connections."""
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c max_connections=50"
        opts += "".join(f" -c {name}={value}" for name, value in self.settings.items())
        self._pg(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "-o",
            opts,
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` ends sessions and shuts down cleanly, ``immediate`` crashes it."""
        self._pg("pg_ctl", "-D", str(self.data), "-w", "-m", mode, "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database (a fresh gallery per test); returns its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def version(self) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def close(self) -> None:
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ThrowawayServer:
        """Started on entry, stopped and deleted on exit."""
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
