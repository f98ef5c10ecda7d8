"""LFW dev accuracy: hog and yunet with a dlib embedder (dlib-onnx by default, or the
dlib-bin reference; yunet with and without flip TTA) against face_recognition 1.3.0, in
the same run, on the same pairs.

Protocol: every pipeline's threshold is fitted on pairsDevTrain (maximum accuracy) and
applied to pairsDevTest, the held-out figure. face_recognition runs its default
pipeline (HOG upsample 1, the first encoding of each image, Euclidean distance on raw
vectors) at its fixed tolerance 0.6 and with the threshold refitted the same way.

    pip install --no-deps face_recognition    # the peer (needs setuptools<81 for pkg_resources)
    python bench/lfw_accuracy.py [--embedder dlib-onnx|dlib] [--workers 2] [--limit N]

Writes bench/results/lfw_accuracy_<embedder>.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_dir, write_json
from faceprint.evaluation import metrics
from faceprint.evaluation.pairs import PairsFile, central_face, read_pairs

_W: dict[str, Any] = {}


def _init(models_dir: str, embedder: str) -> None:
    import os

    os.environ["FACEPRINT_MODELS"] = models_dir
    from faceprint.detection.hog import HogDetector
    from faceprint.detection.yunet import YuNetDetector
    from faceprint.registry import embedders

    _W["hog"] = HogDetector(upsample=1)
    _W["yunet"] = YuNetDetector()
    opts = {"intra_op_threads": 1} if embedder == "dlib-onnx" else {}  # one worker per core
    _W["emb"] = embedders.create(embedder, **opts)
    _W["name"] = embedder
    try:
        import face_recognition

        _W["fr"] = face_recognition
    except ImportError:
        _W["fr"] = None


def _work(path: str) -> dict[str, Any]:
    from faceprint.alignment import align_face
    from faceprint.io import load_image

    img = load_image(path)
    emb = _W["emb"]
    out: dict[str, Any] = {"path": path}
    t = time.perf_counter()
    fh = central_face(_W["hog"].detect(img), img.shape)
    out["t_hog"] = time.perf_counter() - t
    t = time.perf_counter()
    fy = central_face(_W["yunet"].detect(img), img.shape)
    out["t_yunet"] = time.perf_counter() - t
    crops, keys = [], []
    if fh is not None:
        crops.append(align_face(img, fh, emb.crop_templates[0]))
        keys.append("hog")
    if fy is not None:
        c = align_face(img, fy, emb.crop_templates[0])
        crops += [c, np.ascontiguousarray(c[:, ::-1])]
        keys += ["yunet", "yunet_m"]
    t = time.perf_counter()
    vecs = emb.embed(crops) if crops else np.zeros((0, 128), np.float32)
    out["t_embed_per_face"] = (time.perf_counter() - t) / max(len(crops), 1)
    v = dict(zip(keys, vecs, strict=True))
    e = _W["name"]
    out[f"hog+{e}"] = v.get("hog")
    out[f"yunet+{e}"] = v.get("yunet")
    if "yunet" in v:
        m = v["yunet"] + v["yunet_m"]
        out[f"yunet+{e}+flip"] = m / np.linalg.norm(m)
    fr = _W["fr"]
    if fr is not None:
        t = time.perf_counter()
        arr = fr.load_image_file(path)
        encs = fr.face_encodings(arr)
        out["t_fr"] = time.perf_counter() - t
        out["face_recognition"] = np.asarray(encs[0]) if encs else None
    return out


def _scores(pf: PairsFile, root: Path, vec: dict[Path, Any], euclid: bool) -> np.ndarray:
    s = np.empty(len(pf.pairs))
    for i, pr in enumerate(pf.pairs):
        a, b = (vec.get(p) for p in pr.paths(root))
        if a is None or b is None:
            s[i] = -1e9 if euclid else metrics.NO_FACE_SCORE
        else:
            s[i] = -float(np.linalg.norm(a - b)) if euclid else float(np.dot(a, b))
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=shared_dir() / "data" / "lfw-dev")
    ap.add_argument("--models-dir", type=Path, default=shared_dir() / "models")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N pairs of each file")
    ap.add_argument("--embedder", default="dlib-onnx", help="dlib-onnx (default) or dlib (the reference)")
    ap.add_argument(
        "--json", type=Path, default=None, help="default: bench/results/lfw_accuracy_<embedder>.json"
    )
    a = ap.parse_args()
    out_json = a.json or REPO / "bench" / "results" / f"lfw_accuracy_{a.embedder}.json"
    train = read_pairs(a.root / "pairsDevTrain.txt")
    test = read_pairs(a.root / "pairsDevTest.txt")
    if a.limit:
        train = PairsFile(train.path, train.pairs[: a.limit // 2] + train.pairs[-a.limit // 2 :], 1)
        test = PairsFile(test.path, test.pairs[: a.limit // 2] + test.pairs[-a.limit // 2 :], 1)
    paths = sorted({p for pf in (train, test) for pr in pf.pairs for p in pr.paths(a.root)})
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(a.workers, _init, (str(a.models_dir), a.embedder)) as pool:
        rows = []
        for i, r in enumerate(pool.imap(_work, [str(p) for p in paths], chunksize=8)):
            rows.append(r)
            if i % 250 == 0:
                print(f"{i}/{len(paths)} images, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    wall = time.perf_counter() - t0
    pipelines = [f"hog+{a.embedder}", f"yunet+{a.embedder}", f"yunet+{a.embedder}+flip"]
    if "face_recognition" in rows[0]:
        pipelines.append("face_recognition")
    results: dict[str, Any] = {}
    for name in pipelines:
        vec = {Path(r["path"]): r.get(name) for r in rows}
        eu = name == "face_recognition"
        s_tr, s_te = _scores(train, a.root, vec, eu), _scores(test, a.root, vec, eu)
        thr, train_acc = metrics.best_threshold(s_tr, train.labels())
        res = {
            "threshold": -thr if eu else thr,
            "threshold_kind": "euclidean distance (<=)" if eu else "cosine similarity (>=)",
            "train_accuracy": train_acc,
            "test_accuracy": metrics.accuracy(s_te, test.labels(), thr),
            "test_auc": metrics.roc(s_te, test.labels()).auc,
            "no_face_images": sum(v is None for v in vec.values()),
        }
        if eu:
            res["test_accuracy_at_0.6"] = metrics.accuracy(s_te, test.labels(), -0.6)
        results[name] = res
    timing = {
        k: float(np.median([r[k] for r in rows if k in r])) * 1000
        for k in ("t_hog", "t_yunet", "t_embed_per_face", "t_fr")
    }
    payload = {
        "pairs_train": len(train.pairs),
        "pairs_test": len(test.pairs),
        "images": len(paths),
        "seconds": round(wall, 1),
        "median_ms": timing,
        "results": results,
        "machine": machine(),
    }
    payload["embedder"] = a.embedder
    write_json(out_json, payload)
    print(
        f"LFW pairsDevTest ({len(test.pairs)} pairs), threshold fitted on pairsDevTrain "
        f"({len(train.pairs)} pairs); {len(paths)} images"
    )
    print("| pipeline | test accuracy | threshold | AUC | images without a face |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['test_accuracy']:.4f} | {r['threshold']:.4f} ({r['threshold_kind']}) "
            f"| {r['test_auc']:.4f} | {r['no_face_images']} |"
        )
        if "test_accuracy_at_0.6" in r:
            print(f"| face_recognition @ tolerance 0.6 | {r['test_accuracy_at_0.6']:.4f} | 0.6 | | |")


if __name__ == "__main__":
    main()
