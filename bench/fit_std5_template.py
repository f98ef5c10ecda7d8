"""Fit where std5 landmarks (YuNet's) land in dlib's 150x150 face chip.

For each unique image of LFW pairsDevTrain, HOG+dlib5 gives the dlib chip; YuNet gives
std5 points for the same face (the detection nearest the image centre, IoU >= 0.3 with
HOG's). YuNet's points are mapped into that chip and the per-coordinate median is the
template. Only pairsDevTrain is used, so pairsDevTest stays held out.

    python bench/fit_std5_template.py [--limit N] [--json bench/results/std5_template.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_dir, write_json
from faceprint.alignment import dlib_template, image_to_chip
from faceprint.detection.hog import HogDetector
from faceprint.detection.yunet import YuNetDetector
from faceprint.evaluation.pairs import central_face, read_pairs
from faceprint.io import load_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", type=Path, default=shared_dir() / "data" / "lfw-dev")
    ap.add_argument("--pairs", type=Path, default=None)
    ap.add_argument("--models-dir", type=Path, default=shared_dir() / "models")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "std5_template.json")
    a = ap.parse_args()
    pairs = read_pairs(a.pairs or a.root / "pairsDevTrain.txt")
    paths = sorted({p for pr in pairs.pairs for p in pr.paths(a.root)})
    if a.limit:
        paths = paths[: a.limit]
    hog = HogDetector(upsample=1)
    yun = YuNetDetector(model_path=str(a.models_dir / "face_detection_yunet_2023mar.onnx"))
    tpl = dlib_template()
    pts = []
    for i, path in enumerate(paths):
        img = load_image(path)
        fh = central_face(hog.detect(img), img.shape)
        fy = central_face(yun.detect(img), img.shape)
        if fh is None or fy is None or fh.box.iou(fy.box) < 0.3:
            continue
        assert fh.landmarks is not None and fy.landmarks is not None
        pts.append(image_to_chip(fy.landmarks, fh.landmarks, tpl))
        if i % 500 == 0:
            print(f"{i}/{len(paths)}", file=sys.stderr)
    arr = np.stack(pts)
    med = np.median(arr, axis=0)
    mad = np.median(np.abs(arr - med), axis=0)
    print(f"faces used: {len(arr)} of {len(paths)} images")
    for name, (x, y), (dx, dy) in zip(
        ["left eye", "right eye", "nose", "left mouth", "right mouth"], med, mad, strict=True
    ):
        print(f"{name:12s} x={x:7.3f} y={y:7.3f}   (MAD {dx:.2f}, {dy:.2f})")
    write_json(
        a.json,
        {
            "template": [[round(float(x), 3), round(float(y), 3)] for x, y in med],
            "mad": mad.round(3).tolist(),
            "faces": len(arr),
            "images": len(paths),
            "machine": machine(),
        },
    )


if __name__ == "__main__":
    main()
