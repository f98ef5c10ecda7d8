"""Where do low-resolution faces lose accuracy: in the alignment or in the pixels?

The low-resolution test of ``bench/training.py`` (pairsDevTest photos shrunk to 64x64 and
enlarged back, bilinear, JPEG q90: faces about 25 px wide) detects and aligns the faces
on the degraded photo, as real use does. Here the same pairs are scored three ways with
one model (yunet, the face nearest the centre):

* ``full``: the full-size photos (the reference);
* ``lowres``: the degraded photos, aligned on their own landmarks (the pipeline);
* ``lowres, full-size landmarks``: the degraded photos aligned on the landmarks found in
  the full-size photo (same 250x250 frame): perfect alignment, low-resolution pixels.

If the third row recovers most of the gap, landmarks are the problem (and training should
see photo-level degradation); if not, the pixels are. Accuracy by the same seeded
10-fold cross-validation as ``bench/training.py``; TAR at FAR 1e-2 from the test ROC.

    python bench/lowres_alignment.py [--embedder dlib-onnx|MODEL_DIR] [--work DIR] [--out JSON]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_dir, write_json
from training import lowres_copy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--embedder", default="dlib-onnx")
    ap.add_argument("--work", type=Path, default=None, help="folder for the degraded copies")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "lowres_alignment.json")
    a = ap.parse_args()
    lfw = shared_dir() / "data" / "lfw-dev"
    if not (lfw / "pairsDevTest.txt").is_file():
        raise SystemExit(f"LFW dev is missing at {lfw} (set FACEPRINT_SHARED)")
    os.environ.setdefault("FACEPRINT_MODELS", str(shared_dir() / "models"))
    from faceprint.evaluation.lfw import pairset
    from faceprint.evaluation.pairs import read_pairs
    from faceprint.evaluation.verification import analyse
    from faceprint.io import load_image
    from faceprint.recognizer import Recognizer
    from faceprint.selection import central_face

    work = a.work or Path(tempfile.mkdtemp(prefix="faceprint-lowres-"))
    low_root = lowres_copy(lfw, work)
    pf = read_pairs(lfw / "pairsDevTest.txt")
    rec = Recognizer("yunet", a.embedder)
    keys = ("full", "lowres", "lowres, full-size landmarks")
    vec: dict[Path, dict[str, np.ndarray | None]] = {}
    for pair in pf.pairs:
        for p in pair.paths(lfw):
            if p in vec:
                continue
            full = load_image(p)
            low = load_image(low_root / p.relative_to(lfw))
            ff = central_face(rec.detect(full), full.shape)
            fl = central_face(rec.detect(low), low.shape)
            out: dict[str, np.ndarray | None] = dict.fromkeys(keys)
            if ff is not None:
                out["full"] = rec.embed(full, [ff])[0].embedding
                out["lowres, full-size landmarks"] = rec.embed(low, [ff])[0].embedding
            if fl is not None:
                out["lowres"] = rec.embed(low, [fl])[0].embedding
            vec[p] = out
    rows: list[dict[str, Any]] = []
    for key in keys:
        ps = pairset(pf, lfw)
        s = []
        for pa, pb in zip(ps.a, ps.b, strict=True):
            va, vb = vec[pa][key], vec[pb][key]
            s.append(-1.0 if va is None or vb is None else float(np.dot(va, vb)))
        ps.scores = np.array(s, dtype=np.float64)
        ps.failed = ps.scores == -1.0
        rep = analyse(ps)
        tar = {f"{t['target']:g}": t["tar"] for t in rep["tar_at_far"]}
        rows.append({"test": key, "accuracy": rep["accuracy_mean"], "tar_at_far_1e-2": tar.get("0.01"),
                     "auc": rep["auc"], "failed_pairs": rep["failed_pairs"]})  # fmt: skip
    print(f"model {a.embedder}, pairsDevTest ({len(pf.pairs)} pairs)")
    print("| test | accuracy | TAR@FAR=1e-2 |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['test']} | {r['accuracy']:.2%} | {r['tar_at_far_1e-2']:.2%} |")
    write_json(a.out, {"machine": machine(), "protocol": __doc__, "embedder": a.embedder, "rows": rows})


if __name__ == "__main__":
    main()
