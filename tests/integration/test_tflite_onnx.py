"""MobileFaceNet's ``.tflite`` converted to ONNX gives the TFLite interpreter's vectors on
real aligned faces, at any batch, and the real file's damaged bytes are refused cleanly.

The reference runs the original file in LiteRT (``ai-edge-litert``, the dev extra). The
file fixes its batch at 2 and its final RESHAPE bakes that 2 in (a resized input fails
to prepare), so the reference is fed pairs."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import LFW, MODELS, need
from faceprint.embedding.tflite_format import parse_model, read_model
from faceprint.embedding.tflite_onnx import to_onnx
from faceprint.errors import ModelUnavailableError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

MODEL = MODELS / "npm" / "expo_mobilefacenet.tflite"
SHA256 = "d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b"
MEAN, SCALE = 127.5, 1 / 128
#: ArcFace's 112x112 std5 template (eyes, nose tip, mouth corners; x, y pixels).
ARCFACE_112 = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)
N_FACES = 6
TOLERANCE = 1e-4  # per element; the vectors' entries are of order 1 to 10


@pytest.fixture(scope="module")
def tflite_path() -> Path:
    path = need(MODEL)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA256, f"{path} is not the expected file"
    return path


@pytest.fixture(scope="module")
def converted(tflite_path: Path) -> Any:
    return to_onnx(
        read_model(tflite_path),
        mean=MEAN,
        scale=SCALE,
        metadata={"source_sha256": SHA256, "source_file": tflite_path.name},
        graph_name="mobilefacenet",
        doc="MobileFaceNet from expo_mobilefacenet.tflite",
    )


@pytest.fixture(scope="module")
def faces() -> np.ndarray[Any, Any]:
    """``N_FACES`` aligned 112x112 RGB uint8 crops of LFW dev people, one per person."""
    from faceprint.alignment import AlignmentTemplate, align
    from faceprint.io import load_image
    from faceprint.recognizer import Recognizer

    root = need(LFW / "pairsDevTest.txt").parent
    need(MODELS / "face_detection_yunet_2023mar.onnx")
    rec = Recognizer("yunet", "dlib-onnx")
    template = AlignmentTemplate("std5", ARCFACE_112, 112, "similarity").zoomed(0.9)
    people = sorted(p for p in root.iterdir() if p.is_dir())
    crops = []
    for person in people[:: len(people) // (3 * N_FACES)]:
        image = load_image(sorted(person.glob("*.jpg"))[0])
        found = rec.detect(image)
        if found and found[0].landmarks is not None and found[0].landmark_scheme == "std5":
            crops.append(align(image, found[0].landmarks, template))
        if len(crops) == N_FACES:
            break
    assert len(crops) == N_FACES, f"only {len(crops)} faces found in {root}"
    return np.stack(crops)


@pytest.fixture(scope="module")
def reference(tflite_path: Path, faces: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The original file run by LiteRT's interpreter, two faces at a time."""
    litert = pytest.importorskip(
        "ai_edge_litert.interpreter", reason="pip install ai-edge-litert (dev extra)"
    )
    interpreter = litert.Interpreter(model_path=str(tflite_path), num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert list(inp["shape"]) == [2, 112, 112, 3] and list(out["shape"]) == [2, 192]
    rows = []
    for i in range(0, len(faces), 2):
        interpreter.set_tensor(inp["index"], (faces[i : i + 2].astype(np.float32) - MEAN) / 128)
        interpreter.invoke()
        rows.append(interpreter.get_tensor(out["index"]).copy())
    return np.concatenate(rows)


def test_the_model_reads_as_expected(tflite_path: Path) -> None:
    model = read_model(tflite_path)
    sg = model.subgraphs[0]
    assert {op.op for op in sg.operators} == {
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "RELU",
        "ABS",
        "SUB",
        "MUL",
        "ADD",
        "RESHAPE",
    }
    assert len(sg.operators) == 230
    assert sg.tensors[sg.inputs[0]].shape == (2, 112, 112, 3)
    assert sg.tensors[sg.outputs[0]].shape == (2, 192)


def test_converted_graph_is_a_valid_embedder_graph(converted: Any) -> None:
    onnx.checker.check_model(converted, full_check=True)
    (inp,), (out,) = converted.graph.input, converted.graph.output
    assert (inp.name, inp.type.tensor_type.elem_type) == ("crops", onnx.TensorProto.UINT8)
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 112, 112, 3]
    assert (out.name, out.type.tensor_type.elem_type) == ("descriptors", onnx.TensorProto.FLOAT)
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 192]
    props = {p.key: p.value for p in converted.metadata_props}
    assert props["source_sha256"] == SHA256 and props["source_file"] == MODEL.name
    ops = [node.op_type for node in converted.graph.node]
    assert "Abs" not in ops and ops.count("BatchNormalization") == 2 * 33  # every PReLU fused


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_vectors_equal_the_tflite_interpreters(
    converted: Any, faces: np.ndarray[Any, Any], reference: np.ndarray[Any, Any], batch: int
) -> None:
    session = ort.InferenceSession(converted.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"crops": faces[:batch]})[0]
    assert got.shape == (batch, 192) and got.dtype == np.float32
    diff = float(np.abs(got - reference[:batch]).max())
    assert diff <= TOLERANCE, f"max abs diff {diff:.3g} at batch {batch}"
    assert np.abs(reference).max() > 1  # raw, not normalised: the tolerance is meaningful


def test_damaged_real_file_is_refused(tflite_path: Path) -> None:
    data = tflite_path.read_bytes()
    for n in (0, 7, 1000, len(data) // 2, len(data) - 100):  # each cuts into data the reader needs
        with pytest.raises(ModelUnavailableError, match="is not a usable TFLite model"):
            parse_model(data[:n], "cut.tflite")
    with pytest.raises(ModelUnavailableError, match="expected the file identifier 'TFL3'"):
        parse_model(data[:4] + b"XXXX" + data[8:], "renamed.tflite")
