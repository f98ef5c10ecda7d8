"""Whole-command speed of an LFW evaluation, start-up included, against face_recognition.

Two jobs, each run as a fresh process and timed from outside (wall seconds from process
start to exit: imports, model loading, every image, the analysis):

* ``pairsDevTest``: the 1,000 pairs of pairsDevTest (1,549 distinct images), scored by
  10-fold cross-validation: ``faceprint eval lfw --pairs pairsDevTest.txt``;
* ``all of lfw-dev``: pairsDevTest with the threshold fitted on pairsDevTrain (all 4,992
  images): ``faceprint eval lfw --pairs pairsDevTest.txt --train-pairs pairsDevTrain.txt``.

The peer does the same job the way face_recognition 1.3.0's README does it, in one
process (``python bench/eval_speed.py --peer ...``): for each distinct image
``load_image_file``, ``face_locations`` (HOG, upsample 1) and ``face_encodings``; the
face nearest the image centre, as LFW labels it; then the Euclidean distance of each pair,
"same" at its default tolerance 0.6. Accuracy is reported for both, so the speed-up is
not bought with accuracy.

    pip install --no-deps face_recognition    # the peer (needs setuptools<81 for pkg_resources)
    python bench/eval_speed.py [--repeat 1] [--workers 2]

Writes bench/results/eval_speed.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_dir, write_json

FACEPRINT = str(Path(sys.executable).with_name("faceprint"))


def peer(root: Path, pairs_files: list[Path], out: Path) -> None:
    """face_recognition's way (module doc); writes its accuracy and counts to ``out``."""
    import face_recognition
    import numpy as np

    from faceprint.evaluation.pairs import read_pairs

    files = [read_pairs(f) for f in pairs_files]
    paths = sorted({p for pf in files for pr in pf.pairs for p in pr.paths(root)})
    enc: dict[Path, Any] = {}
    for p in paths:
        img = face_recognition.load_image_file(str(p))
        locs = face_recognition.face_locations(img)
        if not locs:
            enc[p] = None
            continue
        h, w = img.shape[:2]
        # (top, right, bottom, left): the box whose centre is nearest the image centre
        best = min(locs, key=lambda b: ((b[1] + b[3]) / 2 - w / 2) ** 2 + ((b[0] + b[2]) / 2 - h / 2) ** 2)
        enc[p] = face_recognition.face_encodings(img, [best])[0]
    test = files[0]
    right = 0
    for pr, same in zip(test.pairs, test.labels(), strict=True):
        a, b = (enc[p] for p in pr.paths(root))
        said = a is not None and b is not None and float(np.linalg.norm(a - b)) <= 0.6
        right += said == bool(same)
    out.write_text(json.dumps({"accuracy": right / len(test.pairs), "images": len(paths)}))


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=shared_dir())
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--jobs", default="pairsDevTest,all", help="pairsDevTest and/or all")
    ap.add_argument("--peer", nargs="+", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--peer-out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "eval_speed.json")
    a = ap.parse_args()
    lfw = a.shared / "data" / "lfw-dev"
    if a.peer:
        peer(lfw, a.peer, a.peer_out)
        return
    env = {**os.environ, "FACEPRINT_MODELS": str(a.shared / "models")}
    test, train = lfw / "pairsDevTest.txt", lfw / "pairsDevTrain.txt"
    jobs = {"pairsDevTest": [test], "all": [test, train]}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        # build the cached ONNX graph once, outside the timings (a one-off per install)
        subprocess.run([FACEPRINT, "models", "build", "dlib-onnx"], check=True, env=env, capture_output=True)
        for job in a.jobs.split(","):
            files = jobs[job]
            report = Path(tmp) / f"{job}.json"
            cmd = [
                FACEPRINT,
                "eval",
                "lfw",
                "--root",
                str(lfw),
                "--pairs",
                str(files[0]),
                "--json",
                str(report),
            ]
            if len(files) > 1:
                cmd += ["--train-pairs", str(files[1])]
            if a.workers:
                cmd += ["--workers", str(a.workers)]
            ours = min(timed(cmd, env) for _ in range(a.repeat))
            rep = json.loads(report.read_text())
            peer_out = Path(tmp) / f"{job}_peer.json"
            pcmd = [sys.executable, __file__, "--shared", str(a.shared), "--peer", *map(str, files)]
            theirs = timed([*pcmd, "--peer-out", str(peer_out)], env)
            pr = json.loads(peer_out.read_text())
            rows.append(
                {
                    "job": job,
                    "images": rep["images"],
                    "faceprint_seconds": ours,
                    "faceprint_accuracy": rep["accuracy_mean"],
                    "faceprint_protocol": rep["protocol"],
                    "face_recognition_seconds": theirs,
                    "face_recognition_accuracy": pr["accuracy"],
                    "speedup": theirs / ours,
                }
            )
            print(f"{job}: faceprint {ours:.1f} s, face_recognition {theirs:.1f} s", file=sys.stderr)
    write_json(a.json, {"benchmark": "eval_speed", "rows": rows, "machine": machine(), "command": FACEPRINT})
    print(
        "| job | images | faceprint eval lfw (s) | face_recognition (s) | × | accuracy (faceprint / peer) |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        acc = f"{100 * r['faceprint_accuracy']:.1f}% / {100 * r['face_recognition_accuracy']:.1f}%"
        secs = f"{r['faceprint_seconds']:.1f} | {r['face_recognition_seconds']:.1f}"
        print(f"| {r['job']} | {r['images']} | {secs} | {r['speedup']:.1f}× | {acc} |")


if __name__ == "__main__":
    main()
