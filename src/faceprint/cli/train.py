"""``faceprint train``: fine-tune the dlib ResNet on a folder of people, write a MODEL_DIR.

Only I/O and argument handling live here; the work is in :mod:`faceprint.training`.
"""

from __future__ import annotations

import re
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from . import common

JsonOpt = Annotated[bool, typer.Option("--json", help="print the model card as JSON instead of a summary")]
#: ``TrainConfig``'s defaults, repeated so that ``--help`` imports no torch (a unit test
#: holds the two together).
DEFAULT_AUGMENT = "flip,crop,rotate,lowres:p=0.8,jpeg"
#: Bases the torch twin can start from: both run dlib's ResNet v1 weights.
BASES = ("dlib-onnx", "dlib")
_SLUG = re.compile(r"[^a-z0-9._-]+")


def model_name(name: str | None, out: Path) -> str:
    """``--name``, else the output directory's name, as a slug ``[a-z0-9][a-z0-9._-]*``
    (at most 64 characters): it becomes the version part of the model id."""
    raw = name if name is not None else out.resolve().name
    slug = _SLUG.sub("-", raw.lower()).strip("-._")[:64]
    if not slug:
        raise common.usage(f"--name {raw!r} has no letter or digit to make a model name from")
    if name is not None and slug != name:
        raise common.usage(f"--name must match [a-z0-9][a-z0-9._-]* (at most 64 characters), got {name!r}")
    return slug


def _peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def train(
    people_dir: Annotated[
        Path, typer.Option("--dir", help="training faces: one sub-folder per person, DIR/<person>/<image>")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="MODEL_DIR to write (replaced atomically when it holds a model)",
            callback=common.check_out_dir,
        ),
    ],
    base: Annotated[
        str, typer.Option(help=f"starting model: {' or '.join(BASES)} (the same weights)")
    ] = "dlib-onnx",
    name: Annotated[
        str | None, typer.Option(help="model name, the version in its id (default: the --out folder's name)")
    ] = None,
    detector: common.DetectorOpt = None,
    face: Annotated[
        str, typer.Option(help="which face of a photo with several: largest, or central (LFW-style crops)")
    ] = "largest",
    augment: Annotated[
        str | None,
        typer.Option(
            help="augmentations, e.g. flip,crop,lowres or lowres:p=0.7:min=20 (names: flip crop rotate "
            "colour "
            f"grey blur jpeg lowres occlude; 'none' for none; default {DEFAULT_AUGMENT})"
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, help="at most this many epochs")] = 16,
    patience: Annotated[
        int, typer.Option(min=1, help="stop after this many epochs without a better validation score")
    ] = 4,
    loss: Annotated[
        str,
        typer.Option(
            help="batch-hard, semi-hard (online-mined triplets), cosface, or distill "
            "(the distillation term alone)"
        ),
    ] = "distill",
    distill: Annotated[
        float,
        typer.Option(
            help="weight of the distillation term: 1 - cosine between each augmented face's vector and the "
            "starting model's vector of the clean face (0: off)"
        ),
    ] = 1.0,
    margin: Annotated[
        float, typer.Option(help="loss margin (triplets: Euclidean on unit vectors; cosface: cosine)")
    ] = 0.2,
    lr: Annotated[float, typer.Option(help="learning rate (Adam) of the trained layers")] = 3e-5,
    tune: Annotated[
        str, typer.Option(help="layers to train: all, or from the first block of 64, 128 or 256 channels up")
    ] = "all",
    people_per_batch: Annotated[
        int, typer.Option("--people-per-batch", "-P", min=2, help="people per batch")
    ] = 32,
    images_per_person: Annotated[
        int, typer.Option("--images-per-person", "-K", min=2, help="images per person")
    ] = 4,
    device: Annotated[str, typer.Option(help="cpu, or cuda[:N] when torch sees a GPU")] = "cpu",
    val_fraction: Annotated[float, typer.Option(help="fraction of the people held out for validation")] = 0.1,
    seed: Annotated[int, typer.Option(help="seed of every random choice (split, batches, augmentation)")] = 0,
    resume: Annotated[
        bool, typer.Option(help="continue the run that was stopped (same --out and settings)")
    ] = False,
    max_steps: Annotated[
        int | None, typer.Option(min=1, help="cap on the steps per epoch (quick runs)")
    ] = None,
    keep_checkpoint: Annotated[
        bool, typer.Option(help="keep MODEL_DIR.checkpoint (the last epoch's state) after a finished run")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune the face embedder on your own people and write MODEL_DIR (the ONNX model, its card,
    thresholds and impostor scores) for --embedder MODEL_DIR. Ctrl-C stops after the current step
    and keeps the checkpoint; --resume continues."""
    if base not in BASES:
        raise common.usage(
            f"--base must be one of {', '.join(BASES)} (the network the twin copies), got {base!r}"
        )
    if face not in ("largest", "central"):
        raise common.usage(f"--face must be largest or central, got {face!r}")
    if not people_dir.is_dir():
        raise common.fail(f"--dir {people_dir} is not a directory (expected DIR/<person>/<image>)")
    slug = model_name(name, out)

    from ..errors import TrainingError

    try:
        from ..training.finetune import TrainConfig, pick_device
    except ImportError as exc:  # MissingExtraError is an ImportError too
        raise common.fail(str(exc)) from None
    try:
        config = TrainConfig(
            augment=augment if augment is not None else DEFAULT_AUGMENT,
            epochs=epochs,
            patience=patience,
            people_per_batch=people_per_batch,
            images_per_person=images_per_person,
            loss=loss,
            distill=distill,
            margin=margin,
            lr=lr,
            tune=tune,
            val_fraction=val_fraction,
            seed=seed,
            device=device,
            max_steps=max_steps,
        )
    except TrainingError as exc:
        raise common.usage(str(exc)) from None
    pick_device(device)  # a CUDA request without a GPU fails before any work
    from ..training.export import check_out

    check_out(out)
    ckpt_dir = out.parent / f"{out.name}.checkpoint"
    if resume and not (ckpt_dir / "last.pt").is_file():
        raise common.fail(f"--resume: no checkpoint at {ckpt_dir / 'last.pt'} (nothing to resume)")
    try:
        card = _run(people_dir, out, slug, base, detector, face, config, ckpt_dir, resume)
    except KeyboardInterrupt:  # outside the training loop (finding faces, exporting)
        common.err.print(f"error: interrupted; nothing was written to {out}", markup=False)
        sys.exit(130)
    if not keep_checkpoint:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    if card["training"]["best_epoch"] == 0:
        common.err.print(
            "note: no epoch beat the starting network on the validation people, so the model holds "
            "its weights unchanged (under a new model id); more or other data, or other settings, may help",
            markup=False,
        )
    if as_json:
        common.print_json(card)
        return
    _summary(card, out)


def _run(
    people_dir: Path,
    out: Path,
    slug: str,
    base: str,
    detector: str | None,
    face: str,
    config: Any,
    ckpt_dir: Path,
    resume: bool,
) -> dict[str, Any]:
    import numpy as np
    import torch

    from .. import __version__
    from ..embedding.dlib import chip_templates
    from ..embedding.dlib_format import read_network
    from ..errors import TrainingError
    from ..gallery.scoring import MIN_FIT_SCORES
    from ..models import resolve
    from ..recognizer import Recognizer
    from ..training.augment import center_chip, parse_spec
    from ..training.data import check_trainable, load_faces, split_people
    from ..training.dlib_resnet import DlibResNet
    from ..training.export import write_model_dir
    from ..training.finetune import Step, finetune, impostor_pairs

    started = time.perf_counter()
    rec = Recognizer(detector=detector)
    dat = resolve("dlib")
    net = read_network(dat)
    model = DlibResNet(net)
    from ..errors import FaceprintError
    from ..evaluation.folders import read_labelled_dir

    try:
        folders = read_labelled_dir(people_dir)
    except FaceprintError as exc:  # not a folder of people: one error line
        raise common.fail(str(exc)) from None
    n_images = sum(len(v) for v in folders.values())
    with common.progress_bar("finding faces", n_images) as advance:
        pick: Any = face  # checked by load_faces ("largest" or "central")
        faces = load_faces(people_dir, rec.detector.detect, chip_templates(), pick, advance, folders)
    for s in faces.skipped[:10]:
        common.err.print(f"skipped: {s.path}: {s.reason}", markup=False)
    if len(faces.skipped) > 10:
        common.err.print(f"skipped: {len(faces.skipped) - 10} more (listed in the card)", markup=False)
    check_trainable(faces)
    if impostor_pairs(faces.labels) < MIN_FIT_SCORES:
        raise common.fail(
            f"{people_dir}: {len(faces)} faces of {len(faces.people)} people make "
            f"{impostor_pairs(faces.labels)} different-person pairs; the model's open-set threshold needs "
            f"{MIN_FIT_SCORES} (add people or images)"
        )
    train_set, val_set = split_people(faces, config.val_fraction, config.seed)
    common.err.print(
        f"training on {len(train_set)} faces of {len(train_set.people)} people, validating on "
        f"{len(val_set)} faces of {len(val_set.people)} people ({rec.detector_name} detector, "
        f"device {config.device})",
        markup=False,
    )

    stop = {"requested": False}

    def on_sigint(signum: int, frame: Any) -> None:
        if stop["requested"]:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        stop["requested"] = True
        common.err.print("stopping after the current step (Ctrl-C again to abort at once)...", markup=False)

    what = "samples" if config.loss == "cosface" else "triplets"

    def on_epoch(rec_: dict[str, Any]) -> None:
        parts = [f"epoch {rec_['epoch']}"]
        if rec_["loss"] is not None:
            active = "" if config.loss == "distill" else f", active {what} {rec_['active']:.0%}"
            parts.append(f"loss {rec_['loss']:.4f}{active}")
        tar = ", ".join(
            f"{k.removeprefix('tar_')} {v:.3f}"
            for k, v in rec_.items()
            if k.startswith("tar_") and v is not None
        )
        parts.append(f"validation TAR@FAR=1e-2: {tar}")
        common.err.print("; ".join(parts), markup=False)

    old = signal.signal(signal.SIGINT, on_sigint)
    try:
        with common.progress_bar("training", None) as advance:
            last = {"epoch": 0}

            def on_step(step: Step) -> None:
                if step.epoch != last["epoch"]:
                    last["epoch"] = step.epoch
                    advance.set_total(step.steps)
                advance()

            result = finetune(
                model,
                train_set,
                val_set,
                config,
                checkpoint_dir=ckpt_dir,
                resume=resume,
                on_step=on_step,
                on_epoch=on_epoch,
                should_stop=lambda: stop["requested"],
            )
    except KeyboardInterrupt:
        common.err.print(
            f"error: aborted; the last finished epoch's checkpoint is in {ckpt_dir}", markup=False
        )
        sys.exit(130)
    finally:
        signal.signal(signal.SIGINT, old)
    if result.stopped:
        common.err.print(
            f"stopped: best epoch so far {result.best_epoch} (validation score {result.best_score:.4f}); "
            f"checkpoint in {ckpt_dir}; run the same command with --resume to continue",
            markup=False,
        )
        sys.exit(130)

    # thresholds and impostor scores: on the validation people (see training.export)
    fit = val_set
    source = f"the {len(fit.people)} validation people of {people_dir}"
    if impostor_pairs(fit.labels) < MIN_FIT_SCORES:
        fit = faces
        source = (
            f"all {len(faces.people)} people of {people_dir} (the validation people alone give too few pairs)"
        )
    fit_chips = np.stack([center_chip(c) for c in fit.chips])
    root = people_dir.resolve()
    card_extra = {
        "base": {
            "embedder": base,
            "model_id": rec.model_id if rec.embedder.name == base else None,
            "weights": dat.name,
        },
        "data": {
            "dir": str(root),
            "people": len(faces.people),
            "faces": len(faces),
            "images": n_images,
            "face_choice": face,
            "detector": rec.detector_name,
            "train_people": len(train_set.people),
            "validation_people": list(val_set.people),
            "skipped": [s.to_dict() for s in faces.skipped],
            "sha256": {
                str(Path(p).relative_to(people_dir)): h
                for p, h in zip(faces.paths, faces.sha256, strict=True)
            },
        },
        "augment": parse_spec(config.augment).to_dict(),
        "training": {
            **config.to_dict(),
            "epochs_run": max(h["epoch"] for h in result.history),
            "best_epoch": result.best_epoch,
            "wall_s": round(time.perf_counter() - started, 1),
            "train_s": round(result.wall_s, 1),
            "peak_rss_mb": _peak_rss_mb(),
            "torch": torch.__version__,
            "faceprint": __version__,
            "validation_curve": result.history,
        },
        "metrics": {
            "validation_people": len(val_set.people),
            "validation_faces": len(val_set),
            "before": {k: v for k, v in result.before.items() if k.startswith("tar_") or k == "score"},
            "after": {k: v for k, v in result.after.items() if k.startswith("tar_") or k == "score"},
            "note": "TAR at FAR=1e-2 over all pairs of the validation people's faces; "
            "'augmented' = the same faces degraded by the run's augmentations (fixed seed)",
        },
    }
    try:
        return write_model_dir(
            out,
            net=net,
            model=model,
            name=slug,
            fit_chips=fit_chips,
            fit_labels=fit.labels,
            fit_source=source,
            card=card_extra,
            seed=config.seed,
        )
    except TrainingError as exc:
        raise common.fail(str(exc)) from None


def _summary(card: dict[str, Any], out: Path) -> None:
    t = card["training"]
    m = card["metrics"]
    common.out.print(f"wrote {out} (model id {card['model_id']})")
    common.out.print(
        f"best epoch {t['best_epoch']} of {t['epochs_run']}, {t['wall_s']:.0f} s, "
        f"peak memory {t['peak_rss_mb']:.0f} MB"
    )
    for key in ("tar_clean", "tar_augmented"):
        if key in m["before"]:
            common.out.print(
                f"validation TAR@FAR=1e-2 ({key.removeprefix('tar_')}): "
                f"{m['before'][key]:.3f} -> {m['after'][key]:.3f}"
            )
    common.out.print(
        f"1:1 threshold {card['default_threshold']:.4f} (flip {card['flip_threshold']:.4f}); "
        f"use it with --embedder {out}"
    )
