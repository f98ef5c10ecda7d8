import os
from pathlib import Path

from faceprint.config import DEFAULT_MAX_PIXELS, Settings


def test_settings_from_env() -> None:
    env = {
        "FACEPRINT_HOME": "/tmp/fp-home",
        "FACEPRINT_MODELS": os.pathsep.join(["/a", "/b"]),
        "FACEPRINT_OFFLINE": "1",
        "FACEPRINT_MAX_PIXELS": "123",
        "FACEPRINT_DETECTOR": "hog",
    }
    s = Settings.from_env(env)
    assert s.home == Path("/tmp/fp-home") and s.cache_dir == Path("/tmp/fp-home/models")
    assert s.model_dirs == (Path("/a"), Path("/b"))
    assert s.offline and s.max_pixels == 123 and s.detector == "hog"


def test_settings_defaults() -> None:
    s = Settings.from_env({})
    assert not s.offline and s.max_pixels == DEFAULT_MAX_PIXELS and s.model_dirs == ()
    assert s.detector is None and s.cache_dir == s.home / "models"
    assert Settings.from_env({"FACEPRINT_OFFLINE": "no"}).offline is False


def test_test_sleep_before_commit_is_off_unless_set() -> None:
    assert Settings.from_env({}).test_sleep_before_commit == 0.0
    assert Settings.from_env({"FACEPRINT_TEST_SLEEP_BEFORE_COMMIT": "2.5"}).test_sleep_before_commit == 2.5
    for bad in ("soon", "-3"):
        assert Settings.from_env({"FACEPRINT_TEST_SLEEP_BEFORE_COMMIT": bad}).test_sleep_before_commit == 0.0
