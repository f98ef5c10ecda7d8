"""MTCNN's three networks (P-, R-, O-Net), rebuilt from facenet-pytorch's weights for onnxruntime.

Why a module of its own: turning a state_dict into a runnable net -- which layers, in which
order, and checking that a file really holds those weights -- is separate from the cascade
that runs the nets (:mod:`.mtcnn`).

The weights are facenet-pytorch's released ``pnet.pt``/``rnet.pt``/``onet.pt`` (legacy
``torch.save`` state_dicts, read by :mod:`.torch_legacy` without torch). Each net is
rebuilt as a small ONNX graph in memory (Conv, PReLU, MaxPool with ceil mode, Gemm,
Softmax) by :func:`~.torch_legacy.sequential_onnx`, following the recipes
:data:`TRUNKS`/:data:`HEADS` named by facenet-pytorch's state_dict keys, and run on
onnxruntime. Input: float32 ``(N, 3, H, W)`` normalised RGB; P-Net takes any H and W,
R-Net 24x24 and O-Net 48x48 (:data:`INPUT_SIDE`). Outputs as facenet-pytorch's forward:
``reg``, (``points``), ``prob``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import models
from ..errors import ModelUnavailableError
from .torch_legacy import load_state_dict, sequential_onnx

#: Each net's weights in the ``mtcnn`` model of the catalogue (:mod:`faceprint.models`).
FILES = {net: f"mtcnn_facenet_pytorch/{net}.pt" for net in ("pnet", "rnet", "onet")}

# Layer recipes (see torch_legacy.sequential_onnx), named by facenet-pytorch's state_dict
# keys. "flatten:0321" permutes NCHW to N,W,H,C before flattening, as facenet-pytorch's
# forward does: its dense weights were ported from the Caffe model in that order.
TRUNKS = {
    "pnet": "conv1 prelu1 pool:2:2 conv2 prelu2 conv3 prelu3",
    "rnet": "conv1 prelu1 pool:3:2 conv2 prelu2 pool:3:2 conv3 prelu3 flatten:0321 dense4 prelu4",
    "onet": "conv1 prelu1 pool:3:2 conv2 prelu2 pool:3:2 conv3 prelu3 pool:2:2 conv4 prelu4 "
    "flatten:0321 dense5 prelu5",
}
# (output name, layer, softmax over channels?)
HEADS = {
    "pnet": [("reg", "conv4_2", False), ("prob", "conv4_1", True)],
    "rnet": [("reg", "dense5_2", False), ("prob", "dense5_1", True)],
    "onet": [("reg", "dense6_2", False), ("points", "dense6_3", False), ("prob", "dense6_1", True)],
}
INPUT_SIDE = {"pnet": None, "rnet": 24, "onet": 48}


def build_onnx(net: str, sd: dict[str, NDArray[Any]]) -> bytes:
    """Serialized ONNX model of ``net`` ("pnet", "rnet" or "onet") with ``sd``'s weights.

    Input ``input``: float32 ``(N, 3, H, W)``, normalised RGB; H and W are free for P-Net,
    24/48 for R-/O-Net. Outputs as facenet-pytorch's forward: ``reg``, (``points``), ``prob``.
    """
    side = INPUT_SIDE[net]
    return sequential_onnx(
        sd, TRUNKS[net].split(), HEADS[net], ["N", 3, "H", "W"] if side is None else ["N", 3, side, side]
    )


def open_session(ort: Any, opts: Any, net: str, model_dir: str | None) -> Any:
    """An onnxruntime session for ``net`` with the weights in ``model_dir`` (``<net>.pt``)
    or, when ``None``, the model catalogue's; checked by one probe run on zeros, so a file
    with other keys or shapes raises :class:`ModelUnavailableError` here."""
    if model_dir is not None:
        path = Path(model_dir).expanduser() / f"{net}.pt"
        if not path.is_file():
            raise ModelUnavailableError(f"MTCNN weights {path.name} not found in {model_dir}")
    else:
        path = models.resolve("mtcnn", filename=FILES[net])
    sd = load_state_dict(path)
    side = INPUT_SIDE[net] or 12
    want = [(1, 4), (1, 10), (1, 2)] if net == "onet" else [(1, 4), (1, 2)]
    try:  # a well-formed file with other keys or shapes fails here
        sess = ort.InferenceSession(
            build_onnx(net, sd), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        got = [
            tuple(np.shape(o))[:2]
            for o in sess.run(None, {"input": np.zeros((1, 3, side, side), np.float32)})
        ]
    except Exception as exc:
        why = f"it has no tensor {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ModelUnavailableError(f"{path} does not hold facenet-pytorch's {net} weights: {why}") from exc
    if got != want:
        raise ModelUnavailableError(f"{path}: {net} outputs shapes {got}, expected {want}")
    return sess
