"""The fine-tuning loop: P x K batches, online-mined triplets (or CosFace), validation on
held-out people each epoch, early stopping, checkpoints, Ctrl-C and resume.

Why this shape: a user fine-tunes on a few hundred to a few thousand faces of their own,
on a laptop CPU or one GPU. The network already knows faces (dlib trained it on about 3
million), so the loop adapts rather than learns: a low learning rate, by default only
the upper blocks trained (the lower ones run without gradients, which is also what makes
an epoch fast on a CPU), and the epoch kept is the one that scores best on people the
gradients never saw, not the last one.

**Validation score.** Each epoch embeds the validation people's chips twice: as they
are (the centre crop of the context chip, i.e. the chip inference uses) and degraded by
the run's own augmentations, each applied to every face (seeded, the same every epoch).
The score is the mean of the two TAR@FAR=1e-2 values over all pairs among those faces
(the TAR on clean chips alone when there is no augmentation), so a run that adapts to,
say, low resolution is kept only while it also keeps full-size faces. Epoch 0 is the
starting network: training that never beats it exports it unchanged, and the card says so.

**Distillation.** ``TrainConfig.distill`` weighs a term that ties the network to what it
knew: for each training face, ``1 - cos`` between its vector (of the augmented chip)
and the starting network's vector of the clean chip (flip-averaged, so one target
serves the mirrored face too), both taken relative to the mean of those targets. Why
relative: dlib's unit vectors of different people are already 0.8-0.9 cosine apart, so
a plain cosine to the target is nearly satisfied by any vector near the mean, and a run
at a higher rate collapsed that way (validation TAR 0.004). With the mean removed the
term measures the part that tells people apart. ``--loss distill`` uses it alone: the
network learns to give a degraded face the vector its clean version had, which is what
adapting to low resolution, blur or compression means, without the triplet losses'
pressure to re-arrange 2,000 people (which, measured on LFW, hurt held-out people).

**Interruption.** ``should_stop()`` is polled between steps (the CLI sets it on
Ctrl-C): the loop stops after the current step, writes ``last.pt`` (the current
weights, optimizer and random states, the history and the best epoch so far) and
returns with ``stopped=True``. ``resume`` restarts from ``last.pt`` at the epoch that was
interrupted (its steps so far are redone with the weights they had already changed).

Conventions: chips are RGB uint8 (:mod:`.data`, :mod:`.augment`); embeddings are L2-normalised and
compared by cosine similarity; every random choice is drawn from generators seeded by
``TrainConfig.seed``.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import TrainingError
from ..evaluation import metrics
from .augment import Augmenter, AugmentSpec, OpSpec, center_chip, parse_spec
from .data import FaceSet, pk_batches
from .dlib_resnet import DlibResNet
from .losses import LOSSES, CosFace, LossOut, batch_hard, semi_hard

try:
    import torch
    import torch.nn.functional as F
    from torch import Tensor
except ImportError as exc:  # pragma: no cover - depends on the environment
    from ..errors import MissingExtraError

    raise MissingExtraError("faceprint.training needs PyTorch: pip install 'faceprint[train]'") from exc

log = logging.getLogger(__name__)

#: ``--tune`` choices: ``all`` trains every layer (the lower ones at ``lower_lr_factor``
#: times the rate); a channel count trains from the first block with that many channels
#: up (64: the last three levels, 128: the last two, 256: the last one) and freezes the rest.
TUNE_CHOICES = ("all", "64", "128", "256")
#: The target FAR of the validation score and of early stopping.
VAL_FAR = 1e-2
CHECKPOINT = "last.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one run (all recorded in the model card).

    Defaults were chosen on the pairsDevTrain people of LFW dev (``bench/training.py``).
    """

    augment: str = "flip,crop,rotate,lowres:p=0.8,jpeg"
    epochs: int = 16
    patience: int = 4
    people_per_batch: int = 32
    images_per_person: int = 4
    loss: str = "distill"
    margin: float = 0.2
    #: weight of the distillation term (module doc); 0 turns it off
    distill: float = 1.0
    lr: float = 3e-5
    tune: str = "all"
    lower_lr_factor: float = 0.1
    weight_decay: float = 0.0
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "cpu"
    #: cap on the steps of an epoch (None: one pass over the people); for quick runs
    max_steps: int | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.patience >= 1, f"--patience must be >= 1, got {self.patience}"),
            (self.people_per_batch >= 2, f"--people-per-batch must be >= 2, got {self.people_per_batch}"),
            (self.images_per_person >= 2, f"--images-per-person must be >= 2, got {self.images_per_person}"),
            (self.loss in LOSSES, f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}"),
            (math.isfinite(self.margin) and self.margin > 0, f"--margin must be > 0, got {self.margin}"),
            (math.isfinite(self.lr) and self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (
                math.isfinite(self.distill) and self.distill >= 0,
                f"--distill must be >= 0, got {self.distill}",
            ),
            (
                self.tune in TUNE_CHOICES,
                f"--tune must be one of {', '.join(TUNE_CHOICES)}, got {self.tune!r}",
            ),
            (
                0.0 <= self.lower_lr_factor <= 1.0,
                f"lower_lr_factor must be in [0, 1], got {self.lower_lr_factor}",
            ),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (0.0 < self.val_fraction < 1.0, f"--val-fraction must be in (0, 1), got {self.val_fraction}"),
            (self.max_steps is None or self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainingError(message)
        try:
            parse_spec(self.augment)
        except ValueError as exc:
            raise TrainingError(f"--augment: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Step:
    """Progress of one optimisation step (for the progress bar)."""

    epoch: int
    step: int
    steps: int
    loss: float
    active: float


@dataclass
class TrainResult:
    """What a run produced: the best weights, its epoch and the per-epoch history."""

    best_state: dict[str, Tensor]
    best_epoch: int
    best_score: float
    history: list[dict[str, Any]]
    stopped: bool
    wall_s: float
    config: TrainConfig

    @property
    def before(self) -> dict[str, Any]:
        return self.history[0]

    @property
    def after(self) -> dict[str, Any]:
        return next(h for h in self.history if h["epoch"] == self.best_epoch)


def pick_device(name: str) -> torch.device:
    """The torch device for ``--device``; a CUDA request with no GPU is a clear error."""
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            build = (
                "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            )
            raise TrainingError(
                f"--device {name}: no CUDA GPU is visible to torch {torch.__version__} ({build}); "
                "use --device cpu"
            )
        return torch.device(name)
    raise TrainingError(f"--device must be cpu or cuda[:N], got {name!r}")


def split_index(model: DlibResNet, tune: str) -> int:
    """The first trained layer for ``--tune`` (0 for ``all``)."""
    if tune == "all":
        return 0
    starts = [i for i, ch in model.block_starts() if ch == int(tune)]
    if not starts:
        raise TrainingError(f"--tune {tune}: the network has no block with {tune} channels")
    return starts[0]


def embed_chips(model: DlibResNet, chips: NDArray[np.uint8], batch: int = 64) -> NDArray[np.float32]:
    """Unit vectors of 150x150 chips under ``model`` (no gradients)."""
    was = model.training
    model.eval()
    try:
        return model.embed(chips, batch_size=batch)
    finally:
        model.train(was)


def pair_scores(
    emb: NDArray[np.float32], labels: NDArray[np.int64]
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Cosine similarities and same-person labels of every pair ``i < j``."""
    sim = emb @ emb.T
    iu = np.triu_indices(len(emb), k=1)
    return sim[iu], (labels[:, None] == labels[None, :])[iu]


def impostor_pairs(labels: NDArray[np.int64]) -> int:
    """How many different-person pairs faces with these person ``labels`` make."""
    counts = np.bincount(labels)
    return int((len(labels) ** 2 - int((counts**2).sum())) // 2)


def _tar(emb: NDArray[np.float32], labels: NDArray[np.int64], far: float) -> float | None:
    """TAR at ``far``, or at the lowest FAR the pairs resolve when that is higher (a
    small validation set), so the score is always defined."""
    scores, same = pair_scores(emb, labels)
    n_imp = int((~same).sum())
    point = metrics.tar_at_far(scores, same, max(far, 1.0 / max(n_imp, 1)))
    return point.tar


class Validator:
    """Scores a network on the validation people (module doc: *Validation score*)."""

    def __init__(self, faces: FaceSet, augment: str, seed: int) -> None:
        self.labels = faces.labels
        self.clean = (
            np.stack([center_chip(c) for c in faces.chips])
            if len(faces)
            else np.zeros((0, 150, 150, 3), np.uint8)
        )
        spec = parse_spec(augment)
        self.degraded: NDArray[np.uint8] | None = None
        if spec.ops:
            # every operation applied to every face (p = 1): training draws each with its
            # own probability, but a validation face degraded only half the time would
            # hide half of what the run is adapting to
            full = AugmentSpec(tuple(OpSpec(op.name, (("p", 1.0), *op.params[1:])) for op in spec.ops))
            rng = np.random.default_rng([seed, 7919])
            self.degraded = Augmenter(full).batch(faces.chips, rng)

    def __call__(self, model: DlibResNet) -> dict[str, Any]:
        out: dict[str, Any] = {"tar_clean": _tar(embed_chips(model, self.clean), self.labels, VAL_FAR)}
        if self.degraded is not None:
            out["tar_augmented"] = _tar(embed_chips(model, self.degraded), self.labels, VAL_FAR)
        values = [v for v in out.values() if v is not None]
        out["score"] = float(np.mean(values)) if values else float("nan")
        return out


def _save(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


class _Prefetch:
    """Augments the next batch on a worker thread while the current one trains (OpenCV
    and torch release the GIL, so on 2 cores this hides most of the augmentation)."""

    def __init__(self, augmenter: Augmenter, chips: NDArray[np.uint8]) -> None:
        self.augmenter, self.chips = augmenter, chips
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="faceprint-augment")

    def submit(self, idx: NDArray[np.int64], rng: np.random.Generator) -> Future[NDArray[np.uint8]]:
        return self.pool.submit(self.augmenter.batch, self.chips[idx], rng)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def finetune(
    model: DlibResNet,
    train: FaceSet,
    val: FaceSet,
    config: TrainConfig,
    *,
    checkpoint_dir: Path,
    resume: bool = False,
    on_step: Callable[[Step], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> TrainResult:
    """Fine-tune ``model`` in place on ``train``, validating on ``val`` each epoch.

    Returns the best epoch's weights (epoch 0 = the starting network). Checkpoints go to
    ``checkpoint_dir`` (``last.pt``); ``resume`` continues from it and refuses one made
    with other data or hyper-parameters (:class:`TrainingError`).
    """
    device = pick_device(config.device)
    start_time = time.perf_counter()
    torch.manual_seed(config.seed)
    model.to(device)
    split = split_index(model, config.tune)

    def params(start: int, stop: int) -> list[torch.nn.Parameter]:
        return [p for m in model.layers[start:stop] for p in m.parameters()]

    for i, module in enumerate(model.layers):
        for p in module.parameters():
            p.requires_grad_(i >= split)
    end = len(model.layers)
    if config.tune == "all":  # the lower levels learn too, more slowly
        mid = split_index(model, "128")
        groups = [
            {"params": params(mid, end), "lr": config.lr},
            {"params": params(0, mid), "lr": config.lr * config.lower_lr_factor},
        ]
    else:
        groups = [{"params": params(split, end), "lr": config.lr}]
    head: CosFace | None = None
    if config.loss == "cosface":
        cents = torch.from_numpy(_centroids(model, train))
        head = CosFace(len(train.people), model.dim, margin=config.margin, centroids=cents).to(device)
        groups.append({"params": list(head.parameters()), "lr": config.lr * 10})
    optimizer = torch.optim.Adam(groups, weight_decay=config.weight_decay)
    augmenter = Augmenter(config.augment)
    validator = Validator(val, config.augment, config.seed)
    # from the starting network, before a checkpoint's weights are loaded
    targets, centre = None, None
    if config.distill > 0:
        t = teacher_targets(model, train)
        mu = t.mean(axis=0)
        centred = t - mu
        targets = torch.from_numpy(centred / np.linalg.norm(centred, axis=1, keepdims=True)).to(device)
        centre = torch.from_numpy(mu).to(device)
    rng = np.random.default_rng(config.seed)
    fingerprint = {"people": list(train.people), "faces": len(train), "val_people": list(val.people)}
    ckpt = checkpoint_dir / CHECKPOINT

    history: list[dict[str, Any]] = []
    best_epoch, best_score = 0, -math.inf
    best_state = copy.deepcopy(model.state_dict())
    first_epoch = 1
    if resume:
        state = _load_checkpoint(ckpt, config, fingerprint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if head is not None and state.get("head") is not None:
            head.load_state_dict(state["head"])
        history, best_epoch, best_score = state["history"], state["best_epoch"], state["best_score"]
        best_state = state["best_state"]
        rng.bit_generator.state = state["rng"]
        first_epoch = state["epoch"] + 1
        start_time -= state["wall_s"]
    else:
        val0 = validator(model)
        history.append({"epoch": 0, "loss": None, "active": None, "wall_s": 0.0, **val0})
        best_score = val0["score"]
        if on_epoch is not None:
            on_epoch(history[-1])

    def checkpoint(epoch_done: int) -> None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        _save(
            ckpt,
            {
                "config": config.to_dict(),
                "fingerprint": fingerprint,
                "epoch": epoch_done,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "head": head.state_dict() if head is not None else None,
                "history": history,
                "best_epoch": best_epoch,
                "best_score": best_score,
                "best_state": best_state,
                "rng": rng.bit_generator.state,
                "wall_s": time.perf_counter() - start_time,
            },
        )

    labels_all = torch.from_numpy(train.labels)
    prefetch = _Prefetch(augmenter, train.chips)
    stopped = False
    try:
        epoch = first_epoch
        since_best = sum(1 for h in history if h["epoch"] > best_epoch)
        while epoch <= config.epochs and since_best < config.patience:
            batches = pk_batches(train, config.people_per_batch, config.images_per_person, rng)
            if config.max_steps is not None:
                batches = batches[: config.max_steps]
            seeds = rng.integers(0, 2**63 - 1, size=len(batches))
            losses, actives = [], []
            pending = prefetch.submit(batches[0], np.random.default_rng(int(seeds[0])))
            model.train()
            for s, idx in enumerate(batches):
                chips = pending.result()
                if s + 1 < len(batches):
                    pending = prefetch.submit(batches[s + 1], np.random.default_rng(int(seeds[s + 1])))
                target = targets[torch.from_numpy(idx).to(device)] if targets is not None else None
                out = _step(model, head, chips, labels_all[idx].to(device), split, config, target, centre)
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                losses.append(float(out.loss.detach()))
                actives.append(out.active)
                if on_step is not None:
                    on_step(Step(epoch, s + 1, len(batches), losses[-1], out.active))
                if should_stop():
                    stopped = True
                    break
            if stopped:
                checkpoint(epoch - 1)
                break
            val_out = validator(model)
            record = {
                "epoch": epoch,
                "loss": float(np.mean(losses)),
                "active": float(np.mean(actives)),
                "wall_s": round(time.perf_counter() - start_time, 1),
                **val_out,
            }
            history.append(record)
            if val_out["score"] > best_score:
                best_epoch, best_score = epoch, val_out["score"]
                best_state = copy.deepcopy(model.state_dict())
                since_best = 0
            else:
                since_best += 1
            if on_epoch is not None:
                on_epoch(record)
            checkpoint(epoch)
            epoch += 1
    finally:
        prefetch.close()
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        best_state=best_state,
        best_epoch=best_epoch,
        best_score=best_score,
        history=history,
        stopped=stopped,
        wall_s=time.perf_counter() - start_time,
        config=config,
    )


def _centroids(model: DlibResNet, faces: FaceSet) -> NDArray[np.float32]:
    """Each person's mean embedding (unit length) under ``model``: CosFace's start."""
    emb = embed_chips(model, np.stack([center_chip(c) for c in faces.chips]))
    cents = np.zeros((len(faces.people), emb.shape[1]), np.float32)
    np.add.at(cents, faces.labels, emb)
    norms = np.linalg.norm(cents, axis=1, keepdims=True)
    return np.asarray(cents / np.maximum(norms, 1e-12), dtype=np.float32)


def teacher_targets(model: DlibResNet, faces: FaceSet) -> NDArray[np.float32]:
    """The distillation targets: each face's flip-averaged unit vector under the starting
    network, from its clean chip (so one target serves the face mirrored or not)."""
    clean = np.stack([center_chip(c) for c in faces.chips])
    both = embed_chips(model, clean) + embed_chips(model, np.ascontiguousarray(clean[:, :, ::-1]))
    return np.asarray(both / np.maximum(np.linalg.norm(both, axis=1, keepdims=True), 1e-12), dtype=np.float32)


def _step(
    model: DlibResNet,
    head: CosFace | None,
    chips: NDArray[np.uint8],
    labels: Tensor,
    split: int,
    config: TrainConfig,
    target: Tensor | None,
    centre: Tensor | None,
) -> LossOut:
    x = model.preprocess(chips)
    if split > 0:
        with torch.no_grad():
            x = model.run(x, 0, split)
    emb = F.normalize(model.run(x, split, len(model.layers)), dim=1)
    if head is not None:
        out: LossOut = head(emb, labels)
    elif config.loss == "distill":
        out = LossOut(emb.sum() * 0.0, 0.0)
    elif config.loss == "semi-hard":
        out = semi_hard(emb, labels, config.margin)
    else:
        out = batch_hard(emb, labels, config.margin)
    if target is None or centre is None:
        return out
    drift = (1.0 - (F.normalize(emb - centre, dim=1) * target).sum(1)).mean()
    return LossOut(out.loss + config.distill * drift, out.active)


def _load_checkpoint(path: Path, config: TrainConfig, fingerprint: dict[str, Any]) -> dict[str, Any]:
    if not path.is_file():
        raise TrainingError(f"--resume: no checkpoint at {path} (was a run started with this --out?)")
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        raise TrainingError(f"--resume: cannot read the checkpoint {path}: {exc}") from None
    saved = TrainConfig.from_dict(state.get("config", {}))
    keep = {"epochs", "patience", "device", "max_steps"}  # these may change on resume
    diff = [k for k in config.to_dict() if k not in keep and getattr(saved, k) != getattr(config, k)]
    if diff:
        shown = ", ".join(f"{k}={getattr(saved, k)!r}" for k in diff)
        raise TrainingError(
            f"--resume: the checkpoint was made with other settings ({shown}); pass the same ones"
        )
    if state.get("fingerprint") != fingerprint:
        raise TrainingError(
            "--resume: the checkpoint was made on other training data (people or faces differ)"
        )
    return state
