"""Fixtures for the service's tests: a real service (real models, a real SQLite gallery in
a temporary directory, real hashed keys) driven through FastAPI's test client.

One recognizer is loaded per test session and shared by every service (loading costs
seconds; the service under test is still the real one). Photos come from
``../shared/data/gallery-small`` (skipped, or failed under ``FACEPRINT_REQUIRE_SHARED``,
when missing).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import GALLERY, need

pytest.importorskip("fastapi", reason="the [server] extra is not installed")

KNN = GALLERY / "face_recognition_knn"
ROLES = ("read", "recognise", "enrol", "admin")


@dataclass
class Api:
    """A running service: ``client`` (FastAPI's test client), ``service``, and one key of
    each role (``headers(role)`` gives the ``X-API-Key`` header)."""

    client: Any
    service: Any
    keys: dict[str, str] = field(default_factory=dict)

    def headers(self, role: str = "admin") -> dict[str, str]:
        return {"X-API-Key": self.keys[role]}


@pytest.fixture(scope="session")
def shared_recognizer() -> Any:
    from faceprint.recognizer import Recognizer

    return Recognizer()


@contextmanager
def running_api(root: Path, recognizer: Any | None = None, **config: Any) -> Iterator[Api]:
    """A service on a fresh gallery and service database under ``root``; ``config`` goes to
    :class:`~faceprint.server.config.ServiceConfig` (``limits=Limits(...)`` included)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from fastapi.testclient import TestClient

    from faceprint.server.app import create_app
    from faceprint.server.config import ServiceConfig
    from faceprint.server.engine import Service

    config.setdefault("gallery", str(root / "gallery.sqlite"))
    config.setdefault("service_db", str(root / "service.sqlite"))
    svc = Service(ServiceConfig(**config))
    keys = {role: svc.keys.create(role, f"test-{role}")[0] for role in ROLES}
    if recognizer is not None:
        svc.attach(recognizer)
    app = create_app(service=svc)
    with TestClient(app, raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 120
        while not svc.loaded.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield Api(client, svc, keys)
    svc.close()


@pytest.fixture
def api(tmp_path: Path, shared_recognizer: Any) -> Iterator[Api]:
    """A fresh service per test (fresh gallery, fresh keys)."""
    with running_api(tmp_path, shared_recognizer) as a:
        yield a


@pytest.fixture
def photo() -> Callable[[str, str], bytes]:
    """``photo(person, file)``: the bytes of ``gallery-small/face_recognition_knn/train/<person>/<file>``
    (persons: obama, biden, alex_lacamoire, rose_leslie, kit_harington)."""

    def read(person: str, name: str) -> bytes:
        return need(KNN / "train" / person / name).read_bytes()

    return read
