"""Peak memory of ``faceprint detect`` on a 64-megapixel photo.

The photo is Solvay 1927 from ../shared/data/group stretched to 8000x8000 px (64 MP, the
default ``FACEPRINT_MAX_PIXELS`` cap) and saved as a JPEG in a temporary directory;
``faceprint detect`` runs on it as a fresh process, and its peak resident memory
(``ru_maxrss`` of the child) and wall time are reported with the faces found.

    python bench/peak_memory.py

Writes bench/results/peak_memory.json.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_dir, write_json


def main() -> None:
    from PIL import Image

    shared = shared_dir()
    Image.MAX_IMAGE_PIXELS = None
    env = {**os.environ, "FACEPRINT_MODELS": str(shared / "models")}
    fp = str(Path(sys.executable).with_name("faceprint"))
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "solvay_64mp.jpg"
        Image.open(shared / "data" / "group" / "solvay_conference_1927.png").convert("RGB").resize(
            (8000, 8000)
        ).save(photo, quality=90)
        subprocess.run([fp, "models", "list"], check=True, env=env, capture_output=True)  # warm caches
        t = time.perf_counter()
        out = subprocess.run([fp, "detect", str(photo), "--json"], check=True, env=env, capture_output=True)
        wall = time.perf_counter() - t
    import json

    faces = len(json.loads(out.stdout)["images"][0]["faces"])
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    row = {
        "command": "faceprint detect (8000x8000 JPEG)",
        "peak_rss_mb": peak_mb,
        "seconds": wall,
        "faces": faces,
    }
    write_json(REPO / "bench" / "results" / "peak_memory.json", {"rows": [row], "machine": machine()})
    print(f"| faceprint detect, 64 MP photo | {peak_mb:.0f} MB peak | {wall:.1f} s | {faces} faces |")


if __name__ == "__main__":
    main()
