"""``faceprint eval lfw|pairs|identification`` and ``faceprint calibrate``.

Every command embeds each distinct image once, on every core (``--workers``), prints a
summary, and can write the full result as JSON (``--json FILE``), fixed-scale PNG plots
(``--plots DIR``) and a self-contained HTML report with the hardest errors
(``--report FILE``). Similarities are cosine similarities.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from . import common

eval_app = typer.Typer(
    help="Measure accuracy: LFW pairs, your own folders, 1:N identification.", no_args_is_help=True
)

DetectorOpt = common.DetectorOpt
EmbedderOpt = common.EmbedderOpt
FlipOpt = Annotated[bool, typer.Option(help="flip test-time augmentation")]
JsonOut = Annotated[Path | None, typer.Option("--json", help="write the full result as JSON here")]
PlotsOpt = Annotated[Path | None, typer.Option("--plots", help="write PNG plots into this directory")]
ReportOpt = Annotated[Path | None, typer.Option("--report", help="write a self-contained HTML report here")]
WorkersOpt = common.WorkersOpt
ExcludeOpt = Annotated[
    bool,
    typer.Option(
        "--exclude-failures", help="drop pairs where no face was found (default: they count as errors)"
    ),
]
SeedOpt = Annotated[int, typer.Option(help="seed of the pair sampling / split")]
DirOpt = Annotated[Path, typer.Option("--dir", help="labelled faces: DIR/<person>/<image>")]


def _face(face: str) -> str:
    if face not in ("largest", "central"):
        raise typer.BadParameter(f"expected 'largest' or 'central', got {face!r}")
    return face


def _fraction(value: float) -> float:
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise typer.BadParameter(f"expected a fraction in [0, 1), got {value}")
    return value


FaceOpt = Annotated[
    str,
    typer.Option(
        "--face", help="which face of a photo: largest, or central (LFW-style photos)", callback=_face
    ),
]


def _spec(detector: str | None, embedder: str | None, flip: bool) -> Any:
    from ..evaluation.embedset import PipelineSpec

    return PipelineSpec(detector, embedder, flip)


def _write_json(path: Path | None, rep: dict[str, Any]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rep, indent=2) + "\n")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _print_verification(rep: dict[str, Any]) -> None:
    o = common.out
    o.print(f"  detector {rep['detector']}, embedder {rep['embedder']}, protocol {rep['protocol']}")
    o.print(
        f"  accuracy {rep['accuracy_mean']:.4f} ± {rep['accuracy_std']:.4f} over {rep['pairs']} pairs "
        f"({rep['genuine_pairs']} same, {rep['impostor_pairs']} different)"
    )
    if rep["protocol"] == "train/test":
        spread = "fitted on the training pairs"
    else:
        spread = f"spread over folds ± {rep['threshold_std']:.4f}"
    o.print(f"  threshold {rep['threshold']:.4f} (cosine similarity; {spread})")
    auc = "n/a" if rep["auc"] is None else f"{rep['auc']:.4f}"
    eer = "n/a" if rep["eer"] is None else f"{rep['eer']:.4f} at {rep['eer_threshold']:.4f}"
    o.print(f"  AUC {auc}, EER {eer}")
    for p in rep["tar_at_far"]:
        if p["reachable"]:
            o.print(
                f"  TAR@FAR={p['target']:g}: {p['tar']:.4f} (threshold {p['threshold']:.4f}, "
                f"{p['n_impostors']} different pairs)"
            )
        else:
            o.print(
                f"  TAR@FAR={p['target']:g}: unreachable with {p['n_impostors']} different pairs "
                f"(needs at least {int(1 / p['target'])})"
            )
    o.print(
        f"  images {rep['images']}, with no face {rep['no_face_images']}, "
        f"unreadable {rep['unreadable_images']}, "
        f"several faces {rep['several_faces_images']}; {rep['seconds']:.1f} s"
    )
    if rep.get("excluded_pairs") is not None:
        o.print(f"  --exclude-failures: {rep['excluded_pairs']} pair(s) with no face dropped")
    for key in ("plots", "report"):
        if rep.get(key):
            o.print(f"  {key}: {rep[key] if isinstance(rep[key], str) else ', '.join(rep[key])}")


@eval_app.command()
def lfw(
    root: Annotated[Path, typer.Option(help="LFW root: ROOT/<name>/<name>_NNNN.jpg")],
    pairs: Annotated[Path, typer.Option(help="pairs.txt, pairsDevTest.txt or pairsDevTrain.txt")],
    train_pairs: Annotated[
        Path | None, typer.Option(help="fit the threshold on this file (e.g. pairsDevTrain.txt)")
    ] = None,
    detector: DetectorOpt = None,
    embedder: EmbedderOpt = None,
    flip: FlipOpt = False,
    exclude_failures: ExcludeOpt = False,
    workers: WorkersOpt = None,
    json_out: JsonOut = None,
    plots: PlotsOpt = None,
    report: ReportOpt = None,
) -> None:
    """The LFW pairs protocol: accuracy over folds, AUC, EER, TAR@FAR, threshold."""
    from ..evaluation.lfw import evaluate_lfw

    with common.progress_bar("embedding", None) as adv:
        rep = evaluate_lfw(
            _spec(detector, embedder, flip), root, pairs, train_pairs, exclude_failures=exclude_failures,
            workers=workers, plots_dir=plots, report_path=report, progress=adv, on_total=adv.set_total,
        )  # fmt: skip
    _write_json(json_out, rep)
    common.out.print(f"LFW {rep['protocol']}: {pairs}")
    _print_verification(rep)


@eval_app.command("pairs")
def pairs_cmd(
    dir: DirOpt,
    per_class: Annotated[
        int, typer.Option(min=1, help="same-person pairs (and as many different) at most")
    ] = 3000,
    seed: SeedOpt = 0,
    face: FaceOpt = "largest",
    detector: DetectorOpt = None,
    embedder: EmbedderOpt = None,
    flip: FlipOpt = False,
    exclude_failures: ExcludeOpt = False,
    workers: WorkersOpt = None,
    json_out: JsonOut = None,
    plots: PlotsOpt = None,
    report: ReportOpt = None,
) -> None:
    """Verification on your own labelled faces: seeded pairs from DIR/<person>/<image>."""
    from ..evaluation.lfw import evaluate_dir

    with common.progress_bar("embedding", None) as adv:
        rep = evaluate_dir(
            _spec(detector, embedder, flip), dir, per_class=per_class, seed=seed,
            exclude_failures=exclude_failures, workers=workers, plots_dir=plots, report_path=report,
            progress=adv, on_total=adv.set_total, face=face,
        )  # fmt: skip
    _write_json(json_out, rep)
    common.out.print(f"pairs from {dir}: {rep['people']} people, seed {seed}")
    if rep.get("note"):
        common.err.print(f"note: {rep['note']}", markup=False)
    _print_verification(rep)


@eval_app.command()
def identification(
    dir: DirOpt,
    gallery_per_person: Annotated[
        int, typer.Option(min=1, help="images enrolled per person (the first N)")
    ] = 1,
    unknown_fraction: Annotated[
        float, typer.Option(help="fraction of people held out as strangers, in [0, 1)", callback=_fraction)
    ] = 0.2,
    seed: SeedOpt = 0,
    face: FaceOpt = "largest",
    threshold: Annotated[
        float | None,
        typer.Option(help="fixed threshold in [-1, 1] (default: open-set)", callback=common.check_similarity),
    ] = None,
    far: Annotated[
        float | None,
        typer.Option(help="target stranger false-alarm rate (default 0.01)", callback=common.check_rate),
    ] = None,
    detector: DetectorOpt = None,
    embedder: EmbedderOpt = None,
    flip: FlipOpt = False,
    workers: WorkersOpt = None,
    json_out: JsonOut = None,
    plots: PlotsOpt = None,
    report: ReportOpt = None,
) -> None:
    """Open-set 1:N identification through the real Gallery: rank-1/5, DIR@FAR, false alarms."""
    from ..evaluation.identification import evaluate_identification

    with common.progress_bar("embedding and enrolling", None) as adv:
        rep = evaluate_identification(
            _spec(detector, embedder, flip), dir, gallery_per_person=gallery_per_person,
            unknown_fraction=unknown_fraction, seed=seed, threshold=threshold, far=far, workers=workers,
            plots_dir=plots, report_path=report, progress=adv, on_total=adv.set_total, face=face,
        )  # fmt: skip
    _write_json(json_out, rep)
    o = common.out
    o.print(
        f"identification on {dir}: {rep['enrolled_people']} people enrolled "
        f"({gallery_per_person} image(s) each), "
        f"{rep['known_probes']} known probes, {rep['stranger_probes']} stranger probes, seed {seed}"
    )
    o.print(f"  detector {rep['detector']}, embedder {rep['embedder']}")
    o.print(f"  rank-1 {_pct(rep['rank1'])}, rank-5 {_pct(rep['rank5'])}")
    for p in rep["dir_at_far"]:
        if p["reachable"]:
            o.print(
                f"  DIR@FAR={p['target_far']:g}: {_pct(p['dir'])} (threshold {p['threshold']:.4f}, "
                f"{p['n_strangers']} strangers)"
            )
        else:
            o.print(f"  DIR@FAR={p['target_far']:g}: unreachable with {p['n_strangers']} strangers")
    op, at = rep["operating_point"], rep["at_operating_point"]
    o.print(
        f"  operating point: threshold {op['threshold']:.4f} ({op['source']}): strangers named "
        f"{_pct(at['strangers_named'])}, DIR {_pct(at['dir'])}"
    )
    if rep["refused_enrolment_images"]:
        o.print(f"  enrolment images refused: {len(rep['refused_enrolment_images'])}")
    if rep.get("report"):
        o.print(f"  report: {rep['report']}")


def calibrate(
    far: Annotated[
        float,
        typer.Option(
            help="target 1:1 false-accept rate, e.g. 1e-3: the fraction of different-person pairs "
            "whose similarity passes the threshold (verify)",
            callback=common.check_rate,
        ),
    ],
    dir: Annotated[Path | None, typer.Option("--dir", help="labelled faces: DIR/<person>/<image>")] = None,
    pairs: Annotated[Path | None, typer.Option(help="an LFW-format pairs file (with --root)")] = None,
    root: Annotated[Path | None, typer.Option(help="folder the pairs file's images are under")] = None,
    gallery: Annotated[
        str | None,
        typer.Option(
            help="calibrate this gallery (path or postgresql://...): store your impostor scores, from "
            "which identify derives its threshold for the gallery's size"
        ),
    ] = None,
    seed: SeedOpt = 0,
    face: FaceOpt = "largest",
    detector: DetectorOpt = None,
    embedder: EmbedderOpt = None,
    flip: FlipOpt = False,
    workers: WorkersOpt = None,
    json_out: JsonOut = None,
) -> None:
    """Choose the threshold that reaches a target 1:1 false-accept rate on your data.

    Two different rates: the 1:1 false-accept rate (--far) is the fraction of
    different-person pairs whose similarity passes a threshold, what verify risks on one
    comparison. The 1:N stranger false-alarm rate is the chance that identify names
    someone who is not enrolled; a stranger meets every enrolled person, so the threshold
    holding it grows with the number of people. It is the gallery's own setting
    (faceprint gallery threshold --far, default 1%).

    Prints the 1:1 threshold and the TAR that goes with it. With --gallery, stores the
    distribution of your different-person scores with the gallery: identify then derives
    its threshold from your data for the gallery's number of people at its stranger
    false-alarm rate (not the 1:1 threshold, which would name far more strangers)."""
    from ..evaluation.calibration import calibrate as run_calibration

    if gallery is not None:
        from ..gallery import open_gallery

        gallery = common.existing_gallery(gallery)  # calibrate stores into a gallery, never makes one
        with open_gallery(gallery) as g:  # fail fast on a gallery bound to another model
            bound = g.store.model()
            if bound is not None:
                from ..evaluation.embedset import pipeline_model_id

                mine = pipeline_model_id(_spec(detector, embedder, flip))
                if mine != bound[0]:
                    from ..errors import IncompatibleEmbeddingError

                    raise IncompatibleEmbeddingError(
                        f"gallery {g.store.location} holds vectors of {bound[0]}; calibrating with {mine} "
                        "would give a threshold for another model (pick the gallery's --embedder)"
                    )
    with common.progress_bar("embedding", None) as adv:
        rec = run_calibration(
            _spec(detector, embedder, flip), far, dir=dir, pairs=pairs, root=root, seed=seed, workers=workers,
            progress=adv, on_total=adv.set_total, face=face, fit_impostors=gallery is not None,
        )  # fmt: skip
    op = None
    if gallery is not None:
        from ..gallery import open_gallery

        with open_gallery(gallery) as g:
            g.set_calibration(rec)
            rec["gallery"] = g.store.location
            op = g.operating_point()
    _write_json(json_out, rec)
    o = common.out
    o.print(
        f"threshold {rec['threshold']:.4f} (cosine similarity) for FAR {far:g}: "
        f"measured FAR {rec['far']:.2e} "
        f"over {rec['impostor_pairs']} different pairs, "
        f"TAR {_pct(rec['tar'])} over {rec['genuine_pairs']} same pairs"
    )
    o.print(f"  model {rec['model']} (detector {rec['detector']}), data: {rec['source']}")
    if rec["failed_images"]:
        o.print(
            f"  images with no face: {rec['failed_images']} of {rec['images']} "
            "(their pairs count as rejected)"
        )
    if op is not None:
        o.print(
            f"  stored with gallery {rec['gallery']}: identify now uses threshold {op.threshold:.4f} for "
            f"{op.people} people at stranger false-alarm rate {op.far:g} (from your "
            f"{rec['impostor_pairs']} different pairs; it grows as people are enrolled)"
        )
