"""Bad input on the command line: one line on stderr, exit code 1, never a traceback."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "faceprint.cli.main", *args],
        capture_output=True,
        text=True,
        env=e,
        timeout=120,
    )


def assert_clean_error(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    files["empty"] = tmp_path / "empty.jpg"
    files["empty"].write_bytes(b"")
    files["text"] = tmp_path / "text.jpg"
    files["text"].write_text("not an image")
    arr = np.random.default_rng(0).integers(0, 255, (120, 120, 3), dtype=np.uint8)
    good = tmp_path / "good.jpg"
    Image.fromarray(arr).save(good)
    data = good.read_bytes()
    files["truncated"] = tmp_path / "cut.jpg"
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["tiny"] = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(files["tiny"])
    files["noface"] = tmp_path / "noface.png"
    Image.new("RGB", (200, 200), (120, 160, 200)).save(files["noface"])
    return files


@pytest.mark.parametrize(
    "kind, needle",
    [
        ("missing", "no such file"),
        ("empty", "empty"),
        ("text", "not a recognised image"),
        ("truncated", "truncated"),
    ],
)
def test_verify_unreadable_inputs(bad_files: dict[str, Path], tmp_path: Path, kind: str, needle: str) -> None:
    path = tmp_path / "missing.jpg" if kind == "missing" else bad_files[kind]
    res = run_cli("verify", str(path), str(bad_files["noface"]), "--detector", "hog")
    assert_clean_error(res, needle)


@pytest.mark.parametrize("kind", ["tiny", "noface"])
def test_verify_without_a_face(bad_files: dict[str, Path], kind: str) -> None:
    res = run_cli("verify", str(bad_files[kind]), str(bad_files["noface"]), "--detector", "hog")
    assert_clean_error(res, "found none (detector hog); try another detector: mtcnn, scrfd, yunet")


def test_decompression_bomb_on_cli(tmp_path: Path) -> None:
    p = tmp_path / "big.png"
    Image.new("L", (3000, 3000)).save(p)
    res = run_cli("detect", str(p), "--detector", "hog", env={"FACEPRINT_MAX_PIXELS": "1000000"})
    assert_clean_error(res, "exceeds the cap")


def test_unknown_detector_lists_valid_ones(bad_files: dict[str, Path]) -> None:
    """A mistyped name is a usage error: exit 2, one line that lists the valid names."""
    res = run_cli("detect", str(bad_files["noface"]), "--detector", "retina")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("error:") and "hog" in line and "yunet" in line


def test_missing_model_says_how_to_get_it(bad_files: dict[str, Path], tmp_path: Path) -> None:
    res = run_cli(  # mtcnn: yunet ships inside the package and is never missing
        "detect",
        str(bad_files["noface"]),
        "--detector",
        "mtcnn",
        env={"FACEPRINT_MODELS": str(tmp_path / "none"), "FACEPRINT_OFFLINE": "1"},
    )
    assert_clean_error(res, "faceprint models download mtcnn")


def test_usage_error_is_exit_2() -> None:
    res = run_cli("verify", "only-one.jpg")
    assert res.returncode == 2
