"""MODEL_DIRs (``faceprint-model/1``, :mod:`faceprint.embedding.model_dir`) built for tests.

Two kinds, both written exactly the way ``faceprint train`` writes one (card, sha256s,
impostor distributions fitted by :func:`faceprint.gallery.scoring.fit_distribution` for
the model's own id), so loading code and training code are tested against one format:

* :func:`tiny_onnx` + :func:`write_model_dir`: a graph of a few KB with the MODEL_DIR's
  I/O (uint8 ``(N, 150, 150, 3)`` -> float32 ``(N, dim)``) and synthetic impostor scores:
  no weights needed (unit tests);
* :func:`build_stock_model_dir`: dlib's stock weights converted to ONNX
  (``to_onnx(read_network(dat))``) posing as a fine-tuned model (network ``dlib-ft``,
  version ``test``), with impostor distributions fitted on real LFW dev scores: its
  vectors equal ``dlib-onnx``'s but its model id differs (the ``stock_model_dir`` fixture
  of tests/conftest.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Different-person pairs of the synthetic distributions (fit_distribution needs 1,000).
SYNTHETIC_PAIRS = 2000
#: LFW dev people whose central faces give the stock MODEL_DIR's impostor scores
#: (one image each: 64 * 63 / 2 = 2,016 different-person pairs).
STOCK_PEOPLE = 64


def tiny_onnx(
    dim: int = 8,
    *,
    input_type: str = "uint8",
    side: int = 150,
    input_name: str = "crops",
    output_name: str = "descriptors",
    seed: int = 0,
) -> bytes:
    """A small ONNX graph: the per-channel means of each chip times a fixed random (3, dim)
    matrix plus a bias, as ``output_name`` float32 (N, dim). The defaults fit a MODEL_DIR;
    the arguments make graphs that do not (another input type, size or name)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.normal(size=(3, dim)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(size=(dim,)).astype(np.float32), "b")
    elem = {"uint8": TensorProto.UINT8, "float32": TensorProto.FLOAT}[input_type]
    nodes = [
        helper.make_node("Cast", [input_name], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["f"], ["m"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["m", "w"], ["p"]),
        helper.make_node("Add", ["p", "b"], [output_name]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(input_name, elem, ["batch", side, side, 3])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", dim])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def synthetic_scores(seed: int = 0, n: int = SYNTHETIC_PAIRS) -> NDArray[np.float64]:
    """Impostor-like cosine similarities (mean 0.5, sd 0.1), enough to fit a distribution."""
    return np.clip(np.random.default_rng(seed).normal(0.5, 0.1, n), -1.0, 1.0)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_model_dir(
    out: Path,
    onnx_bytes: bytes,
    scores: NDArray[np.floating[Any]],
    flip_scores: NDArray[np.floating[Any]] | None = None,
    *,
    dim: int = 128,
    network: str = "dlib-ft",
    version: str = "test",
    name: str = "test",
    default_threshold: float = 0.906,
    flip_threshold: float | None = 0.91,
    card_extra: dict[str, Any] | None = None,
) -> Path:
    """Write a MODEL_DIR at ``out`` (created) the way ``faceprint train`` does: the graph,
    impostor distributions fitted on ``scores`` (and ``flip_scores``) for the model's id
    (``network@version+sha8``, ``+flip``), and a card recording every file's sha256."""
    from faceprint.embedding import format_model_id
    from faceprint.embedding.model_dir import (
        CARD_FILE,
        CARD_FORMAT,
        IMPOSTORS_FILE,
        IMPOSTORS_FLIP_FILE,
        ONNX_FILE,
    )
    from faceprint.gallery.scoring import fit_distribution

    out.mkdir(parents=True, exist_ok=True)
    (out / ONNX_FILE).write_bytes(onnx_bytes)
    sha = _sha(onnx_bytes)
    model_id = format_model_id(network, version, sha)
    files = {ONNX_FILE: sha}
    for file, s, mid in (
        (IMPOSTORS_FILE, scores, model_id),
        (IMPOSTORS_FLIP_FILE, flip_scores, model_id + "+flip"),
    ):
        if s is None:
            continue
        data = (
            json.dumps(fit_distribution(np.asarray(s), mid, "test impostor pairs"), indent=2) + "\n"
        ).encode()
        (out / file).write_bytes(data)
        files[file] = _sha(data)
    card = {
        "format": CARD_FORMAT,
        "name": name,
        "network": network,
        "version": version,
        "model_id": model_id,
        "dim": dim,
        "chip": {"size": 150, "template": "dlib"},
        "files": files,
        "default_threshold": default_threshold,
        "flip_threshold": flip_threshold,
        "base": {"embedder": "dlib-onnx", "model_id": "dlib@resnet_v1+55533b28"},
        **(card_extra or {}),
    }
    (out / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return out


def tiny_model_dir(out: Path, dim: int = 8, flip: bool = True, **card: Any) -> Path:
    """A complete, valid MODEL_DIR of :func:`tiny_onnx` (no weights needed)."""
    return write_model_dir(
        out, tiny_onnx(dim), synthetic_scores(0), synthetic_scores(1) if flip else None, dim=dim, **card
    )


def yunet_lfw_chips(lfw: Path, people: int) -> list[NDArray[np.uint8]]:
    """The central face of the first image of ``people`` LFW dev people (spread over the
    alphabet), as dlib 150x150 RGB chips aligned on YuNet's landmarks."""
    from faceprint.alignment import align_face
    from faceprint.detection.yunet import YuNetDetector
    from faceprint.embedding.dlib import chip_templates
    from faceprint.io import load_image
    from faceprint.selection import central_face

    det, templates = YuNetDetector(), chip_templates()
    dirs = sorted(p for p in lfw.iterdir() if p.is_dir())
    chips: list[NDArray[np.uint8]] = []
    for d in dirs[:: max(1, len(dirs) // (2 * people))]:
        img = load_image(sorted(d.glob("*.jpg"))[0])
        face = central_face(det.detect(img), img.shape)
        if face is not None:
            chips.append(align_face(img, face, templates))
        if len(chips) == people:
            break
    assert len(chips) == people, f"only {len(chips)} faces found under {lfw}"
    return chips


def _impostor_scores(vectors: NDArray[np.float32]) -> NDArray[np.float64]:
    sims = vectors.astype(np.float64) @ vectors.T.astype(np.float64)
    return sims[np.triu_indices(len(vectors), k=1)]


def build_stock_model_dir(out: Path, dat: Path, lfw: Path) -> Path:
    """The stock dlib weights as a MODEL_DIR at ``out`` (module doc): ``model.onnx`` is
    ``to_onnx(read_network(dat))``, the impostor distributions are fitted on the pairwise
    similarities of :data:`STOCK_PEOPLE` LFW dev people's faces (plain and flip TTA)."""
    import onnxruntime as ort

    from faceprint.embedding import l2_normalize
    from faceprint.embedding.dlib_format import read_network
    from faceprint.embedding.dlib_onnx import INPUT_NAME, OUTPUT_NAME, to_onnx

    data = to_onnx(read_network(dat)).SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    chips = np.stack(yunet_lfw_chips(lfw, STOCK_PEOPLE))
    mirrored = np.ascontiguousarray(chips[:, :, ::-1])
    plain = session.run([OUTPUT_NAME], {INPUT_NAME: chips})[0]
    flipped = session.run([OUTPUT_NAME], {INPUT_NAME: mirrored})[0]
    vectors = l2_normalize(plain)
    flip_vectors = l2_normalize(vectors + l2_normalize(flipped))
    return write_model_dir(
        out, data, _impostor_scores(vectors), _impostor_scores(flip_vectors), dim=int(plain.shape[1])
    )
