"""Video throughput: per-track recognition against recognising every face in every frame.

Clips from ../shared/data/video, read from the file (no frame is dropped), gallery with
Lin-Manuel Miranda and Alex Lacamoire from refs/ (both appear in the Hamilton clip):

* ``per-track, detect every N``: ``recognize_stream`` (yunet at score 0.3 as ``faceprint
  watch`` uses it, dlib-onnx, the gallery's open-set threshold), N = 1, 2, 3;
* ``naive, every frame``: detect, embed and identify every face of every frame through the
  same Recognizer and ``Gallery.rank`` (what a per-frame loop does);
* ``face_recognition, every frame`` (when installed): its README's video recipe, HOG
  ``face_locations`` + ``face_encodings`` + ``compare_faces`` at tolerance 0.6 on every
  frame, at full size (the peer's way).

Reported: processing fps (frames / wall seconds, decoding included), faces embedded, and
for the per-track runs the latency from a face's first frame to its ``identified`` event,
in frames and in video milliseconds, plus the wall-clock milliseconds between processing
those two frames. All rows run in one process, one after the other, on the same machine.

    FACEPRINT_MODELS=../shared/models python bench/video.py [--repeat 1]

Writes bench/results/video.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_dir, write_json

CLIPS = ("short_hamilton_clip.mp4", "facenet_pytorch_tracking_video.mp4")
PEOPLE = ("lin-manuel-miranda", "alex-lacamoire")


def per_track(rec: Any, gallery: Any, clip: Path, detect_every: int) -> dict[str, Any]:
    """What ``recognize_stream`` does (same calls), driven here to count the embeddings."""
    from faceprint.video.sources import open_source
    from faceprint.video.stream import StreamRecognizer

    t0 = time.perf_counter()
    sr = StreamRecognizer(rec, gallery, detect_every=detect_every)
    frames, wall_at, latency = 0, {}, []
    started: dict[int, int] = {}
    with open_source(clip) as src:
        for f in src:
            r = sr.process(f.image, f.index, f.timestamp)
            frames += 1
            wall_at[r.index] = time.perf_counter()
            for e in r.events:
                if e["event"] == "track_started":
                    started[e["track_id"]] = e["frame"]
                elif e["event"] == "identified":
                    first = started.get(e["track_id"], e["frame"])
                    wall = wall_at[e["frame"]] - wall_at.get(first, wall_at[e["frame"]])
                    latency.append(
                        {
                            "track_id": e["track_id"],
                            "name": e["name"],
                            "frames": e["frames_since_start"],
                            "video_ms": round(1000 * e["seconds_since_start"], 1),
                            "wall_ms": round(1000 * wall, 1),
                        }
                    )
        sr.finish(f.index, f.timestamp)
    secs = time.perf_counter() - t0
    return {"mode": f"per-track, detect every {detect_every}", "frames": frames, "seconds": secs,
            "fps": frames / secs, "identified": latency, "embeddings": sr.embeddings}  # fmt: skip


def naive(rec: Any, gallery: Any, clip: Path) -> dict[str, Any]:
    from faceprint.video.sources import open_source

    t0 = time.perf_counter()
    frames = faces = 0
    threshold = gallery.operating_point().threshold
    names: dict[str, int] = {}
    with open_source(clip) as src:
        for f in src:
            found = rec.process(f.image)
            frames += 1
            faces += len(found)
            if found:
                q = np.stack([np.asarray(x.embedding, np.float32) for x in found])
                for m in gallery.rank(q, 1):
                    label = m[0].identity if m and m[0].similarity >= threshold else "unknown"
                    names[label] = names.get(label, 0) + 1
    secs = time.perf_counter() - t0
    return {"mode": "naive, every frame", "frames": frames, "seconds": secs, "fps": frames / secs,
            "embeddings": faces, "face_labels": names}  # fmt: skip


def peer(clip: Path, refs: Path) -> dict[str, Any] | None:
    try:
        import face_recognition
    except ImportError:
        return None
    from faceprint.video.sources import open_source

    known = [
        face_recognition.face_encodings(face_recognition.load_image_file(refs / f"{p}.png"))[0]
        for p in PEOPLE
    ]
    t0 = time.perf_counter()
    frames = faces = 0
    names: dict[str, int] = {}
    with open_source(clip) as src:
        for f in src:
            locs = face_recognition.face_locations(f.image)
            encs = face_recognition.face_encodings(f.image, locs)
            frames += 1
            faces += len(encs)
            for enc in encs:
                hits = face_recognition.compare_faces(known, enc, tolerance=0.6)
                label = PEOPLE[hits.index(True)] if True in hits else "unknown"
                names[label] = names.get(label, 0) + 1
    secs = time.perf_counter() - t0
    return {"mode": "face_recognition 1.3.0, every frame", "frames": frames, "seconds": secs,
            "fps": frames / secs, "embeddings": faces, "face_labels": names}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "video.json")
    ap.add_argument("--no-peer", action="store_true")
    a = ap.parse_args()
    shared = shared_dir()
    os.environ.setdefault("FACEPRINT_MODELS", str(shared / "models"))
    from faceprint.gallery.gallery import Gallery
    from faceprint.gallery.sqlite import SqliteStore
    from faceprint.recognizer import Recognizer

    video = shared / "data" / "video"
    rec = Recognizer("yunet", detector_options={"score_threshold": 0.3})
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        g = Gallery(SqliteStore(Path(tmp) / "g.sqlite"), rec)
        for p in PEOPLE:
            g.enroll(p, [video / "refs" / f"{p}.png"], face="largest")
        for name in CLIPS:
            clip = video / name
            print(f"{name} ...", file=sys.stderr)
            found = [per_track(rec, g, clip, n) for n in (1, 2, 3)]
            found.append(naive(rec, g, clip))
            if not a.no_peer:
                pr = peer(clip, video / "refs")
                if pr is not None:
                    found.append(pr)
            for r in found:
                r["clip"] = name
                print(f"  {r['mode']}: {r['fps']:.1f} fps", file=sys.stderr)
            rows += found
        g.close()
    write_json(a.out, {"machine": machine(), "rows": rows})
    print("| clip | mode | fps | faces embedded | identified after (frames / video ms / wall ms) |")
    print("|---|---|---:|---:|---|")
    for r in rows:
        lat = "; ".join(f"{x['name']} {x['frames']} / {x['video_ms']:.0f} / {x['wall_ms']:.0f}"
                        for x in r.get("identified", []))  # fmt: skip
        print(f"| {r['clip']} | {r['mode']} | {r['fps']:.1f} | {r['embeddings']} | {lat} |")


if __name__ == "__main__":
    main()
