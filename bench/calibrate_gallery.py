"""What ``faceprint calibrate --gallery`` does to a gallery's stranger false alarms, on LFW.

Protocol (LFW dev, yunet + dlib-onnx, the face nearest the image centre):

* the user's labelled faces: every image of the pairsDevTest people with >= 2 images;
  ``calibrate(..., fit_impostors=True)`` scores every pair of them (the CLI's code path);
* the gallery: the first image of each of those people (a throwaway SQLite file, enrolled
  through ``Gallery.enroll_dir``); known probes: their other images;
* strangers: ``--strangers`` (256) people of pairsDevTest with one image, drawn with the
  seed: nobody enrolled them.

For each operating point, the fraction of strangers the gallery names (top person at or
above the threshold) and the fraction of known probes named correctly (DIR):

* ``shipped``: the open-set threshold from the shipped impostor distribution (no
  calibration);
* ``1:1 threshold (old calibrate --gallery)``: the calibrated 1:1 threshold at ``--far``,
  which is what ``calibrate --gallery`` stored before (a fixed threshold);
* ``calibrated``: what it stores now, the user's impostor distribution, from which the
  open-set threshold is derived for the gallery's size at its stranger FAR (1%).

    python bench/calibrate_gallery.py [--far 1e-3] [--strangers 256] [--seed 0]

Writes bench/results/calibrate_gallery.json and prints a markdown table.
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


def _people(root: Path, pairs_file: str) -> list[str]:
    from faceprint.evaluation.pairs import read_pairs

    return sorted({n for p in read_pairs(root / pairs_file).pairs for n in (p.name_a, p.name_b)})


def _link_tree(dest: Path, people: dict[str, list[Path]]) -> Path:
    for name, paths in people.items():
        (dest / name).mkdir(parents=True)
        for p in paths:
            (dest / name / p.name).symlink_to(p)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=shared_dir() / "data" / "lfw-dev")
    ap.add_argument("--models-dir", type=Path, default=shared_dir() / "models")
    ap.add_argument("--far", type=float, default=1e-3, help="1:1 false-accept rate of the calibration")
    ap.add_argument("--strangers", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "calibrate_gallery.json")
    a = ap.parse_args()
    os.environ["FACEPRINT_MODELS"] = str(a.models_dir)

    from faceprint.evaluation.calibration import calibrate
    from faceprint.evaluation.embedset import EmbeddingCache, PipelineSpec, embed_images
    from faceprint.gallery.gallery import Gallery
    from faceprint.gallery.sqlite import SqliteStore

    images = {n: sorted((a.root / n).glob("*.jpg")) for n in _people(a.root, "pairsDevTest.txt")}
    users = {n: ps for n, ps in images.items() if len(ps) >= 2}
    singles = sorted(n for n, ps in images.items() if len(ps) == 1)
    rng = np.random.default_rng(a.seed)
    strangers = [images[n][0] for n in rng.choice(singles, size=a.strangers, replace=False)]
    spec = PipelineSpec("yunet", "dlib-onnx")
    cache = EmbeddingCache()
    rec_g = spec.build()
    with tempfile.TemporaryDirectory() as tmp:
        calib = _link_tree(Path(tmp) / "faces", users)
        rec = calibrate(
            spec, a.far, dir=calib, face="central", workers=a.workers, cache=cache, fit_impostors=True
        )
        enrol = _link_tree(Path(tmp) / "enrol", {n: ps[:1] for n, ps in users.items()})
        g = Gallery(SqliteStore(Path(tmp) / "g.sqlite"), rec_g)
        reports = g.enroll_dir(enrol, face="central")
        enrolled = {r.person for r in reports if r.added}
        known = [(n, p) for n, ps in users.items() if n in enrolled for p in ps[1:]]
        paths = strangers + [p for _, p in known]  # known probes: embedded by the calibration already
        probes = embed_images(spec, paths, pick="central", workers=a.workers, cache=cache)

        def tops(paths: list[Path]) -> list[tuple[str | None, float]]:
            vecs = [probes[p].vector for p in paths]
            ok = [v for v in vecs if v is not None]
            ranked = iter(g.rank(np.stack(ok), 1)) if ok else iter([])
            out: list[tuple[str | None, float]] = []
            for v in vecs:
                m = next(ranked) if v is not None else ()
                out.append((m[0].identity, m[0].similarity) if m else (None, -2.0))
            return out

        s_top = tops(strangers)
        k_top = tops([p for _, p in known])
        truth = [n for n, _ in known]

        def at(threshold: float) -> dict[str, float]:
            named = sum(s >= threshold for _, s in s_top) / len(s_top)
            dir_ = sum(who == n and s >= threshold for (who, s), n in zip(k_top, truth, strict=True))
            return {"threshold": threshold, "strangers_named": named, "dir": dir_ / len(truth)}

        points: dict[str, Any] = {}
        op = g.operating_point()
        points["shipped"] = {**at(op.threshold), "source": op.source, "far": op.far}
        old = "1:1 threshold (old calibrate --gallery)"
        points[old] = {**at(rec["threshold"]), "source": "1:1", "far": a.far}
        g.set_calibration(rec)
        op = g.operating_point()
        points["calibrated"] = {**at(op.threshold), "source": op.source, "far": op.far, "note": op.note}
        people = g.store.count_people()
        g.close()
    result = {
        "protocol": {
            "calibration_images": rec["images"],
            "impostor_pairs": rec["impostor_pairs"],
            "genuine_pairs": rec["genuine_pairs"],
            "enrolled_people": people,
            "known_probes": len(known),
            "strangers": len(strangers),
            "far_1to1": a.far,
            "seed": a.seed,
            "model": rec["model"],
        },
        "calibration": {k: v for k, v in rec.items() if k != "impostors"},
        "points": points,
        "machine": machine(),
    }
    write_json(a.json, result)
    print(
        f"{people} people enrolled, {len(known)} known probes, {len(strangers)} strangers; "
        f"calibrated on {rec['images']} images ({rec['impostor_pairs']} different pairs)\n"
    )
    print("| operating point | threshold | strangers named | DIR (known named right) |")
    print("|---|---|---|---|")
    for name, p in points.items():
        print(f"| {name} | {p['threshold']:.4f} | {p['strangers_named']:.1%} | {p['dir']:.1%} |")


if __name__ == "__main__":
    main()
