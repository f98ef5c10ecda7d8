"""Bad command lines, as a new user types them: one ``error:`` line on stderr, exit 2 for a
usage error and 1 for any other error, never a traceback. No model weights needed: each
case fails before a model would load."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceprint.cli.main import app


def invoke(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, list(args))
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception  # a traceback the user would see
    return res.exit_code, res.stdout, res.stderr


def one_line(code: int, stderr: str, expected_code: int, *needles: str) -> str:
    assert code == expected_code, stderr
    assert "Traceback" not in stderr and "╭" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """Any readable image: these commands must fail before they look at it."""
    from PIL import Image

    p = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), (90, 120, 150)).save(p)
    return p


@pytest.fixture
def existing(tmp_path: Path) -> Path:
    """An existing gallery path (only its existence matters to the checks here)."""
    p = tmp_path / "g.sqlite"
    p.write_bytes(b"")
    return p


def usage_cases(photo: Path, existing: Path, tmp_path: Path) -> list[tuple[list[str], str]]:
    img, g = str(photo), str(existing)
    return [
        (["detect", img, "--detector", "retina"], "unknown detector 'retina'"),
        (["verify", img, img, "--embedder", "nosuch"], "unknown embedder 'nosuch'"),
        (["identify", img, "-g", g, "-d", "retina"], "hog, mtcnn, scrfd, yunet"),
        (["eval", "lfw", "--root", ".", "--pairs", "p.txt", "--embedder", "nosuch"], "dlib, dlib-onnx"),
        (["watch", "0", "--no-gallery", "-d", "nosuch"], "unknown detector"),
        (["enroll", "ann", img, "--face", "foo"], "'foo'"),
        (["enroll", "ann", img, "--face", "-1"], "face index"),
        (["eval", "pairs", "--dir", ".", "--face", "foo"], "'largest' or 'central'"),
        (["identify", img, "-g", g, "--top-k", "0"], "--top-k"),
        (["lookalike", img, "-g", g, "--top-k", "0"], "--top-k"),
        (["lookalike", img, "-g", g, "--top-k", "-1"], "--top-k"),
        (["calibrate", "--far", "5", "--dir", "."], "between 0 and 1"),
        (["calibrate", "--far", "0", "--dir", "."], "between 0 and 1"),
        (["eval", "identification", "--dir", ".", "--far", "1.5"], "between 0 and 1"),
        (["gallery", "threshold", "--far", "nan", "-g", g], "between 0 and 1"),
        (["watch", "0", "--no-gallery", "--max-fps", "-1"], "above 0"),
        (["watch", "0", "--no-gallery", "--max-fps", "nan"], "above 0"),
        (["watch", "0", "--no-gallery", "--threshold", "nan"], "[-1, 1]"),
        (["verify", img, img, "--threshold", "2"], "[-1, 1], got 2.0"),
        (["verify", img, img, "--threshold", "nan"], "got nan"),
        (["verify", img, img, "--threshold", "inf"], "got inf"),
        (["identify", img, "-g", g, "--threshold", "-5"], "got -5.0"),
        (["eval", "identification", "--dir", ".", "--threshold", "nan"], "got nan"),
        (["gallery", "threshold", "1.5", "-g", g], "[-1, 1]"),
        (["eval", "pairs", "--dir", ".", "--workers", "-1"], "--workers"),
        (["eval", "pairs", "--dir", ".", "--per-class", "0"], "--per-class"),
        (["eval", "identification", "--dir", ".", "--gallery-per-person", "0"], "--gallery-per-person"),
        (["eval", "identification", "--dir", ".", "--unknown-fraction", "2"], "[0, 1)"),
        (["eval", "lfw", "--root", ".", "--pairs", "p.txt", "--workers", "0"], "--workers"),
        (["detect", img, "-d", "hog", "--upsample", "-1"], "--upsample"),
        (["detect", img, "-d", "hog", "--upsample", "40"], "--upsample"),
        (["enroll"], "expected NAME and at least one image"),
        (["enroll", "ann"], "expected NAME and at least one image"),
        (["verify", img], "Missing argument"),
        (["detect", img, "--bogus"], "No such option"),
        (["detect", img, "--draw", img], "expected a directory"),
        (["watch", "0", "--no-gallery", "--events", str(tmp_path)], "found a directory"),
        (["watch", "0", "--no-gallery", "--out", str(tmp_path)], "found a directory"),
    ]


def test_usage_errors_are_one_line_and_exit_2(photo: Path, existing: Path, tmp_path: Path) -> None:
    for args, needle in usage_cases(photo, existing, tmp_path):
        code, _, stderr = invoke(*args)
        try:
            one_line(code, stderr, 2, needle)
        except AssertionError as exc:
            raise AssertionError(f"faceprint {' '.join(args)}: {exc}") from None


def test_errors_that_are_not_usage_errors_are_one_line_and_exit_1(photo: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cases = [
        (["detect", str(photo), "--draw", "/proc/nope"], "cannot create the directory /proc/nope"),
        (["detect", str(photo), "--draw", str(blocker / "sub")], "cannot create the directory"),
        (["watch", "0", "--no-gallery", "--out", str(blocker / "x.mp4")], "cannot create the directory"),
        (["watch", "0", "--no-gallery", "--events", str(blocker / "e.jsonl")], "cannot create the directory"),
    ]
    for args, needle in cases:
        code, _, stderr = invoke(*args)
        one_line(code, stderr, 1, needle)


@pytest.mark.parametrize(
    "args",
    [
        ["identify", "{img}"],
        ["lookalike", "{img}"],
        ["watch", "0"],
        ["gallery", "list"],
        ["gallery", "show", "ann"],
        ["gallery", "rename", "ann", "bob"],
        ["gallery", "remove", "ann"],
        ["gallery", "export", "{out}"],
        ["gallery", "threshold"],
        ["calibrate", "--far", "0.01", "--dir", "."],
    ],
)
def test_a_mistyped_gallery_is_an_error_not_an_empty_gallery(
    args: list[str], photo: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "galery.sqlite"  # the typo
    filled = [a.format(img=photo, out=tmp_path / "x.jsonl") for a in args]
    code, stdout, stderr = invoke(*filled, "--gallery", str(missing))
    one_line(code, stderr, 1, f"no gallery at {missing}", "enrol someone first or check the path")
    assert stdout == "" and not missing.exists()


def test_the_default_gallery_is_checked_too(photo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from faceprint.gallery import default_location

    assert not Path(default_location()).exists()  # conftest gives each test a fresh home
    code, _, stderr = invoke("identify", str(photo))
    one_line(code, stderr, 1, f"no gallery at {default_location()}")


def test_a_postgres_url_is_not_checked_on_the_filesystem() -> None:
    from faceprint.cli.common import existing_gallery

    url = "postgresql://user@127.0.0.1:1/none"
    assert existing_gallery(url) == url


def test_version() -> None:
    import faceprint

    code, stdout, _ = invoke("--version")
    assert code == 0 and stdout.strip() == f"faceprint {faceprint.__version__}"


def test_help_lists_every_detector_and_the_true_default_embedder() -> None:
    from faceprint.recognizer import DEFAULT_EMBEDDER
    from faceprint.registry import detectors, embedders

    commands = [
        ["detect"], ["verify"], ["enroll"], ["identify"], ["lookalike"], ["watch"], ["calibrate"],
        ["eval", "lfw"], ["eval", "pairs"], ["eval", "identification"],
    ]  # fmt: skip
    for cmd in commands:
        code, stdout, _ = invoke(*cmd, "--help")
        assert code == 0, cmd
        text = " ".join(stdout.replace("│", " ").split())
        for name in detectors.names():
            assert name in text, (cmd, name)
        if "--embedder" in text:
            for name in embedders.names():
                assert name in text, (cmd, name)
            assert f"else {DEFAULT_EMBEDDER})" in text, (cmd, text)
        assert "default: dlib)" not in text and "hog or yunet" not in text


def test_upsample_bound_is_the_detectors() -> None:
    from faceprint.cli.main import MAX_UPSAMPLE
    from faceprint.detection.hog import HogDetector
    from faceprint.errors import InvalidArgumentError

    assert MAX_UPSAMPLE == HogDetector.MAX_UPSAMPLE
    for bad in (-1, HogDetector.MAX_UPSAMPLE + 1, 1.5):
        with pytest.raises(InvalidArgumentError, match="upsample"):
            HogDetector(upsample=bad)  # type: ignore[arg-type]


def test_invalid_argument_error_is_both_a_faceprint_and_a_value_error() -> None:
    from faceprint.errors import FaceprintError, InvalidArgumentError
    from faceprint.gallery.scoring import open_set_threshold

    assert issubclass(InvalidArgumentError, FaceprintError) and issubclass(InvalidArgumentError, ValueError)
    with pytest.raises(InvalidArgumentError):
        open_set_threshold("dlib-onnx@resnet_v1", 3, far=math.nan)


def test_models_verify_handles_a_built_model(tmp_path: Path) -> None:
    """dlib-onnx is built locally: a path and no published file list (was a zip() crash)."""
    from faceprint.config import get_settings
    from faceprint.models import CATALOG

    built = get_settings().cache_dir / str(CATALOG["dlib-onnx"].built_file)
    _, stdout, stderr = invoke("models", "verify")
    assert "Traceback" not in stderr and "dlib-onnx: not built" in stdout, stderr
    built.parent.mkdir(parents=True, exist_ok=True)
    built.write_bytes(b"onnx")
    _, stdout, stderr = invoke("models", "verify")
    assert f"dlib-onnx: {built} built locally" in stdout, (stdout, stderr)


def test_native_log_levels_are_set_for_opencv_and_ffmpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from faceprint.cli.common import NATIVE_LOG_LEVELS, quiet_native_logs

    for key in NATIVE_LOG_LEVELS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OPENCV_LOG_LEVEL", "DEBUG")  # a user debugging keeps their level
    quiet_native_logs()
    assert os.environ["OPENCV_LOG_LEVEL"] == "DEBUG"
    assert os.environ["OPENCV_FFMPEG_LOGLEVEL"] == "-8"


def test_enrol_from_a_folder_one_level_too_high_enrols_nothing(photo: Path, tmp_path: Path) -> None:
    """DIR/train/<name>/*.jpg given as DIR: 'test' (photos of several people) must not
    become a person, and 'train' is no person either."""
    import shutil

    from faceprint.errors import GalleryError
    from faceprint.gallery.enrolment import plan_dir

    top = tmp_path / "knn"
    for where in ("train/ann", "train/bob", "test"):
        (top / where).mkdir(parents=True)
    shutil.copy(photo, top / "train/ann/a.png")
    shutil.copy(photo, top / "train/bob/b.png")
    shutil.copy(photo, top / "test/group.png")
    with pytest.raises(GalleryError, match="one level too high"):
        plan_dir(top)
    assert [n for n, _ in plan_dir(top / "train")] == ["ann", "bob"]
    gallery = tmp_path / "g.sqlite"
    code, stdout, stderr = invoke("enroll", "--from-dir", str(top), "--gallery", str(gallery))
    line = one_line(code, stderr, 1, "one level too high", "train/", f"--from-dir {top / 'train'}")
    assert "nothing enrolled" in line and stdout == ""
    if gallery.exists():
        from faceprint.gallery import open_gallery

        with open_gallery(gallery) as g:
            assert g.people() == []
