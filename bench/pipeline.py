"""End-to-end speed: faceprint pipelines against face_recognition 1.3.0,
in the same run, on LFW dev images and on the group photos.

Per pipeline and image set it reports images per second end to end (decode, detect,
landmarks, align, embed every face), ms per detection call (per image) and ms per face
embedded (alignment + network), plus where the time goes. One process on the whole
machine: dlib-bin and face_recognition use one core; dlib-onnx uses onnxruntime's default
threads (one per core) unless its row says 1 thread. Ratios within a run are what to compare.

    pip install --no-deps face_recognition
    python bench/pipeline.py [--lfw-images 300] [--json bench/results/pipeline.json]
    python bench/pipeline.py --breakdown
        # ms per image in each stage: decode, detect, align, embed, search, overhead
    python bench/pipeline.py --pipelines yunet:dlib-onnx,yunet:dlib-onnx+mobilefacenet \
        --json bench/results/pipeline_fusion.json
        # only these pipelines (DETECTOR:EMBEDDER, ':flip' for flip TTA) and face_recognition
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_dir, write_json


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run_faceprint(
    detector: str, embedder: str, paths: list[Path], threads: int | None = None, flip: bool = False
) -> dict[str, Any]:
    """Time the pipeline stage by stage, batched the way ``Recognizer.process_batch`` is:
    each chunk of 32 images is decoded, detected, aligned, then embedded in one call."""
    from faceprint.io import load_image
    from faceprint.recognizer import Recognizer

    rec = Recognizer(detector=detector, embedder=embedder, threads=threads, flip=flip)
    rec.process(paths[0])  # warm-up: model load and first-call costs are not per image
    t_dec = t_det = t_align = t_emb = 0.0
    faces_n = 0
    t0 = time.perf_counter()
    for start in range(0, len(paths), 32):
        chunk = paths[start : start + 32]
        imgs, d = _timed(lambda chunk=chunk: [load_image(p) for p in chunk])
        t_dec += d
        found, d = _timed(lambda imgs=imgs: [rec.detector.detect(im) for im in imgs])
        t_det += d
        crops, d = _timed(
            lambda imgs=imgs, found=found: [
                c for im, fs in zip(imgs, found, strict=True) for f in fs for c in rec.crops(im, f)
            ]
        )
        t_align += d
        _, d = _timed(lambda crops=crops: rec.embed_crops(crops))
        t_emb += d
        faces_n += sum(len(fs) for fs in found)
    total = time.perf_counter() - t0
    label = f"faceprint {detector}+{embedder}" + ("+flip" if flip else "")
    label += f" ({threads} thread)" if threads == 1 else ""
    return _row(label, len(paths), faces_n, total, t_dec, t_det, t_align, t_emb)


def breakdown(detector: str, embedder: str, paths: list[Path]) -> dict[str, Any]:
    """Milliseconds per image in each stage (decode, detect, align, embed, search) and the
    rest (overhead: Python glue between them), timed stage by stage on chunks of 32 as
    ``Recognizer.process_batch`` runs them; search is ``Gallery.rank`` (top 1) of every
    face against a gallery holding one face of every image of the set (enrolled from an
    untimed first pass). Also the same images through ``process_batch`` itself, where
    decoding overlaps inference (``faceprint.prefetch``), end to end."""
    import tempfile
    import uuid

    from faceprint.gallery.gallery import Gallery
    from faceprint.gallery.records import FaceRecord
    from faceprint.gallery.sqlite import SqliteStore
    from faceprint.io import load_image
    from faceprint.recognizer import Recognizer

    rec = Recognizer(detector=detector, embedder=embedder)
    first = rec.process_batch(paths)  # warm-up, and the gallery's faces
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "g.sqlite")
        enrolled = 0
        for p, faces in zip(paths, first, strict=True):
            if faces and faces[0].embedding is not None:
                fr = FaceRecord(uuid.uuid4().hex, p.stem, faces[0].embedding, rec.model_id, uuid.uuid4().hex)
                store.add_faces(p.stem, [fr])
                enrolled += 1
        gallery = Gallery(store, rec)
        t = dict.fromkeys(("decode", "detect", "align", "embed", "search"), 0.0)
        faces_n = 0
        t0 = time.perf_counter()
        for start in range(0, len(paths), 32):
            chunk = paths[start : start + 32]
            imgs, d = _timed(lambda chunk=chunk: [load_image(p) for p in chunk])
            t["decode"] += d
            found, d = _timed(lambda imgs=imgs: rec.detector.detect_batch(imgs))
            t["detect"] += d
            crops, d = _timed(
                lambda imgs=imgs, found=found: [
                    c for im, fs in zip(imgs, found, strict=True) for f in fs for c in rec.crops(im, f)
                ]
            )
            t["align"] += d
            vecs, d = _timed(lambda crops=crops: rec.embed_crops(crops))
            t["embed"] += d
            if len(vecs):
                _, d = _timed(lambda vecs=vecs: gallery.rank(vecs, 1))
                t["search"] += d
            faces_n += sum(len(fs) for fs in found)
        total = time.perf_counter() - t0
        store.close()
    t0 = time.perf_counter()
    rec.process_batch(paths)
    overlapped = time.perf_counter() - t0
    n = len(paths)
    ms = {k: 1000 * v / n for k, v in t.items()}
    ms["overhead"] = 1000 * total / n - sum(ms.values())
    return {
        "pipeline": f"faceprint {detector}+{embedder}",
        "images": n,
        "faces": faces_n,
        "gallery_faces": enrolled,
        "ms_per_image": ms,
        "staged_ms_per_image": 1000 * total / n,
        "process_batch_ms_per_image": 1000 * overlapped / n,
    }


def run_face_recognition(paths: list[Path]) -> dict[str, Any] | None:
    try:
        import face_recognition as fr
    except ImportError:
        print("face_recognition not installed: peer skipped", file=sys.stderr)
        return None
    fr.face_encodings(fr.load_image_file(str(paths[0])))
    t_dec = t_det = t_emb = 0.0
    faces_n = 0
    t0 = time.perf_counter()
    for p in paths:
        img, d = _timed(lambda p=p: fr.load_image_file(str(p)))
        t_dec += d
        locs, d = _timed(lambda img=img: fr.face_locations(img))
        t_det += d
        encs, d = _timed(lambda img=img, locs=locs: fr.face_encodings(img, locs))
        t_emb += d
        faces_n += len(encs)
    total = time.perf_counter() - t0
    return _row("face_recognition 1.3.0 (hog)", len(paths), faces_n, total, t_dec, t_det, 0.0, t_emb)


def _row(
    name: str, n: int, faces: int, total: float, dec: float, det: float, al: float, emb: float
) -> dict[str, Any]:
    return {
        "pipeline": name,
        "images": n,
        "faces": faces,
        "seconds": round(total, 3),
        "images_per_s": n / total,
        "ms_per_detection": 1000 * det / n,
        "ms_per_face_embedded": 1000 * (al + emb) / max(faces, 1),
        "share": {k: v / total for k, v in (("decode", dec), ("detect", det), ("align", al), ("embed", emb))},
    }


def print_breakdown(sets: dict[str, list[Path]], json_path: Path) -> None:
    out = []
    for set_name, paths in sets.items():
        for det, emb in (("yunet", "dlib-onnx"), ("scrfd", "dlib-onnx")):
            r = {"set": set_name, **breakdown(det, emb, paths)}
            out.append(r)
            print(f"{set_name}: {r['pipeline']}: {r['ms_per_image']}", file=sys.stderr)
    default = REPO / "bench" / "results" / "pipeline.json"
    target = REPO / "bench" / "results" / "pipeline_breakdown.json" if json_path == default else json_path
    write_json(target, {"rows": out, "machine": machine()})
    stages = ("decode", "detect", "align", "embed", "search", "overhead")
    print("| set | pipeline | images | faces | " + " | ".join(stages) + " | staged total | process_batch |")
    print("|---|---|---|---|" + "---|" * (len(stages) + 2))
    for r in out:
        ms = r["ms_per_image"]
        print(
            f"| {r['set']} | {r['pipeline']} | {r['images']} | {r['faces']} | "
            + " | ".join(f"{ms[k]:.2f}" for k in stages)
            + f" | {r['staged_ms_per_image']:.2f} | {r['process_batch_ms_per_image']:.2f} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=shared_dir())
    ap.add_argument("--lfw-images", type=int, default=300)
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "pipeline.json")
    ap.add_argument(
        "--pipelines", help="comma-separated DETECTOR:EMBEDDER[:flip] (default: the standard set)"
    )
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="ms per image per stage: bench/results/pipeline_breakdown.json",
    )
    a = ap.parse_args()
    os.environ.setdefault("FACEPRINT_MODELS", str(a.shared / "models"))
    lfw = sorted((a.shared / "data" / "lfw-dev").glob("*/*.jpg"))
    rng = np.random.default_rng(0)
    lfw_sample = [lfw[i] for i in sorted(rng.choice(len(lfw), min(a.lfw_images, len(lfw)), replace=False))]
    group = sorted(p for p in (a.shared / "data" / "group").iterdir() if p.suffix in (".jpg", ".png"))
    sets = {"lfw-dev": lfw_sample, "group": group}
    if a.breakdown:
        print_breakdown(sets, a.json)
        return
    rows: list[dict[str, Any]] = []
    runners: list[Callable[[list[Path]], dict[str, Any] | None]] = [
        lambda p: run_faceprint("yunet", "dlib-onnx", p),
        lambda p: run_faceprint("yunet", "dlib-onnx", p, flip=True),
        lambda p: run_faceprint("yunet", "dlib-onnx", p, threads=1),
        lambda p: run_faceprint("scrfd", "dlib-onnx", p),
        lambda p: run_faceprint("yunet", "dlib", p),
        lambda p: run_faceprint("hog", "dlib", p),
    ]
    if a.pipelines:
        specs = [s.split(":") for s in a.pipelines.split(",")]
        runners = [lambda p, sp=sp: run_faceprint(sp[0], sp[1], p, flip=sp[2:] == ["flip"]) for sp in specs]
    for set_name, paths in sets.items():
        for runner in (*runners, run_face_recognition):
            r = runner(paths)
            if r is not None:
                r["set"] = set_name
                rows.append(r)
                print(f"{set_name}: {r['pipeline']}: {r['images_per_s']:.2f} img/s", file=sys.stderr)
    peer = {r["set"]: r for r in rows if r["pipeline"].startswith("face_recognition")}
    for r in rows:
        if r["set"] in peer:
            r["speedup_vs_face_recognition"] = r["images_per_s"] / peer[r["set"]]["images_per_s"]
    write_json(a.json, {"rows": rows, "machine": machine()})
    print(
        "| set | pipeline | images | faces | images/s | ms/detection | ms/face embedded "
        "| x face_recognition |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['set']} | {r['pipeline']} | {r['images']} | {r['faces']} | {r['images_per_s']:.2f} | "
            f"{r['ms_per_detection']:.1f} | {r['ms_per_face_embedded']:.1f} | "
            f"{r.get('speedup_vs_face_recognition', float('nan')):.2f} |"
        )
    print("\nwhere the time goes (share of end-to-end time):")
    for r in rows:
        s = r["share"]
        print(f"  {r['set']:8s} {r['pipeline']:30s} " + "  ".join(f"{k} {v:5.1%}" for k, v in s.items()))


if __name__ == "__main__":
    main()
