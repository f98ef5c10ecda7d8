"""Export a fine-tuned twin as a MODEL_DIR that ``--embedder MODEL_DIR`` loads.

Why through dlib's layer list: the stock ``dlib-onnx`` graph is built by
:func:`faceprint.embedding.dlib_onnx.to_onnx` from the layers of the ``.dat`` file. The
twin has one module per such layer, so its weights are written back into a copy of the
parsed network and the *same* converter builds the graph: one export path, proven on
the stock weights (the stock twin exported this way reproduces ``dlib-onnx``) and
checked on every export (the ONNX vectors must match the torch model's, cosine >=
:data:`MIN_PARITY`, on the validation faces, or nothing is written).

What is written (format of :mod:`faceprint.embedding.model_dir`): ``model.onnx``;
``impostors.json`` and ``impostors+flip.json``, the different-person score distributions
the open-set threshold is derived from; ``card.json``, the model card. Thresholds and
impostor scores are fitted on the **validation people** of the training folder: people
the gradients never saw, whose scores behave like a new user's (the training people's
impostor pairs were pushed apart by the loss, so they would give thresholds that are
too low). When they give fewer than ``MIN_FIT_SCORES`` different-person pairs (tiny
folders), every person's faces are used and the card says so.

The directory is built beside ``out`` and moved into place with ``os.replace``; an
existing model there is replaced only once the new one is complete, so a full disk or a
kill during export leaves the previous model intact.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..embedding import ID_SHA_CHARS, l2_normalize
from ..embedding.dlib_format import Layer, Network
from ..embedding.dlib_onnx import to_onnx
from ..embedding.model_dir import (
    CARD_FILE,
    CARD_FORMAT,
    IMPOSTORS_FILE,
    IMPOSTORS_FLIP_FILE,
    ONNX_FILE,
)
from ..embedding.onnx_session import embed_batched, new_session
from ..errors import GalleryError, TrainingError
from ..evaluation import metrics
from ..gallery.scoring import MIN_FIT_SCORES, fit_distribution
from ..models import sha256_file
from .dlib_resnet import Affine, DlibResNet
from .finetune import pair_scores

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - depends on the environment
    from ..errors import MissingExtraError

    raise MissingExtraError("faceprint.training needs PyTorch: pip install 'faceprint[train]'") from exc

#: The network part of a fine-tuned model's id (``dlib-ft@<name>+<sha8>``).
NETWORK = "dlib-ft"
#: The ONNX graph must reproduce the torch model at least this well (cosine similarity).
MIN_PARITY = 0.9999


def network_with_weights(net: Network, model: DlibResNet) -> Network:
    """A copy of ``net`` (the parsed ``.dat``) carrying ``model``'s current weights."""
    if len(net.layers) != len(model.layers):
        raise TrainingError(f"the twin has {len(model.layers)} layers, the network {len(net.layers)}")

    def arr(t: torch.Tensor) -> NDArray[np.float32]:
        return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))

    layers: list[Layer] = []
    for layer, module in zip(net.layers, model.layers, strict=True):
        arrays = dict(layer.arrays)
        if layer.kind == "con":
            conv = module[0] if isinstance(module, nn.Sequential) else module
            assert isinstance(conv, nn.Conv2d) and conv.bias is not None
            arrays["filters"], arrays["bias"] = arr(conv.weight), arr(conv.bias)
        elif layer.kind == "affine" and isinstance(module, Affine):
            arrays["gamma"], arrays["beta"] = arr(module.gamma), arr(module.beta)
        elif layer.kind == "fc":
            assert isinstance(module, nn.Sequential)
            linear = module[1]
            assert isinstance(linear, nn.Linear)
            arrays["weights"] = arr(linear.weight.T)
            if linear.bias is not None:
                arrays["bias"] = arr(linear.bias)
        layers.append(replace(layer, arrays=arrays))
    return replace(net, layers=tuple(layers))


def onnx_bytes(net: Network, model: DlibResNet, name: str) -> bytes:
    """The ONNX graph of ``model``'s weights (same I/O as ``dlib-onnx``'s graph). It names
    no ``source_sha256``, so nothing can take it for the converted stock ``.dat``."""
    graph = to_onnx(network_with_weights(net, model), {"faceprint_model": name, "network": NETWORK})
    return bytes(graph.SerializeToString())


def run_onnx(path: Path, chips: NDArray[np.uint8], batch: int = 64) -> NDArray[np.float32]:
    """Unit vectors of 150x150 RGB chips under the ONNX file at ``path`` (onnxruntime, CPU),
    run the way :class:`~faceprint.embedding.model_dir.ModelDirEmbedder` runs it."""
    session = new_session(path, 0, None, "the exported model")
    return embed_batched(session, list(chips), 128, batch, "the exported model")


def fit_thresholds(
    emb: NDArray[np.float32], labels: NDArray[np.int64], seed: int
) -> tuple[float, NDArray[np.float32], dict[str, Any]]:
    """The 1:1 threshold (max accuracy on all genuine pairs and as many seeded impostor
    pairs, as LFW balances them), every impostor score, and a summary for the card."""
    scores, same = pair_scores(emb, labels)
    gen, imp = scores[same], scores[~same]
    if len(gen) == 0 or len(imp) == 0:
        raise TrainingError("no same-person or no different-person pair to fit a threshold on")
    rng = np.random.default_rng(seed)
    sample = imp if len(imp) <= len(gen) else rng.choice(imp, size=len(gen), replace=False)
    s = np.concatenate([gen, sample])
    y = np.concatenate([np.ones(len(gen), bool), np.zeros(len(sample), bool)])
    threshold, acc = metrics.best_threshold(s, y)
    point = metrics.tar_at_far(scores, same, 1e-2)
    summary = {
        "genuine_pairs": len(gen),
        "impostor_pairs": len(imp),
        "accuracy_at_threshold": round(float(acc), 4),
        "tar_at_far_1e-2": point.tar,
    }
    return threshold, imp, summary


def check_out(out: str | os.PathLike[str]) -> Path:
    """``out`` as a Path when a model may be written there: absent, empty, or a previous
    model (it holds a card); anything else is refused before any work is done."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TrainingError(f"--out {out} is a file, not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / CARD_FILE).is_file():
        raise TrainingError(
            f"--out {out} is a non-empty directory that holds no model card: refusing to replace it"
        )
    return out


def write_model_dir(
    out: Path,
    *,
    net: Network,
    model: DlibResNet,
    name: str,
    fit_chips: NDArray[np.uint8],
    fit_labels: NDArray[np.int64],
    fit_source: str,
    card: dict[str, Any],
    seed: int = 0,
) -> dict[str, Any]:
    """Write the MODEL_DIR at ``out`` (see the module doc) and return its card.

    ``fit_chips``/``fit_labels`` are the 150x150 chips the thresholds and impostor
    distributions are fitted on (``fit_source`` says whose they are); ``card`` holds the
    free-form sections (base, data, training, metrics) merged into the card.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TrainingError(f"--out {out} is a file, not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / CARD_FILE).is_file():
        raise TrainingError(
            f"--out {out} is a non-empty directory that holds no model card: refusing to replace it"
        )
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainingError(f"cannot create {parent}: {exc}") from None
    tmp = parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        built = _build(tmp, net, model, name, fit_chips, fit_labels, fit_source, card, seed)
        _install(tmp, out)
    except OSError as exc:
        raise TrainingError(
            f"cannot write the model to {out}: {exc} (any previous model there is intact)"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return built


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def _build(
    tmp: Path,
    net: Network,
    model: DlibResNet,
    name: str,
    chips: NDArray[np.uint8],
    labels: NDArray[np.int64],
    source: str,
    card: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    onnx_path = tmp / ONNX_FILE
    with open(onnx_path, "wb") as fh:
        fh.write(onnx_bytes(net, model, name))
        fh.flush()
        os.fsync(fh.fileno())
    sha = sha256_file(onnx_path)
    model_id = f"{NETWORK}@{name}+{sha[:ID_SHA_CHARS]}"
    emb = run_onnx(onnx_path, chips)
    ref = model.embed(chips)
    parity = float(np.min(np.sum(emb * ref, axis=1))) if len(emb) else 1.0
    if parity < MIN_PARITY:
        raise TrainingError(
            f"the ONNX export differs from the torch model (cosine {parity:.6f} < {MIN_PARITY})"
        )
    flipped = run_onnx(onnx_path, np.ascontiguousarray(chips[:, :, ::-1]))
    emb_flip = l2_normalize(emb + flipped)
    files = {ONNX_FILE: sha}
    thresholds: dict[str, float] = {}
    fits: dict[str, Any] = {}
    for key, vectors, file, mid in (
        ("default", emb, IMPOSTORS_FILE, model_id),
        ("flip", emb_flip, IMPOSTORS_FLIP_FILE, model_id + "+flip"),
    ):
        threshold, imp, summary = fit_thresholds(vectors, labels, seed)
        try:
            dist = fit_distribution(imp, mid, source)
        except GalleryError as exc:
            raise TrainingError(
                f"{exc} (the impostor distribution is fitted on {source}; need {MIN_FIT_SCORES} pairs)"
            ) from None
        _write_json(tmp / file, dist)
        files[file] = sha256_file(tmp / file)
        thresholds[key] = round(threshold, 4)
        fits[key] = summary
    full = {
        "format": CARD_FORMAT,
        "name": name,
        "network": NETWORK,
        "version": name,
        "model_id": model_id,
        "dim": model.dim,
        "chip": {"size": 150, "template": "dlib"},
        "files": files,
        "default_threshold": thresholds["default"],
        "flip_threshold": thresholds["flip"],
        "thresholds_fitted_on": {"source": source, "faces": len(labels), **fits},
        "onnx_parity_min_cosine": round(parity, 7),
        **card,
    }
    _write_json(tmp / CARD_FILE, full)
    return full


def _install(tmp: Path, out: Path) -> None:
    """Move the complete ``tmp`` onto ``out``; a previous model there is moved aside first
    and restored if the move fails, then deleted."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    had_old = out.exists()
    if had_old:
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        if had_old:
            os.replace(old, out)
        raise
    if had_old:
        shutil.rmtree(old, ignore_errors=True)
    try:  # make the renames durable
        fd = os.open(out.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
