"""``faceprint train`` end to end on a tiny LFW subset, the export path, and bad input.

The full run (all pairsDevTrain people) is a benchmark, ``bench/training.py``; here a few
people and one short epoch prove the loop, the export and the loading, in seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import LFW, lfw_chips, need

TRAIN = "faceprint train needs the [train] extra: pip install 'faceprint[train]'"
torch = pytest.importorskip("torch", reason=TRAIN)

from faceprint.cli.main import app  # noqa: E402
from faceprint.embedding.dlib_format import read_network  # noqa: E402
from faceprint.embedding.model_dir import ModelDirEmbedder  # noqa: E402
from faceprint.training.dlib_resnet import DlibResNet  # noqa: E402
from faceprint.training.export import onnx_bytes, run_onnx, write_model_dir  # noqa: E402

runner = CliRunner()
#: 12 pairsDevTrain people with 4+ images: 48 faces make 1,056 different-person pairs, enough
#: for the impostor distribution (scoring.MIN_FIT_SCORES = 1,000)
PEOPLE = ("Aaron_Peirsol", "Abdullah", "Adam_Sandler", "Alec_Baldwin", "Amelia_Vega", "Ana_Guevara",
          "Anders_Fogh_Rasmussen", "Andy_Roddick", "Angelina_Jolie", "Ari_Fleischer", "Arnoldo_Aleman",
          "Atal_Bihari_Vajpayee")  # fmt: skip


def people_dir(root: Path, names: tuple[str, ...] = PEOPLE, per_person: int = 4) -> Path:
    """``root`` holding symlinks to the first ``per_person`` LFW images of ``names``."""
    lfw = need(LFW / "pairsDevTrain.txt").parent
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).mkdir()
        for img in sorted((lfw / name).glob("*.jpg"))[:per_person]:
            (root / name / img.name).symlink_to(img)
    return root


def train_args(src: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--dir", str(src), "--out", str(out), "--face", "central", "--epochs", "1",
            "--max-steps", "2", "-P", "4", "-K", "2", "--val-fraction", "0.3", *extra]  # fmt: skip


def test_stock_twin_exported_through_the_training_path_reproduces_dlib_onnx(
    dat: Path, tmp_path: Path
) -> None:
    from faceprint.embedding.dlib_onnx import DlibOnnxEmbedder

    net = read_network(dat)
    path = tmp_path / "stock.onnx"
    path.write_bytes(onnx_bytes(net, DlibResNet(net), "stock"))
    chips = np.stack(lfw_chips(16, 12))
    ours = run_onnx(path, chips)
    ref = DlibOnnxEmbedder(model_path=str(dat)).embed(list(chips))
    assert float(np.min(np.sum(ours * ref, axis=1))) >= 0.9999


def test_train_writes_a_model_that_every_command_can_load(tmp_path: Path) -> None:
    src = people_dir(tmp_path / "people")
    out = tmp_path / "my-model"
    res = runner.invoke(app, [*train_args(src, out, "--augment", "flip,lowres"), "--json"])
    assert res.exit_code == 0, res.output
    card = json.loads(res.stdout)
    assert card == json.loads((out / "card.json").read_text())
    assert card["model_id"].startswith("dlib-ft@my-model+") and card["network"] == "dlib-ft"
    assert card["base"]["model_id"].startswith("dlib@resnet_v1+")
    assert card["onnx_parity_min_cosine"] >= 0.9999
    assert card["training"]["epochs_run"] == 1 and len(card["training"]["validation_curve"]) == 2
    assert list(card["augment"]["ops"]) == ["flip", "lowres"]
    assert len(card["data"]["sha256"]) == card["data"]["faces"] == 48
    assert 0.5 < card["default_threshold"] < 1.0
    assert not (tmp_path / "my-model.checkpoint").exists()  # removed after a finished run
    emb = ModelDirEmbedder(str(out))
    assert emb.default_threshold == card["default_threshold"]
    chips = lfw_chips(4, 2)
    vecs = emb.embed(chips)
    assert vecs.shape == (len(chips), 128) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    a, b = sorted((LFW / "Andy_Roddick").glob("*.jpg"))[:2]
    res = runner.invoke(app, ["verify", str(a), str(b), "--embedder", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["threshold"] == pytest.approx(card["default_threshold"])


def test_train_replaces_a_model_atomically_and_keeps_it_when_export_fails(
    tmp_path: Path, dat: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import faceprint.training.export as export

    out = tmp_path / "model"
    net = read_network(dat)
    model = DlibResNet(net)
    chips = np.stack(lfw_chips(24, 20))
    labels = np.arange(len(chips)) // 2  # pairs of "people": enough for a threshold
    kwargs = dict(
        net=net, model=model, name="m", fit_chips=chips, fit_labels=labels, fit_source="test", card={}
    )
    monkeypatch.setattr(export, "MIN_FIT_SCORES", 10)
    monkeypatch.setattr("faceprint.gallery.scoring.MIN_FIT_SCORES", 10)
    first = write_model_dir(out, **kwargs)  # type: ignore[arg-type]
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full_disk(path: Path, data: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "_write_json", full_disk)
    with pytest.raises(Exception, match=r"No space left on device.*previous model there is intact"):
        write_model_dir(out, **kwargs)  # type: ignore[arg-type]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary directory left
    assert first["files"]["model.onnx"] == ModelDirEmbedder(str(out)).weights_sha256


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"Aaron_Peirsol": 4}, "only one person"),
        ({"Aaron_Peirsol": 1, "Adam_Sandler": 1, "Alec_Baldwin": 1}, "at least 2 such people"),
    ],
)
def test_folders_the_loss_cannot_use_are_one_clear_error(
    tmp_path: Path, layout: dict[str, int], message: str
) -> None:
    src = tmp_path / "people"
    for name, n in layout.items():
        people_dir(src, (name,), n)
    res = runner.invoke(app, train_args(src, tmp_path / "out"))
    assert res.exit_code == 1
    assert message in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_bad_options_are_usage_errors(tmp_path: Path) -> None:
    src = people_dir(tmp_path / "people", PEOPLE[:3], 2)
    (tmp_path / "a-file").write_text("x")
    cases = [
        (["--augment", "flip,blurry"], 2, "unknown augmentation"),
        (["--loss", "contrastive"], 2, "--loss must be one of"),
        (["--tune", "512"], 2, "--tune must be one of"),
        (["--lr", "-1"], 2, "--lr must be > 0"),
        (["--device", "cuda"], 1, "no CUDA GPU"),
        (["--base", "mtcnn"], 2, "--base must be one of"),
    ]
    if torch.cuda.is_available():
        cases = [c for c in cases if c[0][0] != "--device"]
    for extra, code, message in cases:
        res = runner.invoke(app, train_args(src, tmp_path / "out", *extra))
        assert res.exit_code == code, (extra, res.output)
        assert message in res.stderr, (extra, res.stderr)
    res = runner.invoke(app, train_args(src, tmp_path / "a-file"))
    assert res.exit_code == 2 and "found a file" in res.stderr
    res = runner.invoke(app, train_args(tmp_path / "nowhere", tmp_path / "out"))
    assert res.exit_code == 1 and "is not a directory" in res.stderr
    stranger = tmp_path / "not-a-model"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    res = runner.invoke(app, train_args(src, stranger))
    assert res.exit_code == 1 and "holds no model card" in res.stderr
    assert (stranger / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_ctrl_c_keeps_the_checkpoint_and_resume_finishes(tmp_path: Path) -> None:
    src = people_dir(tmp_path / "people", per_person=6)
    out = tmp_path / "model"
    args = ["train", "--dir", str(src), "--out", str(out), "--face", "central", "--epochs", "3",
            "-P", "3", "-K", "2", "--val-fraction", "0.3", "--patience", "3"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-c", "from faceprint.cli.main import run; run()", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if line.startswith("epoch 1;"):
            proc.send_signal(signal.SIGINT)
            break
        assert line or proc.poll() is None, "".join(lines)
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, "".join(lines) + rest
    assert "--resume" in rest and "Traceback" not in rest
    ckpt = tmp_path / "model.checkpoint" / "last.pt"
    assert ckpt.is_file() and not out.exists()
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "epoch 1;" not in done.stderr  # resumed after the finished epoch
    card = json.loads((out / "card.json").read_text())
    assert [h["epoch"] for h in card["training"]["validation_curve"]][:2] == [0, 1]
    assert card["training"]["epochs_run"] >= 2
    ModelDirEmbedder(str(out))
