"""Evaluation runs that cannot start end at once with one line; they never hang.

A bad component name, given on the command line or in the environment, and a worker
process that cannot build its pipeline (a broken model file) used to leave
multiprocessing's pool respawning failing workers forever. Each command runs under a
timeout: a hang fails the test instead of blocking the suite. No model weights needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faceprint.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


@pytest.fixture
def faces_dir(tmp_path: Path) -> Path:
    """Two 'people' of ten distinct images each, named as in LFW: enough for the worker pool."""
    rng = np.random.default_rng(0)
    for person in ("ann", "bob"):
        (tmp_path / "faces" / person).mkdir(parents=True)
        for i in range(10):
            pixels = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "faces" / person / f"{person}_{i + 1:04d}.jpg")
    return tmp_path / "faces"


def commands(faces: Path, tmp: Path) -> list[list[str]]:
    pairs = tmp / "pairs.txt"
    same = [f"{p} {i} {i + 1}" for p in ("ann", "bob") for i in range(1, 10, 2)]
    different = [f"ann {i} bob {i}" for i in range(1, 11)]
    pairs.write_text("\n".join(["10", *same, *different]) + "\n")  # all 20 images
    return [
        ["eval", "lfw", "--root", str(faces), "--pairs", str(pairs)],
        ["eval", "pairs", "--dir", str(faces)],
        ["eval", "identification", "--dir", str(faces)],
        ["calibrate", "--far", "0.01", "--dir", str(faces)],
    ]


def one_line(res: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert res.returncode == code, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_bad_names_end_every_evaluation_at_once(faces_dir: Path, tmp_path: Path) -> None:
    for cmd in commands(faces_dir, tmp_path):
        one_line(run_cli(*cmd, "--embedder", "nosuch", "--workers", "2"), 2, "unknown embedder 'nosuch'")
    # The same names from the environment bypass the option check: the pipeline checks them.
    for cmd in commands(faces_dir, tmp_path)[1:2]:
        for key, kind in (("FACEPRINT_EMBEDDER", "embedder"), ("FACEPRINT_DETECTOR", "detector")):
            res = run_cli(*cmd, "--workers", "2", env={key: "nosuch"})
            one_line(res, 2, f"unknown {kind} 'nosuch'")


def test_a_worker_that_cannot_start_ends_the_run(faces_dir: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "face_detection_yunet_2023mar.onnx").write_bytes(b"not an onnx model")
    for cmd in commands(faces_dir, tmp_path):
        res = run_cli(*cmd, "-d", "yunet", "--workers", "2", env={"FACEPRINT_MODELS": str(models)})
        one_line(res, 1, "face_detection_yunet_2023mar.onnx")


def test_the_pipeline_spec_checks_names_without_loading_models() -> None:
    from faceprint.errors import UnknownComponentError
    from faceprint.evaluation.embedset import PipelineSpec

    with pytest.raises(UnknownComponentError, match="hog, mtcnn, scrfd, yunet"):
        PipelineSpec("retina")
    with pytest.raises(UnknownComponentError, match="dlib, dlib-onnx"):
        PipelineSpec("hog", "facenet")


def test_embed_images_rejects_a_bad_worker_count(tmp_path: Path) -> None:
    from faceprint.errors import InvalidArgumentError
    from faceprint.evaluation.embedset import PipelineSpec, embed_images

    for bad in (0, -1):
        with pytest.raises(InvalidArgumentError, match="workers"):
            embed_images(PipelineSpec("hog"), [tmp_path / "x.jpg"], workers=bad)
