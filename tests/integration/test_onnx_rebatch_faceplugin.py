"""faceplugin's fixed-batch face embedder, converted to the embedder graph contract, gives
the original's vectors at any batch on real aligned faces.

The reference is the ORIGINAL graph run one face at a time, as its authors run it: float32
NCHW input, ``(x - 127) / 128`` done in numpy. The converted graph takes the same aligned
uint8 RGB NHWC crops at batch 1, 2 and 7 (7 = every face in one call; 2 leaves a
remainder batch of 1), and must match within 1e-4 per element.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import LFW, MODELS, need
from faceprint.alignment import AlignmentTemplate, align
from faceprint.embedding.onnx_rebatch import to_contract
from faceprint.io import load_image

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

SIZE, MEAN, SCALE = 112, 127.0, 1 / 128
#: The standard 112x112 five-point (ArcFace) template, std5 order (viewer's left eye first).
ARCFACE_112 = AlignmentTemplate(
    "std5",
    ((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655), (70.7299, 92.2041)),
    SIZE,
    "similarity",
)
N_FACES = 7


def _lfw_faces() -> np.ndarray:
    """``(7, 112, 112, 3)`` uint8 RGB crops: the best YuNet face of the first image of 7
    people spread over LFW dev's ``<person>/<person>_NNNN.jpg`` folders."""
    from faceprint.recognizer import Recognizer

    root = need(LFW / "pairsDevTest.txt").parent
    need(MODELS / "face_detection_yunet_2023mar.onnx")
    rec = Recognizer("yunet", "dlib-onnx")
    people = sorted(p for p in root.iterdir() if p.is_dir())
    crops: list[Any] = []
    for person in people[:: len(people) // (2 * N_FACES)]:
        path = sorted(person.glob("*.jpg"))[0]
        faces = rec.detect(path)
        if faces and faces[0].landmarks is not None:
            crops.append(align(load_image(path), faces[0].landmarks, ARCFACE_112))
        if len(crops) == N_FACES:
            break
    assert len(crops) == N_FACES, f"only {len(crops)} faces found in {root}"
    return np.stack(crops)


def _session(model: Any) -> Any:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def test_converted_faceplugin_matches_the_original_at_any_batch(dat: Path) -> None:
    """(``dat``: the Recognizer's dlib-onnx embedder needs dlib's weights; only its detector is used.)"""
    source = onnx.load(str(need(MODELS / "npm" / "faceplugin_fr_feature.onnx")))
    assert source.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1, "not the fixed-batch export"
    crops = _lfw_faces()

    original = _session(source)
    (name,) = (i.name for i in original.get_inputs())
    x = ((crops.astype(np.float32) - MEAN) / 128).transpose(0, 3, 1, 2)
    ref = np.concatenate([original.run(None, {name: x[i : i + 1]})[0] for i in range(N_FACES)])
    assert ref.shape == (N_FACES, 512)

    converted = to_contract(
        source, size=SIZE, mean=MEAN, scale=SCALE, metadata={"source": "faceplugin"}, doc=""
    )
    sess = _session(converted)
    for batch in (1, 2, 7):
        out = np.concatenate(
            [sess.run(["descriptors"], {"crops": crops[i : i + batch]})[0] for i in range(0, N_FACES, batch)]
        )
        assert out.shape == ref.shape and out.dtype == np.float32
        diff = float(np.abs(out - ref).max())
        assert diff <= 1e-4, f"batch {batch}: max abs diff {diff:.3g} (|ref| up to {np.abs(ref).max():.3g})"
    # the faces differ from one another: a graph that mixed or repeated samples would show
    unit = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    assert (unit @ unit.T)[~np.eye(N_FACES, dtype=bool)].max() < 0.9
