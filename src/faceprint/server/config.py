"""What one ``faceprint serve`` process is configured with: the gallery, the service
database, the limits that keep it alive under load or abuse, and the stream allow-list.

Every limit is here with its default, so the operator, the tests and the docs see one
list. The whole configuration travels to uvicorn's worker processes as JSON in one
environment variable (:data:`CONFIG_ENV`), since ``--workers N`` starts the app by import
string in fresh processes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError

#: The environment variable that hands a :class:`ServiceConfig` to uvicorn's workers.
CONFIG_ENV = "FACEPRINT_SERVICE_CONFIG"

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

#: The most model copies ``parallel`` picks by itself (each costs ~60 MB).
MAX_PARALLEL = 4


@dataclass(frozen=True)
class Limits:
    """Per-request and per-key limits; each one answers with a problem document
    (:mod:`.problems`) instead of queueing or reading without bound.

    ``max_body_bytes``: a request body larger than this is refused with 413, from its
    ``Content-Length`` before any byte is read, or as soon as a chunked body passes it.
    ``max_pixels``: decoded image size (``None``: ``FACEPRINT_MAX_PIXELS``, 64 MP).
    ``rate_per_second`` and ``burst``: a token bucket per API key (429 with
    ``Retry-After`` when empty). ``max_in_flight``: requests being served at once by this
    process; one more is answered 503 with ``Retry-After`` at once. ``timeout_s``: the
    longest one request may wait for its answer (504). ``max_zip_bytes`` and
    ``max_zip_files``: what a calibration zip may unpack to (``max_zip_bytes`` also caps
    the body of ``POST /v1/calibrate``, whose archive is not held to
    ``max_body_bytes``). ``calibrate_timeout_s``: the longest a calibration may take
    (it embeds every image of the archive: minutes for thousands of images, during
    which recognition requests wait for the models)."""

    max_body_bytes: int = 10 * 1024 * 1024
    max_images: int = 16
    max_faces: int = 64
    max_pixels: int | None = None
    rate_per_second: float = 20.0
    burst: int = 40
    max_in_flight: int = 32
    timeout_s: float = 30.0
    max_zip_bytes: int = 512 * 1024 * 1024
    max_zip_files: int = 20_000
    calibrate_timeout_s: float = 1800.0

    def check(self) -> Limits:
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None and v <= 0:
                raise InvalidArgumentError(f"limit {f.name} must be positive, got {v}")
        return self


@dataclass(frozen=True)
class ServiceConfig:
    """One service: its gallery (an SQLite path or a ``postgresql://`` URL; ``None``: the
    default gallery), its database of keys and audit (``None``: ``Settings.service_db``),
    the detector and embedder, ``streams`` (the sources an admin may start: camera
    indexes, files or URLs, matched exactly), ``reports`` (a folder of ``faceprint eval``
    HTML reports the page lists) and ``limits``. The service stores no face image: only
    vectors, boxes and the photos' sha256.

    ``parallel``: identify requests served at once by this process, each batch on its own
    copy of the models (:mod:`.batching`; ``None``: one per core, at most
    :data:`MAX_PARALLEL`). Detection dominates a request and OpenCV's detector scales
    poorly across threads inside one image, so two copies on two cores serve about 1.6x
    the images per second of one copy given both cores. ``threads``: onnxruntime threads
    per copy (``None``: the cores shared out among the copies)."""

    def resolved_parallel(self) -> int:
        import os

        return self.parallel or max(1, min(os.cpu_count() or 1, MAX_PARALLEL))

    def resolved_threads(self) -> int | None:
        """Threads per model copy; ``None`` (one per core, the runtimes' default) when one
        copy serves."""
        import os

        if self.threads is not None:
            return self.threads
        n = self.resolved_parallel()
        return None if n == 1 else max(1, (os.cpu_count() or 1) // n)

    gallery: str | None = None
    service_db: str | None = None
    detector: str | None = None
    embedder: str | None = None
    threads: int | None = None
    parallel: int | None = None
    streams: tuple[str, ...] = ()
    reports: str | None = None
    limits: Limits = field(default_factory=Limits)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> ServiceConfig:
        data: dict[str, Any] = json.loads(raw)
        limits = Limits(**data.pop("limits", {}))
        data["streams"] = tuple(data.get("streams", ()))
        return cls(limits=limits, **data)

    @classmethod
    def from_env(cls) -> ServiceConfig:
        """The configuration ``faceprint serve`` left for this worker process (default
        configuration when none)."""
        from ..config import get_settings

        raw = get_settings().service_config
        return cls() if not raw else cls.from_json(raw)

    @property
    def reports_dir(self) -> Path | None:
        return None if self.reports is None else Path(self.reports)
