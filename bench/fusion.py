"""The second embedders and their fusions on LFW dev: fit on pairsDevTrain, score on
pairsDevTest (held out).

For dlib-onnx, mobilefacenet, faceplugin and every fusion of two or three of them
(:mod:`faceprint.embedding.fused`), plain and with flip TTA:

* fit on pairsDevTrain only: each fusion's weights (a 0.05 grid over the weights that
  sum to 1, every part > 0; the maximum-accuracy weights, ties broken by the higher AUC;
  flip TTA reuses the plain weights) and every configuration's 1:1 threshold (maximum
  accuracy);
* held out, pairsDevTest (500 same + 500 different pairs): accuracy at the train
  threshold, AUC, TAR@FAR=1e-2 (TAR@FAR=1e-3 is unreachable with 500 impostor pairs:
  reported as such);
* held out, all pairs of pairsDevTest's people (their every image in LFW dev: a few
  thousand genuine and ~1.5 million impostor pairs): TAR@FAR=1e-3 and 1e-4.

Detection: YuNet, the face nearest the image centre (as ``faceprint eval lfw``); a pair
with a faceless image scores below any threshold. Vectors come from ``bench/_parts.py``
(each part embeds each image once; fusions are combined in numpy exactly as the
FusedEmbedder does, checked against a real Recognizer on a few images and reported).

    python bench/fusion.py [--cache /tmp/faceprint_parts.npz] [--threads 2]

Writes bench/results/fusion.json and prints a markdown table; the fitted weights and
thresholds are what faceprint.embedding.fused.FUSIONS and the embedders' thresholds hold.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_dir, write_json
from _parts import PARTS, PartVectors, check_against_recognizer, part_vectors
from faceprint.evaluation import metrics
from faceprint.evaluation.pairs import read_pairs

GRID = 0.05


def configs() -> list[tuple[str, tuple[str, ...]]]:
    """(embedder name, parts) of every single embedder and every fusion, in table order."""
    out = [(p, (p,)) for p in PARTS]
    for k in (2, 3):
        out += [("+".join(c), c) for c in itertools.combinations(PARTS, k)]
    return out


def weight_grid(k: int) -> list[tuple[float, ...]]:
    """Every k weights on the GRID summing to 1 with each > 0 ((1.0,) for one part)."""
    if k == 1:
        return [(1.0,)]
    n = round(1 / GRID)
    return [
        tuple(round(c * GRID, 4) for c in (*combo, n - sum(combo)))
        for combo in itertools.product(range(1, n), repeat=k - 1)
        if n - sum(combo) >= 1
    ]


def pair_scores(pv: PartVectors, vecs: np.ndarray, pairs: list[tuple[Path, Path]]) -> np.ndarray:
    pos = pv.index()
    a = np.array([pos[p] for p, _ in pairs])
    b = np.array([pos[q] for _, q in pairs])
    s = np.einsum("ij,ij->i", vecs[a], vecs[b]).astype(np.float64)
    return np.where(pv.ok[a] & pv.ok[b], s, metrics.NO_FACE_SCORE)


def all_pairs(pv: PartVectors, vecs: np.ndarray, people: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels of every pair of the images of ``people`` with a face."""
    idx = [i for i, p in enumerate(pv.paths) if p.parent.name in people and pv.ok[i]]
    who = np.array([pv.paths[i].parent.name for i in idx])
    v = vecs[idx]
    iu, ju = np.triu_indices(len(idx), 1)
    s = (v @ v.T)[iu, ju].astype(np.float64)
    return s, who[iu] == who[ju]


def far_point(scores: np.ndarray, labels: np.ndarray, far: float) -> dict[str, Any]:
    return metrics.tar_at_far(scores, labels, far).to_dict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lfw", type=Path, default=shared_dir() / "data" / "lfw-dev")
    ap.add_argument("--models-dir", type=Path, default=shared_dir() / "models")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/faceprint_parts.npz"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "fusion.json")
    args = ap.parse_args()
    os.environ["FACEPRINT_MODELS"] = str(args.models_dir)

    train = read_pairs(args.lfw / "pairsDevTrain.txt")
    test = read_pairs(args.lfw / "pairsDevTest.txt")
    paths = sorted(args.lfw.glob("*/*.jpg"))
    t0 = time.perf_counter()
    pv = part_vectors(paths, args.cache, threads=args.threads)
    embed_s = time.perf_counter() - t0
    tr_pairs = [pr.paths(args.lfw) for pr in train.pairs]
    te_pairs = [pr.paths(args.lfw) for pr in test.pairs]
    y_tr, y_te = train.labels(), test.labels()
    test_people = {n for pr in test.pairs for n in (pr.name_a, pr.name_b)}

    rows: list[dict[str, Any]] = []
    fitted: dict[str, tuple[float, ...]] = {}
    for name, parts in configs():
        grid = []
        for w in weight_grid(len(parts)):
            s = pair_scores(pv, pv.fused(parts, w), tr_pairs)
            thr, acc = metrics.best_threshold(s, y_tr)
            grid.append((acc, metrics.roc(s, y_tr).auc, w))
        grid.sort(key=lambda g: (g[0], g[1]), reverse=True)
        weights = grid[0][2]
        fitted[name] = weights
        for kind in ("plain", "flip"):
            vecs = pv.kind(parts, weights, kind)
            s_tr = pair_scores(pv, vecs, tr_pairs)
            thr, acc_tr = metrics.best_threshold(s_tr, y_tr)
            s_te = pair_scores(pv, vecs, te_pairs)
            all_s, all_y = all_pairs(pv, vecs, test_people)
            imp = s_tr[(~y_tr) & (s_tr > metrics.NO_FACE_SCORE)]
            rows.append(
                {
                    "embedder": name,
                    "parts": list(parts),
                    "flip": kind == "flip",
                    "weights": list(weights),
                    "train_top_weights": [
                        {"weights": list(w), "accuracy": a, "auc": u} for a, u, w in grid[:5]
                    ],
                    "threshold": thr,
                    "train_accuracy": acc_tr,
                    "train_impostor_mean": float(imp.mean()),
                    "test_accuracy": metrics.accuracy(s_te, y_te, thr),
                    "test_auc": metrics.roc(s_te, y_te).auc,
                    "test_tar_at_far": [far_point(s_te, y_te, f) for f in (1e-2, 1e-3)],
                    "test_failed_pairs": int((s_te <= metrics.NO_FACE_SCORE).sum()),
                    "test_people_all_pairs": {
                        "genuine": int(all_y.sum()),
                        "impostor": int((~all_y).sum()),
                        "tar_at_far": [far_point(all_s, all_y, f) for f in (1e-3, 1e-4)],
                    },
                }
            )
            print(f"{name:40s} {kind:5s} w={weights} thr={thr:.3f} test acc={rows[-1]['test_accuracy']:.4f}",
                  file=sys.stderr)  # fmt: skip
    checks = {}
    for name, parts in (configs()[3], configs()[-1]):
        checks[name] = check_against_recognizer(pv, name, parts, fitted[name], n=4)
    dlib_err = 1 - next(r for r in rows if r["embedder"] == "dlib-onnx" and not r["flip"])["test_accuracy"]
    payload = {
        "benchmark": "fusion",
        "machine": machine(),
        "protocol": __doc__.split("\n\n")[1],
        "images": len(paths),
        "images_with_face": int(pv.ok.sum()),
        "embed_seconds": embed_s,
        "recognizer_check_max_abs_diff": checks,
        "dlib_test_error": dlib_err,
        "rows": rows,
    }
    write_json(args.out, payload)
    print("| embedder | flip | weights | threshold | pairsDevTest accuracy | AUC | TAR@FAR=1e-2 | "
          "TAR@FAR=1e-3 (all test-people pairs) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        t2 = r["test_tar_at_far"][0]["tar"]
        t3 = r["test_people_all_pairs"]["tar_at_far"][0]["tar"]
        weights = "/".join(f"{w:g}" for w in r["weights"])
        print(
            f"| {r['embedder']} | {'yes' if r['flip'] else 'no'} | {weights} | "
            f"{r['threshold']:.3f} | {100 * r['test_accuracy']:.1f}% | {r['test_auc']:.4f} | "
            f"{'-' if t2 is None else f'{100 * t2:.1f}%'} | {'-' if t3 is None else f'{100 * t3:.1f}%'} |"
        )


if __name__ == "__main__":
    main()
