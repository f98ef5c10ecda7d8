"""``faceprint models import``: the file comes out of an npm tarball checked, or not at all."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceprint import models
from faceprint.cli.main import app
from faceprint.errors import ModelUnavailableError
from faceprint.model_import import import_model

MEMBER = "package/model/weights.bin"
DATA = b"not really weights, but bytes with a known sha256\n" * 50


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> models.ModelSpec:
    """A catalogue entry like faceplugin's, for bytes these tests make."""
    spec = models.ModelSpec(
        name="npmthing",
        role="embedder",
        files=(
            models.ModelFile(
                "npm/thing.bin",
                hashlib.sha256(DATA).hexdigest(),
                npm=models.NpmSource("thing-js", "1.2.3", MEMBER),
            ),
        ),
        licence="not established: test",
        commercial_use=None,
        source="npm package thing-js@1.2.3",
    )
    monkeypatch.setitem(models.CATALOG, "npmthing", spec)
    return spec


def tarball(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


def test_the_member_is_extracted_checked_and_found_by_resolve(fake: models.ModelSpec, tmp_path: Path) -> None:
    tgz = tarball(tmp_path / "thing-js-1.2.3.tgz", {"package/package.json": b"{}", MEMBER: DATA})
    where = import_model("npmthing", tgz)
    assert where.read_bytes() == DATA
    assert models.resolve("npmthing", download=False) == where
    # only the one member was written: nothing else of the package lies beside it
    assert sorted(p.name for p in where.parent.iterdir()) == ["thing.bin"]


def test_the_bare_file_is_accepted_too(fake: models.ModelSpec, tmp_path: Path) -> None:
    f = tmp_path / "weights.bin"
    f.write_bytes(DATA)
    dest = tmp_path / "models"
    assert import_model("npmthing", f, dest) == dest / "npm" / "thing.bin"


@pytest.mark.parametrize(
    "members, links, message",
    [
        ({"package/x": b"1"}, None, f"has no {MEMBER}: expected the tarball of thing-js@1.2.3"),
        ({"../evil": b"x", MEMBER: DATA}, None, "member outside the package ('../evil')"),
        ({"/etc/evil": b"x", MEMBER: DATA}, None, "member outside the package ('/etc/evil')"),
        ({"package/../../evil": b"x", MEMBER: DATA}, None, "outside the package"),
        ({}, {MEMBER: "/etc/passwd"}, "is not a regular file"),
        ({MEMBER: DATA[:-1]}, None, f"has sha256 {hashlib.sha256(DATA[:-1]).hexdigest()}, expected"),
    ],
)
def test_bad_tarballs_are_refused_and_nothing_is_written(
    fake: models.ModelSpec,
    tmp_path: Path,
    members: dict[str, bytes],
    links: dict[str, str] | None,
    message: str,
) -> None:
    tgz = tarball(tmp_path / "t.tgz", members, links)
    dest = tmp_path / "dest"
    with pytest.raises(ModelUnavailableError, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_model("npmthing", tgz, dest)
    assert not dest.exists() and not (tmp_path / "evil").exists()


def test_a_wrong_file_names_both_hashes(fake: models.ModelSpec, tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"other")
    with pytest.raises(ModelUnavailableError) as err:
        import_model("npmthing", f, tmp_path / "d")
    assert hashlib.sha256(b"other").hexdigest() in str(err.value)
    assert fake.files[0].sha256 in str(err.value)


def test_a_truncated_tarball_is_one_clear_error(fake: models.ModelSpec, tmp_path: Path) -> None:
    tgz = tarball(tmp_path / "t.tgz", {MEMBER: DATA * 20})
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(tgz.read_bytes()[:200])
    with pytest.raises(ModelUnavailableError):
        import_model("npmthing", cut, tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_cli_usage_and_errors(fake: models.ModelSpec, tmp_path: Path) -> None:
    run = CliRunner().invoke
    r = run(app, ["models", "import", "nosuch", str(tmp_path)])
    assert r.exit_code == 2 and "unknown model 'nosuch'" in r.output
    r = run(app, ["models", "import", "yunet", str(tmp_path)])
    assert r.exit_code == 1 and "is not imported from a file" in r.output and "mobilefacenet" in r.output
    r = run(app, ["models", "import", "npmthing", str(tmp_path / "missing.tgz")])
    assert r.exit_code == 1 and "no file at" in r.output and "Traceback" not in r.output
    r = run(app, ["models", "import", "npmthing", str(tmp_path)])
    assert r.exit_code == 1 and "is a directory" in r.output
    tgz = tarball(tmp_path / "ok.tgz", {MEMBER: DATA})
    r = run(app, ["models", "import", "npmthing", str(tgz), "--dest", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    assert "sha256 ok" in r.output and "licence is not established" in r.output
