"""Detector comparison: every registered detector on LFW dev and on the group photos.

LFW dev has one labelled face at the centre of each 250x250 image: the detection rate is
the share of images with a detection whose centre lies within 40 px of the image centre,
with the median ms per image. On ``../shared/data/group`` it reports faces found and
seconds per photo (the Solvay 1927 photo has 29 people). One process, same run.

    python bench/detectors.py [--lfw-images 500] [--detectors hog,yunet,mtcnn,scrfd]
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=shared_dir())
    ap.add_argument("--lfw-images", type=int, default=500)
    ap.add_argument("--detectors", default="")
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "detectors.json")
    a = ap.parse_args()
    os.environ.setdefault("FACEPRINT_MODELS", str(a.shared / "models"))
    from faceprint.errors import FaceprintError
    from faceprint.io import load_image
    from faceprint.registry import detectors

    names = [n for n in a.detectors.split(",") if n] or detectors.names()
    lfw_paths = sorted((a.shared / "data" / "lfw-dev").glob("*/*.jpg"))[: a.lfw_images]
    lfw_imgs = [load_image(p) for p in lfw_paths]
    group_paths = sorted(p for p in (a.shared / "data" / "group").iterdir() if p.suffix in (".jpg", ".png"))
    group_imgs = [load_image(p) for p in group_paths]
    rows: list[dict[str, Any]] = []
    for name in names:
        try:
            det = detectors.create(name)
        except FaceprintError as exc:
            print(f"{name}: skipped ({exc})", file=sys.stderr)
            continue
        det.detect(lfw_imgs[0])  # warm-up
        times, hits = [], 0
        for img in lfw_imgs:
            t = time.perf_counter()
            faces = det.detect(img)
            times.append(time.perf_counter() - t)
            cy, cx = img.shape[0] / 2, img.shape[1] / 2
            hits += any(np.hypot(f.box.center[0] - cx, f.box.center[1] - cy) < 40 for f in faces)
        group = {}
        for p, img in zip(group_paths, group_imgs, strict=True):
            t = time.perf_counter()
            n = len(det.detect(img))
            group[p.name] = {"faces": n, "seconds": round(time.perf_counter() - t, 3)}
        rows.append(
            {
                "detector": name,
                "lfw_images": len(lfw_imgs),
                "lfw_detection_rate": hits / len(lfw_imgs),
                "lfw_median_ms": 1000 * float(np.median(times)),
                "group": group,
                "group_seconds": sum(g["seconds"] for g in group.values()),
            }
        )
        print(f"{name}: {hits}/{len(lfw_imgs)} central faces", file=sys.stderr)
    write_json(a.json, {"rows": rows, "machine": machine()})
    print(
        f"| detector | LFW dev detection rate ({len(lfw_imgs)} images) | median ms/image | "
        "Solvay 1927 faces (29 people) | group photos: faces, seconds |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        g = r["group"]
        tot = sum(v["faces"] for v in g.values())
        solvay = g.get("solvay_conference_1927.png", {}).get("faces", "n/a")
        print(
            f"| {r['detector']} | {r['lfw_detection_rate']:.1%} | {r['lfw_median_ms']:.1f} | {solvay} | "
            f"{tot} faces, {r['group_seconds']:.1f} s |"
        )
    print("\nper photo (faces / seconds):")
    for p in group_paths:
        cells = "  ".join(
            f"{r['detector']} {r['group'][p.name]['faces']}/{r['group'][p.name]['seconds']:.2f}s"
            for r in rows
        )
        print(f"  {p.name:40s} {cells}")


if __name__ == "__main__":
    main()
