"""The int8 dlib embedder: built from the shipped ranges without images, close to the float
vectors, as accurate on LFW as published, its own model id, and clear refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import LFW, REPO, lfw_chips, need
from faceprint import models
from faceprint.embedding import Embedder, model_id
from faceprint.embedding import dlib_int8 as int8
from faceprint.embedding.dlib_onnx import DlibOnnxEmbedder, build_onnx
from faceprint.errors import ModelUnavailableError
from faceprint.types import Image

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

BENCH = REPO / "bench" / "results" / "quantize.json"
N_FACES = 48


@pytest.fixture(scope="module")
def built(dat: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return int8.DlibInt8Embedder.build(dat, tmp_path_factory.mktemp("int8") / "int8.onnx")


@pytest.fixture(scope="module")
def embedder(dat: Path, built: Path) -> int8.DlibInt8Embedder:
    return int8.DlibInt8Embedder(model_path=str(dat), onnx_path=str(built), intra_op_threads=1)


@pytest.fixture(scope="module")
def float_embedder(dat: Path, tmp_path_factory: pytest.TempPathFactory) -> DlibOnnxEmbedder:
    path = build_onnx(dat, tmp_path_factory.mktemp("float") / "float.onnx")
    return DlibOnnxEmbedder(model_path=str(dat), onnx_path=str(path), intra_op_threads=1)


@pytest.fixture(scope="module")
def chips() -> list[Image]:
    return lfw_chips(N_FACES, 40)


def test_the_graph_is_integer_and_records_its_source(dat: Path, built: Path) -> None:
    model = onnx.load(str(built))
    ops = {n.op_type for n in model.graph.node}
    assert {"QLinearConv", "QLinearAdd", "QLinearMatMul"} <= ops and "Conv" not in ops
    props = {p.key: p.value for p in model.metadata_props}
    assert props["source_sha256"] == models.sha256_file(dat)
    assert props["converter_version"] == int8.CONVERTER_VERSION


def test_vectors_are_close_to_the_float_models_but_have_their_own_id(
    embedder: int8.DlibInt8Embedder, float_embedder: DlibOnnxEmbedder, chips: list[Image]
) -> None:
    ours, ref = embedder.embed(chips), float_embedder.embed(chips)
    assert ours.shape == (len(chips), 128) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cos = (ours * ref).sum(axis=1)
    assert cos.min() >= 0.995, f"min cosine to the float vectors {cos.min():.5f}"
    assert cos.min() < 0.99999, "identical to the float vectors: is the graph quantised at all?"
    sha8 = models.sha256_file(models.resolve("dlib"))[:8]
    assert model_id(embedder) == f"dlib@resnet_v1-int8+{sha8}" != model_id(float_embedder)
    assert isinstance(embedder, Embedder) and embedder.crop_templates == float_embedder.crop_templates
    assert embedder.embed([]).shape == (0, 128)


def test_folding_the_affines_keeps_the_float_outputs(dat: Path, chips: list[Image]) -> None:
    import onnxruntime as ort

    from faceprint.embedding.dlib_format import read_network
    from faceprint.embedding.dlib_onnx import to_onnx

    plain = to_onnx(read_network(dat))
    folded = int8.fold_affine(plain)
    ops = [n.op_type for n in folded.graph.node]
    assert ops.count("Mul") == 1 and ops.count("Conv") == 29  # only the prologue's /256 is left
    x = np.stack(chips[:8])
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # no ORT folding
    a = ort.InferenceSession(plain.SerializeToString(), opts).run(None, {"crops": x})[0]
    b = ort.InferenceSession(folded.SerializeToString(), opts).run(None, {"crops": x})[0]
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_the_shipped_ranges_cover_every_tensor_the_quantiser_reads(dat: Path) -> None:
    ranges = int8.load_ranges(models.sha256_file(dat))
    folded = int8.folded_float(dat)
    outputs = {o for n in folded.graph.node for o in n.output}
    assert set(ranges) == outputs, "the ranges and the graph's tensors differ"


def test_thresholds_are_the_benchmarks_pairsdevtrain_fit() -> None:
    shipped = json.loads(need(BENCH).read_text())["shipped"]
    row = next(r for r in json.loads(BENCH.read_text())["rows"] if r["model"] == "dlib-onnx-int8")
    assert abs(int8.DEFAULT_THRESHOLD - row["threshold"]) <= 5e-4  # rounded to 3 decimals
    assert abs(int8.FLIP_THRESHOLD - shipped["flip_tta"]["dlib-onnx-int8"]["threshold"]) <= 5e-4
    assert shipped["ranges_equal_this_runs_all_calibration"] is True


@pytest.mark.slow
def test_pairsdevtest_accuracy_stays_within_a_point_of_the_published_figure() -> None:
    from faceprint.evaluation.embedset import PipelineSpec
    from faceprint.evaluation.lfw import evaluate_lfw

    need(LFW / "pairsDevTest.txt")
    row = next(r for r in json.loads(need(BENCH).read_text())["rows"] if r["model"] == "dlib-onnx-int8")
    rep = evaluate_lfw(PipelineSpec("yunet", "dlib-onnx-int8"), LFW, LFW / "pairsDevTest.txt", workers=1)
    assert rep["pairs"] == 1000
    assert rep["accuracy_mean"] >= row["test_accuracy"] - 0.01, (
        f"dlib-onnx-int8: {rep['accuracy_mean']:.1%} on pairsDevTest (cross-validated), more than 1 point "
        f"under the published {row['test_accuracy']:.1%} (bench/quantize.py)"
    )


def test_another_dat_is_refused_and_nothing_is_written(dat: Path, tmp_path: Path) -> None:
    other = tmp_path / "finetuned.dat"
    shutil.copyfile(dat, other)
    with other.open("ab") as fh:  # another file: its sha256 differs from the published one's
        fh.write(b"\0")
    out = tmp_path / "cache" / "int8.onnx"
    with pytest.raises(ModelUnavailableError, match="sha256"):
        int8.DlibInt8Embedder.build(other, out)
    assert not out.exists()


@pytest.mark.parametrize(
    "damage",
    ["not json", "no ranges", "another source", "another converter", "nan range"],
)
def test_bad_ranges_files_are_refused_clearly(dat: Path, tmp_path: Path, damage: str) -> None:
    sha = models.sha256_file(dat)
    good = json.loads((Path(int8.__file__).parent.parent / "models_data" / int8.RANGES_FILE).read_text())
    path = tmp_path / "ranges.json"
    if damage == "not json":
        path.write_text("{ truncated")
    else:
        bad = dict(good)
        if damage == "no ranges":
            del bad["ranges"]
        elif damage == "another source":
            bad["source_sha256"] = "0" * 64
        elif damage == "another converter":
            bad["converter_version"] = "0+int8.0"
        else:
            bad["ranges"] = {**good["ranges"], "relu_9": [0.0, float("nan")]}
        path.write_text(json.dumps(bad))
    match = {
        "not json": "cannot be read",
        "no ranges": "cannot be read",
        "another source": "published dlib model",
        "another converter": "re-measure",
        "nan range": "not finite",
    }[damage]
    with pytest.raises(ModelUnavailableError, match=match):
        int8.load_ranges(sha, path)


def test_ranges_of_another_graph_are_refused(dat: Path) -> None:
    ranges = int8.load_ranges(models.sha256_file(dat))
    partial = dict(list(ranges.items())[: len(ranges) // 2])
    with pytest.raises(ModelUnavailableError, match="do not fit this graph"):
        int8.quantize(int8.folded_float(dat), partial)


def test_an_onnxruntime_without_stored_ranges_gets_a_clear_error(
    dat: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onnxruntime import quantization

    def old_quantize_static(model_input: str, model_output: str, calibration_data_reader: object) -> None:
        raise AssertionError("not called")

    monkeypatch.setattr(quantization, "quantize_static", old_quantize_static)
    with pytest.raises(ModelUnavailableError, match=r"onnxruntime >= 1\.27"):
        int8.quantize(int8.folded_float(dat), int8.load_ranges(models.sha256_file(dat)))
