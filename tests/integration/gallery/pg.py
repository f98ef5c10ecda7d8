"""Throwaway PostgreSQL servers for tests (:mod:`.pgcluster`: initdb/pg_ctl from the binaries
the ``pgserver`` wheel ships, into a temporary directory, removed afterwards).

A test that needs a server is skipped, saying why, when none can run here (pgserver or psycopg
not installed, no unprivileged account under root).

Sharing: :func:`shared_server` starts one server per test process, on first use, and stops it
at exit; any fixture or branch can call it (``from gallery.pg import shared_server``, or
``from .pg import ...`` inside the ``gallery`` test package), so the contract suite's
``store_factory`` and tests/integration/test_postgres_store.py use the same server. The fixtures
:data:`pg_server` (that server) and :data:`pg_url` (a fresh database on it) register wherever
they are imported into a test module or conftest.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from .pgcluster import PgUnavailable, ThrowawayServer

__all__ = ["ThrowawayServer", "pg_server", "pg_url", "shared_server", "throwaway_server"]


def _new_server() -> ThrowawayServer:
    """A new (stopped) server, or skip the calling test saying why none can run here."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'faceprint[postgres]')")
    try:
        return ThrowawayServer()
    except PgUnavailable as exc:
        pytest.skip(str(exc))


@contextmanager
def throwaway_server() -> Iterator[ThrowawayServer]:
    """A started :class:`ThrowawayServer`, stopped and deleted on exit (skips without pgserver)."""
    with _new_server() as server:
        yield server


_SHARED: list[ThrowawayServer] = []


def shared_server() -> ThrowawayServer:
    """The process's one shared server (started on first use, stopped and deleted at exit);
    skips the calling test when pgserver or psycopg is missing."""
    if not _SHARED:
        server = _new_server()
        atexit.register(server.close)
        server.start()
        _SHARED.append(server)
    server = _SHARED[0]
    if not server.running():  # a test stopped it
        server.start()
    return server


@pytest.fixture(scope="session")
def pg_server() -> ThrowawayServer:
    """The shared PostgreSQL server (tests that must stop one start their own instead)."""
    return shared_server()


@pytest.fixture
def pg_url(pg_server: ThrowawayServer) -> str:
    """URL of a fresh, empty database on the shared server: one gallery per test."""
    return shared_server().create_database()
