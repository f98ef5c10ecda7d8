"""``faceprint enroll | identify | lookalike | gallery ...`` through ``python -m``:
results on stdout, JSON shapes, one-line errors with exit code 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GROUP, need

from .conftest import KNN


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faceprint.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def one_error(res: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gallery with the knn train folder enrolled through the CLI."""
    need(KNN)
    path = tmp_path_factory.mktemp("cli") / "g.sqlite"
    res = run_cli("enroll", "--from-dir", str(KNN / "train"), "--gallery", str(path), "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["gallery"] == str(path)
    assert {r["person"]: len(r["added"]) for r in data["reports"]} == {
        "alex_lacamoire": 1, "biden": 2, "kit_harington": 2, "obama": 2, "rose_leslie": 2,
    }  # fmt: skip
    return path


def test_identify_table_and_json(enrolled: Path) -> None:
    test = KNN / "test"
    res = run_cli(
        "identify", str(test / "obama1.jpg"), str(test / "obama_and_biden.jpg"), "--gallery", str(enrolled)
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("threshold ")
    assert "#0 obama" in res.stdout
    res = run_cli(
        "identify", str(test / "johnsnow_test1.jpg"), "--gallery", str(enrolled), "--json", "--top-k", "3"
    )
    d = json.loads(res.stdout)
    assert set(d) == {"gallery", "operating_point", "images"}
    assert set(d["operating_point"]) == {"threshold", "source", "model", "people", "far", "note"}
    face = d["images"][0]["faces"][0]
    assert face["label"] == "kit_harington" and len(face["matches"]) == 3
    assert set(face["matches"][0]) == {"identity", "similarity", "face_id"}
    assert set(face["face"]["box"]) == {"x1", "y1", "x2", "y2"} and "embedding" not in face["face"]
    res = run_cli(
        "identify", str(test / "obama1.jpg"), "--gallery", str(enrolled), "--threshold", "0.9999", "--json"
    )
    d = json.loads(res.stdout)
    assert d["images"][0]["faces"][0]["label"] == "unknown" and d["operating_point"]["source"] == "argument"


def test_lookalike(enrolled: Path) -> None:
    res = run_cli(
        "lookalike", str(KNN / "test" / "obama1.jpg"), "--gallery", str(enrolled), "--json", "--top-k", "3"
    )
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    names = [m["identity"] for m in d["matches"]]
    assert names[0] == "obama" and len(set(names)) == 3
    res = run_cli("lookalike", str(KNN / "test" / "obama1.jpg"), "--gallery", str(enrolled))
    assert res.stdout.splitlines()[1].strip().startswith("1. obama")


def test_gallery_management_commands(enrolled: Path, tmp_path: Path) -> None:
    g = ["--gallery", str(enrolled)]
    res = run_cli("gallery", "list", *g, "--json")
    d = json.loads(res.stdout)
    assert d["model"] == "dlib@resnet_v1+55533b28"
    assert [p["name"] for p in d["people"]] == [
        "alex_lacamoire",
        "biden",
        "kit_harington",
        "obama",
        "rose_leslie",
    ]
    res = run_cli("gallery", "show", "obama", *g, "--json")
    d = json.loads(res.stdout)
    assert d["faces"] == 2 and len(d["face_records"]) == 2 and len(d["face_records"][0]["image_sha256"]) == 64
    out = tmp_path / "export.jsonl"
    assert run_cli("gallery", "export", str(out), *g).returncode == 0
    copy = tmp_path / "copy.sqlite"
    res = run_cli("gallery", "import", str(out), "--gallery", str(copy))
    assert res.returncode == 0 and "imported 9 face(s)" in res.stdout
    c = ["--gallery", str(copy)]
    assert run_cli("gallery", "rename", "obama", "Barack Obama", *c).returncode == 0
    res = run_cli("gallery", "remove", "biden", *c)
    assert res.returncode == 0 and "2 face(s)" in res.stdout
    names = [p["name"] for p in json.loads(run_cli("gallery", "list", *c, "--json").stdout)["people"]]
    assert names == ["Barack Obama", "alex_lacamoire", "kit_harington", "rose_leslie"]
    res = run_cli("gallery", "threshold", "0.5", *c, "--json")
    assert json.loads(res.stdout)["source"] == "gallery" and json.loads(res.stdout)["threshold"] == 0.5
    res = run_cli("gallery", "threshold", "--clear", "--far", "0.05", *c, "--json")
    assert json.loads(res.stdout)["source"] != "gallery"
    one_error(run_cli("gallery", "remove", "nobody", *c), "nobody", "no such person")
    one_error(run_cli("gallery", "rename", "nobody", "x", *c), "no such person")
    one_error(run_cli("gallery", "show", "nobody", *c), "nobody")


def test_enroll_refusals_duplicates_and_errors(tmp_path: Path, enrolled: Path) -> None:
    gal = ["--gallery", str(tmp_path / "g.sqlite")]
    group = str(KNN / "test" / "obama_and_biden.jpg")
    good = str(KNN / "train" / "biden" / "biden.jpg")
    res = run_cli("enroll", "Joe", group, good, "--meta", "role=vp", *gal)
    assert res.returncode == 0, res.stderr
    assert "refused:" in res.stderr and "faces found" in res.stderr
    assert "Joe: 1 face(s) added, 0 already enrolled, 1 refused" in res.stdout
    res = run_cli("enroll", "Joe", good, *gal, "--json")
    assert json.loads(res.stdout)["reports"][0]["duplicates"][0]["image"] == good
    res = run_cli("enroll", "Group", group, "--face", "largest", *gal)
    assert res.returncode == 0 and "1 face(s) added" in res.stdout
    one_error(run_cli("enroll", "Nobody", group, *gal), "nothing enrolled")
    for args, needle in (((good, "--face", "biggest"), "--face"), ((), "expected NAME")):
        res = run_cli("enroll", "X", *args, *gal)  # usage errors: exit 2, one line
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        (line,) = res.stderr.strip().splitlines()
        assert line.startswith("error:") and needle in line, line
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not sqlite at all")
    one_error(run_cli("gallery", "list", "--gallery", str(garbage)), "expected an SQLite database")
    one_error(run_cli("identify", good, "--gallery", str(garbage)), "expected an SQLite database")
    # FACEPRINT_GALLERY selects the gallery when --gallery is absent
    res = run_cli("gallery", "list", "--json", env={"FACEPRINT_GALLERY": str(enrolled)})
    assert len(json.loads(res.stdout)["people"]) == 5


def test_tiny_crowd_faces_are_unknown_with_a_reason_not_named(enrolled: Path, tmp_path: Path) -> None:
    """Issue 10: on the Oscars selfie (601 detections, most under 20 px) tiny faces were
    named as enrolled strangers. They keep their box, labelled ``unknown (too small)``."""
    photo = need(GROUP / "oscars_selfie.jpg")
    res = run_cli("identify", str(photo), "--gallery", str(enrolled), "--json")
    assert res.returncode == 0, res.stderr
    faces = json.loads(res.stdout)["images"][0]["faces"]
    small = [f for f in faces if min(f["face"]["box"]["x2"] - f["face"]["box"]["x1"],
                                     f["face"]["box"]["y2"] - f["face"]["box"]["y1"]) < 40]  # fmt: skip
    assert len(small) > 100  # nothing vanished: every detection is reported
    assert all(f["label"] == "unknown" and f["reason"] == "too small" and not f["matches"] for f in small)
    table = run_cli("identify", str(photo), "--gallery", str(enrolled))
    assert "unknown (too small)" in table.stdout
    # the gate is an option: 0 disables it, and then tiny faces are searched again
    off = run_cli("identify", str(photo), "--gallery", str(enrolled), "--json",
                  "--min-face-size", "0", "--min-quality", "0")  # fmt: skip
    assert not any("reason" in f for f in json.loads(off.stdout)["images"][0]["faces"])
    bad = run_cli("identify", str(photo), "--gallery", str(enrolled), "--min-quality", "2")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_enrolling_a_tiny_face_is_refused_naming_the_option(tmp_path: Path) -> None:
    from PIL import Image

    from faceprint.io import load_image

    photo = need(GROUP / "oscars_selfie.jpg")
    img = load_image(photo)
    crop = tmp_path / "tiny.png"  # the photo at 1/4 scale: its largest face is 38 px
    Image.fromarray(img).resize((img.shape[1] // 4, img.shape[0] // 4), Image.Resampling.BOX).save(crop)
    g = tmp_path / "g.sqlite"
    res = run_cli("enroll", "someone", str(crop), "--face", "largest", "--gallery", str(g))
    one_error(res, "nothing enrolled")
    assert "face too small" in res.stderr and "--min-face-size" in res.stderr
    ok = run_cli("enroll", "someone", str(crop), "--face", "largest", "--gallery", str(g),
                 "--min-face-size", "0", "--min-quality", "0")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
