"""What the face-quality gate (faceprint.quality) costs on real faces and saves on crowds.

Setup (issue 10's): a gallery of 180 LFW people (the first image of each of the first 180
people, by name, with >= 2 images in LFW dev; the face nearest the image centre), then

* crowds: ``Gallery.identify`` on every photo of ../shared/data/group, none of whose
  people is enrolled, so every face named is a stranger named (a false alarm);
* real faces: LFW dev known probes (the other images of the 180 people, central face:
  named right?) and strangers (up to ``--strangers`` images of people with 1 image);
* enrolment: how many of the 180 gallery images the gate would refuse.

Each face is embedded and ranked once with no gate; each gate (``--min-face-size`` ×
``--min-quality`` grid) is then applied as a filter, which is what the gate does (a
rejected face is reported ``unknown``; the others are ranked exactly as before).
Detector and embedder: the library defaults (yunet with ../shared/models, dlib-onnx).

    FACEPRINT_MODELS=../shared/models python bench/quality_gate.py

Writes bench/results/quality_gate.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_dir, write_json

SIZES = (0.0, 20.0, 30.0, 40.0, 50.0)
QUALITIES = (0.0, 0.1, 0.2, 0.3)


def _faces(g: Any, images: list[Path], central: bool) -> list[dict[str, Any]]:
    """One row per face (per image with ``central``): side, quality, top person, similarity,
    label with no gate."""
    from faceprint.gallery.gallery import _vectors
    from faceprint.io import load_image
    from faceprint.quality import assess
    from faceprint.selection import central_face

    rows: list[dict[str, Any]] = []
    for path in images:
        img = load_image(path)
        faces = g.recognizer.detector.detect(img)
        if central:
            c = central_face(faces, img.shape)
            faces = [c] if c is not None else []
        if not faces:
            rows.append({"image": str(path), "face": False})
            continue
        emb = g.recognizer.embed(img, faces)
        ranked = g.rank(_vectors(emb), 1)
        for f, m in zip(faces, ranked, strict=True):
            q = assess(img, f)
            best = m[0] if m else None
            rows.append({
                "image": str(path), "face": True, "side": q.side, "quality": q.value,
                "top": best.identity if best else None, "similarity": best.similarity if best else None,
            })  # fmt: skip
    return rows


def _passes(row: dict[str, Any], size: float, quality: float) -> bool:
    return bool(row["face"]) and row["side"] >= size and row["quality"] >= quality


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=180)
    ap.add_argument("--per-person", type=int, default=1, help="images enrolled per person (the rest: probes)")
    ap.add_argument("--strangers", type=int, default=600)
    ap.add_argument("--cache", type=Path, help="per-face measurements: read if present, else written")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "quality_gate.json")
    args = ap.parse_args()

    from faceprint import Recognizer
    from faceprint.quality import DEFAULT_GATE

    lfw = shared_dir() / "data" / "lfw-dev"
    people = sorted(p for p in lfw.iterdir() if p.is_dir())
    photos = {p.name: sorted(p.glob("*.jpg")) for p in people}
    multi = [n for n in sorted(photos) if len(photos[n]) >= 2][: args.people]
    singles = [n for n in sorted(photos) if len(photos[n]) == 1][: args.strangers]

    rec = Recognizer()
    if args.cache is not None and args.cache.exists():
        data = json.loads(args.cache.read_text())
    else:
        data = _measure(rec, multi, singles, photos, args)
        if args.cache is not None:
            args.cache.write_text(json.dumps(data))
    crowd, known, strangers, setup = data["crowd"], data["known"], data["strangers"], data["setup"]
    setup["lfw_central_faces"] = _lfw_gate(rec, lfw)
    groups = sorted({Path(r["image"]).name for r in crowd})
    gate = (DEFAULT_GATE.min_face_px, DEFAULT_GATE.min_quality)
    operating = {"open-set": setup["threshold"], "embedder default": rec.threshold}
    grids: dict[str, list[dict[str, Any]]] = {}
    for label, threshold in operating.items():
        grid = grids[label] = []
        for size in SIZES:
            for qual in QUALITIES:
                named = [r for r in crowd if _passes(r, size, qual) and r["similarity"] >= threshold]
                ok = [r for r in known if _passes(r, size, qual) and r["similarity"] >= threshold
                      and r["top"] == r["truth"]]  # fmt: skip
                fa = [r for r in strangers if _passes(r, size, qual) and r["similarity"] >= threshold]
                grid.append({
                    "min_face_px": size, "min_quality": qual, "threshold": threshold,
                    "crowd_faces_named": len(named),
                    "crowd_named_sides": sorted(round(r["side"]) for r in named),
                    "crowd_faces_rejected": sum(1 for r in crowd if r["face"] and not _passes(r, size, qual)),
                    "known_named_right": len(ok),
                    "known_rejected": sum(1 for r in known if r["face"] and not _passes(r, size, qual)),
                    "strangers_named": len(fa),
                })  # fmt: skip
    per_photo = {}
    for name in groups:
        rows = [r for r in crowd if Path(r["image"]).name == name and r["face"]]
        per_photo[name] = {"faces": len(rows)} | {
            f"named_{label}_{tag}": sum(r["similarity"] >= thr and (not g or _passes(r, *gate)) for r in rows)
            for label, thr in operating.items()
            for tag, g in (("no_gate", False), ("default_gate", True))
        }
    payload = {
        "setup": {**setup, "known_probes": len(known), "stranger_probes": len(strangers),
                  "known_without_face": sum(not r["face"] for r in known),
                  "crowd_faces": sum(r["face"] for r in crowd), "default_gate": gate,
                  "command": "FACEPRINT_MODELS=../shared/models python bench/quality_gate.py"},
        "per_photo": per_photo,
        "grid": grids,
        "machine": machine(),
    }  # fmt: skip
    for label, grid in grids.items():
        print(f"\n{setup['gallery_people']} people, {label} threshold {operating[label]:.4f}, "
              f"{setup['detector']} + {setup['embedder']}")  # fmt: skip
        print("| min px | min q | crowd named | crowd rejected | known right | known rejected | strangers |")
        print("|---|---|---|---|---|---|---|")
        for r in grid:
            print(
                f"| {r['min_face_px']:g} | {r['min_quality']:g} | {r['crowd_faces_named']} "
                f"| {r['crowd_faces_rejected']} | {r['known_named_right']}/{len(known)} "
                f"| {r['known_rejected']} | {r['strangers_named']}/{len(strangers)} |"
            )
    for name, d in per_photo.items():
        print(f"{name}: {d}")
    print(f"LFW dev central faces through the default gate: {setup['lfw_central_faces']}")
    write_json(args.out, payload)


def _lfw_gate(rec: Any, lfw: Path) -> dict[str, Any]:
    """Every LFW dev image's central face through the default gate: how many fail, and why."""
    from collections import Counter

    from faceprint.io import load_image
    from faceprint.quality import DEFAULT_GATE
    from faceprint.selection import central_face

    why: Counter[str] = Counter()
    n = faces = 0
    for path in sorted(lfw.glob("*/*.jpg")):
        im = load_image(path)
        n += 1
        f = central_face(rec.detector.detect(im), im.shape)
        if f is None:
            continue
        faces += 1
        r = DEFAULT_GATE.reason(im, f)
        if r is not None:
            why[r] += 1
    return {"images": n, "faces": faces, "rejected": sum(why.values()), "reasons": dict(why)}


def _measure(rec: Any, multi: list[str], singles: list[str], photos: dict[str, list[Path]], args: Any) -> Any:
    from faceprint.gallery import open_gallery
    from faceprint.io import load_image
    from faceprint.quality import DEFAULT_GATE, NO_GATE
    from faceprint.selection import central_face

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        g = open_gallery(str(Path(tmp) / "g.sqlite"), rec)
        refused_by_gate = 0
        k = args.per_person
        for n in multi:
            r = g.enroll(n, photos[n][:k], face="central", gate=NO_GATE)
            for a in r.added:
                im = load_image(a.image)
                f = central_face(rec.detector.detect(im), im.shape)
                refused_by_gate += f is not None and DEFAULT_GATE.reason(im, f) is not None
        threshold = g.operating_point().threshold
        enrolled = len(g.people())
        groups = sorted(
            p for p in (shared_dir() / "data" / "group").iterdir() if p.suffix in (".jpg", ".png")
        )
        crowd = _faces(g, groups, central=False)
        known = _faces(g, [p for n in multi for p in photos[n][k:]], central=True)
        for row, truth in zip(known, [n for n in multi for _ in photos[n][k:]], strict=True):
            row["truth"] = truth
        strangers = _faces(g, [photos[n][0] for n in singles], central=True)
        g.close()
    setup = {
        "gallery_people": enrolled, "gallery_images": sum(len(photos[n][:k]) for n in multi),
        "per_person": k, "threshold": threshold,
        "detector": rec.detector_name, "embedder": rec.embedder_name,
        "gallery_images_default_gate_would_refuse": int(refused_by_gate),
        "seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    return {"setup": setup, "crowd": crowd, "known": known, "strangers": strangers}


if __name__ == "__main__":
    main()
