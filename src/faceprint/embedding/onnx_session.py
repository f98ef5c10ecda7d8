"""ONNX Runtime plumbing shared by the embedders that run an ONNX graph of the dlib chip
contract (``dlib-onnx``, built from dlib's ``.dat``; a MODEL_DIR written by ``faceprint
train``, :mod:`.model_dir`).

Why one module: both embedders open their session the same way (a thread count, execution
providers, pool threads that sleep instead of spinning) and run it the same way (the
crops in batches, the raw descriptors L2-normalised so vectors compare by cosine
similarity); a fix to either belongs to both.

The graph contract (what :func:`faceprint.embedding.dlib_onnx.to_onnx` writes): input
:data:`INPUT_NAME` ``uint8 (N, 150, 150, 3)``, RGB NHWC chips; output :data:`OUTPUT_NAME`
``float32 (N, dim)``, raw (not normalised) descriptors.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import MissingExtraError
from ..types import Image
from . import check_crops, l2_normalize

INPUT_NAME, OUTPUT_NAME = "crops", "descriptors"
#: Side of the square RGB chips the graphs take (dlib's 150x150 chip).
CHIP_SIZE = 150


def require(module: str, who: str) -> Any:
    """Import ``module`` (onnx or onnxruntime) for ``who`` (e.g. "the dlib-onnx embedder"),
    naming what to install when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"{who} needs {module!r}: pip install onnx onnxruntime") from exc


def check_options(intra_op_threads: int, batch_size: int) -> None:
    """Raise ``ValueError`` unless ``intra_op_threads >= 0`` and ``batch_size >= 1``."""
    if intra_op_threads < 0 or batch_size < 1:
        raise ValueError(
            f"need intra_op_threads >= 0 and batch_size >= 1, got {intra_op_threads} and {batch_size}"
        )


#: ONNX Runtime graph optimisation levels by name (``new_session``'s ``optimization``).
OPTIMIZATION_LEVELS = ("all", "extended", "basic")


def new_session(
    model: Path | bytes,
    intra_op_threads: int,
    providers: Sequence[str] | None,
    who: str,
    optimization: str = "all",
) -> Any:
    """An ``onnxruntime.InferenceSession`` on ``model`` (a file, or the file's bytes: what
    was hashed is then exactly what runs). ``intra_op_threads`` 0 is ONNX Runtime's default
    (one per physical core); ``providers`` default to the CPU; ``optimization`` is the graph
    optimisation level (:data:`OPTIMIZATION_LEVELS`; ``"all"``, ONNX Runtime's default,
    suits most graphs, but its layout changes made Faceplugin's 1x1 convolutions 3x slower
    on CPU). Whatever ONNX Runtime raises for a graph it cannot load propagates: the caller
    says which file it was."""
    ort = require("onnxruntime", who)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    }.get(optimization)
    if level is None:
        raise ValueError(
            f"optimization must be one of {', '.join(OPTIMIZATION_LEVELS)}, got {optimization!r}"
        )
    opts.graph_optimization_level = level
    # Idle pool threads sleep instead of spinning: between two requests a spinning pool
    # burns the cores the service needs to parse and decode the next upload.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    chosen = list(providers) if providers else ["CPUExecutionProvider"]
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=opts, providers=chosen)


def embed_batched(
    session: Any, crops: Sequence[Image], dim: int, batch_size: int, who: str, size: int = CHIP_SIZE
) -> NDArray[np.float32]:
    """``(N, dim)`` float32 unit vectors for ``size`` x ``size`` RGB uint8 crops (any N;
    dlib's 150x150 chips by default), run ``batch_size`` at a time through ``session`` and
    L2-normalised."""
    if len(crops) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    check_crops(crops, size, who)
    batch = np.stack(crops)
    out = [
        session.run([OUTPUT_NAME], {INPUT_NAME: batch[i : i + batch_size]})[0]
        for i in range(0, len(batch), batch_size)
    ]
    return l2_normalize(np.concatenate(out))
