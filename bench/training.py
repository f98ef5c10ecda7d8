"""Fine-tuning on LFW dev: does ``faceprint train`` help held-out people, where and at what cost?

Protocol (no tuning to the test):

* Training folder: the **pairsDevTrain people** of ``../shared/data/lfw-dev`` only (2,132
  people, 3,443 images; symlinks in a work directory, ``--face central`` as LFW labels
  the central face). ``faceprint train`` holds out 10% of them for validation and fits
  the model's thresholds there.
* Test: the **pairsDevTest pairs** (963 people never seen in training), full size and
  low resolution: each image shrunk to 64x64 and enlarged back to its size (PIL
  bilinear, which averages when shrinking), saved as JPEG quality 90, so a face is
  about 25 px wide; the faces are detected on the degraded photos, as in real use.
* Every row is the same pipeline end to end (yunet + the model, ``faceprint eval lfw``'s
  code), accuracy by seeded 10-fold cross-validation on the test pairs (the fine-tuned
  models saw the pairsDevTrain people, so a threshold fitted on those pairs would be
  biased), TAR at FAR 1e-2 from the test pairs' ROC.
* Each training run is a ``faceprint train`` subprocess: its wall time and peak resident
  memory are measured from outside (``os.wait4``).

    python bench/training.py [--runs lowres,plain] [--work DIR] [--epochs N] [--no-flip] [--out JSON]
    python bench/training.py --runs lowres-triplet,lowres-semihard,lowres-cosface --no-flip \
        --out bench/results/training_losses.json     # the losses the default was chosen against

Writes bench/results/training.json (and keeps the models under --work) and prints a
markdown table.
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

#: The runs: name -> extra ``faceprint train`` arguments. Chosen on the validation people
#: of the training folder (see the README's training section), never on pairsDevTest.
RUNS: dict[str, list[str]] = {
    # the defaults: distillation alone, every layer, flip,crop,rotate,lowres:p=0.8,jpeg
    "lowres": [],
    # classic transfer learning on full-size faces: online batch-hard triplets, upper layers
    "plain": ["--augment", "flip,crop", "--loss", "batch-hard", "--distill", "0", "--tune", "128"],
    # the alternatives the defaults were chosen against (run with --runs)
    "lowres-triplet": ["--loss", "batch-hard"],
    "lowres-semihard": ["--loss", "semi-hard"],
    "lowres-cosface": ["--loss", "cosface"],
    "lowres-upper": ["--tune", "128"],
}
DEFAULT_RUNS = ("lowres", "plain")


def pair_people(path: Path) -> set[str]:
    people: set[str] = set()
    for line in path.read_text().splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) == 3:
            people.add(parts[0])
        elif len(parts) == 4:
            people.update((parts[0], parts[2]))
    return people


def training_folder(lfw: Path, work: Path) -> Path:
    """``work/people``: symlinks to the pairsDevTrain people's folders (nothing copied)."""
    out = work / "people"
    out.mkdir(parents=True, exist_ok=True)
    for person in sorted(pair_people(lfw / "pairsDevTrain.txt")):
        link = out / person
        if not link.exists():
            link.symlink_to(lfw / person, target_is_directory=True)
    return out


def degrade(src: Path, dst: Path, side: int = 64, quality: int = 90) -> None:
    """The low-resolution copy of ``src``: shrunk to ``side`` x ``side`` and enlarged back."""
    from PIL import Image

    with Image.open(src) as im:
        rgb = im.convert("RGB")
        small = rgb.resize((side, side), Image.Resampling.BILINEAR)
        dst.parent.mkdir(parents=True, exist_ok=True)
        small.resize(rgb.size, Image.Resampling.BILINEAR).save(dst, quality=quality)


def lowres_copy(lfw: Path, work: Path) -> Path:
    """``work/lfw-lowres``: degraded copies of the pairsDevTest images (same layout)."""
    from faceprint.evaluation.pairs import read_pairs

    out = work / "lfw-lowres"
    for pair in read_pairs(lfw / "pairsDevTest.txt").pairs:
        for p in pair.paths(lfw):
            d = out / p.relative_to(lfw)
            if not d.exists():
                degrade(p, d)
    return out


def train(name: str, args: list[str], people: Path, work: Path, epochs: int | None) -> dict[str, Any]:
    out = work / "models" / name
    cmd = [sys.executable, "-c", "from faceprint.cli.main import run; run()", "train", "--dir", str(people),
           "--out", str(out), "--face", "central", "--name", name, "--json", *args]  # fmt: skip
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    print(f"[{name}] {' '.join(cmd[3:])}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"[{name}] faceprint train exited {proc.returncode}")
    card = json.loads(stdout)
    return {
        "model_dir": str(out),
        "args": args,
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024.0, 1),
        "card": {k: card[k] for k in ("model_id", "default_threshold", "flip_threshold", "metrics")},
        "training": {k: v for k, v in card["training"].items() if k != "validation_curve"},
        "validation_curve": card["training"]["validation_curve"],
    }


def evaluate(embedder: str, flip: bool, root: Path, pairs: Path, workers: int) -> dict[str, Any]:
    from faceprint.evaluation.embedset import PipelineSpec
    from faceprint.evaluation.lfw import evaluate_lfw

    spec = PipelineSpec(detector="yunet", embedder=embedder, flip=flip)
    rep = evaluate_lfw(spec, root, pairs, workers=workers)
    tar = {f"{p['target']:g}": p["tar"] for p in rep["tar_at_far"]}
    return {
        "accuracy": rep["accuracy_mean"],
        "accuracy_std": rep["accuracy_std"],
        "auc": rep["auc"],
        "tar_at_far_1e-2": tar.get("0.01"),
        "failed_pairs": rep["failed_pairs"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default=",".join(DEFAULT_RUNS), help=f"comma list of {', '.join(RUNS)}")
    ap.add_argument("--work", type=Path, default=None, help="work directory (default: a new temporary one)")
    ap.add_argument("--epochs", type=int, default=None, help="override faceprint train's --epochs")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-flip", action="store_true", help="skip the flip-TTA rows")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "training.json")
    a = ap.parse_args()
    names = [r for r in a.runs.split(",") if r]
    unknown = [r for r in names if r not in RUNS]
    if unknown:
        ap.error(f"unknown run(s) {', '.join(unknown)}: expected {', '.join(RUNS)}")
    lfw = shared_dir() / "data" / "lfw-dev"
    if not (lfw / "pairsDevTrain.txt").is_file():
        raise SystemExit(f"LFW dev is missing at {lfw} (set FACEPRINT_SHARED)")
    os.environ.setdefault("FACEPRINT_MODELS", str(shared_dir() / "models"))
    work = a.work or Path(tempfile.mkdtemp(prefix="faceprint-training-"))
    people = training_folder(lfw, work)
    low = lowres_copy(lfw, work)
    pairs = lfw / "pairsDevTest.txt"

    runs = {name: train(name, RUNS[name], people, work, a.epochs) for name in names}
    rows: list[dict[str, Any]] = []
    models = [("stock", "dlib-onnx")] + [(n, runs[n]["model_dir"]) for n in names]
    for label, embedder in models:
        for flip in (False,) if a.no_flip else (False, True):
            row: dict[str, Any] = {
                "model": label + (" + flip" if flip else ""),
                "embedder": embedder,
                "flip": flip,
            }
            for test, root in (("full", lfw), ("lowres", low)):
                print(f"[eval] {row['model']} on {test}", file=sys.stderr, flush=True)
                row[test] = evaluate(embedder, flip, root, pairs, a.workers)
            rows.append(row)
    stock = rows[0]
    print("| model | full-size accuracy | full-size TAR@FAR=1e-2 | low-res accuracy | low-res TAR@FAR=1e-2 |")
    print("|---|---|---|---|---|")
    for r in rows:
        cells = []
        for test in ("full", "lowres"):
            for key in ("accuracy", "tar_at_far_1e-2"):
                value, base = r[test][key], stock[test][key]
                cells.append(f"{value:.2%}" + ("" if r is stock else f" ({value - base:+.2%})"))
        print(f"| {r['model']} | " + " | ".join(cells) + " |")
    for name, run in runs.items():
        print(f"[{name}] {run['wall_s']:.0f} s, peak {run['peak_rss_mb']:.0f} MB, best epoch "
              f"{run['training']['best_epoch']} of {run['training']['epochs_run']}")  # fmt: skip
    write_json(
        a.out,
        {
            "machine": machine(),
            "protocol": __doc__.split("\n\n")[1],
            "lowres_test": "pairsDevTest images shrunk to 64x64 and back (PIL bilinear), JPEG q90",
            "runs": runs,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
