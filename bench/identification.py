"""Open-set identification on LFW dev, against face_recognition 1.3.0 on the same protocol;
and (``--fit-impostors``) the impostor score distribution shipped for the open-set threshold.

Protocol (all 4,992 LFW dev images; the face nearest the image centre):

* gallery: the first image (by index) of every person with >= 2 images; known probes:
  their other images; unknown probes (strangers): every image of the people with 1 image.
* closed-set rank-1: the top person is right (known probes).
* DIR@FAR=x: the fraction of known probes whose top person is right AND scores at or
  above the threshold at which a fraction x of strangers is named (FAR).
* the default operating point: ``open_set_threshold(model, K=enrolled people, 0.01)``,
  from the impostor distribution fitted on pairsDevTrain people only (the strangers here
  include pairsDevTest people, held out of that fit, and pairsDevTrain people).
* a second gallery enrols up to 2 images of each person with >= 3 images (1 for people
  with 2) to compare person-level methods (max, mean of similarities, re-normalised mean
  vector, top-2 mean); and cohort score normalisation against the gallery's own scores.
* face_recognition: HOG, first encoding of each image, nearest enrolled face by
  ``face_distance``, at tolerance 0.6 and at thresholds refitted for FAR 1% / 10%.

Images without a face: an enrolment image without one leaves its person unenrolled (their
known probes then count as misses); a probe without one is a miss, or a rejected stranger.

    python bench/identification.py [--workers 2] [--cache /tmp/faceprint_ident.npz]
    python bench/identification.py --views [--flip]
        # also a gallery enrolled with views (faceprint.recognizer.VIEW_ZOOMS: each enrolled
        # vector averages the face's crop, mirror and two re-crops; probes stay one crop),
        # at its own default operating point
    python bench/identification.py --embedder mobilefacenet|faceplugin|dlib-onnx+mobilefacenet|... \
        [--flip] [--views] [--fit-impostors]
        # another embedder or a fusion: vectors from bench/_parts.py (each part embeds each
        # image once; fusions combined exactly as FusedEmbedder does, checked there), no
        # face_recognition peer; writes bench/results/identification_<embedder>[_flip].json
    python bench/identification.py --fit-impostors [--flip] [--views]
        # writes gallery/impostors/<model id>.json, e.g. dlib@resnet_v1+55533b28(+flip).json,
        # and with --views <model id>+views.json (probe vectors against view-averaged
        # enrolled ones); dlib and dlib-onnx share that id (same weights), so one file serves
        # both. The fit embeds only the pairsDevTrain people's images (pairsDevTest people
        # stay held out).

Writes bench/results/identification.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_dir, write_json
from faceprint.evaluation import metrics
from faceprint.evaluation.pairs import central_face, read_pairs
from faceprint.gallery import scoring

_W: dict[str, Any] = {}


# -- embedding (once per image, cached) ---------------------------------------------------
def _init(models_dir: str, with_fr: bool, flip: bool = False, views: bool = False) -> None:
    import os

    os.environ["FACEPRINT_MODELS"] = models_dir
    import faceprint

    _W["rec"] = faceprint.Recognizer(detector="yunet", embedder="dlib-onnx", threads=1, flip=flip)
    _W["fr"] = None
    _W["views"] = views
    if with_fr:
        import face_recognition

        _W["fr"] = face_recognition


def _work(path: str) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    from faceprint.io import load_image

    rec = _W["rec"]
    img = load_image(path)
    face = central_face(rec.detector.detect(img), img.shape)
    ours = views = None
    if face is not None:
        (f,) = rec.embed(img, [face])
        ours = np.asarray(f.embedding, np.float32)
        if _W["views"]:
            ((fv,),) = rec.embed_batch([img], [[face]], views=True)
            views = np.asarray(fv.embedding, np.float32)
    fr_vec = None
    if _W["fr"] is not None:
        encs = _W["fr"].face_encodings(_W["fr"].load_image_file(path))
        fr_vec = np.asarray(encs[0], np.float64) if encs else None
    return ours, fr_vec, views


def list_images(root: Path) -> dict[str, list[Path]]:
    """Every person's images, sorted by LFW index."""
    return {d.name: sorted(d.glob("*.jpg")) for d in sorted(root.iterdir()) if d.is_dir()}


def embed_images(
    paths: list[Path],
    models_dir: Path,
    workers: int,
    with_fr: bool,
    cache: Path | None,
    flip: bool = False,
    views: bool = False,
) -> dict[str, dict[Path, np.ndarray | None]]:
    """{"ours": {path: vector or None}, "fr": {...}, "views": {...}}, from ``cache`` when
    it holds them all."""
    if cache is not None and cache.is_file():
        z = np.load(cache, allow_pickle=False)
        cached = [Path(p) for p in z["paths"]]
        if set(paths) <= set(cached) and (not with_fr or "fr" in z) and (not views or "views" in z):
            out: dict[str, dict[Path, np.ndarray | None]] = {}
            for key in ("ours", "fr", "views"):
                if key in z:  # read each array once: NpzFile re-reads on every access
                    arr, ok = z[key], z[f"{key}_ok"]
                    out[key] = {p: (arr[i] if ok[i] else None) for i, p in enumerate(cached)}
            print(f"vectors from {cache}", file=sys.stderr)
            return out
    t0 = time.perf_counter()
    rows: list[tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]] = []
    with mp.get_context("spawn").Pool(workers, _init, (str(models_dir), with_fr, flip, views)) as pool:
        for i, r in enumerate(pool.imap(_work, [str(p) for p in paths], chunksize=8)):
            rows.append(r)
            if i % 250 == 0:
                print(f"{i}/{len(paths)} images, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    out = {"ours": {p: r[0] for p, r in zip(paths, rows, strict=True)}}
    arrays: dict[str, np.ndarray] = {"paths": np.array([str(p) for p in paths])}
    keys = [("ours", 0, 128)] + ([("fr", 1, 128)] if with_fr else []) + ([("views", 2, 128)] if views else [])
    for key, j, dim in keys:
        out[key] = {p: r[j] for p, r in zip(paths, rows, strict=True)}
        arrays[key] = np.stack([r[j] if r[j] is not None else np.zeros(dim) for r in rows])
        arrays[f"{key}_ok"] = np.array([r[j] is not None for r in rows])
    if cache is not None:
        np.savez(cache, **arrays)  # type: ignore[arg-type]
    return out


def part_store_vectors(
    root: Path, paths: list[Path], name: str, flip: bool, views: bool, threads: int
) -> dict[str, dict[Path, np.ndarray | None]]:
    """{"ours": ..., "views": ...} for embedder or fusion ``name`` from bench/_parts.py's
    per-part vectors of every LFW dev image (the cache /tmp/faceprint_parts.npz that
    bench/fusion.py fills), with the fusion weights faceprint ships."""
    from _parts import VIEWS, part_vectors
    from faceprint.embedding.fused import parse
    from faceprint.registry import is_fused

    parts, weights = (parse(name)[0], parse(name)[1].weights) if is_fused(name) else ([name], (1.0,))
    every = sorted(root.glob("*/*.jpg"))
    pv = part_vectors(
        every, Path("/tmp/faceprint_parts.npz"), parts, VIEWS if views else ("crop", "mirror"), threads
    )
    pos = pv.index()
    kinds = {"ours": "flip" if flip else "plain", **({"views": "views"} if views else {})}
    out: dict[str, dict[Path, np.ndarray | None]] = {}
    for key, kind in kinds.items():
        arr = pv.kind(parts, weights, kind)
        out[key] = {p: (arr[pos[p]] if pv.ok[pos[p]] else None) for p in paths}
    return out


# -- the protocol -------------------------------------------------------------------------
@dataclass
class Protocol:
    gallery: list[tuple[str, Path]]  # (person, image), possibly several per person
    known: list[tuple[str, Path]]
    unknown: list[Path]
    people: int


def build_protocol(images: dict[str, list[Path]], per_person: int = 1) -> Protocol:
    """Enrol the first image of every person with >= 2 images (the first ``per_person``
    of those with > ``per_person``, always leaving one probe); probe with the rest, and
    with every image of the people who have one image."""
    gallery, known, unknown = [], [], []
    people = 0
    for name, paths in images.items():
        if len(paths) < 2:
            unknown.extend(paths)
            continue
        k = min(per_person, len(paths) - 1)
        gallery += [(name, p) for p in paths[:k]]
        known += [(name, p) for p in paths[k:]]
        people += 1
    return Protocol(gallery, known, unknown, people)


@dataclass
class Scored:
    """Per probe: the top person's score, and whether that person is right (known)."""

    known_top: np.ndarray
    known_correct: np.ndarray
    unknown_top: np.ndarray
    people: int


def score_cosine(
    proto: Protocol,
    vec: dict[Path, np.ndarray | None],
    method: str = "max",
    cohort: str | None = None,
    enrolled: dict[Path, np.ndarray | None] | None = None,
) -> Scored:
    """Score every probe against the gallery with a person-level ``method`` (or
    ``"centroid"``: the re-normalised mean vector); optionally normalise each probe's
    top score against the other people's scores (``cohort``: "all" or "topN").
    ``enrolled``: the gallery's vectors when they differ from the probes' (views)."""
    ev = vec if enrolled is None else enrolled
    g = [(n, ev[p]) for n, p in proto.gallery if ev[p] is not None]
    names = [n for n, _ in g]
    G = np.stack([v for _, v in g]).astype(np.float32)
    if method == "centroid":
        names, G = scoring.person_centroids(G, names)
        method = "max"

    def tops(paths: list[Path]) -> tuple[np.ndarray, list[str | None]]:
        has = [vec[p] is not None for p in paths]
        P = np.stack([vec[p] if vec[p] is not None else np.zeros(G.shape[1], np.float32) for p in paths])
        people, S = scoring.person_score_matrix(P @ G.T, names, method)
        order = np.argsort(-S, axis=1)
        top = S[np.arange(len(S)), order[:, 0]]
        if cohort is not None:
            srt = np.take_along_axis(S, order, axis=1)[:, 1:]
            if cohort != "all":
                srt = srt[:, : int(cohort.removeprefix("top"))]
            top = (top - srt.mean(axis=1)) / np.maximum(srt.std(axis=1), 1e-6)
        top = np.where(has, top, -np.inf)  # no face: never above any threshold
        return top, [people[i] if h else None for i, h in zip(order[:, 0], has, strict=True)]

    kt, kp = tops([p for _, p in proto.known])
    ut, _ = tops(proto.unknown)
    correct = np.array([a == b for (a, _), b in zip(proto.known, kp, strict=True)])
    return Scored(kt, correct, ut, len(set(names)))


def score_face_recognition(proto: Protocol, vec: dict[Path, np.ndarray | None]) -> Scored:
    """face_recognition's way: the nearest enrolled face by Euclidean distance (what
    ``face_distance`` computes); scores are negated distances (higher = more alike)."""
    g = [(n, vec[p]) for n, p in proto.gallery if vec[p] is not None]
    G = np.stack([v for _, v in g])

    def tops(paths: list[Path]) -> tuple[np.ndarray, list[str | None]]:
        has = np.array([vec[p] is not None for p in paths])
        P = np.stack([vec[p] if vec[p] is not None else np.zeros(G.shape[1]) for p in paths])
        d = np.sqrt(np.maximum((P**2).sum(1)[:, None] - 2 * P @ G.T + (G**2).sum(1)[None, :], 0))
        j = d.argmin(axis=1)
        top = np.where(has, -d[np.arange(len(P)), j], -np.inf)
        return top, [g[i][0] if h else None for i, h in zip(j, has, strict=True)]

    kt, kp = tops([p for _, p in proto.known])
    ut, _ = tops(proto.unknown)
    correct = np.array([a == b for (a, _), b in zip(proto.known, kp, strict=True)])
    return Scored(kt, correct, ut, len({n for n, _ in g}))


def at_threshold(s: Scored, t: float) -> dict[str, float | None]:
    """Stranger false-alarm rate and DIR when a score >= ``t`` names someone."""
    return {
        "threshold": t,
        "far": metrics.false_alarm_rate(s.unknown_top, t),
        "dir": metrics.dir_at_threshold(s.known_top, s.known_correct, t),
    }


def dir_at_far(s: Scored, far: float) -> dict[str, float | None]:
    """DIR at the lowest threshold that names at most ``far`` of the strangers."""
    p = metrics.dir_at_far(s.known_top, s.known_correct, s.unknown_top, far)
    return {"threshold": p.threshold, "far": p.far, "dir": p.dir}


def summarise(s: Scored) -> dict[str, Any]:
    return {
        "rank1": float(np.mean(s.known_correct)),
        "dir_at_far_1": dir_at_far(s, 0.01),
        "dir_at_far_10": dir_at_far(s, 0.10),
        "enrolled_people": s.people,
    }


# -- the impostor distribution (--fit-impostors) ------------------------------------------
def train_people(root: Path) -> list[str]:
    """The people of pairsDevTrain: the only ones an impostor fit may see."""
    return sorted({n for p in read_pairs(root / "pairsDevTrain.txt").pairs for n in (p.name_a, p.name_b)})


def fit_impostors(
    root: Path,
    vec: dict[Path, np.ndarray | None],
    model: str,
    flip: bool = False,
    seed: int = 0,
    enrolled: dict[Path, np.ndarray | None] | None = None,
    embedder: str = "dlib-onnx",
) -> dict[str, Any]:
    """The impostor distribution of every cross-person pair of pairsDevTrain people's
    images, as an upper-quantile table plus a GPD tail, and checks of the tail fit and of
    the independence assumption behind 1 - F(t)^K. ``enrolled``: the enrolled side's
    vectors when they differ from the probes' (views): each pair is then scored both ways."""
    names = train_people(root)
    ev = vec if enrolled is None else enrolled
    imgs = [
        (n, p)
        for n in names
        for p in sorted((root / n).glob("*.jpg"))
        if vec.get(p) is not None and ev.get(p) is not None
    ]
    pos = {n: i for i, n in enumerate(names)}
    who = np.array([pos[n] for n, _ in imgs])
    V = np.stack([vec[p] for _, p in imgs]).astype(np.float32)
    G = np.stack([ev[p] for _, p in imgs]).astype(np.float32)  # the enrolled side
    iu, ju = np.triu_indices(len(V), 1)
    diff = who[iu] != who[ju]
    full = V @ G.T
    S = full[iu[diff], ju[diff]]
    if enrolled is not None:
        S = np.concatenate([S, full[ju[diff], iu[diff]]])
    del iu, ju, full
    S.sort()
    n = len(S)
    how = (" with flip TTA" if flip else "") + (
        " against enrolled vectors averaged over the face's views (faceprint.recognizer.VIEW_ZOOMS), "
        "each pair scored both ways"
        if enrolled is not None
        else ""
    )
    source = (
        "LFW dev, pairsDevTrain people only; every cross-person pair of their images; "
        f"yunet detector, face nearest the image centre, {embedder} embedder{how} "
        + ("(= dlib: same weights, same id)" if embedder == "dlib-onnx" else "")
        + "; python bench/identification.py --fit-impostors"
        + ("" if embedder == "dlib-onnx" else f" --embedder {embedder}")
        + (" --flip" if flip else "")
        + (" --views" if enrolled is not None else "")
    )
    data = {**scoring.fit_distribution(S, model, source), "people": len(names), "images": len(imgs)}
    tail = data["tail_fit"]
    u, p_u, xi, sigma = tail["u"], tail["p_u"], tail["xi"], tail["sigma"]
    dist = scoring.ImpostorDistribution(data)
    # the fit's form, checked where the data still resolves the tail (10x to 1000x beyond u)
    data["tail_check"] = [
        {
            "exceedance": p,
            "empirical": float(S[int(n * (1 - p))]),
            "gpd_from_u": u + sigma / xi * ((p / p_u) ** (-xi) - 1.0),
        }
        for p in (1e-4, 1e-5, 1e-6)
    ]
    # independence: random galleries of K train people (one image each), the other train
    # people's images as strangers; the stranger FAR at t(K, far) against its target
    rng = np.random.default_rng(seed)
    by_person: dict[int, list[int]] = {}
    for i, w in enumerate(who):
        by_person.setdefault(int(w), []).append(i)
    people = np.array(sorted(by_person))
    checks = []
    for k in (10, 100, 1000):
        for far in (0.01, 0.1):
            t = dist.quantile_exceedance(scoring.per_comparison_far(far, k))
            named = total = 0
            for _ in range(40):
                g = rng.permutation(people)
                gi = np.array([rng.choice(by_person[int(x)]) for x in g[:k]])
                si = np.array([i for x in g[k:] for i in by_person[int(x)]])
                top = (V[si] @ G[gi].T).max(axis=1)
                named += int((top >= t).sum())
                total += len(si)
            checks.append({"K": k, "target_far": far, "threshold": t, "measured_far": named / total})
    data["independence_check"] = checks
    return data


# -- the benchmark ------------------------------------------------------------------------
def run_benchmark(
    root: Path,
    images: dict[str, list[Path]],
    vecs: dict[str, dict[Path, Any]],
    model: str,
    one_to_one: float,
) -> dict[str, Any]:
    """Every figure of the table, as a JSON-ready dict (the future CLI command's core)."""
    ours = vecs["ours"]
    one = build_protocol(images, 1)
    two = build_protocol(images, 2)
    res: dict[str, Any] = {
        "protocol": {
            "enrolled_people": one.people,
            "known_probes": len(one.known),
            "unknown_probes": len(one.unknown),
            "gallery_faces_variant2": len(two.gallery),
            "known_probes_variant2": len(two.known),
        },
        "no_face_images": {k: sum(v is None for v in d.values()) for k, d in vecs.items()},
    }
    base = score_cosine(one, ours)
    r = summarise(base)
    k = base.people
    train = {n for p in read_pairs(root / "pairsDevTrain.txt").pairs for n in (p.name_a, p.name_b)}
    in_fit = np.array([p.parent.name in train for p in one.unknown])
    for far in (0.01, 0.1):
        t = scoring.open_set_threshold(model, k, far)
        r[f"default_point_far_{far:g}"] = {
            **at_threshold(base, t),
            "target_far": far,
            "K": k,
            # strangers whose images the impostor fit saw (pairsDevTrain) and held-out ones
            "far_pairsDevTrain_strangers": float(np.mean(base.unknown_top[in_fit] >= t)),
            "far_pairsDevTest_strangers": float(np.mean(base.unknown_top[~in_fit] >= t)),
            "strangers_pairsDevTrain_pairsDevTest": [int(in_fit.sum()), int((~in_fit).sum())],
        }
    r["one_to_one_threshold"] = at_threshold(base, one_to_one)  # what a fixed 1:1 threshold does
    res["ours"] = r
    if "views" in vecs:  # the same protocol, every enrolled vector averaged over its views
        sv = score_cosine(one, ours, enrolled=vecs["views"])
        rv = summarise(sv)
        for far in (0.01, 0.1):
            t = scoring.open_set_threshold(scoring.views_id(model), sv.people, far)
            rv[f"default_point_far_{far:g}"] = {
                **at_threshold(sv, t),
                "target_far": far,
                "K": sv.people,
                "far_pairsDevTrain_strangers": float(np.mean(sv.unknown_top[in_fit] >= t)),
                "far_pairsDevTest_strangers": float(np.mean(sv.unknown_top[~in_fit] >= t)),
            }
            # what the one-crop distribution would do with these vectors (why views have their own)
            t1 = scoring.open_set_threshold(model, sv.people, far)
            rv[f"one_crop_distribution_far_{far:g}"] = at_threshold(sv, t1)
        res["ours_views"] = rv
    if "fr" in vecs:
        fr = score_face_recognition(one, vecs["fr"])
        f = summarise(fr)
        f["tolerance_0.6"] = at_threshold(fr, -0.6)
        res["face_recognition"] = f
    multi = {n for n, ps in images.items() if len(ps) >= 3}
    sub = np.array([n in multi for n, _ in two.known])
    res["protocol"]["known_probes_variant2_multi_face_people"] = int(sub.sum())
    methods: dict[str, Any] = {}
    for m in ("max", "mean", "centroid", "top2"):
        s = score_cosine(two, ours, m)
        methods[m] = summarise(s)
        s_multi = Scored(s.known_top[sub], s.known_correct[sub], s.unknown_top, s.people)
        methods[m]["multi_face_people_only"] = summarise(s_multi)
    res["variant2_methods"] = methods
    cohorts: dict[str, Any] = {}
    for c in ("all", "top200", "top50", "top10"):
        cohorts[c] = summarise(score_cosine(one, ours, "max", cohort=c))
    res["cohort_normalisation"] = cohorts
    return res


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def print_table(res: dict[str, Any], pipeline: str = "yunet+dlib-onnx") -> None:
    pr = res["protocol"]
    print(
        f"LFW dev open-set identification: {pr['enrolled_people']} people enrolled (1 image each), "
        f"{pr['known_probes']} known probes, {pr['unknown_probes']} stranger probes"
    )
    print("| pipeline | rank-1 | DIR@FAR=1% | DIR@FAR=10% | operating point: strangers named | DIR there |")
    print("|---|---|---|---|---|---|")
    o = res["ours"]
    d1 = o["default_point_far_0.01"]
    print(
        f"| faceprint {pipeline} | {_pct(o['rank1'])} | {_pct(o['dir_at_far_1']['dir'])} "
        f"| {_pct(o['dir_at_far_10']['dir'])} "
        f"| {_pct(d1['far'])} (default, target 1%, t={d1['threshold']:.3f}) "
        f"| {_pct(d1['dir'])} |"
    )
    if "ours_views" in res:
        v = res["ours_views"]
        dv = v["default_point_far_0.01"]
        print(
            f"| faceprint, enrolled with views | {_pct(v['rank1'])} | {_pct(v['dir_at_far_1']['dir'])} "
            f"| {_pct(v['dir_at_far_10']['dir'])} "
            f"| {_pct(dv['far'])} (default, target 1%, t={dv['threshold']:.3f}) "
            f"| {_pct(dv['dir'])} |"
        )
    t1 = o["one_to_one_threshold"]
    print(
        f"| faceprint, at the 1:1 verification threshold | | | | {_pct(t1['far'])} (t={t1['threshold']:.3f}) "
        f"| {_pct(t1['dir'])} |"
    )
    if "face_recognition" in res:
        f = res["face_recognition"]
        t6 = f["tolerance_0.6"]
        print(
            f"| face_recognition 1.3.0 | {_pct(f['rank1'])} | {_pct(f['dir_at_far_1']['dir'])} "
            f"| {_pct(f['dir_at_far_10']['dir'])} | {_pct(t6['far'])} (tolerance 0.6) | {_pct(t6['dir'])} |"
        )
    print(
        "\nPerson-level method, gallery of up to 2 images per person (DIR@FAR=1%; all / multi-face people):"
    )
    print("| method | rank-1 | DIR@FAR=1% | DIR@FAR=1%, people with 2 enrolled faces |")
    print("|---|---|---|---|")
    for m, v in res["variant2_methods"].items():
        mf = v["multi_face_people_only"]
        print(
            f"| {m} | {_pct(v['rank1'])} | {_pct(v['dir_at_far_1']['dir'])} "
            f"| {_pct(mf['dir_at_far_1']['dir'])} |"
        )
    print("\nCohort normalisation of the top score (z against the other people's scores):")
    print("| cohort | DIR@FAR=1% | DIR@FAR=10% |")
    print("|---|---|---|")
    print(f"| none | {_pct(o['dir_at_far_1']['dir'])} | {_pct(o['dir_at_far_10']['dir'])} |")
    for c, v in res["cohort_normalisation"].items():
        print(f"| {c} | {_pct(v['dir_at_far_1']['dir'])} | {_pct(v['dir_at_far_10']['dir'])} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=shared_dir() / "data" / "lfw-dev")
    ap.add_argument("--models-dir", type=Path, default=shared_dir() / "models")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache", type=Path, help="vectors (default /tmp/faceprint_identification[_flip].npz)")
    ap.add_argument("--no-face-recognition", action="store_true", help="skip the face_recognition peer")
    ap.add_argument("--fit-impostors", action="store_true", help="refit and rewrite gallery/impostors/*.json")
    ap.add_argument("--flip", action="store_true", help="flip test-time augmentation (its own distribution)")
    ap.add_argument(
        "--views", action="store_true", help="also enrol with views (faceprint.recognizer.VIEW_ZOOMS)"
    )
    ap.add_argument("--embedder", default="dlib-onnx", help="an embedder or a fusion (see the module doc)")
    ap.add_argument(
        "--json", type=Path, help="default bench/results/identification[_<embedder>][_flip][_views].json"
    )
    a = ap.parse_args()
    suffix = ("_flip" if a.flip else "") + ("_views" if a.views else "")
    cache = a.cache or Path(f"/tmp/faceprint_identification{suffix}.npz")
    os.environ["FACEPRINT_MODELS"] = str(a.models_dir)
    from faceprint.evaluation.embedset import PipelineSpec, pipeline_model_id
    from faceprint.registry import create_embedder

    embedder = create_embedder(a.embedder)
    model = pipeline_model_id(PipelineSpec("yunet", a.embedder, a.flip))  # dlib-onnx: = dlib's (same weights)
    one_to_one = embedder.flip_threshold if a.flip else embedder.default_threshold
    images = list_images(a.root)
    if a.fit_impostors:  # the fit sees pairsDevTrain people only; the others stay held out
        images = {n: images[n] for n in train_people(a.root)}
    paths = [p for ps in images.values() for p in ps]
    with_fr = not (a.no_face_recognition or a.fit_impostors)
    t0 = time.perf_counter()
    if a.embedder == "dlib-onnx":
        vecs = embed_images(paths, a.models_dir, a.workers, with_fr, cache, a.flip, a.views)
        json_out = a.json or REPO / "bench" / "results" / f"identification{suffix}.json"
    else:
        vecs = part_store_vectors(a.root, paths, a.embedder, a.flip, a.views, a.workers)
        json_out = a.json or REPO / "bench" / "results" / f"identification_{a.embedder}{suffix}.json"
    wall = time.perf_counter() - t0
    if a.fit_impostors:
        enrolled = vecs["views"] if a.views else None
        fitted = scoring.views_id(model) if a.views else model
        data = fit_impostors(a.root, vecs["ours"], fitted, a.flip, enrolled=enrolled, embedder=a.embedder)
        write_json(scoring.IMPOSTOR_DIR / f"{fitted}.json", {**data, "model": fitted})
        scoring.shipped_distribution.cache_clear()
        for c in data["independence_check"]:
            print(c)
        for c in data["tail_check"]:
            print(c)
        return
    res = run_benchmark(a.root, images, vecs, model, one_to_one)
    res.update(
        {
            "embedder": a.embedder,
            "flip": a.flip,
            "model": model,
            "images": len(paths),
            "embedding_seconds": round(wall, 1),
            "machine": machine(),
        }
    )
    write_json(json_out, res)
    print_table(res, f"yunet+{a.embedder}" + ("+flip" if a.flip else ""))


if __name__ == "__main__":
    main()
