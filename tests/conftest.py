"""Test fixtures. Real data and models come from ../shared (or FACEPRINT_SHARED);
a test whose data is missing is skipped with the reason, never passed silently."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEPRINT_SHARED") or REPO.parent / "shared").resolve()
MODELS = SHARED / "models"
LFW = SHARED / "data" / "lfw-dev"
GALLERY = SHARED / "data" / "gallery-small"
GROUP = SHARED / "data" / "group"


def need(path: Path) -> Path:
    """``path``, or skip the test saying which shared file is missing."""
    if not path.exists():
        pytest.skip(f"shared test data missing: {path} (set FACEPRINT_SHARED)")
    return path


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test downloads anything or touches the user's cache."""
    home = tmp_path_factory.mktemp("fphome")
    monkeypatch.setenv("FACEPRINT_HOME", str(home))
    monkeypatch.setenv("FACEPRINT_OFFLINE", "1")
    monkeypatch.delenv("FACEPRINT_CACHE", raising=False)
    monkeypatch.delenv("FACEPRINT_DETECTOR", raising=False)
    monkeypatch.delenv("FACEPRINT_EMBEDDER", raising=False)
    if MODELS.is_dir():
        monkeypatch.setenv("FACEPRINT_MODELS", str(MODELS))
    else:
        monkeypatch.delenv("FACEPRINT_MODELS", raising=False)


@pytest.fixture
def lfw() -> Path:
    return need(LFW / "pairsDevTest.txt").parent


@pytest.fixture
def yunet_model() -> Path:
    return need(MODELS / "face_detection_yunet_2023mar.onnx")


@pytest.fixture
def knn() -> Path:
    return need(GALLERY / "face_recognition_knn")


@pytest.fixture
def group() -> Path:
    return need(GROUP / "solvay_conference_1927.png").parent
