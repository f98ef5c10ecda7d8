"""What `pip install faceprint` puts on a machine: the wheel's contents."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_wheel_ships_yunet_and_its_licence(tmp_path: Path) -> None:
    """The default detector's model is package data, so the first README command needs
    no FACEPRINT_MODELS; its MIT licence travels with it."""
    src = tmp_path / "src-copy"  # build from a copy: no build/ or egg-info in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path / "wheel"
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", str(src), "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    (wheel,) = out.glob("faceprint-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        onnx = z.read("faceprint/models_data/face_detection_yunet_2023mar.onnx")
        licence = z.read("faceprint/models_data/LICENSE-yunet").decode()
    assert "faceprint/models_data/README.md" in names
    import hashlib

    from faceprint.models import CATALOG

    assert hashlib.sha256(onnx).hexdigest() == CATALOG["yunet"].files[0].sha256
    assert "MIT License" in licence and "Shiqi Yu" in licence
