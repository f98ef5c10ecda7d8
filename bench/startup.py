"""Start-up: wall time from process start to the first result, for small commands.

Each command runs as a fresh process (best of ``--repeat``), after one untimed run that
fills the model cache (the ONNX graph faceprint builds once per install):

* ``import faceprint`` (the public API, lazy: no model, cv2 or onnxruntime loaded);
* ``faceprint --version``;
* ``faceprint detect`` of one LFW image;
* ``faceprint verify`` of two LFW images (detect, align, embed both, compare);
* face_recognition 1.3.0 doing the same verify in a fresh process (load both images,
  ``face_encodings``, ``compare_faces`` at 0.6), when installed.

    python bench/startup.py [--repeat 5]

Writes bench/results/startup.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_dir, write_json

PEER = (
    "import sys, face_recognition as fr; "
    "a, b = (fr.face_encodings(fr.load_image_file(p))[0] for p in sys.argv[1:3]); "
    "print(fr.compare_faces([a], b)[0])"
)


def best(cmd: list[str], env: dict[str, str], repeat: int) -> float:
    subprocess.run(cmd, check=True, env=env, capture_output=True)  # untimed: caches, page cache
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=shared_dir())
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "startup.json")
    a = ap.parse_args()
    env = {**os.environ, "FACEPRINT_MODELS": str(a.shared / "models")}
    fp = str(Path(sys.executable).with_name("faceprint"))
    lfw = a.shared / "data" / "lfw-dev"
    pa, pb = sorted((lfw / "Aaron_Peirsol").glob("*.jpg"))[:2]
    jobs: dict[str, list[str]] = {
        "import faceprint": [sys.executable, "-c", "import faceprint"],
        "faceprint --version": [fp, "--version"],
        "faceprint detect (1 image)": [fp, "detect", str(pa)],
        "faceprint verify (2 images)": [fp, "verify", str(pa), str(pb)],
    }
    try:
        import face_recognition  # noqa: F401

        jobs["face_recognition verify (2 images)"] = [sys.executable, "-c", PEER, str(pa), str(pb)]
    except ImportError:
        pass
    rows: list[dict[str, Any]] = []
    for name, cmd in jobs.items():
        s = best(cmd, env, a.repeat)
        rows.append({"command": name, "seconds": s})
        print(f"{name}: {s:.2f} s", file=sys.stderr)
    write_json(a.json, {"benchmark": "startup", "rows": rows, "repeat": a.repeat, "machine": machine()})
    print(f"| command (fresh process) | seconds (best of {a.repeat}) |")
    print("|---|---|")
    for r in rows:
        print(f"| {r['command']} | {r['seconds']:.2f} |")


if __name__ == "__main__":
    main()
