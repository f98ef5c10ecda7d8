"""CI cannot pass by skipping: with ``FACEPRINT_REQUIRE_SHARED=1`` (``.ci/run`` sets it) a
test whose shared data is missing fails, saying which file; without it the test skips."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, missing_data, need


def test_need_skips_without_the_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FACEPRINT_REQUIRE_SHARED", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"nope\.onnx"):
        need(tmp_path / "nope.onnx")
    assert need(tmp_path) == tmp_path


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_need_fails_with_the_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str) -> None:
    monkeypatch.setenv("FACEPRINT_REQUIRE_SHARED", value)
    with pytest.raises(pytest.fail.Exception, match=r"nope\.onnx.*FACEPRINT_REQUIRE_SHARED"):
        need(tmp_path / "nope.onnx")
    with pytest.raises(pytest.fail.Exception, match="dlib model missing"):
        missing_data("dlib model missing")
    assert need(tmp_path) == tmp_path


def test_need_skips_when_the_flag_is_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACEPRINT_REQUIRE_SHARED", "0")
    with pytest.raises(pytest.skip.Exception):
        need(tmp_path / "nope.onnx")


def test_ci_run_fails_at_once_without_shared(tmp_path: Path) -> None:
    """Before installing anything: one clear line naming the directory and the fix. The
    script runs from a copy, so a regression can never start a real install or a nested
    test run (it would fail at once: no python to make a venv with)."""
    (tmp_path / ".ci").mkdir()
    script = tmp_path / ".ci" / "run"
    script.write_text((REPO / ".ci" / "run").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEPRINT_")}
    env["FACEPRINT_SHARED"] = str(tmp_path / "no-shared")
    env["PYTHON"] = str(tmp_path / "no-python")
    res = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert not (tmp_path / ".venv").exists(), "it went on to make a venv"
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.stderr
    assert str(tmp_path / "no-shared") in errors[0] and "FACEPRINT_SHARED" in errors[0]


def test_ci_run_requires_shared_data_in_the_tests() -> None:
    script = (REPO / ".ci" / "run").read_text()
    assert "export FACEPRINT_REQUIRE_SHARED=1" in script
    assert script.index("export FACEPRINT_REQUIRE_SHARED=1") < script.index("python -m pytest")
