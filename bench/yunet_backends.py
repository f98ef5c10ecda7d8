"""YuNet's two backends, ONNX Runtime and OpenCV (``cv2.FaceDetectorYN``), on the same images.

Rows: ms per image of ``YuNetDetector.detect`` (resize, network, decoding, NMS) and of
``detect_batch`` on chunks of 32 images (as ``Recognizer.process_batch`` calls it) on LFW
dev images (250x250) and on the group photos (``../shared/data/group``, 501 to 2280 px
wide), for each backend at 1 and 2 threads (ONNX Runtime's ``intra_op_threads``; OpenCV's
``cv2.setNumThreads``), with the default ``max_batch``. Each configuration runs
``--rounds`` times, the rounds interleaved, and the fastest round counts: on a shared
machine the slow rounds measure the neighbours. Then ONNX Runtime alone
(``YuNetOnnx.run``: network and decoding) on the LFW images in batches of 1, 4, 8 and 32,
which chose ``faceprint.detection.yunet.default_max_batch``. Last, whether both backends
find the same faces (count; largest box, landmark and score differences).

    python bench/yunet_backends.py [--lfw-images 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_dir, write_json

BATCHES = (1, 4, 8, 32)


def _timed(run: Any, images: list[Any]) -> float:
    t = time.perf_counter()
    for img in images:
        run(img)
    return (time.perf_counter() - t) / len(images) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=shared_dir())
    ap.add_argument("--lfw-images", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "yunet_backends.json")
    a = ap.parse_args()
    os.environ.setdefault("FACEPRINT_MODELS", str(a.shared / "models"))
    import cv2

    from faceprint.detection.yunet import YuNetDetector
    from faceprint.detection.yunet_onnx import YuNetOnnx
    from faceprint.io import load_image

    lfw = [load_image(p) for p in sorted((a.shared / "data" / "lfw-dev").glob("*/*.jpg"))[: a.lfw_images]]
    group = [load_image(p) for p in sorted((a.shared / "data" / "group").glob("*.jpg"))]
    sets = {"lfw": lfw, "group": group}
    configs = [(backend, threads) for backend in ("onnxruntime", "opencv") for threads in (1, 2)]
    dets = {
        (b, t): YuNetDetector(backend=b, intra_op_threads=t)
        if b == "onnxruntime"
        else YuNetDetector(backend=b)
        for b, t in configs
    }
    best: dict[tuple[str, int, str], float] = {}
    for _ in range(a.rounds):
        for (backend, threads), det in dets.items():
            cv2.setNumThreads(threads)
            for name, images in sets.items():
                det.detect(images[0])  # warm-up (and OpenCV's plan for this size)
                chunks = [images[i : i + 32] for i in range(0, len(images), 32)]
                for call, ms in (
                    ("detect", _timed(det.detect, images)),
                    ("detect_batch", _timed(det.detect_batch, chunks) * len(chunks) / len(images)),
                ):
                    key = (backend, threads, name, call)
                    best[key] = min(best.get(key, float("inf")), ms)
    rows = [
        {
            "backend": b,
            "threads": t,
            "images": n,
            "count": len(sets[n]),
            "call": c,
            "ms_per_image": round(ms, 3),
        }
        for (b, t, n, c), ms in best.items()
    ]

    batch_rows = []
    for threads in (1, 2):
        net = YuNetOnnx(None, 0.6, 0.3, 5000, intra_op_threads=threads)
        net.run(lfw[:32])
        fastest = dict.fromkeys(BATCHES, float("inf"))
        for _ in range(a.rounds):
            for bs in BATCHES:
                t = time.perf_counter()
                for i in range(0, len(lfw), bs):
                    net.run(lfw[i : i + bs])
                fastest[bs] = min(fastest[bs], (time.perf_counter() - t) / len(lfw) * 1000)
        batch_rows += [
            {"threads": threads, "batch": bs, "ms_per_image": round(ms, 3)} for bs, ms in fastest.items()
        ]

    ort_det, cv_det = dets[("onnxruntime", 1)], dets[("opencv", 1)]
    same_count, worst = 0, {"box_px": 0.0, "landmark_px": 0.0, "score": 0.0}
    for img in lfw + group:
        fa, fb = ort_det.detect(img), cv_det.detect(img)
        same_count += len(fa) == len(fb)
        for x, y in zip(fa, fb, strict=False):
            assert x.landmarks is not None and y.landmarks is not None
            box = np.subtract(
                [x.box.x1, x.box.y1, x.box.x2, x.box.y2], [y.box.x1, y.box.y1, y.box.x2, y.box.y2]
            )
            worst["box_px"] = max(worst["box_px"], float(np.abs(box).max()))
            worst["landmark_px"] = max(worst["landmark_px"], float(np.abs(x.landmarks - y.landmarks).max()))
            worst["score"] = max(worst["score"], abs(x.score - y.score))

    print(f"{'backend':<12} {'threads':>7} {'images':<6} {'call':<12} {'ms/image':>9}")
    for r in rows:
        print(
            f"{r['backend']:<12} {r['threads']:>7} {r['images']:<6} {r['call']:<12} {r['ms_per_image']:>9.2f}"
        )
    print("\nonnxruntime, network and decoding only (YuNetOnnx.run), LFW, ms per image by batch:")
    for r in batch_rows:
        print(f"  threads {r['threads']} batch {r['batch']:>2}: {r['ms_per_image']:.2f}")
    total = len(lfw) + len(group)
    print(f"\nsame face count on {same_count}/{total} images; largest differences {worst}")
    write_json(
        a.json,
        {
            "machine": machine(),
            "versions": {"opencv": cv2.__version__, "onnxruntime": __import__("onnxruntime").__version__},
            "rounds": a.rounds,
            "detect": rows,
            "onnxruntime_batches": batch_rows,
            "agreement": {"images": total, "same_count": same_count, "largest_difference": worst},
        },
    )


if __name__ == "__main__":
    main()
