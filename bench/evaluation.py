"""The README's evaluation table: every detector available here with the default embedder,
through the same code as ``faceprint eval`` and ``faceprint calibrate``, on LFW dev.

For each detector (yunet, scrfd, mtcnn, hog; dlib-onnx embedder):

* **verification**: ``evaluate_lfw`` on pairsDevTest with the threshold fitted on
  pairsDevTrain (held-out accuracy, AUC, EER, TAR@FAR with the impostor count behind it);
* **calibration at FAR 1e-3**: ``calibrate`` on every pair of images of the 2,132
  pairsDevTrain people (a folder of symlinks), then the FAR and TAR that threshold
  actually gives on every pair of images of the 963 pairsDevTest people (person-disjoint
  from the train people): the held-out check that a calibrated threshold transfers;
* **open-set identification**: ``evaluate_identification`` on the LFW dev folder with the
  CLI's defaults (first image of each person enrolled, 20% of the people held out as
  strangers, seed 0) and ``--face central`` (LFW labels the central face): rank-1, rank-5,
  DIR@FAR 1% and 0.1%, and the strangers named at the gallery's default operating point.

Calibration and identification use each photo's central face, as ``evaluate_lfw`` does.

Each image is embedded once per detector (one ``EmbeddingCache`` per detector). The
default pipeline's JSON and plots go to ``bench/results/eval_lfw/`` (the committed
example: numbers and plots only; the HTML report with face thumbnails is generated on
demand and never committed).

    FACEPRINT_MODELS=../shared/models python bench/evaluation.py [--detectors yunet,hog]

Writes bench/results/evaluation.json and prints a markdown table.
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
from faceprint.evaluation import metrics
from faceprint.evaluation.calibration import calibrate, dir_pair_scores
from faceprint.evaluation.embedset import EmbeddingCache, PipelineSpec
from faceprint.evaluation.identification import evaluate_identification
from faceprint.evaluation.lfw import evaluate_lfw
from faceprint.evaluation.pairs import read_pairs

DETECTORS = ("yunet", "scrfd", "mtcnn", "hog")
EMBEDDER = "dlib-onnx"
FAR = 1e-3


def people_dir(lfw: Path, pairs: Path, dest: Path) -> Path:
    """A labelled folder of symlinks to every image of the people named in ``pairs``."""
    names = {n for pr in read_pairs(pairs).pairs for n in (pr.name_a, pr.name_b)}
    for n in sorted(names):
        (dest / n).mkdir(parents=True)
        for img in sorted((lfw / n).glob("*.jpg")):
            (dest / n / img.name).symlink_to(img.resolve())
    return dest


def run_detector(det: str, lfw: Path, train_dir: Path, test_dir: Path, workers: int | None) -> dict[str, Any]:
    spec = PipelineSpec(det, EMBEDDER)
    cache = EmbeddingCache()
    t0 = time.perf_counter()
    example = REPO / "bench" / "results" / "eval_lfw" if det == "yunet" else None
    ver_dir = example / "verification" if example else None
    id_dir = example / "identification" if example else None
    ver = evaluate_lfw(
        spec, lfw, lfw / "pairsDevTest.txt", lfw / "pairsDevTrain.txt", workers=workers, cache=cache,
        plots_dir=ver_dir,
    )  # fmt: skip
    if example is not None:
        write_json(example / "eval_lfw.json", _portable({"command": _cmd("eval lfw"), **ver}))
    cal = calibrate(spec, FAR, dir=train_dir, workers=workers, cache=cache, face="central")
    scores, labels, _, _ = dir_pair_scores(spec, test_dir, 0, workers, None, None, cache, "central")
    imp, gen = scores[~labels], scores[labels]
    held = {
        "far": float(np.mean(imp >= cal["threshold"])),
        "tar": float(np.mean(gen >= cal["threshold"])),
        "impostor_pairs": len(imp),
        "genuine_pairs": len(gen),
        "tar_at_far_1e-3_refit": metrics.tar_at_far(scores, labels, FAR).to_dict(),
    }
    ident = evaluate_identification(spec, lfw, workers=workers, cache=cache, plots_dir=id_dir, face="central")
    if example is not None:
        write_json(
            example / "eval_identification.json", _portable({"command": _cmd("eval identification"), **ident})
        )
    return {
        "detector": det,
        "embedder": EMBEDDER,
        "verification": ver,
        "calibration": {"train_people": cal, "held_out_test_people": held},
        "identification": ident,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _portable(obj: Any) -> Any:
    """``obj`` with this machine's absolute paths written as the README's relative ones."""
    if isinstance(obj, dict):
        return {k: _portable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_portable(v) for v in obj]
    if isinstance(obj, str):
        return obj.replace(str(shared_dir()), "../shared").replace(str(REPO) + "/", "")
    return obj


def _cmd(which: str) -> str:
    if which == "eval lfw":
        return (
            "faceprint eval lfw --root ../shared/data/lfw-dev "
            "--pairs ../shared/data/lfw-dev/pairsDevTest.txt "
            "--train-pairs ../shared/data/lfw-dev/pairsDevTrain.txt "
            "--plots bench/results/eval_lfw/verification"
        )
    return (
        "faceprint eval identification --dir ../shared/data/lfw-dev --face central "
        "--plots bench/results/eval_lfw/identification"
    )


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| detector + embedder | pairsDevTest accuracy | AUC | TAR@FAR=1e-3 (test people) | "
        "threshold @ FAR 1e-3 (train people) | FAR / TAR there on test people | rank-1 | rank-5 | "
        "DIR@FAR=1% | strangers named at default point (DIR) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        v, c, i = r["verification"], r["calibration"], r["identification"]
        held, refit = c["held_out_test_people"], c["held_out_test_people"]["tar_at_far_1e-3_refit"]
        d1 = next(p for p in i["dir_at_far"] if p["target_far"] == 0.01)
        at = i["at_operating_point"]
        out.append(
            f"| {r['detector']} + {r['embedder']} | {_pct(v['accuracy_mean'])} | {v['auc']:.4f} | "
            f"{_pct(refit['tar'])} ({refit['n_impostors']:,} pairs) | {c['train_people']['threshold']:.4f} | "
            f"{held['far']:.2e} / {_pct(held['tar'])} | {_pct(i['rank1'])} | {_pct(i['rank5'])} | "
            f"{_pct(d1['dir'])} | {_pct(at['strangers_named'])} ({_pct(at['dir'])}) |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detectors", default=",".join(DETECTORS))
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "evaluation.json")
    a = ap.parse_args()
    shared = shared_dir()
    os.environ.setdefault("FACEPRINT_MODELS", str(shared / "models"))
    lfw = shared / "data" / "lfw-dev"
    if not (lfw / "pairsDevTest.txt").is_file():
        sys.exit(f"LFW dev not found at {lfw} (set FACEPRINT_SHARED)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        train_dir = people_dir(lfw, lfw / "pairsDevTrain.txt", Path(tmp) / "train")
        test_dir = people_dir(lfw, lfw / "pairsDevTest.txt", Path(tmp) / "test")
        for det in a.detectors.split(","):
            print(f"{det} + {EMBEDDER} ...", file=sys.stderr)
            rows.append(run_detector(det, lfw, train_dir, test_dir, a.workers))
            write_json(a.out, _portable({"machine": machine(), "far": FAR, "rows": rows}))
    print(table(rows))


if __name__ == "__main__":
    main()
