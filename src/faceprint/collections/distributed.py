"""Indexing on a Ray cluster (extra ``[distributed]``): detection and embedding as Ray Data
``map_batches`` over a pool of actors, each holding one loaded :class:`Recognizer`.

Why actors: loading the detector and embedder costs about a second and 100 MB, so each
worker loads them once (``__init__``), not per photo. Why one dataset row per batch of
photos: a batch is also one database transaction, so a task that Ray retries (its actor
died) writes the same batch again, which the collection tables make a no-op (faces keyed
by image sha256 + face index, photos by path): every photo is stored exactly once.

Where results go: to an SQLite gallery, through the driver (SQLite is one file on the
driver's disk); to a PostgreSQL gallery, written by the actors themselves, one
transaction per batch, and the driver only counts. Photos are read by the actors from
their paths, so every node must see the same paths (a shared file system, or the
driver's own disk for a local runtime). Objects in S3-like storage would come in
through a Ray Data reader (``ray.data.read_binary_files``) whose rows carry the bytes
instead of a path; that is not built.

Failures: an actor killed mid-batch is restarted by Ray and its batch retried
(Ray Data's defaults for an actor pool: ``max_restarts`` and ``max_task_retries``
unbounded); a photo that fails is a result with its reason,
as everywhere else. A Ray address that does not answer is refused within
:data:`CONNECT_TIMEOUT_S` seconds instead of letting ``ray.init`` wait.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import numpy as np

from ..errors import FaceprintError, InvalidArgumentError, MissingExtraError
from ..quality import QualityGate
from .indexer import PhotoFile, analyse
from .store import PhotoResult

if TYPE_CHECKING:
    from ..recognizer import Recognizer
    from .store import CollectionStore

log = logging.getLogger(__name__)

#: Seconds to wait for a Ray head that may not exist before saying so.
CONNECT_TIMEOUT_S = 5.0
#: Environment variables the actors need to find the models and settings the driver uses.
_FORWARD = (
    "FACEPRINT_MODELS",
    "FACEPRINT_HOME",
    "FACEPRINT_OFFLINE",
    "FACEPRINT_MAX_PIXELS",
    "FACEPRINT_CACHE",
)
LOCAL = "local"


class RayError(FaceprintError):
    """The Ray runtime could not be started or reached."""


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise MissingExtraError(
            f"indexing with Ray needs the distributed extra ({exc.name} is missing): "
            "run pip install 'faceprint[distributed]'"
        ) from None
    return ray


def check_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a Ray address (``HOST:PORT`` or ``ray://HOST:PORT``), ``None``
    for ``local`` and ``auto``; raises :class:`InvalidArgumentError` otherwise."""
    if address in (LOCAL, "auto"):
        return None
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    if parts.scheme != "ray" or not parts.hostname or parts.port is None:
        raise InvalidArgumentError(
            f"--ray {address!r}: expected HOST:PORT (a head's GCS port, 6379 by default), "
            "ray://HOST:PORT (Ray client, 10001) or auto"
        )
    return parts.hostname, parts.port


def _reachable(host: str, port: int, address: str) -> None:
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise RayError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc} (is 'ray start --head' "
            "running there, and the port open?)"
        ) from None


def _probe_gcs(hostport: str, address: str) -> None:
    """Ask the head's GCS for its cluster id: ``ray.init`` retries for about 20 s against
    something that accepts the connection but is not a Ray head; this answers at once.
    Uses Ray's internal client, so a Ray without it skips the probe."""
    try:
        from ray._raylet import GcsClient  # type: ignore[attr-defined]
        from ray.exceptions import AuthenticationError, RpcError
    except ImportError:  # pragma: no cover - another Ray version
        return
    try:
        GcsClient(address=hostport)
    except AuthenticationError as exc:
        raise RayError(_auth_hint(address, exc)) from None
    except RpcError as exc:
        raise RayError(
            f"{address} answers but is not a Ray head ({str(exc).splitlines()[0]}); "
            "give the address 'ray start --head' printed"
        ) from None


def _auth_hint(address: str, exc: BaseException) -> str:
    return (
        f"the Ray cluster at {address} refused us: {str(exc).splitlines()[0].split('. ')[0]} "
        "(a cluster started with token authentication needs RAY_AUTH_MODE=token here, and its "
        "token in ~/.ray/auth_token or RAY_AUTH_TOKEN)"
    )


def start(address: str, cpus: int | None = None) -> tuple[Any, bool]:
    """Connect to ``address`` (or start a local runtime with ``cpus`` CPUs for
    ``local``); returns ``(ray, started_here)``."""
    target = check_address(address)
    ray = _import_ray()
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if target is not None:
        _reachable(*target, address)
        if not address.startswith("ray://"):
            _probe_gcs(f"{target[0]}:{target[1]}", address)
    env = {k: v for k in _FORWARD if (v := os.environ.get(k)) is not None}
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.ERROR,
        "runtime_env": {"env_vars": env} if env else None,
    }
    try:
        if address == LOCAL:
            ray.init(num_cpus=cpus, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except Exception as exc:  # Ray raises many types here; each becomes one clear line
        if type(exc).__name__ == "AuthenticationError":
            raise RayError(_auth_hint(address, exc)) from None
        raise RayError(f"cannot start Ray at {address}: {str(exc).splitlines()[0]}") from None
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    return ray, address == LOCAL


class _IndexActor:
    """A Ray Data actor: one :class:`Recognizer`, and for a PostgreSQL gallery one store.
    Its settings are a class attribute of the subclass :func:`_actor_class` makes, not
    constructor arguments: Ray keeps those in its object store and warns that a restarted
    actor may not find them."""

    CONFIG: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        from ..recognizer import Recognizer

        c = self.CONFIG
        self.rec = Recognizer(c["detector"], c["embedder"], flip=c["flip"], threads=1)
        if self.rec.model_id != c["model"]:
            raise RayError(
                f"a Ray worker's model is {self.rec.model_id}, the driver's {c['model']}: "
                "install the same models"
            )
        self.gate: QualityGate = c["gate"]
        self.model: str = c["model"]
        self.store: CollectionStore | None = None
        if c["pg_url"] is not None:
            from ..gallery.postgres import PostgresStore
            from .store import CollectionStore

            self.store = CollectionStore(PostgresStore(c["pg_url"]))

    def __call__(self, batch: dict[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        ks, blobs = [], []
        for k, photos in zip(batch["k"].tolist(), batch["photos"].tolist(), strict=True):
            files = [PhotoFile(*p) for p in json.loads(photos)]
            results = analyse(self.rec, self.gate, files)
            if self.store is not None:  # one transaction, idempotent: a retried batch is a no-op
                self.store.add_results(results, self.model)
                results = [_summary(r) for r in results]
            ks.append(int(k))
            blobs.append(pickle.dumps(results))
        return {"k": np.asarray(ks, np.int64), "results": np.asarray(blobs, dtype=object)}


def _actor_class(config: dict[str, Any]) -> type[_IndexActor]:
    return type("IndexActor", (_IndexActor,), {"CONFIG": config})


def _summary(r: PhotoResult) -> PhotoResult:
    """``r`` without its vectors (already stored by the actor): only what the driver counts."""
    from dataclasses import replace

    return replace(r, faces=tuple(replace(f, vector=np.zeros(0, np.float32)) for f in r.faces))


def run_batches(
    store: CollectionStore,
    recognizer: Recognizer,
    gate: QualityGate,
    batches: list[list[PhotoFile]],
    address: str,
    actors: int | None,
    write: Callable[[int, list[PhotoResult], bool], None],
) -> None:
    """Run ``batches`` through a pool of ``actors`` (default: the cluster's CPUs) and hand
    each batch's results to ``write(k, results, stored)`` as they come, in any order."""
    if actors is not None and actors < 1:
        raise InvalidArgumentError(f"actors must be >= 1, got {actors}")
    # Ray prints what its workers report ("(raylet) Task ... failed, retrying") on stdout,
    # which belongs to our results (--json): send it to stderr while Ray runs.
    with contextlib.redirect_stdout(sys.stderr):
        ray, local = start(address, cpus=None)
        try:
            n = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
            pg_url = getattr(store.db.store, "_url", None) if store.db.postgres else None
            items = [
                {"k": k, "photos": json.dumps([[p.path, p.sha256, p.size, p.mtime] for p in b])}
                for k, b in enumerate(batches)
            ]
            ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
            actor = _actor_class(
                {
                    "detector": recognizer.detector_name,
                    "embedder": recognizer.embedder.name,
                    "flip": recognizer.flip,
                    "gate": gate,
                    "model": recognizer.model_id,
                    "pg_url": pg_url,
                }
            )
            out = ds.map_batches(
                actor,
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=n),
                num_cpus=1,
            )  # Ray Data restarts a dead actor and retries its batch (max_restarts=-1 by default)
            for part in out.iter_batches(batch_size=None, batch_format="numpy"):
                for k, blob in zip(part["k"].tolist(), part["results"].tolist(), strict=True):
                    write(int(k), pickle.loads(blob), pg_url is not None)
        finally:
            if local:
                ray.shutdown()
