"""Choose the face clustering algorithm by measurement (issue 12).

LFW dev (``../shared/data/lfw-dev``) is treated as a pile of unlabelled photos: every image
is embedded once with faceprint's default pipeline (``Recognizer()``: largest face per
image; images with no face are reported and left out), and the folder names are used only
to score the clusters.

People split: *train people* are the people named in ``pairsDevTrain.txt``, *test people*
those named in ``pairsDevTest.txt`` minus the train people (LFW's dev splits are disjoint;
the overlap is reported). Each algorithm's parameters are chosen by a grid on the train
people's faces (maximum BCubed F) and then applied unchanged to the test people's faces:
those are the held-out figures.

Algorithms:

* ``chinese-whispers``: ``dlib.chinese_whispers_clustering(vectors, threshold)`` as
  face_recognition's users run it (euclidean distance threshold; folk default 0.5). Run
  on faceprint's unit vectors (euclidean = sqrt(2 - 2 cos)); dlib's raw descriptors are
  not unit length, so the folk 0.5 is also shown rescaled by the median raw norm.
* ``dbscan``: ``sklearn.cluster.DBSCAN(metric="cosine")`` with ``min_samples`` 1 or 2
  and a fitted ``eps`` (cosine distance); noise = not clustered.
* ``hdbscan``: ``sklearn.cluster.HDBSCAN(min_cluster_size=2)`` on the unit vectors with
  euclidean distance (monotone in cosine; sklearn's cosine HDBSCAN builds the full n x n
  matrix), fitted ``min_samples`` and ``cluster_selection_epsilon``.
* ``ours``: ``faceprint.collections.cluster.cluster_faces`` (constrained average linkage
  over a kNN graph), fitted ``threshold`` (average cosine similarity), k default. Imported
  lazily: skipped with a message while the module does not exist.

``ours`` is also run on a synthetic *group photo* variant of the test people: faces of
different people are paired into fake two-face photos (``groups`` = fake photo id), so a
cluster may not hold both faces of one photo; compared with ``groups`` = the image path.

Metrics (``bcubed``, ``pairwise`` below): BCubed precision/recall/F with every
not-clustered face (label -1) counted as its own singleton cluster; pairwise
precision/recall/F over all pairs of faces; clusters found (size >= 2, and all,
singletons and not-clustered faces included) against the true number of people; the
fraction of faces not clustered; wall time.

Speed: faces/s and peak memory growth (VmHWM after the call minus VmRSS before it, peak
reset through /proc/self/clear_refs) clustering synthetic face-like vectors (the
"clustered" generator of bench/gallery_scale.py: one centre per person, 4 faces each), each
algorithm in its own process under a time limit ("skipped: > N s" when it runs past it).

    python bench/clustering.py [--sizes 10000,100000] [--quick] [--out bench/results/clustering.json]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_dir, write_json

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]
Labels = NDArray[np.int64]
Params = dict[str, Any]
CLUSTER_MODULE = "faceprint.collections.cluster"
FOLK_CW = 0.5


# -- metrics ------------------------------------------------------------------------------


def _singletons(pred: Labels) -> Labels:
    """``pred`` with every -1 (not clustered) replaced by a fresh label of its own."""
    out = np.asarray(pred, dtype=np.int64).copy()
    free = out < 0
    base = int(out.max()) + 1 if out.size and out.max() >= 0 else 0
    out[free] = base + np.arange(int(free.sum()))
    return out


def _contingency(truth: Labels, pred: Labels) -> tuple[I64, I64, I64]:
    """(n_ij for the non-empty cells, size of each cell's predicted cluster, size of each
    cell's true class), with not-clustered faces as singletons."""
    p = _singletons(pred)
    _, t = np.unique(truth, return_inverse=True)
    _, pi = np.unique(p, return_inverse=True)
    cells, n_ij = np.unique(pi.astype(np.int64) * (int(t.max()) + 1) + t, return_counts=True)
    a = np.bincount(pi)[cells // (int(t.max()) + 1)]
    b = np.bincount(t)[cells % (int(t.max()) + 1)]
    return n_ij.astype(np.int64), a.astype(np.int64), b.astype(np.int64)


def _f(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def bcubed(truth: Labels, pred: Labels) -> tuple[float, float, float]:
    """BCubed (precision, recall, F): per face, the share of its cluster that is its person
    (precision) and the share of its person that is in its cluster (recall), averaged over
    faces; F is their harmonic mean. Not-clustered faces (-1) are singleton clusters."""
    n_ij, a, b = _contingency(truth, pred)
    n = float(n_ij.sum())
    p = float((n_ij * n_ij / a).sum() / n)
    r = float((n_ij * n_ij / b).sum() / n)
    return p, r, _f(p, r)


def _c2(x: I64) -> I64:
    """Number of unordered pairs among ``x`` items, elementwise."""
    return x * (x - 1) // 2


def pairwise(truth: Labels, pred: Labels) -> tuple[float, float, float]:
    """Pairwise (precision, recall, F) over unordered pairs of faces: a pair is predicted
    together when both faces share a cluster (never for a not-clustered face) and truly
    together when both are one person. Precision is 1 when no pair is predicted."""
    n_ij, _, _ = _contingency(truth, pred)
    p_all = _singletons(pred)
    tp = float(_c2(n_ij).sum())
    pred_pairs = float(_c2(np.unique(p_all, return_counts=True)[1]).sum())
    true_pairs = float(_c2(np.unique(truth, return_counts=True)[1]).sum())
    p = tp / pred_pairs if pred_pairs else 1.0
    r = tp / true_pairs if true_pairs else 1.0
    return p, r, _f(p, r)


def score(truth: Labels, pred: Labels) -> dict[str, Any]:
    """Every figure of one clustering against the truth."""
    pred = np.asarray(pred, dtype=np.int64)
    bp, br, bf = bcubed(truth, pred)
    pp, pr, pf = pairwise(truth, pred)
    sizes = np.unique(pred[pred >= 0], return_counts=True)[1]
    return {
        "bcubed_precision": bp,
        "bcubed_recall": br,
        "bcubed_f": bf,
        "pairwise_precision": pp,
        "pairwise_recall": pr,
        "pairwise_f": pf,
        "clusters_size2plus": int((sizes >= 2).sum()),
        "clusters_all": int(len(sizes) + (pred < 0).sum()),
        "people": len(np.unique(truth)),
        "people_with_2plus_faces": int((np.unique(truth, return_counts=True)[1] >= 2).sum()),
        "not_clustered": float((pred < 0).mean()),
        "faces": len(pred),
    }


# -- algorithms ---------------------------------------------------------------------------


def load_ours() -> Callable[..., Labels] | None:
    """``cluster_faces``, or None (with the reason on stderr) while it cannot be imported."""
    try:
        mod = importlib.import_module(CLUSTER_MODULE)
        fn: Callable[..., Labels] = mod.cluster_faces
        return fn
    except Exception as exc:  # missing module, or one half-written by its author
        print(
            f"ours skipped: cannot import {CLUSTER_MODULE}.cluster_faces ({type(exc).__name__}: {exc})",
            file=sys.stderr,
        )
        return None


def run_cw(x: F32, p: Params, groups: Sequence[Hashable] | None = None) -> Labels:
    import dlib

    vecs = [dlib.vector(row.astype(np.float64).tolist()) for row in x]
    return np.asarray(dlib.chinese_whispers_clustering(vecs, float(p["threshold"])), dtype=np.int64)


def run_dbscan(x: F32, p: Params, groups: Sequence[Hashable] | None = None) -> Labels:
    from sklearn.cluster import DBSCAN  # type: ignore[import-untyped]

    db = DBSCAN(eps=float(p["eps"]), min_samples=int(p["min_samples"]), metric="cosine", algorithm="brute")
    return np.asarray(db.fit_predict(x), dtype=np.int64)


def run_hdbscan(x: F32, p: Params, groups: Sequence[Hashable] | None = None) -> Labels:
    from sklearn.cluster import HDBSCAN

    hd = HDBSCAN(
        min_cluster_size=2,
        min_samples=int(p["min_samples"]),
        cluster_selection_epsilon=float(p["cluster_selection_epsilon"]),
        cluster_selection_method=str(p["method"]),
        metric="euclidean",
        copy=True,
    )
    return np.asarray(hd.fit_predict(x), dtype=np.int64)


def run_ours(x: F32, p: Params, groups: Sequence[Hashable] | None = None) -> Labels:
    fn = load_ours()
    if fn is None:
        raise RuntimeError(f"{CLUSTER_MODULE} is not importable")
    return np.asarray(fn(x, float(p["threshold"]), groups=groups), dtype=np.int64)


RUNNERS: dict[str, Callable[[F32, Params, Sequence[Hashable] | None], Labels]] = {
    "chinese-whispers": run_cw,
    "dbscan-min1": run_dbscan,
    "dbscan-min2": run_dbscan,
    "hdbscan": run_hdbscan,
    "ours": run_ours,
}


def grids(quick: bool) -> dict[str, list[Params]]:
    """Each algorithm's parameter grid (fitted on the train people)."""
    step = 2 if quick else 1
    cw = [round(t, 3) for t in np.arange(0.26, 0.501, 0.01)][::step]
    eps = [round(e, 3) for e in np.arange(0.04, 0.141, 0.005)][::step]
    ours = [round(t, 3) for t in np.arange(0.86, 0.971, 0.005)][::step]
    hd = [
        {"min_samples": m, "method": meth, "cluster_selection_epsilon": e}
        for m in (1, 2, 3)
        for meth in ("eom", "leaf")
        for e in (0.0, 0.3, 0.35, 0.4, 0.45)[:: (2 if quick else 1)]
    ]
    return {
        "chinese-whispers": [{"threshold": t} for t in cw],
        "dbscan-min1": [{"eps": e, "min_samples": 1} for e in eps],
        "dbscan-min2": [{"eps": e, "min_samples": 2} for e in eps],
        "hdbscan": hd,
        "ours": [{"threshold": t} for t in ours],
    }


# -- LFW ----------------------------------------------------------------------------------


def pair_people(path: Path) -> set[str]:
    """Every person named in a View 1 pairs file."""
    out: set[str] = set()
    for line in path.read_text().splitlines()[1:]:
        toks = line.split()
        if len(toks) == 3:
            out.add(toks[0])
        elif len(toks) == 4:
            out.update((toks[0], toks[2]))
    return out


def embed_lfw(lfw: Path, cache: Path | None, workers: int) -> tuple[list[Path], F32, list[Path], str]:
    """(paths with a face, their unit vectors, paths with no face, model id): every image
    embedded once by the default pipeline (largest face) through
    :mod:`faceprint.evaluation.embedset`; ``cache`` (an .npz keyed by the model id and the
    image list) makes reruns fast."""
    from faceprint.evaluation.embedset import PipelineSpec, embed_images, pipeline_model_id

    paths = sorted(lfw.glob("*/*.jpg"))
    spec = PipelineSpec()
    model = pipeline_model_id(spec)
    rel = np.array([str(p.relative_to(lfw)) for p in paths])
    if cache is not None and cache.is_file():
        z = np.load(cache, allow_pickle=False)
        if str(z["model"]) == model and np.array_equal(z["paths"], rel):
            ok = z["ok"]
            print(f"vectors from {cache}", file=sys.stderr)
            return (
                [p for p, o in zip(paths, ok, strict=True) if o],
                z["vectors"][ok].astype(np.float32),
                [p for p, o in zip(paths, ok, strict=True) if not o],
                model,
            )
    t0 = time.perf_counter()
    done = [0]

    def progress(n: int) -> None:
        done[0] += n
        if done[0] % 500 < n:
            print(f"  embedded {done[0]}/{len(paths)} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)

    res = embed_images(spec, paths, pick="largest", workers=workers, progress=progress)
    ok = np.array([res[p].ok for p in paths])
    vecs = np.zeros((len(paths), 128), np.float32)
    for i, p in enumerate(paths):
        v = res[p].vector
        if v is not None:
            vecs[i] = v
    if cache is not None:
        np.savez(cache, paths=rel, ok=ok, vectors=vecs, model=np.array(model))
    return (
        [p for p, o in zip(paths, ok, strict=True) if o],
        vecs[ok],
        [p for p, o in zip(paths, ok, strict=True) if not o],
        model,
    )


def raw_norm_median(paths: Sequence[Path], n: int = 40) -> float | None:
    """Median length of dlib's raw (not normalised) descriptor over ``n`` images, to
    translate face_recognition's folk CW threshold onto unit vectors."""
    try:
        from faceprint.embedding import dlib_onnx
        from faceprint.recognizer import Recognizer

        norms: list[float] = []
        orig: Callable[[Any], F32] = getattr(dlib_onnx, "l2_normalize")  # noqa: B009

        def spy(v: Any) -> F32:
            norms.extend(np.linalg.norm(np.asarray(v, np.float64), axis=-1).tolist())
            return orig(v)

        setattr(dlib_onnx, "l2_normalize", spy)  # noqa: B010
        try:
            rec = Recognizer()
            from faceprint.io import load_image

            for p in list(paths)[:: max(1, len(paths) // n)][:n]:
                img = load_image(p)
                faces = rec.detector.detect(img)
                if faces:
                    from faceprint.selection import largest_face

                    f = largest_face(faces)
                    if f is not None:
                        rec.embed_crops(rec.crops(img, f))
        finally:
            setattr(dlib_onnx, "l2_normalize", orig)  # noqa: B010
        return float(np.median(norms)) if norms else None
    except Exception as exc:
        print(f"raw descriptor norm not measured: {exc}", file=sys.stderr)
        return None


# -- time-bounded runs in a child process ------------------------------------------------


def _child(q: Any, fn_name: str, args: tuple[Any, ...]) -> None:
    try:
        q.put(("ok", globals()[fn_name](*args)))
    except BaseException as exc:  # reported to the parent, which decides
        q.put(("error", f"{type(exc).__name__}: {exc}"))


def bounded(fn_name: str, args: tuple[Any, ...], limit: float) -> tuple[str, Any]:
    """Run module function ``fn_name(*args)`` in a fresh process; ("ok", result),
    ("timeout", None) after ``limit`` seconds, or ("error", message)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_child, args=(q, fn_name, args))
    proc.start()
    deadline = time.monotonic() + limit
    try:
        while True:
            try:
                return q.get(timeout=max(0.1, min(1.0, deadline - time.monotonic())))  # type: ignore[no-any-return]
            except Exception:
                if time.monotonic() > deadline:
                    return ("timeout", None)
                if not proc.is_alive() and q.empty():
                    return ("error", f"child died (exit code {proc.exitcode})")
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def make_clustered(n: int, seed: int = 0, dim: int = 128, per_person: int = 4) -> tuple[F32, Labels]:
    """bench/gallery_scale.py's "clustered" faces: one centre per person (centres about 0.6
    cosine apart), ``per_person`` faces each at cosine 0.93-0.97 (per person) from it."""
    rng = np.random.default_rng(seed)
    people = -(-n // per_person)
    mean = rng.standard_normal((1, dim), dtype=np.float32)
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    tau = np.float32(np.sqrt(1 / 0.6 - 1))
    centres = mean + tau * rng.standard_normal((people, dim), dtype=np.float32) / np.float32(np.sqrt(dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    sigma = np.sqrt(1 / rng.uniform(0.93, 0.97, size=people) - 1).astype(np.float32)
    who = np.arange(n) // per_person
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, 200_000):
        w = who[s : s + 200_000]
        noise = rng.standard_normal((len(w), dim), dtype=np.float32) / np.float32(np.sqrt(dim))
        v = centres[w] + sigma[w, None] * noise
        out[s : s + 200_000] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out, who.astype(np.int64)


def speed_job(algo: str, params: Params, n: int) -> dict[str, Any]:
    """In a child: cluster ``n`` synthetic faces once; wall time, memory, quality."""
    x, truth = make_clustered(n)
    gc.collect()
    reset = True
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        reset = False
    before = _status_kb("VmRSS")
    t0 = time.perf_counter()
    labels = RUNNERS[algo](x, params, None)
    wall = time.perf_counter() - t0
    peak = _status_kb("VmHWM")
    s = score(truth, labels)
    return {
        "faces": n,
        "wall_s": wall,
        "faces_per_s": n / wall,
        "peak_rss_growth_mb": (peak - before) / 1024 if reset else None,
        "rss_growth_mb_at_end": (_status_kb("VmRSS") - before) / 1024,
        "bcubed_f": s["bcubed_f"],
        "clusters_size2plus": s["clusters_size2plus"],
    }


def lfw_job(algo: str, params: Params, x: F32, groups: list[str] | None) -> tuple[list[int], float]:
    t0 = time.perf_counter()
    labels = RUNNERS[algo](x, params, groups)
    return labels.tolist(), time.perf_counter() - t0


# -- the benchmark ------------------------------------------------------------------------


def fit_and_test(
    algo: str,
    grid: list[Params],
    tr: tuple[F32, Labels, list[str]],
    te: tuple[F32, Labels, list[str]],
    limit: float,
) -> dict[str, Any]:
    """Grid on train (max BCubed F), then the chosen parameters on test. ``ours`` and the
    others run in-process (LFW's sizes are small); the whole grid is bounded by ``limit``."""
    t_start = time.perf_counter()
    trials: list[dict[str, Any]] = []
    for p in grid:
        t0 = time.perf_counter()
        try:
            labels = RUNNERS[algo](tr[0], p, tr[2])
        except Exception as exc:  # e.g. sklearn 1.9's HDBSCAN epsilon search on numpy 2
            trials.append({"params": p, "error": f"{type(exc).__name__}: {exc}"})
            continue
        trials.append({"params": p, "wall_s": time.perf_counter() - t0, **score(tr[1], labels)})
        if time.perf_counter() - t_start > limit:
            msg = f"  {algo}: grid stopped after {len(trials)}/{len(grid)} (> {limit:.0f} s)"
            print(msg, file=sys.stderr)
            break
    ok = [t for t in trials if "error" not in t]
    failed = len(trials) - len(ok)
    if failed:
        print(f"  {algo}: {failed} of {len(trials)} settings raised (kept in the grid)", file=sys.stderr)
    if not ok:
        raise RuntimeError(f"every setting raised, first: {trials[0]['error']}")
    best = max(ok, key=lambda t: t["bcubed_f"])
    edge = best["params"] in (grid[0], grid[-1]) and len(trials) == len(grid)
    t0 = time.perf_counter()
    labels = RUNNERS[algo](te[0], best["params"], te[2])
    test = {"wall_s": time.perf_counter() - t0, **score(te[1], labels)}
    return {
        "params": best["params"],
        "train": {k: v for k, v in best.items() if k != "params"},
        "test": test,
        "grid": trials,
        "chosen_at_grid_edge": edge,
        "settings_that_raised": failed,
    }


def _pair_photos(x: F32, truth: Labels, how: str, seed: int = 0) -> I64:
    """Fake photo id of each face: faces of two different people share a photo.
    ``random``: partners drawn at random; ``lookalike``: greedily the most similar pair of
    faces of different people first (the pairs a clusterer is most tempted to merge)."""
    n = len(x)
    photo = np.full(n, -1, np.int64)
    pid = 0
    if how == "random":
        pending: list[int] = []  # faces waiting for a partner of another person
        for i in np.random.default_rng(seed).permutation(n).tolist():
            partner = next((j for j in pending if truth[j] != truth[i]), None)
            if partner is None:
                pending.append(i)
                continue
            pending.remove(partner)
            photo[[partner, i]] = pid
            pid += 1
    else:
        sim = x @ x.T
        sim[truth[:, None] == truth[None, :]] = -np.inf
        iu, ju = np.triu_indices(n, 1)
        vals = sim[iu, ju]
        for e in np.argsort(-vals, kind="stable"):
            if not np.isfinite(vals[e]):
                break
            i, j = int(iu[e]), int(ju[e])
            if photo[i] < 0 and photo[j] < 0:
                photo[[i, j]] = pid
                pid += 1
                if 2 * pid >= n - 1:
                    break
    for j in np.flatnonzero(photo < 0).tolist():  # left over: a photo of their own
        photo[j] = pid
        pid += 1
    return photo


def group_photo_variant(
    fn_params: Params, te: tuple[F32, Labels, list[str]], seed: int = 0
) -> dict[str, Any]:
    """Test people's faces paired into fake two-face photos of two different people:
    ``ours`` with groups = fake photo id (cannot-link inside a photo) vs groups = path
    (no constraint), for random partners and for lookalike partners."""
    x, truth, paths = te
    out: dict[str, Any] = {}
    for how in ("random", "lookalike"):
        photo = _pair_photos(x, truth, how, seed)
        sizes = np.bincount(photo)
        two = np.flatnonzero(sizes == 2)
        res: dict[str, Any] = {"two_face_photos": len(two)}
        for name, groups in (("groups_path", list(paths)), ("groups_photo", [f"photo{g}" for g in photo])):
            t0 = time.perf_counter()
            labels = run_ours(x, fn_params, groups)
            s = score(truth, labels)
            s["wall_s"] = time.perf_counter() - t0
            # two-face photos whose faces ended in one cluster (a cannot-link violated)
            order = np.argsort(photo, kind="stable")
            starts = np.searchsorted(photo[order], two)
            a, b = labels[order[starts]], labels[order[starts + 1]]
            s["photos_in_one_cluster"] = int(((a >= 0) & (a == b)).sum())
            res[name] = s
        out[how] = res
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000", help="synthetic sizes for speed (comma list)")
    ap.add_argument("--quick", action="store_true", help="coarse grids, smallest size only")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "clustering.json")
    ap.add_argument(
        "--cache",
        type=Path,
        default=Path("/tmp/faceprint_clustering_lfwdev.npz"),
        help="embedding cache (.npz); '' for none",
    )
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--time-limit", type=float, default=120.0, help="seconds per parameter grid")
    ap.add_argument("--speed-limit", type=float, default=200.0, help="seconds per speed run")
    ap.add_argument("--embed-only", action="store_true")
    ap.add_argument("--algos", default="chinese-whispers,dbscan-min1,dbscan-min2,hdbscan,ours")
    a = ap.parse_args()

    shared = shared_dir()
    os.environ.setdefault("FACEPRINT_MODELS", str(shared / "models"))
    os.environ.setdefault("FACEPRINT_OFFLINE", "1")
    lfw = shared / "data" / "lfw-dev"
    t_all = time.perf_counter()
    paths, x, no_face, model = embed_lfw(lfw, a.cache if str(a.cache) else None, a.workers)
    print(f"{len(paths)} faces, {len(no_face)} images with no face, model {model}", file=sys.stderr)
    if a.embed_only:
        return
    person = [p.parent.name for p in paths]
    train_people = pair_people(lfw / "pairsDevTrain.txt")
    test_all = pair_people(lfw / "pairsDevTest.txt")
    overlap = sorted(train_people & test_all)
    test_people = test_all - train_people
    names = sorted(set(person))
    code = {n: i for i, n in enumerate(names)}
    y = np.array([code[p] for p in person], np.int64)
    rel = [str(p.relative_to(lfw)) for p in paths]

    def subset(people: set[str]) -> tuple[F32, Labels, list[str]]:
        m = np.array([p in people for p in person])
        return x[m], y[m], [r for r, k in zip(rel, m, strict=True) if k]

    tr, te = subset(train_people), subset(test_people)
    print(
        f"train: {len(tr[0])} faces of {len(set(tr[1].tolist()))} people; "
        f"test: {len(te[0])} faces of {len(set(te[1].tolist()))} people; overlap {len(overlap)}",
        file=sys.stderr,
    )

    algos = [s for s in a.algos.split(",") if s]
    ours_fn = load_ours() if "ours" in algos else None
    if ours_fn is None and "ours" in algos:
        algos.remove("ours")
    g = grids(a.quick)
    results: dict[str, Any] = {}
    for algo in algos:
        print(f"fitting {algo} ({len(g[algo])} settings)", file=sys.stderr)
        try:
            results[algo] = fit_and_test(algo, g[algo], tr, te, a.time_limit)
        except Exception as exc:
            results[algo] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"  {algo} failed: {exc}", file=sys.stderr)
    raw_norm = raw_norm_median(paths)
    if "chinese-whispers" in algos:
        extra: dict[str, Any] = {}
        thresholds = {"folk_0.5_on_unit": FOLK_CW}
        if raw_norm:
            thresholds["folk_0.5_rescaled"] = round(FOLK_CW / raw_norm, 4)
        for name, t in thresholds.items():
            extra[name] = {
                "threshold": t,
                "train": score(tr[1], run_cw(tr[0], {"threshold": t})),
                "test": score(te[1], run_cw(te[0], {"threshold": t})),
            }
        results["chinese-whispers"]["folk_default"] = extra
    group_variant = None
    if "ours" in algos and "params" in results.get("ours", {}):
        group_variant = group_photo_variant(results["ours"]["params"], te)

    sizes = [int(s) for s in a.sizes.split(",") if s]
    if a.quick:
        sizes = [min(*sizes, 5000)]
    speed: dict[str, dict[str, Any]] = {}
    for n in sizes:
        for algo in algos:
            r = results.get(algo, {})
            if "params" not in r:
                continue
            if algo == "dbscan-min2":  # same neighbourhood search as min1
                continue
            print(f"speed: {algo} at {n:,}", file=sys.stderr)
            if any("skipped" in v for v in speed.get(algo, {}).values()):
                speed[algo][str(n)] = {"skipped": f"not run: > {a.speed_limit:.0f} s at a smaller size"}
                continue
            status, val = bounded("speed_job", (algo, r["params"], n), a.speed_limit)
            if status == "ok":
                speed.setdefault(algo, {})[str(n)] = val
            elif status == "timeout":
                speed.setdefault(algo, {})[str(n)] = {"skipped": f"> {a.speed_limit:.0f} s"}
            else:
                speed.setdefault(algo, {})[str(n)] = {"error": val}

    payload = {
        "machine": machine(),
        "model": model,
        "pipeline": "Recognizer() default (largest face per image)",
        "data": {
            "lfw_dev_images": len(paths) + len(no_face),
            "faces": len(paths),
            "no_face": [str(p.relative_to(lfw)) for p in no_face],
            "train_people": len(train_people),
            "train_faces": len(tr[0]),
            "test_people": len(test_people),
            "test_faces": len(te[0]),
            "overlap_people": overlap,
        },
        "dlib_raw_descriptor_median_norm": raw_norm,
        "ours_available": ours_fn is not None,
        "quick": a.quick,
        "time_limit_s": {"grid": a.time_limit, "speed_run": a.speed_limit},
        "algorithms": results,
        "group_photo_variant": group_variant,
        "speed": speed,
        "notes": [
            "BCubed and pairwise figures count each not-clustered face (-1) as its own singleton cluster.",
            "Parameters chosen on train people (max BCubed F), figures under 'test' are held out.",
            "chinese-whispers runs on unit vectors; euclidean = sqrt(2 - 2 cosine).",
            "hdbscan uses euclidean distance on unit vectors (monotone in cosine); settings with "
            "cluster_selection_epsilon > 0 raise TypeError inside sklearn's epsilon_search here "
            "(sklearn 1.9.1, numpy 2), kept in the grid as errors.",
            "dbscan min_samples=2 gives the same partition as min_samples=1 once noise counts as "
            "singletons, so its speed is not measured separately.",
            "group_photo_variant: 'random' pairs faces of different people at random, 'lookalike' "
            "greedily pairs the most similar faces of different people first.",
            "speed: synthetic 'clustered' vectors (bench/gallery_scale.py's generator), each run in its own "
            "process; peak_rss_growth_mb = VmHWM after minus VmRSS before (VmHWM reset via clear_refs).",
        ],
        "total_wall_s": time.perf_counter() - t_all,
    }
    write_json(a.out, payload)
    print_table(payload)


def print_table(payload: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=200)
    t = Table(title="held-out (test people) clustering of LFW dev, parameters fitted on train people")
    for c in (
        "algorithm",
        "params",
        "B3 P",
        "B3 R",
        "B3 F",
        "train B3 F",
        "pair P",
        "pair R",
        "pair F",
        "clusters>=2 / all / people",
        "not clustered",
        "s",
    ):
        t.add_column(c)
    for algo, r in payload["algorithms"].items():
        if "test" not in r:
            t.add_row(algo, r.get("error", "?"))
            continue
        rows = [(algo, r["params"], r["test"], r["train"]["bcubed_f"])]
        for name, fd in r.get("folk_default", {}).items():
            folk = {"threshold": fd["threshold"]}
            rows.append((f"{algo} ({name})", folk, fd["test"], fd["train"]["bcubed_f"]))
        for label, p, s, trf in rows:
            t.add_row(
                label,
                ", ".join(f"{k}={v}" for k, v in p.items()),
                f"{s['bcubed_precision']:.3f}",
                f"{s['bcubed_recall']:.3f}",
                f"{s['bcubed_f']:.3f}",
                f"{trf:.3f}",
                f"{s['pairwise_precision']:.3f}",
                f"{s['pairwise_recall']:.3f}",
                f"{s['pairwise_f']:.3f}",
                f"{s['clusters_size2plus']} / {s['clusters_all']} / {s['people']}",
                f"{s['not_clustered']:.1%}",
                f"{s.get('wall_s', float('nan')):.2f}",
            )
    con.print(t)
    gv = payload.get("group_photo_variant")
    if gv:
        g = Table(title="ours on fake 2-face group photos of the test people")
        for c in ("pairing", "groups", "B3 P", "B3 R", "B3 F", "pair P", "pair F", "photos in one cluster"):
            g.add_column(c)
        for how, name in [(h, n) for h in ("random", "lookalike") for n in ("groups_path", "groups_photo")]:
            s = gv[how][name]
            g.add_row(
                f"{how} ({gv[how]['two_face_photos']})",
                name,
                f"{s['bcubed_precision']:.4f}",
                f"{s['bcubed_recall']:.4f}",
                f"{s['bcubed_f']:.4f}",
                f"{s['pairwise_precision']:.4f}",
                f"{s['pairwise_f']:.4f}",
                str(s["photos_in_one_cluster"]),
            )
        con.print(g)
    sp = Table(title="speed on synthetic clustered vectors (LFW-fitted parameters)")
    for c in ("algorithm", "faces", "wall s", "faces/s", "peak RSS growth MB", "synthetic B3 F"):
        sp.add_column(c)
    for algo, by_n in payload["speed"].items():
        for n, r in by_n.items():
            if "wall_s" not in r:
                sp.add_row(algo, n, r.get("skipped") or r.get("error", "?"))
                continue
            pk = r["peak_rss_growth_mb"]
            sp.add_row(
                algo,
                n,
                f"{r['wall_s']:.2f}",
                f"{r['faces_per_s']:,.0f}",
                "?" if pk is None else f"{pk:.0f}",
                f"{r['bcubed_f']:.3f}",
            )
    con.print(sp)


if __name__ == "__main__":
    main()
