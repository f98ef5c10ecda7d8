"""Cheap accuracy gains at inference, each against the stock pipeline, in one run.

Rows (yunet + dlib-onnx, LFW dev, each image's central face):

* ``stock``: one vector per face.
* ``flip``: flip test-time augmentation, the face's vector averaged with its mirrored
  chip's (twice the embedding cost).
* ``enrol-aug``: one-shot enrolment augmentation: the enrolment photo's chip, its mirror
  and two re-crops (zoomed 0.93x and 1.07x about the alignment) enrolled as four vectors
  of the person (the gallery scores a person by the centroid, so they are averaged);
  probes are embedded plainly. Identification only (verification has no enrolment).
* ``whiten``: a learned metric, within-class whitening fitted on the **pairsDevTrain
  people** (x -> W (x - mean), W = (S_w + a I)^-1/2 from the within-person scatter, then
  re-normalised; ``a`` chosen by person-disjoint 2-fold cross-validation on the training
  people).
* ``flip + whiten``.

Metrics, all on the **pairsDevTest people** (held out from every fit):

* accuracy on the pairsDevTest pairs, threshold fitted on the pairsDevTrain pairs (the
  LFW protocol; for ``whiten`` the pairsDevTrain pairs are its training people, so its
  threshold is in-sample there, like the metric itself);
* TAR at FAR 1e-3 over every pair of the test people's faces (tens of thousands of
  different-person pairs, where the 500 of the pairs file cannot resolve 1e-3);
* DIR at a 1% stranger false-alarm rate, one-shot open-set identification among the test
  people: each person with 2+ images enrolled from their first image, their other
  images are the known probes, the people with one image are the strangers;
* ms per face: the embedding cost of a probe face (chips per face x the measured
  ms per chip of dlib-onnx here, plus the projection).

    python bench/inference_gains.py [--workers 2] [--out bench/results/inference_gains.json]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_dir, write_json

#: the chips embedded per face: as aligned, mirrored, zoomed out, zoomed in
VIEWS = ("chip", "mirror", "zoom0.93", "zoom1.07")
#: whitening shrinkage candidates (times the mean within-class variance)
GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
_W: dict[str, Any] = {}


def _init(models_dir: str) -> None:
    os.environ["FACEPRINT_MODELS"] = models_dir
    from faceprint.recognizer import Recognizer

    _W["rec"] = Recognizer("yunet", "dlib-onnx", threads=1)


def _views(path: str) -> NDArray[np.float32] | None:
    """The four unit vectors (VIEWS) of the central face of ``path``, or None."""
    from faceprint.alignment import align
    from faceprint.io import load_image
    from faceprint.selection import central_face
    from faceprint.training.augment import center_chip, compose_geometry, warp
    from faceprint.training.data import context_templates

    rec = _W["rec"]
    img = load_image(path)
    face = central_face(rec.detector.detect(img), img.shape)
    if face is None or face.landmarks is None:
        return None
    ctx = align(img, face.landmarks, context_templates(rec.embedder.crop_templates[0])[face.landmark_scheme])
    chips = [
        center_chip(ctx),
        np.ascontiguousarray(center_chip(ctx)[:, ::-1]),
        warp(ctx, compose_geometry(zoom=0.93)),
        warp(ctx, compose_geometry(zoom=1.07)),
    ]
    return np.asarray(rec.embedder.embed(chips), dtype=np.float32)


def unit(x: NDArray[np.floating]) -> NDArray[np.float32]:
    return np.asarray(x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12), dtype=np.float32)


def fit_whitening(vecs: NDArray[np.float32], labels: NDArray[np.int64], shrink: float) -> dict[str, Any]:
    """Within-class whitening from people with 2+ faces: mean, W = (S_w + shrink * tr/d I)^-1/2."""
    counts = np.bincount(labels)
    keep = counts[labels] >= 2
    x, y = vecs[keep], labels[keep]
    means = np.zeros((counts.size, x.shape[1]))
    np.add.at(means, y, x)
    means /= np.maximum(counts[:, None], 1)
    d = x - means[y]
    sw = d.T @ d / len(x)
    sw += shrink * np.trace(sw) / sw.shape[0] * np.eye(sw.shape[0])
    w, v = np.linalg.eigh(sw)
    return {"mean": vecs.mean(0), "W": (v / np.sqrt(w)) @ v.T, "shrink": shrink}


def apply(metric: dict[str, Any] | None, x: NDArray[np.float32]) -> NDArray[np.float32]:
    return x if metric is None else unit((x - metric["mean"]) @ metric["W"])


def tar_all_pairs(vecs: NDArray[np.float32], labels: NDArray[np.int64], far: float) -> float | None:
    from faceprint.evaluation import metrics

    sim = vecs @ vecs.T
    iu = np.triu_indices(len(vecs), 1)
    return metrics.tar_at_far(sim[iu], (labels[:, None] == labels[None, :])[iu], far).tar


def main() -> None:
    from faceprint.evaluation import metrics
    from faceprint.evaluation.pairs import read_pairs

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=shared_dir() / "data" / "lfw-dev")
    ap.add_argument("--models-dir", type=Path, default=shared_dir() / "models")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "inference_gains.json")
    a = ap.parse_args()
    root = a.root
    train_pf, test_pf = read_pairs(root / "pairsDevTrain.txt"), read_pairs(root / "pairsDevTest.txt")

    def people(pf: Any) -> set[str]:
        return {n for p in pf.pairs for n in (p.name_a, p.name_b)}

    train_people, test_people = people(train_pf), people(test_pf)
    paths = sorted(p for d in sorted(train_people | test_people) for p in (root / d).glob("*.jpg"))
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(a.workers, _init, (str(a.models_dir),)) as pool:
        got = pool.map(_views, [str(p) for p in paths], chunksize=16)
    embed_s = time.perf_counter() - t0
    ok = [i for i, g in enumerate(got) if g is not None]
    print(f"{len(ok)} of {len(paths)} images with a face, {embed_s:.0f} s", file=sys.stderr)
    views = np.stack([got[i] for i in ok])  # (N, 4, 128)
    kept = [paths[i] for i in ok]
    names = np.array([p.parent.name for p in kept])
    index = {p: i for i, p in enumerate(kept)}

    # ms per chip of dlib-onnx here (one thread, batches of 32), for the cost column
    _init(str(a.models_dir))
    chips = np.zeros((64, 150, 150, 3), np.uint8) + 128
    _W["rec"].embedder.embed(list(chips))
    t1 = time.perf_counter()
    for _ in range(3):
        _W["rec"].embedder.embed(list(chips))
    ms_chip = (time.perf_counter() - t1) / (3 * 64) * 1000

    is_train = np.isin(names, sorted(train_people))
    _, train_labels = np.unique(names[is_train], return_inverse=True)
    plain, flipped = views[:, 0], unit(views[:, 0] + views[:, 1])

    def pick_metric(base: NDArray[np.float32]) -> dict[str, Any]:
        """Shrinkage chosen by person-disjoint 2-fold cross-validation on the training
        people (fit on one half, TAR@FAR=1e-3 over all pairs of the other), then refitted
        on all of them; large values approach plain centring."""
        x, y = base[is_train], train_labels
        half = np.random.default_rng(0).permutation(y.max() + 1) % 2
        scores = []
        for s in GRID:
            tars = []
            for fold in (0, 1):
                fit, held = half[y] != fold, half[y] == fold
                m = fit_whitening(x[fit], np.unique(y[fit], return_inverse=True)[1], s)
                tars.append(tar_all_pairs(apply(m, x[held]), y[held], 1e-3) or 0.0)
            scores.append(float(np.mean(tars)))
        best = GRID[int(np.argmax(scores))]
        cv = {str(g): round(sc, 4) for g, sc in zip(GRID, scores, strict=True)}
        print(f"whitening shrink {best} (2-fold TAR@1e-3 on training people: {cv})", file=sys.stderr)
        return fit_whitening(x, y, best) | {"cv": cv}

    variants: list[tuple[str, NDArray[np.float32], dict[str, Any] | None, bool, float]] = [
        ("stock", plain, None, False, 1),
        ("flip", flipped, None, False, 2),
        ("enrol-aug", plain, None, True, 1),
    ]
    wp = pick_metric(plain)
    wf = pick_metric(flipped)
    variants += [("whiten", plain, wp, False, 1), ("flip + whiten", flipped, wf, False, 2)]

    test_mask = ~is_train
    t_names = names[test_mask]
    _, t_labels = np.unique(t_names, return_inverse=True)
    rows = []
    for label, base, metric, enrol_aug, n_chips in variants:
        vec = apply(metric, base)

        def pair_scores(
            pf: Any, v: NDArray[np.float32] = vec
        ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
            s, y = [], []
            for p in pf.pairs:
                ia, ib = (index.get(x) for x in p.paths(root))
                s.append(float(v[ia] @ v[ib]) if ia is not None and ib is not None else -1.0)
                y.append(p.same)
            return np.array(s), np.array(y)

        tr_s, tr_y = pair_scores(train_pf)
        te_s, te_y = pair_scores(test_pf)
        threshold, _ = metrics.best_threshold(tr_s, tr_y)
        acc = metrics.accuracy(te_s, te_y, threshold)
        tar = tar_all_pairs(vec[test_mask], t_labels, 1e-3)
        # one-shot open-set identification among the test people
        t_vec, t_views = vec[test_mask], views[test_mask]
        counts = np.bincount(t_labels)
        first = {int(lab): int(np.flatnonzero(t_labels == lab)[0]) for lab in np.flatnonzero(counts >= 2)}
        enrolled = sorted(first)
        if enrol_aug:
            gal = np.stack(
                [unit(apply(metric, unit(t_views[first[p]]).astype(np.float32)).mean(0)) for p in enrolled]
            )
        else:
            gal = np.stack([t_vec[first[p]] for p in enrolled])
        probes = [
            i for i in range(len(t_labels)) if counts[t_labels[i]] >= 2 and i != first[int(t_labels[i])]
        ]
        strangers = [i for i in range(len(t_labels)) if counts[t_labels[i]] == 1]
        sk = t_vec[probes] @ gal.T
        ss = t_vec[strangers] @ gal.T
        correct = np.array(enrolled)[sk.argmax(1)] == t_labels[probes]
        point = metrics.dir_at_far(sk.max(1), correct, ss.max(1), 0.01)
        rows.append(
            {
                "variant": label,
                "accuracy": acc,
                "threshold": threshold,
                "tar_at_far_1e-3": tar,
                "dir_at_far_1e-2": point.dir,
                "rank1": float(correct.mean()),
                "ms_per_face": round(n_chips * ms_chip + (0.01 if metric is not None else 0.0), 2),
                "whitening_shrink": None if metric is None else metric["shrink"],
                "whitening_cv_tar_1e-3": None if metric is None else metric["cv"],
                "enrolled": len(enrolled),
                "known_probes": len(probes),
                "strangers": len(strangers),
            }
        )
    stock = rows[0]
    print("| variant | pairsDevTest accuracy | TAR@FAR=1e-3 | DIR@FAR=1% | rank-1 | ms per face |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        d = "" if r is stock else f" ({r['accuracy'] - stock['accuracy']:+.2%})"
        print(
            f"| {r['variant']} | {r['accuracy']:.2%}{d} | {r['tar_at_far_1e-3']:.2%} | "
            f"{r['dir_at_far_1e-2']:.2%} | {r['rank1']:.2%} | {r['ms_per_face']:.1f} |"
        )
    write_json(
        a.out,
        {
            "machine": machine(),
            "protocol": __doc__,
            "images": len(paths),
            "with_face": len(ok),
            "embed_s": round(embed_s, 1),
            "ms_per_chip": round(ms_chip, 2),
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
