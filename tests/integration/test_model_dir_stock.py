"""A MODEL_DIR of the stock weights (the ``stock_model_dir`` fixture) with the real models:
it gives dlib-onnx's vectors under its own model id, ``--embedder MODEL_DIR`` and
``FACEPRINT_EMBEDDER=MODEL_DIR`` work end to end through the CLI, and a changed file in
the real directory is refused before anything runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import GALLERY, LFW, need
from faceprint.embedding import model_id
from faceprint.embedding.model_dir import ONNX_FILE, ModelDirEmbedder
from faceprint.errors import ModelUnavailableError
from model_dirs import yunet_lfw_chips

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

STOCK = "dlib@resnet_v1+55533b28"
KNN = GALLERY / "face_recognition_knn"


def invoke(*args: str) -> tuple[int, str, str]:
    from faceprint.cli.main import app

    res = CliRunner().invoke(app, list(args))
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.stdout, res.stderr


def test_the_stock_weights_in_a_model_dir_give_dlib_onnx_vectors_under_another_id(
    stock_model_dir: Path, dat: Path, tmp_path: Path
) -> None:
    from faceprint.embedding.dlib_onnx import DlibOnnxEmbedder

    chips = yunet_lfw_chips(need(LFW), 24)
    ours = ModelDirEmbedder(stock_model_dir, intra_op_threads=1)
    ref = DlibOnnxEmbedder(model_path=str(dat), onnx_path=str(tmp_path / "ref.onnx"), intra_op_threads=1)
    a, b = ours.embed(chips), ref.embed(chips)
    assert a.shape == b.shape == (24, 128)
    assert float(np.min(np.sum(a * b, axis=1))) >= 0.9999
    assert model_id(ref) == STOCK
    assert model_id(ours).startswith("dlib-ft@test+") and model_id(ours) != STOCK
    assert model_id(ours, flip=True) == model_id(ours) + "+flip"


def test_verify_and_faceprint_embedder_take_a_model_dir(
    stock_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = str(need(KNN) / "train" / "obama" / "obama.jpg"), str(KNN / "test" / "obama1.jpg")
    code, out, err = invoke("verify", a, b, "--embedder", str(stock_model_dir), "--json")
    assert code == 0, err
    mine = json.loads(out)
    assert mine["embedder"] == str(stock_model_dir) and mine["same"] and mine["threshold"] == 0.906
    code, out, err = invoke("verify", a, b, "--embedder", "dlib-onnx", "--json")
    assert code == 0, err
    assert json.loads(out)["similarity"] == pytest.approx(mine["similarity"], abs=1e-4)
    monkeypatch.setenv("FACEPRINT_EMBEDDER", str(stock_model_dir))
    code, out, err = invoke("verify", a, b, "--json", "--flip")
    assert code == 0, err
    flipped = json.loads(out)
    assert flipped["embedder"] == f"{stock_model_dir}+flip" and flipped["threshold"] == 0.91


def test_a_changed_model_dir_is_refused_in_one_line(stock_model_dir: Path, tmp_path: Path) -> None:
    md = Path(shutil.copytree(stock_model_dir, tmp_path / "changed"))
    data = bytearray((md / ONNX_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01  # one weight nudged after training
    (md / ONNX_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelUnavailableError, match="changed after training; retrain or restore it"):
        ModelDirEmbedder(md)
    img = str(need(KNN) / "test" / "obama1.jpg")
    code, out, err = invoke("verify", img, img, "--embedder", str(md))
    lines = err.strip().splitlines()
    assert code == 1 and out == "" and len(lines) == 1
    assert lines[0].startswith(f"error: model.onnx in {md} has sha256 "), lines
