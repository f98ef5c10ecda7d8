"""Gallery search at scale: exact (numpy), ANN (usearch HNSW) and pgvector HNSW.

Synthetic 128-D unit vectors, at 10k, 100k and 1M faces:

* ``clustered`` -- imitates face embeddings: one centre per person (4 faces each) inside a
  cone, so different people are ~0.57 cosine apart on average and the *nearest* other
  person is ~0.7-0.8; each face is its centre plus noise chosen per person so faces of
  one person are 0.93-0.97 apart. Queries are fresh noisy faces of enrolled people.
  The medians actually obtained are printed and stored.
* ``uniform`` -- uniformly random unit vectors and random queries: no structure, the
  hardest case for a graph index (the true neighbour is barely nearer than the rest).

For each: build time; memory (exact: the float32 matrix it searches; usearch: RSS growth
of the build and usearch's own count; pgvector: ``pg_relation_size`` of the index, and of
the table); p50/p99 latency of *single* queries (k=5) through the public API over
``--queries`` queries; recall@1 against exact search (a hit when the row matches or its
similarity equals the exact best within 1e-6). usearch's load-from-cache time (sha256 +
restore) is reported beside its rebuild time. Every process shares the same 2 cores.

Incremental updates (clustered, largest size): after the HNSW file is built, enrol 1 and
``--incremental-adds`` new faces (fresh photos of enrolled people, ~0.95 like them) and
remove one person, giving a newer snapshot; measure the time from that snapshot to the
first answered query (1) with :func:`refresh_index` on the index in memory, (2) from the
file, as a new process would (sha256 checks + restore + delta), and (3) with a full
rebuild, which is what every enrolment cost before the index was incremental; then the
latency and recall@1 of the updated index against exact search of the new snapshot.
Reading the snapshot from the store is not included (the same for every method).

PostgreSQL runs as a throwaway cluster from pgserver's bundled binaries
(tests/integration/gallery/pgcluster.py: initdb/pg_ctl in a temp dir, as an unprivileged
account under root) rather than ``pgserver.get_server``, which runs ``useradd`` as root.

    pip install usearch pgserver "psycopg[binary]" pgvector
    python bench/gallery_scale.py [--sizes 10000,100000,1000000] [--pg-budget 480]
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, write_json

sys.path.insert(0, str(REPO / "tests" / "integration"))
from gallery.pgcluster import ThrowawayServer

from faceprint.gallery import index as index_mod
from faceprint.gallery.index import AnnIndex, ExactIndex, refresh_index
from faceprint.gallery.records import Snapshot

DIM, K, PER_PERSON = 128, 5, 4
Arr = np.ndarray[Any, np.dtype[np.float32]]


def _unit(x: Arr) -> Arr:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_data(kind: str, n: int, q: int, seed: int) -> tuple[Arr, Arr, np.ndarray[Any, Any] | None]:
    """(gallery, queries, person of each query or None)."""
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        g = _unit(rng.standard_normal((n, DIM), dtype=np.float32))
        return g, _unit(rng.standard_normal((q, DIM), dtype=np.float32)), None
    people = -(-n // PER_PERSON)
    mean = _unit(rng.standard_normal((1, DIM), dtype=np.float32))
    tau = np.float32(np.sqrt(1 / 0.6 - 1))  # centres ~0.6 cosine apart
    centres = _unit(mean + tau * rng.standard_normal((people, DIM), dtype=np.float32) / np.sqrt(DIM))
    sigma = np.sqrt(1 / rng.uniform(0.93, 0.97, size=people) - 1).astype(np.float32)

    def faces(who: np.ndarray[Any, Any]) -> Arr:
        out = np.empty((len(who), DIM), np.float32)
        for s in range(0, len(who), 200_000):
            w = who[s : s + 200_000]
            noise = rng.standard_normal((len(w), DIM), dtype=np.float32) / np.float32(np.sqrt(DIM))
            out[s : s + 200_000] = _unit(centres[w] + sigma[w, None] * noise)
        return out

    qp = rng.integers(0, people, size=q)
    return faces(np.arange(n) // PER_PERSON), faces(qp), qp


def snapshot(g: Arr, generation: int = 1) -> Snapshot:
    """Face ``i`` is id ``str(i)`` of person ``str(i // PER_PERSON)``."""
    return Snapshot(
        generation,
        tuple(map(str, range(len(g)))),
        tuple(str(i // PER_PERSON) for i in range(len(g))),
        g,
    )


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def latency(search: Callable[[Arr], Any], queries: Arr) -> tuple[float, float, list[Any]]:
    """p50/p99 ms of one query per call, and the answers (after 10 warm-up calls)."""
    for i in range(min(10, len(queries))):
        search(queries[i : i + 1])
    times, answers = [], []
    for i in range(len(queries)):
        t = time.perf_counter()
        answers.append(search(queries[i : i + 1]))
        times.append(time.perf_counter() - t)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3), answers


def recall1(top_rows: np.ndarray[Any, Any], g: Arr, queries: Arr, truth: tuple[Arr, Any]) -> float:
    sims = np.einsum("qd,qd->q", g[top_rows], queries)
    return float(np.mean((top_rows == truth[1][:, 0]) | (sims >= truth[0][:, 0] - 1e-6)))


def person_recall1(top_rows: np.ndarray[Any, Any], truth: tuple[Arr, Any], ds: str) -> float | None:
    """Clustered only: the top-1 face belongs to the same person as exact search's top-1
    (another face of the right person counts: the identification is the same)."""
    if ds != "clustered":
        return None
    return float(np.mean(top_rows // PER_PERSON == truth[1][:, 0] // PER_PERSON))


def realism(truth: tuple[Arr, Any], qp: np.ndarray[Any, Any] | None) -> dict[str, float]:
    """Median similarity of the nearest same-person face and nearest other person."""
    if qp is None:
        return {"median_top1": float(np.median(truth[0][:, 0]))}
    same = truth[1] // PER_PERSON == qp[:, None]
    other = np.where(~same, truth[0], -np.inf).max(axis=1)
    return {
        "median_same_person_nn": float(np.median(np.where(same, truth[0], -np.inf).max(axis=1))),
        "median_other_person_nn": float(np.median(other[np.isfinite(other)])),
    }


def bench_exact(g: Arr, queries: Arr, truth: tuple[Arr, Any]) -> dict[str, Any]:
    t = time.perf_counter()
    idx = ExactIndex(snapshot(g))
    build = time.perf_counter() - t
    p50, p99, ans = latency(lambda q: idx.search(q, K), queries)
    top = np.array([a[1][0, 0] for a in ans])
    return {
        "method": "exact (numpy)",
        "params": "",
        "build_s": build,
        "memory_mb": g.nbytes / 2**20,
        "p50_ms": p50,
        "p99_ms": p99,
        "recall1": recall1(top, g, queries, truth),
        "_top": top,
    }


def bench_ann(
    g: Arr,
    queries: Arr,
    truth: tuple[Arr, Any],
    dtype: str,
    m: int,
    ef_add: int,
    efs: list[int],
    tmp: Path,
    keep: bool = False,
) -> list[dict[str, Any]]:
    """Build, save, reload, then latency/recall per ef_search; ``keep``: leave the file
    (at ``tmp/ann-<dtype>.usearch``) for :func:`bench_incremental`."""
    path = tmp / f"ann-{dtype}.usearch"
    gc.collect()
    before = rss()
    t = time.perf_counter()
    idx = AnnIndex(snapshot(g), path, dtype=dtype, connectivity=m, expansion_add=ef_add)
    total = time.perf_counter() - t
    grown, own = rss() - before, idx.memory_bytes
    file_mb = path.stat().st_size / 2**20
    del idx
    gc.collect()
    t = time.perf_counter()
    idx = AnnIndex(snapshot(g), path, dtype=dtype, connectivity=m, expansion_add=ef_add)
    load = time.perf_counter() - t
    assert not idx.rebuilt
    rows = []
    for ef in efs:
        idx.expansion_search = ef
        p50, p99, ans = latency(lambda q, idx=idx: idx.search(q, K), queries)
        top = np.array([a[1][0, 0] for a in ans])
        rows.append(
            {
                "method": f"usearch HNSW {dtype}",
                "params": f"M={m} ef_add={ef_add} ef={ef}",
                "build_s": idx.build_seconds or total,
                "build_and_save_s": total,
                "load_s": load,
                "file_mb": file_mb,
                "memory_mb": grown / 2**20,
                "usearch_memory_mb": own / 2**20,
                "p50_ms": p50,
                "p99_ms": p99,
                "recall1": recall1(top, g, queries, truth),
                "_top": top,
                "ef_search": ef,
                "connectivity": m,
                "expansion_add": ef_add,
            }
        )
    if not keep:
        for f in tmp.glob(f"{path.name}*"):
            f.unlink()
    return rows


def _timed_first_query(make: Callable[[], Any], query: Arr) -> tuple[float, Any]:
    """Seconds from nothing to the first answer of ``make()``'s index, and the index."""
    gc.collect()
    t = time.perf_counter()
    idx = make()
    idx.search(query, K)
    return time.perf_counter() - t, idx


def bench_incremental(
    g: Arr, queries: Arr, m: int, ef_add: int, ef: int, adds: list[int], path: Path
) -> list[dict[str, Any]]:
    """Time from a newer snapshot to the first answered query: incremental vs rebuild.

    ``path`` holds the graph of ``g`` (built by :func:`bench_ann`). Each case: the base plus
    ``add`` new faces (fresh photos of enrolled people), or the base minus one person.
    """
    n = len(g)
    rng = np.random.default_rng(n + 7)
    sigma = np.float32(np.sqrt(1 / 0.95 - 1))
    who = rng.integers(0, n, size=max(adds))
    noise = rng.standard_normal((len(who), DIM), dtype=np.float32) / np.float32(np.sqrt(DIM))
    extra = _unit(g[who] + sigma * noise)
    params = {"connectivity": m, "expansion_add": ef_add, "expansion_search": ef}
    t = time.perf_counter()
    old = AnnIndex(snapshot(g), path, **params)
    base_load = time.perf_counter() - t
    assert not old.rebuilt, "the graph bench_ann saved was not reused"
    cases: list[tuple[str, Snapshot]] = []
    for add in adds:
        cases.append((f"enrol {add} face(s)", snapshot(np.concatenate([g, extra[:add]]), generation=2)))
    gone = n // 2 // PER_PERSON * PER_PERSON  # one person from the middle: not a prefix any more
    cases.append(
        (
            f"remove 1 person ({PER_PERSON} faces)",
            Snapshot(
                2,
                tuple(str(i) for i in range(n) if not gone <= i < gone + PER_PERSON),
                tuple(str(i // PER_PERSON) for i in range(n) if not gone <= i < gone + PER_PERSON),
                np.delete(g, np.s_[gone : gone + PER_PERSON], axis=0),
            ),
        )
    )
    rows: list[dict[str, Any]] = []
    for name, snap in cases:
        memory_s, idx = _timed_first_query(
            lambda snap=snap: refresh_index(old, snap, path, kind="ann"), queries[:1]
        )
        assert isinstance(idx, AnnIndex) and idx.reused and not idx.rebuilt
        file_s, from_file = _timed_first_query(lambda snap=snap: AnnIndex(snap, path, **params), queries[:1])
        assert not from_file.rebuilt
        truth = ExactIndex(snap).search(queries, 1)
        p50, p99, ans = latency(lambda q, idx=idx: idx.search(q, K), queries)
        top = np.array([a[1][0, 0] for a in ans])
        rows.append(
            {
                "case": name,
                "faces": len(snap.face_ids),
                "delta": idx.delta_size,
                "tombstones": idx.tombstones,
                "refresh_in_memory_s": memory_s,
                "from_file_s": file_s,
                "base_load_s": base_load,
                "p50_ms": p50,
                "p99_ms": p99,
                "recall1": recall1(top, snap.vectors, queries, truth),
            }
        )
        print(f"  incremental: {rows[-1]}", file=sys.stderr)
    # the behaviour before: a new generation meant a full rebuild (no usable file), measured
    # once on the largest enrolment; building n + 1 faces takes the same time
    snap = cases[len(adds) - 1][1]
    rebuild_s, _ = _timed_first_query(lambda: AnnIndex(snap, None, **params), queries[:1])
    exact_s, _ = _timed_first_query(lambda: ExactIndex(snap), queries[:1])
    for r in rows:
        r.update(full_rebuild_s=rebuild_s, full_rebuild_faces=len(snap.face_ids), exact_first_query_s=exact_s)
    print(f"  incremental: full rebuild {rebuild_s:.1f} s, exact {exact_s:.3f} s", file=sys.stderr)
    return rows


class Pg:
    """A throwaway PostgreSQL 16 + pgvector cluster (pgserver's binaries) in a temp dir."""

    def __init__(self) -> None:
        import psycopg
        from pgvector.psycopg import register_vector

        self.psycopg = psycopg
        # the 1M index must fit in memory
        self.srv = ThrowawayServer(settings={"shared_buffers": "3GB"})
        try:
            self.srv.start()
            self.conn = psycopg.connect(self.srv.url(), autocommit=True)
        except BaseException:
            self.srv.close()
            raise
        self.conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(self.conn)
        self.version = self.conn.execute("SELECT extversion FROM pg_extension WHERE extname='vector'")
        self.version = self.version.fetchone()[0]  # type: ignore[index]

    def bench(
        self,
        table: str,
        g: Arr,
        queries: Arr,
        truth: tuple[Arr, Any],
        m: int,
        ef_c: int,
        efs: list[int],
        budget_s: float,
    ) -> list[dict[str, Any]]:
        c = self.conn
        c.execute(f"DROP TABLE IF EXISTS {table}")
        c.execute(f"CREATE TABLE {table} (id bigint NOT NULL, v vector({DIM}) NOT NULL)")
        t = time.perf_counter()
        with c.cursor() as cur, cur.copy(f"COPY {table} (id, v) FROM STDIN WITH (FORMAT BINARY)") as cp:
            cp.set_types(["int8", "vector"])
            for i in range(len(g)):
                cp.write_row((i, g[i]))
        load = time.perf_counter() - t
        c.execute("SET maintenance_work_mem = '6GB'")
        c.execute("SET max_parallel_maintenance_workers = 1")  # leader + 1 worker = 2 cores
        c.execute(f"SET statement_timeout = {int(budget_s * 1000)}")
        t = time.perf_counter()
        base = {"method": f"pgvector {self.version} HNSW", "copy_s": load}
        try:
            c.execute(
                f"CREATE INDEX {table}_hnsw ON {table} USING hnsw (v vector_cosine_ops) "
                f"WITH (m = {m}, ef_construction = {ef_c})"
            )
        except self.psycopg.errors.QueryCanceled:
            c.execute(f"DROP TABLE {table}")
            return [
                {
                    **base,
                    "params": f"m={m} ef_construction={ef_c}",
                    "not_measured": f"index build exceeded the {budget_s:.0f} s budget "
                    f"(COPY took {load:.1f} s)",
                }
            ]
        finally:
            c.execute("SET statement_timeout = 0")
        build = time.perf_counter() - t
        c.execute(f"VACUUM ANALYZE {table}")
        size = c.execute(f"SELECT pg_relation_size('{table}_hnsw'), pg_total_relation_size('{table}')")
        idx_bytes, total_bytes = size.fetchone()  # type: ignore[misc]
        sql = f"SELECT id FROM {table} ORDER BY v <=> %s LIMIT {K}"
        plan = "\n".join(r[0] for r in c.execute("EXPLAIN " + sql, (queries[0],)))
        rows = []
        with c.cursor() as cur:
            for ef in efs:
                cur.execute(f"SET hnsw.ef_search = {ef}")

                def search(q: Arr, cur: Any = cur) -> list[Any]:
                    return cur.execute(sql, (q[0],), prepare=True).fetchall()  # type: ignore[no-any-return]

                p50, p99, ans = latency(search, queries)
                top = np.array([a[0][0] for a in ans])
                rows.append(
                    {
                        **base,
                        "params": f"m={m} ef_construction={ef_c} ef_search={ef}",
                        "build_s": build,
                        "memory_mb": idx_bytes / 2**20,
                        "table_mb": total_bytes / 2**20,
                        "p50_ms": p50,
                        "p99_ms": p99,
                        "recall1": recall1(top, g, queries, truth),
                        "_top": top,
                        "ef_search": ef,
                        "uses_index": "hnsw" in plan,
                    }
                )
        c.execute(f"DROP TABLE {table}")
        return rows

    def close(self) -> None:
        try:
            self.conn.close()
        finally:
            self.srv.close()


def crossover(g: Arr, queries: Arr, sizes: list[int]) -> list[dict[str, float]]:
    """Exact single-query p50 against gallery size (slices of one clustered gallery)."""
    out = []
    for n in sizes:
        if n <= len(g):
            idx = ExactIndex(snapshot(g[:n]))
            p50, p99, _ = latency(lambda q, idx=idx: idx.search(q, K), queries[:200])
            out.append({"n": n, "exact_p50_ms": p50, "exact_p99_ms": p99})
            print(f"  crossover: exact n={n}: p50 {p50:.3f} ms", file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--datasets", default="clustered,uniform")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--m", type=int, default=index_mod.ANN_CONNECTIVITY)
    ap.add_argument("--ef-add", type=int, default=index_mod.ANN_EXPANSION_ADD)
    ap.add_argument("--efs", default="16,32,64,128,256,512", help="usearch ef_search values")
    ap.add_argument("--quant-sizes", default="100000", help="sizes (clustered) also run with f16 and i8")
    ap.add_argument("--pg-efs", default="40,100,200")
    ap.add_argument("--pg-ef-construction", type=int, default=64)
    ap.add_argument("--pg-max", type=int, default=1_000_000, help="largest size run on pgvector")
    ap.add_argument("--pg-uniform-max", type=int, default=100_000)
    ap.add_argument("--pg-budget", type=float, default=480.0, help="seconds allowed per pgvector build")
    ap.add_argument("--crossover", default="1000,2000,5000,10000,20000,50000,100000,200000,500000")
    ap.add_argument("--incremental-adds", default="1,1000", help="faces enrolled after the build ('' skips)")
    ap.add_argument("--engines", default="exact,ann,pg", help="which of exact, ann, pg to measure")
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "gallery_scale.json")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    efs, pg_efs = [int(e) for e in a.efs.split(",")], [int(e) for e in a.pg_efs.split(",")]
    quant = {int(s) for s in a.quant_sizes.split(",") if s}
    t_all = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="fp-scale-"))
    engines = set(a.engines.split(","))
    pg: Pg | None = None
    try:
        if "pg" not in engines:
            raise RuntimeError("not asked for (--engines)")
        pg = Pg()
    except Exception as exc:  # the extra may be missing: report, do not fake
        print(f"pgvector skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    data_stats: dict[str, Any] = {}
    curve: list[dict[str, float]] = []
    incremental: list[dict[str, Any]] = []
    adds = [int(x) for x in a.incremental_adds.split(",") if x]
    try:
        for ds in a.datasets.split(","):
            for n in sizes:
                g, queries, qp = make_data(ds, n, a.queries, seed=n)
                truth = ExactIndex(snapshot(g)).search(queries, 10)
                data_stats[f"{ds}-{n}"] = realism(truth, qp)
                print(f"{ds} n={n}: {data_stats[f'{ds}-{n}']}", file=sys.stderr)
                found = [bench_exact(g, queries, truth)] if "exact" in engines else []
                incr = bool(adds) and ds == "clustered" and n == max(sizes) and "ann" in engines
                if "ann" in engines:
                    found += bench_ann(g, queries, truth, "f32", a.m, a.ef_add, efs, tmp, keep=incr)
                if incr:
                    ef = index_mod.ANN_EXPANSION_SEARCH
                    incremental = bench_incremental(
                        g, queries, a.m, a.ef_add, ef, adds, tmp / "ann-f32.usearch"
                    )
                    for r in incremental:
                        r.update(dataset=ds, n=n, params=f"M={a.m} ef_add={a.ef_add} ef={ef}")
                    for f in tmp.glob("ann-f32.usearch*"):
                        f.unlink()
                if ds == "clustered" and n in quant and "ann" in engines:
                    for dt in ("f16", "i8"):
                        found += bench_ann(g, queries, truth, dt, a.m, a.ef_add, efs, tmp)
                pg_max = a.pg_max if ds == "clustered" else a.pg_uniform_max
                if pg is not None and n <= pg_max:
                    found += pg.bench(
                        f"{ds}_{n}", g, queries, truth, a.m, a.pg_ef_construction, pg_efs, a.pg_budget
                    )
                elif pg is not None:
                    found.append(
                        {
                            "method": "pgvector HNSW",
                            "not_measured": f"skipped above {pg_max} faces "
                            "(--pg-max/--pg-uniform-max) to keep the run within its time budget",
                        }
                    )
                for r in found:
                    r.update(dataset=ds, n=n)
                    if "_top" in r:
                        r["recall1_person"] = person_recall1(r.pop("_top"), truth, ds)
                    print(f"  {r}", file=sys.stderr)
                rows += found
                if ds == "clustered" and n == max(sizes) and a.crossover:
                    curve = crossover(g, queries, [int(s) for s in a.crossover.split(",")])
                del g, queries, truth
                gc.collect()
                write_json(
                    a.json, {"rows": rows, "data": data_stats, "incremental": incremental, "partial": True}
                )
    finally:
        if pg is not None:
            pg.close()
        shutil.rmtree(tmp, ignore_errors=True)
    info = {
        **machine(),
        "usearch": _version("usearch"),
        "pgvector_ext": pg.version if pg else None,
        "total_s": time.perf_counter() - t_all,
        "queries": a.queries,
        "k": K,
        "dim": DIM,
    }
    info["args"] = vars(a) | {"json": str(a.json)}
    write_json(
        a.json,
        {
            "rows": rows,
            "data": data_stats,
            "exact_crossover": curve,
            "incremental": incremental,
            "machine": info,
        },
    )
    print_table(rows, curve, incremental)


def _version(pkg: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def print_table(
    rows: list[dict[str, Any]], curve: list[dict[str, float]], incremental: list[dict[str, Any]]
) -> None:
    print("| data | faces | method | params | build s | memory MB | p50 ms | p99 ms | recall@1 | person@1 |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "not_measured" in r:
            print(
                f"| {r['dataset']} | {r['n']:,} | {r['method']} | {r.get('params', '')} | "
                f"not measured: {r['not_measured']} | | | | | |"
            )
            continue
        print(
            f"| {r['dataset']} | {r['n']:,} | {r['method']} | {r['params']} | {r['build_s']:.2f} | "
            f"{r['memory_mb']:.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['recall1']:.3f} | "
            + (f"{r['recall1_person']:.3f} |" if r.get("recall1_person") is not None else "- |")
        )
    if curve:
        print("\nexact search, single query p50 (ms) by gallery size (clustered):")
        print("| faces | " + " | ".join(f"{c['n']:,}" for c in curve) + " |")
        print("|---|" + "---:|" * len(curve))
        print("| p50 ms | " + " | ".join(f"{c['exact_p50_ms']:.3f}" for c in curve) + " |")
    if incremental:
        print("\nnewer snapshot -> first answered query (s), then the updated index's latency and recall:")
        print(
            "| faces | change | delta | removed | in memory s | from file s | full rebuild s "
            "| p50 ms | p99 ms | recall@1 |"
        )
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in incremental:
            print(
                f"| {r['n']:,} | {r['case']} | {r['delta']} | {r['tombstones']} | "
                f"{r['refresh_in_memory_s']:.3f} | {r['from_file_s']:.3f} | {r['full_rebuild_s']:.1f} | "
                f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['recall1']:.3f} |"
            )


if __name__ == "__main__":
    main()
