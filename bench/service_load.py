"""``faceprint serve`` under load: identify one 640×480 photo of one face against galleries
of 1k and 100k people, with 1, 4 and 16 concurrent clients (issue 11).

Everything runs on loopback, on this machine, in one run:

* galleries: one real person (Barack Obama, two photos of ``../shared/data/gallery-small``,
  enrolled through the library, which binds the gallery to the model) and ``size - 1``
  synthetic people, one face each, written through the store's public API in one
  transaction. The synthetic vectors imitate face embeddings: drawn from a Gaussian with
  the mean and covariance of real embeddings (one LFW dev photo per person, up to
  ``--realism`` people), then normalised; the JSON compares their pairwise similarities
  and their similarity to the probe with real strangers'.
* the probe: a third photo of the same person (``test/obama1.jpg``) scaled and letterboxed
  to 640×480, one face; its multipart body is encoded once. The JSON says whether it got
  its true name or ``unknown`` (the open-set threshold rises with the gallery).
* the servers: ``faceprint serve`` as a user starts it (its defaults: 1 worker, one
  model copy per core; then ``--workers 2 --threads 1``), with ``--rate``/``--burst``
  raised so that the per-key rate limit does not throttle the benchmark; every other
  limit is the default. Then the peer, face_recognition 1.3.0 in the smallest FastAPI app
  (``bench/peer_face_recognition_app.py``) holding the real person's encodings and the
  same synthetic vectors, under uvicorn.
* each server: a warm-up, reported apart: the time until ``/v1/ready`` (the models, and
  the search index of a large gallery, built on its first use and cached beside the
  file), then until the first answer (any 503/504 seen meanwhile is reported), then
  phases of ``--requests`` requests or ``--duration`` seconds, whichever ends first, at
  1, 4 and 16 clients; then (default server, largest gallery) a soak of ``--soak``
  requests at 4 clients with the server's memory sampled every 1,000 requests.
* the clients: threads with one keep-alive connection each (``http.client``; ``--client
  httpx`` costs about 3× the client CPU per request), posting the same pre-encoded body
  back to back (closed loop, no think time). An error is any status but 200, or an
  exception. The clients share the machine's cores with the server.
* memory and CPU: RSS of the server process and all its children (uvicorn workers),
  before and after each phase; CPU per request of the server and of the clients, and the
  cores other processes (or the hypervisor) took meanwhile, from /proc, so that a phase
  disturbed by something else can be told apart.
* where a request goes: decode, detect, embed and ``Gallery.identify`` timed in this
  process before the servers start (``stages_in_process``).

The anchor beside ours is CompreFace's maintainer's figure, quoted from
https://github.com/exadel-inc/CompreFace/issues/980 (2022-12-19): a production
CompreFace with 50k images answers a recognise request in under 300 ms on a 4-core CPU.
It is their statement about their hardware, not a measurement of this run.

    python bench/service_load.py [--quick] [--sizes 1000,100000] [--clients 1,4,16]
        [--requests 300] [--duration 15] [--soak 10000] [--no-peer]
        [--out bench/results/service_load.json]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_dir, write_json

Vectors = np.ndarray[Any, np.dtype[np.float32]]

TRUE_NAME = "Barack Obama"
ENROL = ("face_recognition_knn/train/obama/obama.jpg", "face_recognition_knn/train/obama/obama2.jpg")
PROBE = "face_recognition_knn/test/obama1.jpg"
SIZE = (640, 480)
TARGET_P99_MS = 150.0
COMPREFACE = {
    "source": "https://github.com/exadel-inc/CompreFace/issues/980",
    "who": "CompreFace maintainer (pospielov), 2022-12-19",
    "quote": "We have a CompreFace in production now that stores 50k images, and it takes less than "
    "300ms for a request. The hardware - CPU only, four cores, 16Gb RAM.",
    "latency_ms_under": 300,
    "images": 50_000,
    "cores": 4,
    "note": "their statement about their own server; not measured here (hardware, load and image "
    "size unknown)",
}
#: The servers measured: the default (one model copy per core), one copy given every
#: core (the default before ``--parallel``: the A/B of that choice), and two processes of
#: one single-threaded copy each.
CONFIGS = {
    "default": [],
    "parallel1": ["--parallel", "1"],
    "workers2": ["--workers", "2", "--parallel", "1", "--threads", "1"],
}
CONFIG_ARGS = {name: " ".join(["faceprint serve", *extra]) for name, extra in CONFIGS.items()}


# -- the probe and the galleries -------------------------------------------------------
def letterbox_jpeg(path: Path, size: tuple[int, int] = SIZE) -> bytes:
    """``path`` scaled to fit ``size`` and centred on black, as JPEG (quality 90)."""
    from PIL import Image

    im = Image.open(path).convert("RGB")
    scale = min(size[0] / im.width, size[1] / im.height)
    im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", size)
    canvas.paste(im, ((size[0] - im.width) // 2, (size[1] - im.height) // 2))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=90)
    return out.getvalue()


def multipart(jpeg: bytes, field_name: str = "image") -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with one file field, and its content type."""
    boundary = f"faceprint-bench-{uuid.uuid4().hex}"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; filename="probe.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return head + jpeg + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def real_embeddings(rec: Any, lfw: Path, people: int) -> Vectors:
    """Unit embeddings of the largest face of the first photo of up to ``people`` LFW dev
    people, spread evenly over the alphabet (none is the benchmark's real person)."""
    from faceprint.io import load_image

    dirs = [d for d in sorted(lfw.iterdir()) if d.is_dir() and d.name != TRUE_NAME.replace(" ", "_")]
    step = max(1, len(dirs) // people)
    out = []
    for d in dirs[::step][:people]:
        photos = sorted(d.glob("*.jpg"))
        if not photos:
            continue
        img = load_image(photos[0])
        faces = rec.detect(img)
        if faces:
            (face,) = rec.embed(img, [max(faces, key=lambda f: f.box.area)])
            out.append(np.asarray(face.embedding, np.float32))
    return np.stack(out)


@dataclass
class FaceModel:
    """A Gaussian fitted to real unit embeddings: synthetic people are its normalised draws."""

    mean: Vectors
    chol: Vectors
    real: Vectors

    @classmethod
    def fit(cls, real: Vectors) -> FaceModel:
        mean = real.mean(axis=0)
        cov = np.cov(real, rowvar=False) + 1e-6 * np.eye(real.shape[1])
        return cls(mean.astype(np.float32), np.linalg.cholesky(cov).astype(np.float32), real)

    def sample(self, n: int, seed: int) -> Vectors:
        rng = np.random.default_rng(seed)
        out = np.empty((n, len(self.mean)), np.float32)
        for s in range(0, n, 50_000):
            z = rng.standard_normal((min(50_000, n - s), len(self.mean)), dtype=np.float32)
            x = self.mean + z @ self.chol.T
            out[s : s + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out


def _offdiag_median(a: Vectors, b: Vectors | None = None) -> float:
    s = a @ (a if b is None else b).T
    if b is None:
        s = s[~np.eye(len(a), dtype=bool)]
    return float(np.median(s))


def realism(model: FaceModel, synthetic: Vectors, probe: Vectors) -> dict[str, float]:
    """How the synthetic people compare with real strangers (cosine similarities)."""
    k = min(len(model.real), len(synthetic), 2000)
    real_to_probe = model.real @ probe
    syn_to_probe = synthetic @ probe
    return {
        "real_people": len(model.real),
        "median_sim_between_real_people": _offdiag_median(model.real[:k]),
        "median_sim_between_synthetic_people": _offdiag_median(synthetic[:k]),
        "median_sim_real_people_to_probe": float(np.median(real_to_probe)),
        "median_sim_synthetic_people_to_probe": float(np.median(syn_to_probe)),
        "max_sim_real_people_to_probe": float(real_to_probe.max()),
        "max_sim_synthetic_people_to_probe": float(syn_to_probe.max()),
        "p99_9_sim_synthetic_people_to_probe": float(np.percentile(syn_to_probe, 99.9)),
    }


def build_gallery(path: Path, rec: Any, enrol: list[Path], synthetic: Vectors) -> dict[str, Any]:
    """The real person through the library, then one synthetic person per row of
    ``synthetic`` (names ``synthetic 000001``...) in one transaction."""
    from faceprint.gallery import open_store
    from faceprint.gallery.gallery import Gallery
    from faceprint.gallery.records import FaceRecord

    t = time.perf_counter()
    store = open_store(path)
    try:
        report = Gallery(store, rec).enroll(TRUE_NAME, enrol)
        if len(report.added) != len(enrol):
            raise SystemExit(f"could not enrol {TRUE_NAME}: {report.to_dict()}")
        model = report.model
        with store.transaction():
            for i, v in enumerate(synthetic, 1):
                store.add_faces(f"synthetic {i:06d}", [FaceRecord(uuid.uuid4().hex, "", v, model)])
        people = store.count_people()
    finally:
        store.close()
    return {
        "people": people,
        "faces": people - 1 + len(enrol),
        "model": model,
        "build_s": time.perf_counter() - t,
        "file_mb": path.stat().st_size / 2**20,
    }


# -- processes ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_usage(pid: int) -> tuple[int, float]:
    """(bytes of RSS, CPU seconds) of ``pid`` and all its descendants (uvicorn's workers),
    from /proc."""
    stats: dict[int, list[str]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stats[int(d.name)] = (d / "stat").read_text().rsplit(")", 1)[1].split()
    tree, grew = {pid}, True
    while grew:
        more = {p for p, st in stats.items() if int(st[1]) in tree} - tree
        tree |= more
        grew = bool(more)
    rss, cpu = 0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in tree & stats.keys():
        st = stats[p]
        cpu += (int(st[11]) + int(st[12])) / tick  # utime, stime
        with contextlib.suppress(OSError, IndexError, ValueError):
            rss += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return rss, cpu


def machine_busy() -> tuple[float, float]:
    """(CPU seconds every process of the machine has used since boot, seconds stolen by
    the hypervisor), from /proc/stat: what other processes, or other machines on the same
    host, took during a phase."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    busy = sum(fields[:3]) + sum(fields[5:7])  # user, nice, system, irq, softirq (guest is in user)
    steal = fields[7] if len(fields) > 7 else 0
    return busy / tick, steal / tick


def own_cpu() -> float:
    """CPU seconds of this process (the load generator) so far."""
    t = os.times()
    return t.user + t.system


def mb(n: int) -> float:
    return round(n / 2**20, 1)


class Server:
    """One server process in its own process group, stopped (the whole group) by :meth:`stop`."""

    live: ClassVar[list[Server]] = []

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Path, ready_path: str) -> None:
        self.name, self.log = name, log
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ready_path = ready_path
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [*cmd, "--port", str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        Server.live.append(self)

    def wait_ready(self, timeout: float = 300.0) -> float:
        t = time.perf_counter()
        with httpx.Client(timeout=5.0) as c:
            while time.perf_counter() - t < timeout:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if c.get(self.base + self.ready_path).status_code == 200:
                        return time.perf_counter() - t
                time.sleep(0.25)
        raise RuntimeError(f"{self.name} not ready after {timeout:g} s:\n{self.tail()}")

    def rss(self) -> int:
        return tree_usage(self.proc.pid)[0]

    def cpu(self) -> float:
        return tree_usage(self.proc.pid)[1]

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError):  # workers that outlived their parent
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self in Server.live:
            Server.live.remove(self)


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


# -- load ----------------------------------------------------------------------------------
@dataclass
class Target:
    """Where and what to post, and how to read the label of the probe's face."""

    url: str
    headers: dict[str, str]
    body: bytes
    label: Callable[[dict[str, Any]], str]


def _faces_label(faces: list[dict[str, Any]]) -> str:
    if not faces:
        return "no face"
    return str(faces[0]["label"]) + ("" if len(faces) == 1 else f" (+{len(faces) - 1} faces)")


def ours_label(doc: dict[str, Any]) -> str:
    return _faces_label(doc["images"][0]["faces"])


def peer_label(doc: dict[str, Any]) -> str:
    return _faces_label(doc["faces"])


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    labels: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0
    bounded_by: str = "requests"


class Connection:
    """One keep-alive connection to ``target``'s server: the standard library's
    ``http.client`` (``kind="stdlib"``, the default: about a quarter of httpx's CPU per
    request, measured here, and the clients share the server's cores) or ``httpx``."""

    def __init__(self, target: Target, timeout: float, kind: str = "stdlib") -> None:
        self.target, self.timeout, self.kind = target, timeout, kind
        u = urlsplit(target.url)
        self.host, self.port, self.path = u.hostname or "127.0.0.1", u.port or 80, u.path
        self._std: http.client.HTTPConnection | None = None
        self._httpx = httpx.Client(timeout=timeout) if kind == "httpx" else None

    def post(self) -> tuple[int, bytes]:
        t = self.target
        if self._httpx is not None:
            resp = self._httpx.post(t.url, content=t.body, headers=t.headers)
            return resp.status_code, resp.content
        if self._std is None:
            self._std = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self._std.request("POST", self.path, body=t.body, headers=t.headers)
            r = self._std.getresponse()
            return r.status, r.read()
        except Exception:
            self._std.close()  # a fresh connection for the next request
            self._std = None
            raise

    def close(self) -> None:
        if self._std is not None:
            self._std.close()
        if self._httpx is not None:
            self._httpx.close()


def post_once(conn: Connection) -> tuple[float, str, str | None, dict[str, Any] | None]:
    """(seconds, status, label, json) of one request; status is the code or the exception."""
    t = time.perf_counter()
    try:
        status, data = conn.post()
        lat = time.perf_counter() - t
        if status != 200:
            return lat, str(status), None, None
        doc = json.loads(data)
        return lat, "200", conn.target.label(doc), doc
    except Exception as exc:  # every failure is an error of the run, counted by its kind
        return time.perf_counter() - t, type(exc).__name__, None, None


def run_load(
    target: Target,
    clients: int,
    requests: int,
    duration: float,
    timeout: float = 60.0,
    every: int = 0,
    sample: Callable[[int], None] | None = None,
    kind: str = "stdlib",
) -> Load:
    """``requests`` requests (or until ``duration`` s have passed) from ``clients`` threads;
    ``sample(done)`` is called from a monitor thread each time ``every`` more are done."""
    load = Load()
    lock = threading.Lock()
    issued = 0
    done = 0
    stop = threading.Event()
    t0 = time.perf_counter()
    deadline = t0 + duration

    def client() -> None:
        nonlocal issued, done
        conn = Connection(target, timeout, kind)
        try:
            while not stop.is_set():
                with lock:
                    if issued >= requests:
                        return
                    if time.perf_counter() > deadline:
                        load.bounded_by = "duration"
                        return
                    issued += 1
                lat, status, label, _ = post_once(conn)
                with lock:
                    load.latencies.append(lat)
                    load.statuses[status] += 1
                    if label is not None:
                        load.labels[label] += 1
                    done += 1
        finally:
            conn.close()

    def monitor() -> None:
        next_at = every
        while not stop.is_set():
            if done >= next_at and sample is not None:
                sample(done)
                next_at += every
            time.sleep(0.05)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    mon = threading.Thread(target=monitor, daemon=True) if every and sample else None
    try:
        for th in threads:
            th.start()
        if mon is not None:
            mon.start()
        for th in threads:
            while th.is_alive():
                th.join(0.2)
    finally:
        stop.set()
    load.wall_s = time.perf_counter() - t0
    if mon is not None:
        mon.join()
    return load


def summary(load: Load) -> dict[str, Any]:
    lat = np.array(load.latencies) * 1e3
    n = len(lat)
    ok = load.statuses.get("200", 0)
    return {
        "requests": n,
        "ok": ok,
        "errors": n - ok,
        "statuses": dict(load.statuses),
        "labels": dict(load.labels),
        "wall_s": round(load.wall_s, 2),
        "bounded_by": load.bounded_by,
        "rps": round(ok / load.wall_s, 2) if load.wall_s else 0.0,
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if n else None,
        "p90_ms": round(float(np.percentile(lat, 90)), 1) if n else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if n else None,
        "max_ms": round(float(lat.max()), 1) if n else None,
        "mean_ms": round(float(lat.mean()), 1) if n else None,
    }


def warm_up(
    target: Target, server: Server, first_timeout: float, clients: int, n: int, kind: str
) -> dict[str, Any]:
    """Requests one at a time until the first 200 (a fresh large gallery builds its index
    meanwhile; a 504 then is the server's request timeout, reported), then ``n`` more at
    ``clients`` clients so that every worker process has answered."""
    t = time.perf_counter()
    seen: Counter[str] = Counter()
    first: dict[str, Any] | None = None
    label = None
    conn = Connection(target, first_timeout, kind)
    with contextlib.closing(conn):
        while time.perf_counter() - t < first_timeout:
            _, status, label, doc = post_once(conn)
            seen[status] += 1
            if status == "200":
                first = doc
                break
            if status not in ("503", "504", "ReadTimeout"):
                raise RuntimeError(f"{server.name}: warm-up request answered {status}:\n{server.tail()}")
            if server.proc.poll() is not None:
                raise RuntimeError(f"{server.name} exited during warm-up:\n{server.tail()}")
            time.sleep(0.5)
    first_s = time.perf_counter() - t
    if first is None:
        raise RuntimeError(f"{server.name}: no answer within {first_timeout:g} s ({dict(seen)})")
    rest = summary(run_load(target, clients, n, first_timeout, kind=kind))
    return {
        "first_answer_s": round(first_s, 2),
        "statuses_until_first_answer": dict(seen),
        "first_label": label,
        "first_answer": _trim(first),
        "then": rest,
        "total_s": round(time.perf_counter() - t, 2),
    }


def _trim(doc: dict[str, Any]) -> dict[str, Any]:
    """The probe's answer without its boxes and landmarks (label, similarity, matches, the
    operating point, or the peer's label and distance)."""
    if "images" in doc:
        faces = [
            {k: f.get(k) for k in ("label", "threshold", "matches", "reason")}
            for f in doc["images"][0]["faces"]
        ]
        return {"faces": faces, "operating_point": doc.get("operating_point")}
    return {"faces": [{k: f.get(k) for k in ("label", "distance")} for f in doc["faces"]]}


# -- the run ---------------------------------------------------------------------------------
def create_key(faceprint: str, env: dict[str, str]) -> str:
    res = subprocess.run(
        [faceprint, "keys", "create", "--role", "recognise", "--name", "bench"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return res.stdout.strip()


def measure_phases(
    server: Server,
    target: Target,
    args: argparse.Namespace,
    tags: dict[str, Any],
    duration: float,
) -> list[dict[str, Any]]:
    rows = []
    for clients in args.clients:
        before, cpu0 = tree_usage(server.proc.pid)
        own0, (all0, steal0) = own_cpu(), machine_busy()
        s = summary(run_load(target, clients, args.requests, duration, kind=args.client))
        own1, (all1, steal1) = own_cpu(), machine_busy()
        after, cpu1 = tree_usage(server.proc.pid)
        other = (all1 - all0) - (cpu1 - cpu0) - (own1 - own0)
        wall = s["wall_s"] or 1e-9
        rows.append(
            {
                **tags,
                "clients": clients,
                **s,
                "mem_before_mb": mb(before),
                "mem_after_mb": mb(after),
                "server_cpu_ms_per_request": round((cpu1 - cpu0) * 1e3 / max(1, s["requests"]), 1),
                "server_cores_busy": round((cpu1 - cpu0) / wall, 2),
                "client_cpu_ms_per_request": round((own1 - own0) * 1e3 / max(1, s["requests"]), 1),
                "other_processes_cores_busy": round(max(0.0, other) / wall, 2),
                "steal_cores": round((steal1 - steal0) / wall, 2),
            }
        )
        print(_line(rows[-1]), file=sys.stderr)
    return rows


def _line(r: dict[str, Any]) -> str:
    return (
        f"  {r['server']:<9} {r['size']:>7} people {r['clients']:>2} clients: {r['rps']:7.2f} req/s "
        f"p50 {r['p50_ms']} p99 {r['p99_ms']} ms, errors {r['errors']} ({r['requests']} requests, "
        f"{r['bounded_by']}), mem {r['mem_before_mb']} -> {r['mem_after_mb']} MB, CPU per request: "
        f"server {r['server_cpu_ms_per_request']} ms ({r['server_cores_busy']} cores busy), "
        f"client {r['client_cpu_ms_per_request']} ms; other processes "
        f"{r['other_processes_cores_busy']} cores, stolen {r['steal_cores']}"
    )


def soak(server: Server, target: Target, n: int, clients: int, duration: float, kind: str) -> dict[str, Any]:
    samples: list[dict[str, float]] = []
    t0 = time.perf_counter()

    def sample(done: int) -> None:
        samples.append(
            {"requests": done, "s": round(time.perf_counter() - t0, 1), "rss_mb": mb(server.rss())}
        )
        print(f"  soak: {done} requests, {samples[-1]['rss_mb']} MB", file=sys.stderr)

    cpu0, own0, (all0, steal0) = server.cpu(), own_cpu(), machine_busy()
    s = summary(run_load(target, clients, n, duration, every=1000, sample=sample, kind=kind))
    cpu1, own1, (all1, steal1) = server.cpu(), own_cpu(), machine_busy()
    other = (all1 - all0) - (cpu1 - cpu0) - (own1 - own0)
    s["server_cores_busy"] = round((cpu1 - cpu0) / s["wall_s"], 2)
    s["other_processes_cores_busy"] = round(max(0.0, other) / s["wall_s"], 2)
    s["steal_cores"] = round((steal1 - steal0) / s["wall_s"], 2)
    sample(s["requests"])
    rss = [x["rss_mb"] for x in samples]
    after_first = [x["rss_mb"] for x in samples if x["requests"] >= 1000] or rss
    return {
        "clients": clients,
        **s,
        "samples": samples,
        "mem_first_mb": rss[0],
        "mem_last_mb": rss[-1],
        "mem_max_mb": max(rss),
        "mem_growth_after_first_1000_mb": round(after_first[-1] - after_first[0], 1),
    }


def stage_times(probe_jpeg: bytes, gallery: Path, threads: int | None, n: int = 30) -> dict[str, Any]:
    """Median ms of each step of one identify of the probe, in this process, with a
    recognizer of ``threads`` threads per model (the server's copies: 1 each by default):
    decode, detect, embed (align + network), and the whole ``Gallery.identify`` on
    ``gallery``; what a request costs beyond these is the service's."""
    import faceprint
    from faceprint.gallery import open_gallery
    from faceprint.io import load_image

    rec = faceprint.Recognizer(threads=threads)
    image = load_image(probe_jpeg)
    faces = rec.detect(image)

    def median_ms(fn: Callable[[], object]) -> float:
        fn()
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return round(float(np.median(times)) * 1e3, 2)

    with open_gallery(gallery, rec) as g:
        return {
            "threads_per_model": threads or os.cpu_count(),
            "decode_ms": median_ms(lambda: load_image(probe_jpeg)),
            "detect_ms": median_ms(lambda: rec.detect(image)),
            "embed_ms": median_ms(lambda: rec.embed(image, faces)),
            "identify_ms": median_ms(lambda: g.identify([probe_jpeg], top_k=3, max_faces=64)),
            "gallery_people": int(g.store.count_people()),
        }


def prepare(args: argparse.Namespace, tmp: Path, enrol: list[Path], probe_jpeg: bytes) -> dict[str, Any]:
    """Every gallery (``tmp/gallery-<size>.sqlite``) and the peer's synthetic vectors
    (``tmp/peer-<size>.npz``), built before any server starts, so that this process holds no
    model while it generates the load."""
    import gc

    import faceprint
    from faceprint.io import load_image

    t = time.perf_counter()
    rec = faceprint.Recognizer()
    image = load_image(probe_jpeg)
    probe_faces = rec.detect(image)
    if len(probe_faces) != 1:
        raise SystemExit(f"the probe must show exactly one face, found {len(probe_faces)}")
    (pf,) = rec.embed(image, probe_faces)
    probe_vec = np.asarray(pf.embedding, np.float32)
    model = FaceModel.fit(real_embeddings(rec, shared_dir() / "data" / "lfw-dev", args.realism))
    print(f"face model from {len(model.real)} LFW people: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    galleries = {}
    for size in args.sizes:
        synthetic = model.sample(size - 1, seed=size)
        info = build_gallery(tmp / f"gallery-{size}.sqlite", rec, enrol, synthetic)
        info["realism"] = realism(model, synthetic, probe_vec) if size > 1 else {}
        galleries[str(size)] = info
        if args.peer:
            names = np.array([f"synthetic {i:06d}" for i in range(1, size)])
            np.savez(tmp / f"peer-{size}.npz", names=names, vectors=synthetic)
        print(f"gallery of {size} people built in {info['build_s']:.1f} s", file=sys.stderr)
    del rec
    smallest = tmp / f"gallery-{min(args.sizes)}.sqlite"
    stages = [stage_times(probe_jpeg, smallest, threads) for threads in (1, None)]
    for st in stages:
        print(f"in process: {st}", file=sys.stderr)
    gc.collect()
    return {"face_box": probe_faces[0].box.to_dict(), "galleries": galleries, "stages_in_process": stages}


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    shared = shared_dir()
    photos = shared / "data" / "gallery-small"
    enrol = [photos / p for p in ENROL]
    faceprint_exe = str(Path(sys.executable).with_name("faceprint"))
    env = {
        **os.environ,
        "FACEPRINT_HOME": str(tmp / "home"),
        "FACEPRINT_SERVICE_DB": str(tmp / "service.sqlite"),
        "FACEPRINT_OFFLINE": "1",
        "XDG_DATA_HOME": str(tmp / "xdg"),
    }
    if (shared / "models").is_dir():
        env["FACEPRINT_MODELS"] = str(shared / "models")
    env.pop("FACEPRINT_GALLERY", None)
    env.pop("FACEPRINT_SERVICE_CONFIG", None)
    os.environ.update({k: env[k] for k in ("FACEPRINT_HOME", "FACEPRINT_SERVICE_DB", "FACEPRINT_OFFLINE")})

    probe_jpeg = letterbox_jpeg(photos / PROBE)
    built = prepare(args, tmp, enrol, probe_jpeg)
    key = create_key(faceprint_exe, env)
    body, ctype = multipart(probe_jpeg)

    def ours_target(base: str) -> Target:
        return Target(base + "/v1/identify", {"X-API-Key": key, "content-type": ctype}, body, ours_label)

    def peer_target(base: str) -> Target:
        return Target(base + "/identify", {"content-type": ctype}, body, peer_label)

    out: dict[str, Any] = {
        "probe": {
            "photo": f"../shared/data/gallery-small/{PROBE}, letterboxed to {SIZE[0]}x{SIZE[1]}",
            "jpeg_bytes": len(probe_jpeg),
            "true_name": TRUE_NAME,
            "enrolled_photos": [f"../shared/data/gallery-small/{p}" for p in ENROL],
            "face_box": built["face_box"],
        },
        "galleries": built["galleries"],
        "stages_in_process": built["stages_in_process"],
        "warmups": [],
        "phases": [],
        "soak": None,
    }

    def serve(name: str, cmd: list[str], senv: dict[str, str], target_of: Callable[[str], Target]) -> None:
        size, config = name.split(":")
        server = Server(
            name, cmd, senv, tmp / f"{config}-{size}.log", "/v1/ready" if config != "peer" else "/ready"
        )
        with running(server):
            ready = server.wait_ready(args.first_timeout)
            target = target_of(server.base)
            n = args.warmup if config != "peer" else min(args.warmup, 4)
            w = warm_up(target, server, args.first_timeout, max(args.clients), n, args.client)
            w.update(server=config, size=int(size), ready_s=round(ready, 2), mem_after_mb=mb(server.rss()))
            out["warmups"].append(w)
            print(
                f"  {config}: ready {ready:.1f} s, first answer {w['first_answer_s']} s "
                f"({w['statuses_until_first_answer']}): {w['first_label']}",
                file=sys.stderr,
            )
            command = CONFIG_ARGS.get(config, "face_recognition 1.3.0 + FastAPI (uvicorn, 1 worker)")
            tags = {"server": config, "command": command, "size": int(size)}
            duration = args.peer_duration if config == "peer" else args.duration
            out["phases"] += measure_phases(server, target, args, tags, duration)
            if config == "default" and int(size) == max(args.sizes) and args.soak:
                out["soak"] = {
                    "server": config,
                    "size": int(size),
                    **soak(server, target, args.soak, 4, args.soak_duration, args.client),
                }

    for size in args.sizes:
        gpath = tmp / f"gallery-{size}.sqlite"
        for config, extra in CONFIGS.items():
            if config not in args.servers:
                continue
            rate = ["--rate", "100000", "--burst", "100000"]
            cmd = [faceprint_exe, "serve", "--gallery", str(gpath), *rate, *extra]
            serve(f"{size}:{config}", cmd, env, ours_target)
        if args.peer:
            penv = {
                **env,
                "PEER_GALLERY": str(tmp / f"peer-{size}.npz"),
                "PEER_ENROL": json.dumps({TRUE_NAME: [str(p) for p in enrol]}),
            }
            cmd = [
                sys.executable, "-m", "uvicorn", "--app-dir", str(REPO / "bench"),
                "peer_face_recognition_app:app", "--host", "127.0.0.1", "--log-level", "warning",
            ]  # fmt: skip
            serve(f"{size}:peer", cmd, penv, peer_target)
    return out


def git_state() -> dict[str, Any]:
    """The commit measured, and any uncommitted change to the code it ran."""

    def git(*a: str) -> str:
        r = subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, check=False)
        return r.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "subject": git("log", "-1", "--format=%s"),
        "uncommitted_in_src": git("status", "--porcelain", "--", "src").splitlines(),
    }


def ratios(phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ours (each config) against the peer at the same size and clients."""
    peer = {(p["size"], p["clients"]): p for p in phases if p["server"] == "peer"}
    out = []
    for p in phases:
        q = peer.get((p["size"], p["clients"]))
        if p["server"] == "peer" or q is None or not q["rps"] or not p["p99_ms"]:
            continue
        out.append(
            {
                "server": p["server"],
                "size": p["size"],
                "clients": p["clients"],
                "rps_ours_over_peer": round(p["rps"] / q["rps"], 1),
                "p99_ours_over_peer": round(p["p99_ms"] / q["p99_ms"], 3),
                "peer_p99_over_ours": round(q["p99_ms"] / p["p99_ms"], 1),
            }
        )
    return out


def verdict(res: dict[str, Any], largest: int) -> dict[str, Any]:
    """The issue's targets, as measured: p99 < 150 ms at 4 clients on the largest gallery
    (each config), zero errors, memory flat over the soak."""
    out: dict[str, Any] = {}
    for p in res["phases"]:
        if p["server"] != "peer" and p["size"] == largest and p["clients"] == 4:
            out[f"p99_under_{TARGET_P99_MS:g}ms_at_4_clients_{largest}_{p['server']}"] = {
                "p99_ms": p["p99_ms"],
                "met": p["p99_ms"] is not None and p["p99_ms"] < TARGET_P99_MS,
            }
    ours = [p for p in res["phases"] if p["server"] != "peer"]
    soak_ = res.get("soak")
    out["zero_errors"] = {
        "errors": sum(p["errors"] for p in ours) + (soak_["errors"] if soak_ else 0),
        "met": all(p["errors"] == 0 for p in ours) and (not soak_ or soak_["errors"] == 0),
    }
    if soak_:
        growth = soak_["mem_growth_after_first_1000_mb"]
        out["memory_flat_over_soak"] = {
            "requests": soak_["requests"],
            "first_mb": soak_["mem_first_mb"],
            "last_mb": soak_["mem_last_mb"],
            "max_mb": soak_["mem_max_mb"],
            "growth_after_first_1000_mb": growth,
            "rule": "growth after the first 1,000 requests under 2% of the first sample",
            "met": growth < 0.02 * soak_["mem_first_mb"],
        }
    return out


def print_table(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="identify, one 640×480 photo, one face (clients share the 2 cores with the server)")
    for col in (
        "server",
        "people",
        "clients",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "requests",
        "mem MB before → after",
        "cores: server / others",
    ):
        t.add_column(col, justify="left" if col == "server" else "right")
    for p in res["phases"]:
        t.add_row(
            p["server"], f"{p['size']:,}", str(p["clients"]), f"{p['rps']:.1f}", str(p["p50_ms"]),
            str(p["p99_ms"]), str(p["errors"]),
            f"{p['requests']}" + (" (time-bound)" if p["bounded_by"] == "duration" else ""),
            f"{p['mem_before_mb']:.0f} → {p['mem_after_mb']:.0f}",
            f"{p['server_cores_busy']} / {p['other_processes_cores_busy']}",
        )  # fmt: skip
    con = Console(stderr=True, width=160)
    con.print(t)
    if res.get("soak"):
        s = res["soak"]
        con.print(
            f"soak ({s['server']}, {s['size']:,} people, {s['clients']} clients): {s['requests']} requests, "
            f"{s['rps']} req/s, p50 {s['p50_ms']} p99 {s['p99_ms']} ms, errors {s['errors']}; memory first "
            f"{s['mem_first_mb']} last {s['mem_last_mb']} max {s['mem_max_mb']} MB"
        )
    for w in res["warmups"]:
        con.print(
            f"warm-up {w['server']} {w['size']:,}: ready {w['ready_s']} s, first answer "
            f"{w['first_answer_s']} s {w['statuses_until_first_answer']}, label {w['first_label']!r}"
        )
    for r in res["peer_ratio"]:
        con.print(
            f"vs face_recognition, {r['server']} {r['size']:,} people {r['clients']} clients: "
            f"{r['rps_ours_over_peer']}× req/s, p99 {r['p99_ours_over_peer']}× theirs"
        )
    con.print(f"targets: {json.dumps(res['targets'])}")
    con.print(f"anchor (theirs, not measured here): {COMPREFACE['quote']} ({COMPREFACE['source']})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="small and short, for development (~2 min)")
    ap.add_argument("--sizes", help="gallery sizes in people (default 1000,100000)")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--requests", type=int, help="requests per phase (default 300)")
    ap.add_argument("--duration", type=float, help="seconds per phase at most (default 15)")
    ap.add_argument("--peer-duration", type=float, help="seconds per peer phase at most (default 15)")
    ap.add_argument("--soak", type=int, help="requests of the soak, 0: none (default 10000)")
    ap.add_argument("--soak-duration", type=float, default=600.0, help="seconds the soak may take at most")
    ap.add_argument("--warmup", type=int, default=16, help="warm-up requests after the first answer")
    ap.add_argument("--first-timeout", type=float, default=900.0, help="seconds to wait for the first answer")
    ap.add_argument("--realism", type=int, help="LFW people the synthetic vectors imitate (default 1500)")
    ap.add_argument("--client", choices=("stdlib", "httpx"), default="stdlib", help="the load's HTTP client")
    ap.add_argument("--no-peer", dest="peer", action="store_false", help="skip face_recognition")
    ap.add_argument(
        "--servers",
        type=lambda v: [x for x in v.split(",") if x],
        default=list(CONFIGS),
        help=f"which of our servers to measure (default {','.join(CONFIGS)})",
    )
    ap.add_argument("--out", type=Path, help="default bench/results/service_load.json (--quick: _quick)")
    args = ap.parse_args()
    q = args.quick
    unknown = sorted(set(args.servers) - set(CONFIGS))
    if unknown:
        ap.error(f"--servers: unknown {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    args.sizes = [int(s) for s in (args.sizes or ("1000,25000" if q else "1000,100000")).split(",")]
    args.clients = [int(c) for c in args.clients.split(",")]
    args.requests = args.requests or (40 if q else 300)
    args.duration = args.duration or (5.0 if q else 15.0)
    args.peer_duration = args.peer_duration or (5.0 if q else 15.0)
    args.soak = (300 if q else 10_000) if args.soak is None else args.soak
    args.realism = args.realism or (400 if q else 1500)
    args.out = args.out or REPO / "bench" / "results" / (
        "service_load_quick.json" if q else "service_load.json"
    )

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    code = git_state()
    try:
        with tempfile.TemporaryDirectory(prefix="faceprint-load-") as tmp:
            res = run(args, Path(tmp))
    finally:
        for s in list(Server.live):
            s.stop()
    res["peer_ratio"] = ratios(res["phases"])
    res["targets"] = verdict(res, max(args.sizes))
    res["anchor_compreface_theirs"] = COMPREFACE
    res["config"] = {
        "sizes": args.sizes,
        "clients": args.clients,
        "requests_per_phase": args.requests,
        "max_phase_s": args.duration,
        "max_peer_phase_s": args.peer_duration,
        "soak_requests": args.soak,
        "quick": q,
        "servers": {**CONFIG_ARGS, "peer": "uvicorn peer_face_recognition_app:app (1 worker)"},
        "rate_limit": "--rate 100000 --burst 100000 (the default 20 req/s per key would throttle the bench)",
        "load": f"closed loop, one keep-alive {args.client} HTTP connection per client thread, the same "
        "pre-encoded body, loopback",
        "note": "the load generator runs on the same cores as the server it measures",
    }
    res["code"] = code
    res["machine"] = {
        **machine(),
        "loadavg_1_5_15_before": [round(x, 2) for x in load_before],
        "loadavg_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
    }
    res["total_s"] = round(time.perf_counter() - t0, 1)
    write_json(args.out, res)
    print_table(res)


if __name__ == "__main__":
    main()
