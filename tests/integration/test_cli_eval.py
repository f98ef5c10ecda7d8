"""CLI commands on real data: detect (--json, --draw), verify, eval lfw."""

import json
import subprocess
import sys
from pathlib import Path

from conftest import GROUP, need


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faceprint.cli.main", *args], capture_output=True, text=True, timeout=600
    )


def test_detect_json_and_draw(tmp_path: Path) -> None:
    img = need(GROUP / "face_recognition_two_people.jpg")
    res = run_cli("detect", str(img), "--json", "--draw", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["detector"] == "yunet"
    assert len(data["images"][0]["faces"]) == 2
    assert (tmp_path / "out" / "face_recognition_two_people.jpg").is_file()


def test_verify_prints_similarity_threshold_and_verdict(knn: Path) -> None:
    res = run_cli("verify", str(knn / "train/biden/biden.jpg"), str(knn / "train/biden/biden2.jpg"))
    assert res.returncode == 0, res.stderr
    assert "same person" in res.stdout and "threshold" in res.stdout and "detector yunet" in res.stdout
    res = run_cli("verify", str(knn / "train/biden/biden.jpg"), str(knn / "train/obama/obama.jpg"), "--json")
    d = json.loads(res.stdout)
    assert d["same"] is False and d["embedder"] == "dlib-onnx" and d["similarity"] < d["threshold"]


def test_eval_lfw_on_a_slice(lfw: Path, tmp_path: Path) -> None:
    """A 120-pair slice of pairsDevTest, cross-validated: the full run is in bench/."""
    lines = (lfw / "pairsDevTest.txt").read_text().splitlines()
    n = int(lines[0])
    same, diff = lines[1 : 1 + 60], lines[1 + n : 1 + n + 60]
    pairs = tmp_path / "slice.txt"
    pairs.write_text("60\n" + "\n".join(same + diff) + "\n")
    out = tmp_path / "report.json"
    res = run_cli("eval", "lfw", "--root", str(lfw), "--pairs", str(pairs), "--json", str(out))
    assert res.returncode == 0, res.stderr
    rep = json.loads(out.read_text())
    for key in ("accuracy_mean", "accuracy_std", "threshold", "pairs", "images", "no_face_images", "seconds"):
        assert key in rep
    assert rep["pairs"] == 120 and rep["protocol"] == "cv"
    assert rep["detector"] == "yunet" and rep["embedder"] == "dlib-onnx"
    assert rep["accuracy_mean"] >= 0.93
    assert "accuracy" in res.stdout
