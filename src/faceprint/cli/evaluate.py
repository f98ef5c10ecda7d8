"""``faceprint eval lfw``: the LFW pairs protocol on any pairs file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from . import common

eval_app = typer.Typer(help="Measure accuracy.", no_args_is_help=True)


@eval_app.command()
def lfw(
    root: Annotated[Path, typer.Option(help="LFW root: ROOT/<name>/<name>_NNNN.jpg")],
    pairs: Annotated[Path, typer.Option(help="pairs.txt, pairsDevTest.txt or pairsDevTrain.txt")],
    train_pairs: Annotated[
        Path | None, typer.Option(help="fit the threshold on this file (e.g. pairsDevTrain.txt)")
    ] = None,
    detector: Annotated[str | None, typer.Option("--detector", "-d")] = None,
    embedder: Annotated[str | None, typer.Option("--embedder", "-e")] = None,
    flip: Annotated[bool, typer.Option(help="flip test-time augmentation")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the report as JSON here")] = None,
) -> None:
    """Verification accuracy with cross-validated or train-fitted thresholds."""
    from ..evaluation.lfw import evaluate_lfw
    from ..recognizer import Recognizer

    rec = Recognizer(detector=detector, embedder=embedder, flip=flip)
    with common.progress_bar(f"embedding ({rec.detector_name}+{rec.embedder_name})", None) as adv:
        rep = evaluate_lfw(rec, root, pairs, train_pairs, progress=adv, on_total=adv.set_total)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(rep.to_dict(), indent=2) + "\n")
    o = common.out
    o.print(f"LFW {rep.protocol}: {pairs}")
    o.print(f"  detector {rep.detector}, embedder {rep.embedder}")
    o.print(f"  accuracy {rep.accuracy_mean:.4f} ± {rep.accuracy_std:.4f} over {rep.pairs} pairs")
    o.print(
        f"  threshold {rep.threshold:.4f} (cosine similarity), AUC {rep.auc:.4f}, "
        f"TAR@FAR=1e-3 {rep.tar_at_far_1e3:.4f}"
    )
    o.print(f"  images {rep.images}, with no face {rep.no_face_images}, {rep.seconds:.1f} s")
