import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from faceprint import models
from faceprint.config import Settings
from faceprint.errors import ModelUnavailableError, UnknownComponentError
from faceprint.registry import Registry, detectors, embedders


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(UnknownComponentError) as e:
        detectors.resolve("yunnet")
    msg = str(e.value)
    assert "hog" in msg and "yunet" in msg and "Did you mean 'yunet'" in msg
    with pytest.raises(UnknownComponentError, match="dlib"):
        embedders.resolve("arcface-9000")
    with pytest.raises(UnknownComponentError, match="yunet"):
        models.get_spec("nope")


def test_registry_imports_lazily() -> None:
    r: Registry[object] = Registry("thing")
    r.register("x", "json:JSONDecoder")
    assert r.names() == ["x"] and "x" in r
    assert r.resolve("x").__name__ == "JSONDecoder"


def test_catalogue_entries_are_complete() -> None:
    for spec in models.CATALOG.values():
        assert spec.licence and spec.source and spec.role
        for mf in spec.files:
            assert len(mf.sha256) == 64
            how = models.how_to_get(spec, mf)
            assert mf.url or mf.package or "FACEPRINT_MODELS" in how or "faceprint models import" in how
    assert models.CATALOG["scrfd"].commercial_use is False
    assert models.CATALOG["yunet"].files[0].sha256.startswith("8f2383e4")


def _settings(tmp_path: Path, *dirs: Path, offline: bool = True) -> Settings:
    return Settings(home=tmp_path, cache_dir=tmp_path / "cache", model_dirs=tuple(dirs), offline=offline)


def test_resolution_order(tmp_path: Path) -> None:
    name = "face_detection_yunet_2023mar.onnx"
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    for d in (d1, d2):
        d.mkdir()
        (d / name).write_bytes(b"x")
    s = _settings(tmp_path, d1, d2)
    assert models.resolve("yunet", settings=s) == d1 / name
    explicit = tmp_path / "mine.onnx"
    explicit.write_bytes(b"y")
    assert models.resolve("yunet", path=explicit, settings=s) == explicit
    with pytest.raises(ModelUnavailableError, match="not found"):
        models.resolve("yunet", path=tmp_path / "absent.onnx", settings=s)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / name).write_bytes(b"z")
    assert models.resolve("yunet", settings=_settings(tmp_path)) == tmp_path / "cache" / name


def test_unknown_file_of_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="expected one of"):
        models.resolve("mtcnn", filename="qnet.pt", settings=_settings(tmp_path))


def test_missing_model_offline_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError) as e:
        models.resolve("mtcnn", settings=_settings(tmp_path))
    assert "faceprint models download mtcnn" in str(e.value)
    assert "FACEPRINT_OFFLINE" in str(e.value)


def test_yunet_ships_inside_the_package(tmp_path: Path) -> None:
    """No FACEPRINT_MODELS, an empty cache, offline: YuNet is still found, the official
    bytes, with its MIT licence beside it."""
    p = models.resolve("yunet", settings=_settings(tmp_path))
    assert p.parent == models.bundled_dir() and p.parent.parent == Path(models.__file__).resolve().parent
    assert models.verify_file(p, models.CATALOG["yunet"].files[0])
    licence = (p.parent / "LICENSE-yunet").read_text()
    assert "MIT License" in licence and "Shiqi Yu" in licence
    assert models.CATALOG["yunet"].files[0].sha256 in (p.parent / "README.md").read_text()
    # a copy in FACEPRINT_MODELS still comes first
    d = tmp_path / "mine"
    d.mkdir()
    (d / p.name).write_bytes(b"x")
    assert models.resolve("yunet", settings=_settings(tmp_path, d)) == d / p.name


def test_pip_package_models_resolve_without_running_its_init() -> None:
    import sys

    p = models.resolve("dlib")
    assert p.name == "dlib_face_recognition_resnet_model_v1.dat" and p.is_file()
    assert "face_recognition_models" not in sys.modules


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving files from a temporary directory."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **k: object) -> None:
            super().__init__(*a, directory=str(root), **k)  # type: ignore[arg-type]

        def log_message(self, *a: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", root
    srv.shutdown()
    srv.server_close()


def _spec_for(payload: bytes, sha: str | None = None) -> tuple[models.ModelSpec, models.ModelFile]:
    mf = models.ModelFile("thing.onnx", sha or hashlib.sha256(payload).hexdigest(), url="unused")
    return models.ModelSpec("thing", "detector", (mf,), "MIT", True, "test"), mf


def test_download_checks_sha256(http_root: tuple[str, Path], tmp_path: Path) -> None:
    base, root = http_root
    payload = b"model-bytes" * 1000
    (root / "thing.onnx").write_bytes(payload)
    spec, mf = _spec_for(payload)
    dest = tmp_path / "dest"
    path = models.fetch(spec, mf, dest, url=f"{base}/thing.onnx")
    assert path.read_bytes() == payload
    assert sorted(p.name for p in dest.iterdir()) == ["thing.onnx"]


def test_download_with_wrong_checksum_leaves_nothing(http_root: tuple[str, Path], tmp_path: Path) -> None:
    base, root = http_root
    (root / "thing.onnx").write_bytes(b"tampered")
    spec, mf = _spec_for(b"", sha="0" * 64)
    dest = tmp_path / "dest"
    with pytest.raises(ModelUnavailableError, match="checksum mismatch"):
        models.fetch(spec, mf, dest, url=f"{base}/thing.onnx")
    assert list(dest.iterdir()) == []


def test_download_http_error_leaves_nothing(http_root: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = http_root
    spec, mf = _spec_for(b"x")
    dest = tmp_path / "dest"
    with pytest.raises(ModelUnavailableError, match="could not download"):
        models.fetch(spec, mf, dest, url=f"{base}/missing.onnx")
    assert list(dest.iterdir()) == []


def test_yunet_download_through_the_cli(
    http_root: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`faceprint models download yunet --url` against a local mirror of the real file."""
    from typer.testing import CliRunner

    from conftest import MODELS, need
    from faceprint.cli.main import app

    src = need(MODELS / "face_detection_yunet_2023mar.onnx")
    base, root = http_root
    (root / "y.onnx").write_bytes(src.read_bytes())
    cache = tmp_path / "cache"
    monkeypatch.setenv("FACEPRINT_CACHE", str(cache))
    res = CliRunner().invoke(app, ["models", "download", "yunet", "--url", f"{base}/y.onnx"])
    assert res.exit_code == 0, res.output
    assert (cache / "face_detection_yunet_2023mar.onnx").is_file()
    assert "sha256 ok" in res.output


def test_models_list_shows_every_model_with_its_licence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner

    from faceprint.cli.main import app

    monkeypatch.setenv("FACEPRINT_CACHE", str(tmp_path / "empty-cache"))
    res = CliRunner().invoke(app, ["models", "list", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    from faceprint.embedding.fused import FUSIONS

    fused = {r for r in rows if rows[r]["role"] == "embedder (fused)"}
    assert set(rows) - fused == set(models.CATALOG) and len(fused) == len(FUSIONS)
    assert all(rows[f]["commercial_use"] is None for f in fused) and "dlib-onnx+mobilefacenet" in fused
    for name in ("mobilefacenet", "faceplugin"):
        assert rows[name]["commercial_use"] is None and rows[name]["licence"].startswith("not established")
    assert rows["scrfd"]["commercial_use"] is False
    assert rows["yunet"]["commercial_use"] is True
    assert rows["dlib-onnx"]["present"] is False  # not built in an empty cache
    assert rows["dlib"]["present"] is True  # shipped by face_recognition_models


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: connecting is refused, as offline."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_download_without_network_says_what_to_do(tmp_path: Path) -> None:
    """`faceprint models download` with the network unreachable: one line that names the
    URL to fetch by hand and where to put the file, or FACEPRINT_MODELS."""
    import os
    import subprocess
    import sys

    url = f"http://127.0.0.1:{_closed_port()}/face_detection_yunet_2023mar.onnx"
    cache = tmp_path / "cache"
    env = dict(os.environ, FACEPRINT_CACHE=str(cache))
    res = subprocess.run(
        [sys.executable, "-m", "faceprint.cli.main", "models", "download", "yunet", "--url", url],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    (line,) = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert f"fetch {url} by hand" in line
    assert str(cache / "face_detection_yunet_2023mar.onnx") in line and "FACEPRINT_MODELS" in line
    assert models.CATALOG["yunet"].files[0].sha256 in line
    assert not cache.exists() or list(cache.iterdir()) == []


def test_download_cut_off_midway_leaves_nothing_and_says_what_to_do(tmp_path: Path) -> None:
    """A server that promises 100 kB, sends 10 bytes and hangs up."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    spec, mf = _spec_for(b"x")
    dest = tmp_path / "dest"
    url = f"http://127.0.0.1:{srv.getsockname()[1]}/thing.onnx"
    try:
        with pytest.raises(ModelUnavailableError, match="could not download") as e:
            models.fetch(spec, mf, dest, url=url)
    finally:
        t.join(10)
        srv.close()
    assert f"fetch {url} by hand" in str(e.value) and "\n" not in str(e.value)
    assert list(dest.iterdir()) == []
