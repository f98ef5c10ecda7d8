"""The CLI on real models where a new user trips: a bad image among good ones, Ctrl-C
during an enrolment, --draw labels, a corrupt video, SCRFD's licence warning."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import GALLERY, GROUP, LFW, MODELS, need

KNN = GALLERY / "face_recognition_knn"
CLI = [sys.executable, "-m", "faceprint.cli.main"]


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trust") / "g.sqlite"
    res = run_cli("enroll", "obama", str(need(KNN / "train/obama/obama.jpg")), "--gallery", str(path))
    assert res.returncode == 0, res.stderr
    return path


def test_identify_reports_a_bad_image_and_keeps_the_good_results(gallery: Path, tmp_path: Path) -> None:
    bad = tmp_path / "text.jpg"
    bad.write_text("not an image")
    good = str(KNN / "test/obama1.jpg")
    res = run_cli("identify", good, str(bad), good, "--gallery", str(gallery))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert [ln for ln in res.stderr.splitlines() if ln.startswith("error:")] == [
        f"error: {bad}: not a recognised image format"
    ]
    assert res.stdout.count(f"{good}: 1 face(s)") == 2 and "#0 obama" in res.stdout
    res = run_cli("identify", good, str(bad), "--gallery", str(gallery), "--json")
    assert res.returncode == 1
    data = json.loads(res.stdout)
    assert [im["image"] for im in data["images"]] == [good, str(bad)]
    assert data["images"][0]["faces"][0]["label"] == "obama"
    assert "not a recognised image" in data["images"][1]["error"]
    assert data["operating_point"]["people"] == 1


def test_draw_labels_each_face_with_the_index_enroll_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faceprint import draw
    from faceprint.cli.main import app

    seen: list[list[str] | None] = []
    real = draw.draw_faces

    def spy(image: np.ndarray, faces: list[object], labels: list[str] | None = None) -> np.ndarray:
        seen.append(labels)
        return real(image, faces, labels)  # type: ignore[arg-type]

    monkeypatch.setattr(draw, "draw_faces", spy)
    img = need(GROUP / "face_recognition_two_people.jpg")
    res = CliRunner().invoke(app, ["detect", str(img), "--draw", str(tmp_path / "out"), "--json"])
    assert res.exit_code == 0, res.output
    faces = json.loads(res.stdout)["images"][0]["faces"]
    assert seen == [[f"#{i} {f['score']:.2f}" for i, f in enumerate(faces)]] and len(faces) == 2
    assert (tmp_path / "out" / f"{img.stem}.jpg").is_file()


def _people(path: Path) -> list[str]:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as conn:
            return [r[0] for r in conn.execute("SELECT name FROM people ORDER BY name")]
    except sqlite3.Error:
        return []


def test_ctrl_c_during_enrolment_says_who_is_in_and_keeps_the_gallery(tmp_path: Path) -> None:
    lfw = need(LFW / "pairsDevTest.txt").parent
    root = tmp_path / "people"
    root.mkdir()
    for d in sorted(p for p in lfw.iterdir() if p.is_dir())[:300]:
        (root / d.name).symlink_to(d)
    gallery = tmp_path / "g.sqlite"
    # Each person's commit waits 1 s inside its transaction (the test hook), so the Ctrl-C
    # nearly always lands inside one: that person must be rolled back, the others kept.
    proc = subprocess.Popen(
        [*CLI, "enroll", "--from-dir", str(root), "--face", "largest", "--gallery", str(gallery)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "FACEPRINT_TEST_SLEEP_BEFORE_COMMIT": "1"},
    )
    deadline = time.monotonic() + 240
    while not _people(gallery) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "enrolment ended before it could be interrupted"
    time.sleep(0.5)  # into the next person's 1 s wait before COMMIT
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip() and "test hook:" not in ln]
    assert len(lines) == 1 and lines[0].startswith("interrupted: "), stderr
    n = int(lines[0].split()[1])
    assert lines[0] == f"interrupted: {n} people enrolled, the rest not"
    people = _people(gallery)
    assert n >= 1 and len(people) == n and set(people) <= set(os.listdir(root))
    with sqlite3.connect(gallery) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    listed = run_cli("gallery", "list", "--gallery", str(gallery))
    assert listed.returncode == 0 and f"{n} people" in listed.stderr


def test_a_corrupt_video_gives_our_line_not_ffmpegs(tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8).tobytes())
    res = run_cli("watch", str(bad), "--no-gallery")
    assert res.returncode == 1, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}"), res.stderr  # no "moov atom"


def test_scrfd_licence_warning_once_per_evaluation_run(tmp_path: Path) -> None:
    need(MODELS / "scrfd_500m_bnkps.onnx")
    lfw = need(LFW / "pairsDevTest.txt").parent
    root = tmp_path / "faces"
    root.mkdir()
    people = [d for d in sorted(lfw.iterdir()) if d.is_dir() and len(list(d.glob("*.jpg"))) >= 6][:5]
    for d in people:
        (root / d.name).symlink_to(d)
    res = run_cli("eval", "pairs", "--dir", str(root), "-d", "scrfd", "--workers", "2", "--per-class", "60")
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("non-commercial research") == 1, res.stderr


def test_a_refused_enrolment_image_is_named_once(tmp_path: Path) -> None:
    folder = tmp_path / "not-a-photo"
    folder.mkdir()
    res = run_cli("enroll", "ann", str(folder), "--gallery", str(tmp_path / "g.sqlite"))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert f"refused: {folder}: cannot read (Is a directory)" in res.stderr.splitlines(), res.stderr


@pytest.mark.parametrize("delay", [3.0, 10.0])  # workers starting; workers embedding
def test_ctrl_c_stops_an_evaluation_without_tracebacks(tmp_path: Path, delay: float) -> None:
    """Ctrl-C reaches the whole process group (the workers too): exit 130 at once, no
    traceback from workers caught mid-import or mid-image, no worker left behind."""
    lfw = need(LFW / "pairsDevTest.txt").parent
    # Every LFW dev person and as many pairs as they give: about a minute of embedding here,
    # so both delays land inside the run (60 people ended in under 10 s on an idle machine).
    proc = subprocess.Popen(
        [*CLI, "eval", "pairs", "--dir", str(lfw), "--per-class", "3000", "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    time.sleep(delay)
    assert proc.poll() is None, "the evaluation ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
