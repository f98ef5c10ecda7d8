"""Enrolment speed, with and without enrolment views, through the CLI a user runs.

``faceprint enroll --from-dir`` on all of LFW dev (4,992 images, 2,848 people, the face
nearest the centre), into a fresh SQLite gallery each time, yunet + dlib-onnx, 2 cores:

* ``views``: the default, four crops embedded per face (faceprint.recognizer.VIEW_ZOOMS);
* ``no-views``: one crop per face (``--no-views``).

    python bench/enrolment.py [--out bench/results/enrolment.json]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_dir, write_json

RUNS = {"views": ["--views"], "no-views": ["--no-views"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "enrolment.json")
    a = ap.parse_args()
    lfw = shared_dir() / "data" / "lfw-dev"
    if not lfw.is_dir():
        raise SystemExit(f"LFW dev is missing at {lfw} (set FACEPRINT_SHARED)")
    images = sum(1 for _ in lfw.glob("*/*.jpg"))
    env = {**os.environ, "FACEPRINT_MODELS": str(shared_dir() / "models")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in RUNS.items():
            gallery = Path(tmp) / f"{name}.sqlite"
            cmd = [sys.executable, "-c", "from faceprint.cli.main import run; run()", "enroll",
                   "--from-dir", str(lfw), "--face", "central", "--gallery", str(gallery), *args]  # fmt: skip
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"[{name}] exited {proc.returncode}: {proc.stderr[-2000:]}")
            people = proc.stdout.count(" face(s) added")
            rows.append({"run": name, "args": args, "images": images, "people": people,
                         "wall_s": round(wall, 1), "images_per_s": round(images / wall, 1)})  # fmt: skip
            print(f"[{name}] {wall:.1f} s", file=sys.stderr, flush=True)
    base = rows[1]["wall_s"]
    print("| enrolment | images | wall | images/s | time vs one crop |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['images']:,} | {r['wall_s']:.0f} s | {r['images_per_s']:.1f} "
              f"| {r['wall_s'] / base:.2f}x |")  # fmt: skip
    write_json(a.out, {"machine": machine(), "protocol": __doc__, "rows": rows})


if __name__ == "__main__":
    main()
