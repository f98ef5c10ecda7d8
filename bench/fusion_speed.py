"""Embedding speed of each fusion part and of the fused embedders, in one run.

For dlib-onnx, mobilefacenet, faceplugin and the fusions (dlib-onnx+mobilefacenet,
dlib-onnx+faceplugin, all three), with 1 and 2 ONNX Runtime intra-op threads, at batch 1
and 32: milliseconds per face of the network alone (crops aligned beforehand with each
part's own template from the same YuNet landmarks, on real LFW dev faces). Best of
``--repeats`` passes over all faces. Ratios to dlib-onnx at the same threads and batch are
what to compare; absolute times on a shared machine are noisy.

    python bench/fusion_speed.py [--faces 64] [--repeats 3]

Writes bench/results/fusion_speed.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_dir, write_json

EMBEDDERS = (
    "dlib-onnx",
    "mobilefacenet",
    "faceplugin",
    "dlib-onnx+mobilefacenet",
    "dlib-onnx+faceplugin",
    "dlib-onnx+mobilefacenet+faceplugin",
)
BATCHES = (1, 32)
THREADS = (1, 2)


def lfw_faces(root: Path, n: int) -> list[tuple[Any, Any]]:
    """(image, face) of the central YuNet face of ``n`` LFW dev images spread over the people."""
    from faceprint.detection.yunet import YuNetDetector
    from faceprint.evaluation.pairs import central_face
    from faceprint.io import load_image

    det = YuNetDetector()
    people = sorted(p for p in root.iterdir() if p.is_dir())
    out: list[tuple[Any, Any]] = []
    for person in people[:: max(1, len(people) // (2 * n))]:
        img = load_image(sorted(person.glob("*.jpg"))[0])
        face = central_face(det.detect(img), img.shape)
        if face is not None:
            out.append((img, face))
        if len(out) == n:
            break
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=shared_dir())
    ap.add_argument("--faces", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "fusion_speed.json")
    a = ap.parse_args()
    os.environ.setdefault("FACEPRINT_MODELS", str(a.shared / "models"))
    from faceprint.alignment import align_crops
    from faceprint.registry import create_embedder

    faces = lfw_faces(a.shared / "data" / "lfw-dev", a.faces)
    rows: list[dict[str, Any]] = []
    for threads in THREADS:
        for name in EMBEDDERS:
            emb = create_embedder(name, threads=threads)
            crops = [c for img, f in faces for c in align_crops(img, f, emb.crop_templates)]
            per = len(emb.crop_templates)
            for batch in BATCHES:
                step = batch * per
                emb.embed(crops[:step])  # warm-up
                best = float("inf")
                for _ in range(a.repeats):
                    t = time.perf_counter()
                    for i in range(0, len(crops), step):
                        emb.embed(crops[i : i + step])
                    best = min(best, time.perf_counter() - t)
                ms = 1000 * best / len(faces)
                rows.append({"embedder": name, "threads": threads, "batch": batch, "ms_per_face": ms})
                print(f"{name:36s} threads {threads} batch {batch:2d}: {ms:6.2f} ms/face", file=sys.stderr)
    base = {(r["threads"], r["batch"]): r["ms_per_face"] for r in rows if r["embedder"] == "dlib-onnx"}
    for r in rows:
        r["x_dlib_onnx"] = r["ms_per_face"] / base[(r["threads"], r["batch"])]
    write_json(a.json, {"benchmark": "fusion_speed", "faces": len(faces), "rows": rows, "machine": machine()})
    print("| embedder | threads | ms/face, batch 1 | ms/face, batch 32 | x dlib-onnx (batch 32) |")
    print("|---|---|---|---|---|")
    for threads in THREADS:
        for name in EMBEDDERS:
            r1, r32 = (
                next(r for r in rows if (r["embedder"], r["threads"], r["batch"]) == (name, threads, b))
                for b in BATCHES
            )
            print(
                f"| {name} | {threads} | {r1['ms_per_face']:.1f} | {r32['ms_per_face']:.1f} | "
                f"{r32['x_dlib_onnx']:.2f} |"
            )


if __name__ == "__main__":
    main()
