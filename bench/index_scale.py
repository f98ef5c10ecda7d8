"""Photo-collection indexing throughput (issue 12): ``Collection.index`` in-process and
through its process pool, the already-indexed (skip) path, and a labelled projection to
10 million photos.

The photos: LFW dev (``../shared/data/lfw-dev``), every image under it in sorted order
(the indexer's own listing), or the first ``--limit`` of them. They are linked (symlinks,
nothing copied) into a temporary folder, person sub-folders kept, so that every
configuration indexes exactly the same files; each configuration starts from a fresh
SQLite gallery file in that temporary folder. Every file is read once before the first
configuration so that all of them find the same (warm) page cache.

Configurations, all in one run so that their ratios are comparable:

* ``in_process``: ``col.index([folder], recursive=True, workers=1)``: detection and
  embedding in the driver (onnxruntime/OpenCV may use every core for one photo);
* ``pool_N``: the same with ``workers=N`` (default 2, the cores of the machine this was
  written on): N spawned processes, each loading the models once, one thread each; the
  driver lists, hashes and writes the results;
* ``already_indexed``: ``workers=1`` again over the same photos on ``in_process``'s
  gallery: every photo is hashed and skipped (path + sha256 already stored), the
  incremental cost of rerunning ``faceprint index`` on an unchanged folder.

Each configuration runs in a fresh child process (the *driver*), so its peak RSS
(``ru_maxrss``: the models, the listing, the SQLite writes; the pool's workers are
reported apart, the largest one's peak) and CPU time are its own. The driver loads the
recognizer before the clock starts (``model_load_s``); the pool's start-up (spawning N
processes that each load the models) is inside the timed call, as a user pays it.
photos/s counts the photos listed (indexed, duplicates and failures alike) over the
wall time of the ``index`` call; faces/s the faces stored.

* ``ray_1`` / ``ray_N``: ``col.index(..., ray="local", workers=k)``: a local Ray runtime
  started inside the call (its start-up is in the wall time, as a user pays it), Ray Data
  ``map_batches`` over k actors, each loading the models once; the driver writes SQLite.
  Ray's overhead per photo is ``(wall of ray_N - wall of pool_N) / photos``: the same
  number of processes doing the same work. Ray's workers are not the driver's children,
  so their CPU time and memory are not in ``cpu_s_workers`` / ``largest_worker_peak_rss_mb``.
The 10-million-photo figures are a *projection* from the measured in-process rate per
core, assuming linear scaling over cores and nodes, not a measurement.

    python bench/index_scale.py [--limit N] [--workers 2] [--quick] [--shared ../shared]
        [--out bench/results/index_scale.json]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_dir, write_json

QUICK_LIMIT = 200
PROJECT_PHOTOS = 10_000_000
PROJECT_NODES = (1, 4, 16, 64)
CORES_PER_NODE = 8


# -- helpers ------------------------------------------------------------------------------
def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def git_state() -> dict[str, Any]:
    """The commit measured, any uncommitted change to ``src``, and where faceprint was
    imported from (a ``git archive HEAD src`` export given on PYTHONPATH measures the
    commit while ``src`` is being edited)."""
    import faceprint

    def git(*a: str) -> str:
        r = subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, check=False)
        return r.stdout.rstrip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "subject": git("log", "-1", "--format=%s"),
        "uncommitted_in_src": git("status", "--porcelain", "--", "src").splitlines(),
        "faceprint_imported_from": str(Path(faceprint.__file__).resolve().parent),
        "pythonpath": os.environ.get("PYTHONPATH"),
    }


def pick_photos(lfw: Path, limit: int | None) -> list[Path]:
    """The image files under ``lfw`` as the indexer lists them (sorted), the first ``limit``."""
    from faceprint.collections.indexer import list_photos

    files = [Path(f) for f in list_photos([lfw], recursive=True).files]
    return files[:limit] if limit else files


def stage(photos: list[Path], lfw: Path, dest: Path) -> int:
    """Symlink ``photos`` under ``dest`` (paths relative to ``lfw`` kept); read each once
    so that every configuration finds them in the page cache. Returns the bytes read."""
    total = 0
    for p in photos:
        link = dest / p.relative_to(lfw)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(p)
        total += len(p.read_bytes())
    return total


# -- one configuration (in a child process: the driver) -----------------------------------
def index_job(gallery: str, folder: str, workers: int, ray: str | None = None) -> dict[str, Any]:
    """Open ``gallery``, load the models, index ``folder`` with ``workers``; the figures."""
    from faceprint.collections.collection import Collection
    from faceprint.gallery import open_gallery

    t0 = time.perf_counter()
    g = open_gallery(gallery)
    model = g.recognizer.model_id  # loads the detector and the embedder
    detector = g.recognizer.detector_name
    load_s = time.perf_counter() - t0
    col = Collection(g)
    rss_before = _status_kb("VmRSS")
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    s = col.index([folder], recursive=True, workers=workers, ray=ray)
    wall = time.perf_counter() - t
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pool's workers, reaped at shutdown
    counts = col.counts()
    g.close()
    cpu_self = (self1.ru_utime - self0.ru_utime) + (self1.ru_stime - self0.ru_stime)
    cpu_kids = (kids1.ru_utime - kids0.ru_utime) + (kids1.ru_stime - kids0.ru_stime)
    return {
        "workers": workers,
        "ray": ray,
        "model": model,
        "detector": detector,
        "model_load_s": load_s,
        "wall_s": wall,
        "summary_seconds": s.seconds,
        "listed": s.listed,
        "indexed": s.indexed,
        "already_indexed": s.already,
        "duplicates": s.duplicates,
        "faces": s.faces,
        "faces_below_quality_gate": s.rejected,
        "failed": len(s.failed),
        "failed_examples": [{"path": p, "reason": r} for p, r in s.failed[:10]],
        "interrupted": s.interrupted,
        "photos_per_s": s.listed / wall if wall else None,
        "faces_per_s": s.faces / wall if wall else None,
        "driver_peak_rss_mb": self1.ru_maxrss / 1024,  # KiB on Linux
        "driver_rss_before_index_mb": rss_before / 1024,
        "driver_rss_after_index_mb": _status_kb("VmRSS") / 1024,
        "largest_worker_peak_rss_mb": kids1.ru_maxrss / 1024 if workers > 1 and ray is None else None,
        "cpu_s_driver": cpu_self,
        "cpu_s_workers": cpu_kids,
        "cores_busy": (cpu_self + cpu_kids) / wall if wall else None,
        "photos_per_cpu_s": s.listed / (cpu_self + cpu_kids) if cpu_self + cpu_kids else None,
        "loadavg_1min_before": round(load0, 2),
        "collection_counts": counts,
        "gallery_file_mb": Path(gallery).stat().st_size / 2**20,
    }


def _child(q: Any, gallery: str, folder: str, workers: int, ray: str | None) -> None:
    try:
        q.put(("ok", index_job(gallery, folder, workers, ray)))
    except BaseException as exc:
        q.put(("error", f"{type(exc).__name__}: {exc}"))
        raise


def run_in_child(gallery: Path, folder: Path, workers: int, ray: str | None = None) -> dict[str, Any]:
    """:func:`index_job` in a fresh spawned process (not a daemon: it may start a pool)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q, str(gallery), str(folder), workers, ray))
    p.start()
    status, val = q.get()
    p.join()
    if status != "ok":
        raise RuntimeError(f"index (workers={workers}) failed in the child: {val}")
    res: dict[str, Any] = val
    return res


# -- projection ----------------------------------------------------------------------------
def projection(per_core: float, basis: str, alternatives: dict[str, float]) -> dict[str, Any]:
    """Hours to index ``PROJECT_PHOTOS`` on N nodes of ``CORES_PER_NODE`` cores at
    ``per_core`` photos/s per core, scaled linearly (a projection, not a measurement)."""

    def hours(rate: float, nodes: int) -> float:
        return PROJECT_PHOTOS / (rate * CORES_PER_NODE * nodes) / 3600

    return {
        "label": "PROJECTION from the measured in-process rate, assuming linear scaling per core "
        "and per node; NOT a measurement",
        "photos": PROJECT_PHOTOS,
        "cores_per_node": CORES_PER_NODE,
        "photos_per_s_per_core": per_core,
        "basis": basis,
        "hours_by_nodes": {str(n): hours(per_core, n) for n in PROJECT_NODES},
        "sensitivity_other_per_core_rates": {
            name: {"photos_per_s_per_core": r, "hours_by_nodes": {str(n): hours(r, n) for n in PROJECT_NODES}}
            for name, r in alternatives.items()
        },
        "assumptions": [
            "every core indexes at the per-core rate measured here on LFW dev photos (250x250 JPEG, "
            "about one face each); real collections of multi-megapixel photos decode and detect slower",
            "no cost for distributing photos, gathering results or writing one database from many "
            "nodes (the SQLite driver here is single-writer; many nodes would need PostgreSQL)",
            "nodes' cores as fast as this machine's",
        ],
    }


# -- the benchmark ----------------------------------------------------------------------------
def _ray_summary(configs: dict[str, dict[str, Any]], workers: int, photos: int) -> dict[str, Any] | None:
    """Ray against the process pool of as many processes (the same work, other plumbing)."""
    r, p, one = configs.get(f"ray_{workers}"), configs.get(f"pool_{workers}"), configs.get("ray_1")
    if r is None or p is None or one is None:
        return None
    return {
        "actors": workers,
        "photos_per_s": r["photos_per_s"],
        "one_actor_photos_per_s": one["photos_per_s"],
        "speedup_actors": r["photos_per_s"] / one["photos_per_s"],
        "overhead_s_total_vs_pool": r["wall_s"] - p["wall_s"],
        "overhead_ms_per_photo_vs_pool": (r["wall_s"] - p["wall_s"]) / photos * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=None, help="shared data folder (default ../shared)")
    ap.add_argument("--limit", type=int, default=None, help="first N photos in sorted order (default: all)")
    ap.add_argument("--workers", type=int, default=2, help="processes of the pool configuration")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray configurations")
    ap.add_argument("--quick", action="store_true", help=f"--limit {QUICK_LIMIT} unless given")
    ap.add_argument("--out", type=Path, default=None, help="JSON (default bench/results/index_scale.json)")
    a = ap.parse_args()
    if a.quick and a.limit is None:
        a.limit = QUICK_LIMIT
    if a.workers < 2:
        ap.error("--workers is the pool's size: 2 or more")
    out = a.out or REPO / "bench" / "results" / ("index_scale_quick.json" if a.quick else "index_scale.json")

    shared = (a.shared or shared_dir()).resolve()
    os.environ.setdefault("FACEPRINT_MODELS", str(shared / "models"))
    os.environ.setdefault("FACEPRINT_OFFLINE", "1")
    lfw = shared / "data" / "lfw-dev"
    code = git_state()  # before the run: the commit being measured
    t_all = time.perf_counter()
    photos = pick_photos(lfw, a.limit)
    if not photos:
        raise SystemExit(f"no photos under {lfw}")
    configs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="faceprint_index_scale_") as tmp_s:
        tmp = Path(tmp_s)
        folder = tmp / "photos"
        t = time.perf_counter()
        nbytes = stage(photos, lfw, folder)
        print(
            f"{len(photos)} photos ({nbytes / 2**20:.0f} MiB) linked and read in "
            f"{time.perf_counter() - t:.1f} s",
            file=sys.stderr,
        )
        plan: list[tuple[str, Path, int, str | None]] = [
            ("in_process", tmp / "in_process.sqlite", 1, None),
            (f"pool_{a.workers}", tmp / f"pool_{a.workers}.sqlite", a.workers, None),
            ("already_indexed", tmp / "in_process.sqlite", 1, None),
        ]
        if not a.no_ray:
            plan += [
                ("ray_1", tmp / "ray_1.sqlite", 1, "local"),
                (f"ray_{a.workers}", tmp / f"ray_{a.workers}.sqlite", a.workers, "local"),
            ]
        for name, gallery, workers, ray in plan:
            print(f"{name}: workers={workers}, ray={ray}, gallery {gallery.name}", file=sys.stderr)
            r = run_in_child(gallery, folder, workers, ray)
            configs[name] = r
            print(
                f"  {r['wall_s']:.1f} s, {r['photos_per_s']:.2f} photos/s, {r['faces']} faces, "
                f"{r['failed']} failed, driver peak RSS {r['driver_peak_rss_mb']:.0f} MB",
                file=sys.stderr,
            )

    a_ = configs["in_process"]
    b_ = configs[f"pool_{a.workers}"]
    skip = configs["already_indexed"]
    cores = os.cpu_count() or 1
    per_core = a_["photos_per_s"] / cores
    alternatives = {
        "in_process_photos_per_cpu_s (rate / cores it kept busy)": a_["photos_per_cpu_s"],
        f"pool_{a.workers}_photos_per_s / {a.workers} workers": b_["photos_per_s"] / a.workers,
    }
    payload: dict[str, Any] = {
        "machine": {**machine(), "loadavg_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()]},
        "code": code,
        "command": " ".join(
            [f"{k}={shlex.quote(os.environ[k])}" for k in ("PYTHONPATH",) if os.environ.get(k)]
            + [shlex.join(["python", "bench/index_scale.py", *sys.argv[1:]])]
        ),
        "data": {
            "folder": str(lfw),
            "photos": len(photos),
            "bytes": nbytes,
            "limit": a.limit,
            "selection": "every image under lfw-dev, sorted as the indexer lists them"
            + (f", first {a.limit}" if a.limit else ""),
            "staging": "symlinks in a temporary folder (person sub-folders kept); every file read once "
            "beforehand so that all configurations find a warm page cache",
        },
        "model": a_["model"],
        "detector": a_["detector"],
        "quick": a.quick,
        "configurations": configs,
        "speedup_pool_over_in_process": b_["photos_per_s"] / a_["photos_per_s"],
        "skip_path": {
            "photos_per_s": skip["photos_per_s"],
            "already_indexed": skip["already_indexed"],
            "indexed_again": skip["indexed"],
            "vs_in_process_first_run": skip["photos_per_s"] / a_["photos_per_s"],
        },
        "ray": _ray_summary(configs, a.workers, len(photos)),
        "projection_10m_photos": projection(
            per_core,
            f"in_process photos/s / {cores} cores of this machine (the in-process run had all of them: "
            "onnxruntime's intra-op threads default to one per core)",
            alternatives,
        ),
        "notes": [
            "photos/s = photos listed / wall seconds of the index call (listing, hashing, detection, "
            "embedding and the SQLite writes); faces/s = faces stored / the same seconds.",
            "Each configuration runs in its own child process: driver_peak_rss_mb is that process's "
            "ru_maxrss (models loaded included); largest_worker_peak_rss_mb is the largest pool worker's.",
            "The pool's start-up (spawning the workers, each loading the models) is inside its wall time; "
            "the driver's own model load is not (model_load_s).",
            "cores_busy = CPU seconds of the driver and its workers / wall seconds.",
            "ray_*: a local Ray runtime started inside the timed call; Ray's workers are not the "
            "driver's children, so their CPU and memory are not counted in cpu_s_workers / cores_busy.",
            "projection_10m_photos is computed from the measured rate, not measured.",
        ],
        "total_wall_s": time.perf_counter() - t_all,
    }
    write_json(out, payload)
    print_table(payload)


def print_table(payload: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=160)
    d = payload["data"]
    t = Table(
        title=f"indexing {d['photos']} LFW dev photos ({payload['machine']['cores']} cores, "
        f"{payload['machine']['cpu']})"
    )
    for c in (
        "configuration",
        "workers",
        "wall s",
        "photos/s",
        "faces/s",
        "faces",
        "failed",
        "dups",
        "skipped",
        "driver peak RSS MB",
        "worker peak RSS MB",
        "cores busy",
    ):
        t.add_column(c)
    for name, r in payload["configurations"].items():
        w = r["largest_worker_peak_rss_mb"]
        t.add_row(
            name, str(r["workers"]), f"{r['wall_s']:.1f}", f"{r['photos_per_s']:.2f}",
            f"{r['faces_per_s']:.2f}", str(r["faces"]), str(r["failed"]), str(r["duplicates"]),
            str(r["already_indexed"]), f"{r['driver_peak_rss_mb']:.0f}", "-" if w is None else f"{w:.0f}",
            f"{r['cores_busy']:.2f}",
        )  # fmt: skip
    con.print(t)
    sk = payload["skip_path"]
    con.print(
        f"speed-up pool / in-process: {payload['speedup_pool_over_in_process']:.2f}x; "
        f"skip path {sk['photos_per_s']:.0f} photos/s ({sk['vs_in_process_first_run']:.0f}x the first run)"
    )
    ray = payload["ray"]
    if ray is not None:
        con.print(
            f"ray: {ray['actors']} actors {ray['photos_per_s']:.2f} photos/s, 1 actor "
            f"{ray['one_actor_photos_per_s']:.2f}; overhead vs the pool of as many processes "
            f"{ray['overhead_ms_per_photo_vs_pool']:.1f} ms/photo "
            f"({ray['overhead_s_total_vs_pool']:.1f} s in all)"
        )
    pr = payload["projection_10m_photos"]
    title = f"{pr['label']}: hours for {pr['photos']:,} photos on nodes of {pr['cores_per_node']} cores"
    p = Table(title=title)
    p.add_column("per-core rate (photos/s)")
    for n in PROJECT_NODES:
        p.add_column(f"{n} node{'s' if n > 1 else ''}")
    rows = [(f"{pr['photos_per_s_per_core']:.2f} (basis)", pr["hours_by_nodes"])]
    for name, alt in pr["sensitivity_other_per_core_rates"].items():
        rows.append((f"{alt['photos_per_s_per_core']:.2f} ({name})", alt["hours_by_nodes"]))
    for label, hours in rows:
        p.add_row(label, *(f"{hours[str(n)]:.1f}" for n in PROJECT_NODES))
    con.print(p)


if __name__ == "__main__":
    main()
