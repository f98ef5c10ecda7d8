"""Embedding speed: dlib's ResNet on dlib-bin (``dlib``) against the same weights on ONNX
Runtime (``dlib-onnx``), in the same process, on the same aligned LFW chips.

For each embedder and batch size (1, 8, 32) it embeds every chip in batches of that size
and reports milliseconds per face (network only: chips are aligned beforehand) and the
speed-up over ``dlib`` at the same batch size. dlib-bin runs on one core without BLAS;
``dlib-onnx`` is measured with one intra-op thread (same resources as dlib) and with all
cores (ONNX Runtime's default). Also reports the one-off conversion time of the .dat and
the lowest cosine similarity between the two embedders' vectors.

    python bench/embedding.py [--faces 64] [--repeats 3] [--json bench/results/embedding.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_dir, write_json

BATCHES = (1, 8, 32)


def lfw_chips(root: Path, n: int) -> list[Any]:
    """dlib-aligned 150x150 RGB chips of the best HOG face in ``n`` LFW dev images."""
    from faceprint.alignment import align, dlib_template
    from faceprint.detection.hog import HogDetector
    from faceprint.io import load_image

    det, tpl = HogDetector(), dlib_template()
    people = sorted(p for p in root.iterdir() if p.is_dir())
    chips: list[Any] = []
    for person in people[:: max(1, len(people) // (2 * n))]:
        img = load_image(sorted(person.glob("*.jpg"))[0])
        faces = det.detect(img)
        if faces and faces[0].landmarks is not None:
            chips.append(align(img, faces[0].landmarks, tpl))
        if len(chips) == n:
            break
    return chips


def ms_per_face(embed: Callable[[Sequence[Any]], Any], chips: list[Any], batch: int, repeats: int) -> float:
    """Best of ``repeats`` passes over all chips, in ms per face."""
    embed(chips[:batch])  # warm-up: first-call allocations are not per face
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(0, len(chips), batch):
            embed(chips[i : i + batch])
        best = min(best, time.perf_counter() - t)
    return 1000 * best / len(chips)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=shared_dir())
    ap.add_argument("--faces", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dlib-repeats", type=int, default=1, help="dlib is slow; one pass is steady enough")
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "embedding.json")
    a = ap.parse_args()
    os.environ.setdefault("FACEPRINT_MODELS", str(a.shared / "models"))

    from faceprint import models
    from faceprint.embedding.dlib import DlibEmbedder
    from faceprint.embedding.dlib_onnx import DlibOnnxEmbedder, build_onnx

    chips = lfw_chips(a.shared / "data" / "lfw-dev", a.faces)
    print(f"{len(chips)} aligned LFW chips", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "dlib.onnx"
        t = time.perf_counter()
        build_onnx(models.resolve("dlib"), onnx_path)
        convert_s = time.perf_counter() - t

        def onnx(threads: int) -> DlibOnnxEmbedder:
            return DlibOnnxEmbedder(onnx_path=str(onnx_path), intra_op_threads=threads)

        embedders: dict[str, tuple[Any, int]] = {
            "dlib (dlib-bin, 1 core)": (DlibEmbedder(), a.dlib_repeats),
            "dlib-onnx (1 thread)": (onnx(1), a.repeats),
            f"dlib-onnx ({os.cpu_count()} threads)": (onnx(0), a.repeats),
        }
        ref = embedders["dlib (dlib-bin, 1 core)"][0].embed(chips)
        ours = embedders["dlib-onnx (1 thread)"][0].embed(chips)
        min_cos = float((ref * ours).sum(axis=1).min())
        rows: list[dict[str, Any]] = []
        for name, (emb, repeats) in embedders.items():
            for batch in BATCHES:
                ms = ms_per_face(emb.embed, chips, batch, repeats)
                rows.append({"embedder": name, "batch": batch, "ms_per_face": ms})
                print(f"{name} batch {batch}: {ms:.1f} ms/face", file=sys.stderr)
    base = {r["batch"]: r["ms_per_face"] for r in rows if r["embedder"].startswith("dlib (")}
    for r in rows:
        r["speedup_vs_dlib"] = base[r["batch"]] / r["ms_per_face"]
    write_json(
        a.json,
        {
            "rows": rows,
            "faces": len(chips),
            "convert_seconds": convert_s,
            "min_cosine_dlib_vs_onnx": min_cos,
            "machine": machine(),
        },
    )
    print("| embedder | batch | ms/face | x dlib |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['embedder']} | {r['batch']} | {r['ms_per_face']:.1f} | {r['speedup_vs_dlib']:.2f} |")
    print(f"\nconversion .dat -> ONNX: {convert_s:.2f} s; min cosine dlib vs dlib-onnx: {min_cos:.7f}")


if __name__ == "__main__":
    main()
