"""The training runs scored on their own validation people, photo-degraded: a selection
score from the training data alone (no pairsDevTest person involved).

``faceprint train`` holds out validation people (listed in each model card) and scores
aligned chips with every augmentation applied at once. Here the same people's photos are
degraded like ``bench/training.py``'s low-resolution test (shrunk to 64x64 and back,
bilinear, JPEG q90), detected and aligned as in real use, and every pair of their faces is
scored (TAR at FAR 1e-2 over all pairs; the validation split is small: about 80 people and
265 same-person pairs, so one pair moves TAR by 0.4 points). The clean photos are scored
too. Every model must come from the same training folder and split (the first card's
validation people are used for all).

    python bench/training_validation.py MODEL_DIR... [--work DIR] [--out JSON]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_dir, write_json
from training import degrade


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", type=Path, help="MODEL_DIRs written by faceprint train")
    ap.add_argument("--work", type=Path, default=None, help="folder for the degraded copies")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "training_validation.json")
    a = ap.parse_args()
    os.environ.setdefault("FACEPRINT_MODELS", str(shared_dir() / "models"))
    from faceprint.evaluation import metrics
    from faceprint.io import load_image
    from faceprint.recognizer import Recognizer
    from faceprint.selection import central_face

    cards = [json.loads((m / "card.json").read_text()) for m in a.models]
    people = cards[0]["data"]["validation_people"]
    root = Path(cards[0]["data"]["dir"])
    for m, c in zip(a.models, cards, strict=True):
        if c["data"]["validation_people"] != people:
            raise SystemExit(f"{m}: another validation split than {a.models[0]}")
    work = a.work or Path(tempfile.mkdtemp(prefix="faceprint-val-"))
    images, labels = [], []
    for i, person in enumerate(people):
        for p in sorted((root / person).glob("*.jpg")):
            d = work / person / p.name
            if not d.exists():
                degrade(p, d)
            images.append((p, d))
            labels.append(i)
    y = np.array(labels)
    iu, ju = np.triu_indices(len(y), 1)
    same = y[iu] == y[ju]
    rows: list[dict[str, Any]] = []
    runs = [("stock", "dlib-onnx")] + [(c["name"], str(m)) for m, c in zip(a.models, cards, strict=True)]
    for label, embedder in runs:
        rec = Recognizer("yunet", embedder)
        row: dict[str, Any] = {"model": label, "embedder": embedder}
        for test, col in (("clean", 0), ("lowres", 1)):
            vecs = []
            for pair in images:
                img = load_image(pair[col])
                f = central_face(rec.detect(img), img.shape)
                vecs.append(rec.embed(img, [f])[0].embedding if f is not None else np.zeros(rec.embedder.dim))
            v = np.stack(vecs).astype(np.float32)
            s = np.einsum("ij,ij->i", v[iu], v[ju]).astype(np.float64)
            row[test] = {"tar_at_far_1e-2": metrics.tar_at_far(s, same, 1e-2).tar,
                         "auc": metrics.roc(s, same).auc}  # fmt: skip
        rows.append(row)
        print(f"| {label} | {row['clean']['tar_at_far_1e-2']:.2%} | {row['lowres']['tar_at_far_1e-2']:.2%} |",
              flush=True)  # fmt: skip
    write_json(
        a.out,
        {"machine": machine(), "protocol": __doc__, "validation_people": len(people), "faces": len(images),
         "same_pairs": int(same.sum()), "different_pairs": int((~same).sum()), "rows": rows},
    )  # fmt: skip


if __name__ == "__main__":
    main()
