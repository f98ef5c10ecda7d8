"""MODEL_DIRs (``faceprint-model/1``) without weights: a tiny ONNX graph with the contract's
I/O loads as an embedder, every way a directory can be wrong is refused with one clear
line, an embedder argument that is a path resolves to it everywhere (registry,
Recognizer, PipelineSpec, FACEPRINT_EMBEDDER, the CLI's checks), and its impostor
distributions give a gallery bound to it the open-set threshold."""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from faceprint.embedding import model_id
from faceprint.embedding.model_dir import (
    CARD_FILE,
    CARD_FORMAT,
    IMPOSTORS_FILE,
    IMPOSTORS_FLIP_FILE,
    ONNX_FILE,
    ModelDirEmbedder,
    check_model_dir,
    read_card,
)
from faceprint.errors import (
    GalleryError,
    IncompatibleEmbeddingError,
    ModelUnavailableError,
    UnknownComponentError,
)
from faceprint.gallery import scoring
from faceprint.gallery.gallery import Gallery
from faceprint.gallery.records import FaceRecord
from faceprint.gallery.sqlite import SqliteStore
from faceprint.recognizer import Recognizer, default_embedder_name
from faceprint.registry import check_embedder, create_embedder, embedder_class, is_model_dir
from model_dirs import synthetic_scores, tiny_model_dir, tiny_onnx

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

DIM = 8


class NoFaces:
    """A detector that finds nothing: these tests never detect."""

    name = "none"

    def detect(self, image: Any) -> list[Any]:
        return []

    def detect_batch(self, images: Any) -> list[list[Any]]:
        return [[] for _ in images]


@pytest.fixture(autouse=True)
def _fresh_registrations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no distribution registered by an earlier one."""
    monkeypatch.setattr(scoring, "_REGISTERED", {})


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("md") / "tiny", dim=DIM)


@pytest.fixture
def md(source_dir: Path, tmp_path: Path) -> Path:
    """A fresh copy of a valid tiny MODEL_DIR, to change at will."""
    return Path(shutil.copytree(source_dir, tmp_path / "tiny"))


def _card(d: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((d / CARD_FILE).read_text())
    return data


def _write_card(d: Path, card: dict[str, Any]) -> None:
    (d / CARD_FILE).write_text(json.dumps(card))


def _resign(d: Path) -> None:
    """Record the current sha256 of every file in the card (a consistent directory)."""
    card = _card(d)
    card["files"] = {n: hashlib.sha256((d / n).read_bytes()).hexdigest() for n in card["files"]}
    card.pop("model_id", None)
    _write_card(d, card)


# -- loading -------------------------------------------------------------------------------
def test_a_model_dir_loads_as_an_embedder(md: Path) -> None:
    emb = ModelDirEmbedder(str(md), intra_op_threads=1, batch_size=2)
    card = _card(md)
    assert emb.name == str(md) and emb.dim == DIM and emb.network == "dlib-ft" and emb.version == "test"
    assert emb.weights_sha256 == card["files"][ONNX_FILE]
    assert model_id(emb) == card["model_id"] == f"dlib-ft@test+{card['files'][ONNX_FILE][:8]}"
    assert model_id(emb, flip=True) == card["model_id"] + "+flip"
    assert (emb.default_threshold, emb.flip_threshold) == (0.906, 0.91)
    assert [set(t) for t in emb.crop_templates] == [{"dlib5", "std5"}]
    crops = np.random.default_rng(0).integers(0, 255, (5, 150, 150, 3), dtype=np.uint8)
    vecs = emb.embed(list(crops))  # batch_size 2: three runs
    assert vecs.shape == (5, DIM) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vecs[3], emb.embed([crops[3]])[0], atol=1e-6)
    assert emb.embed([]).shape == (0, DIM)
    with pytest.raises(ValueError, match="150x150x3 uint8"):
        emb.embed([np.zeros((112, 112, 3), np.uint8)])


def test_a_card_without_flip_threshold_uses_the_1to1_one(tmp_path: Path) -> None:
    d = tiny_model_dir(tmp_path / "m", dim=DIM, flip=False, flip_threshold=None)
    emb = ModelDirEmbedder(d)
    assert emb.flip_threshold == emb.default_threshold == 0.906
    assert scoring.find_distribution(model_id(emb, flip=True)) is None
    assert read_card(d)["format"] == CARD_FORMAT


Change = Callable[[Path], None]


def _set(key: str, value: Any) -> Change:
    def change(d: Path) -> None:
        card = _card(d)
        card[key] = value
        _write_card(d, card)

    return change


def _drop(key: str) -> Change:
    def change(d: Path) -> None:
        card = _card(d)
        del card[key]
        _write_card(d, card)

    return change


def _graph(data: bytes) -> Change:
    def change(d: Path) -> None:
        (d / ONNX_FILE).write_bytes(data)
        _resign(d)

    return change


def _flip_byte(name: str) -> Change:
    def change(d: Path) -> None:
        data = bytearray((d / name).read_bytes())
        data[len(data) // 2] ^= 0x01
        (d / name).write_bytes(bytes(data))

    return change


def _impostors_of(model: str) -> Change:
    def change(d: Path) -> None:
        (d / IMPOSTORS_FILE).write_text(json.dumps(scoring.fit_distribution(synthetic_scores(), model, "x")))
        _resign(d)

    return change


REFUSALS: list[tuple[str, Change, str]] = [
    ("card not JSON", lambda d: (d / CARD_FILE).write_text("{nope"), "card.json in .* is not readable JSON"),
    ("card a list", lambda d: (d / CARD_FILE).write_text("[]"), "expected a JSON object .*found list"),
    ("wrong format", _set("format", "faceprint-model/2"), "expected format 'faceprint-model/1', found 'f"),
    ("missing key", _drop("dim"), "the card lacks dim"),
    ("dim a string", _set("dim", "128"), "dim must be an integer"),
    ("dim a bool", _set("dim", True), "dim must be an integer"),
    ("bad name", _set("name", "Low Res"), "name must be a lowercase slug"),
    ("bad network", _set("network", "dlib@2"), "network must be letters"),
    ("threshold out of range", _set("default_threshold", 1.5), r"default_threshold must be a cosine"),
    ("flip threshold a string", _set("flip_threshold", "0.9"), r"flip_threshold must be .* or null"),
    ("another chip", _set("chip", {"size": 112, "template": "arcface"}), "chip must be"),
    ("files not hashes", _set("files", {ONNX_FILE: "abc"}), "files must be an object mapping"),
    ("files without impostors", _set("files", {ONNX_FILE: "a" * 64}), "files lacks the sha256 of impostors"),
    (
        "a path in files",
        _set("files", {ONNX_FILE: "a" * 64, IMPOSTORS_FILE: "b" * 64, "../x": "c" * 64}),
        "plain",
    ),
    (
        "model.onnx missing",
        lambda d: (d / ONNX_FILE).unlink(),
        r"is incomplete: expected model.onnx .*found none",
    ),
    ("impostors missing", lambda d: (d / IMPOSTORS_FILE).unlink(), "is incomplete: expected impostors.json"),
    (
        "model.onnx changed",
        _flip_byte(ONNX_FILE),
        r"model.onnx in .* has sha256 \w+… but its card says \w+…: the directory was changed after "
        "training; retrain or restore it",
    ),
    ("impostors changed", _flip_byte(IMPOSTORS_FILE), "impostors.json in .* has sha256"),
    ("card model_id edited", _set("model_id", "dlib-ft@test+00000000"), "says model_id 'dlib-ft@test"),
    ("impostors of another model", _impostors_of("dlib@resnet_v1+55533b28"), "fitted for 'dlib@resnet_v1"),
]


@pytest.mark.parametrize("change, needle", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_a_bad_model_dir_is_refused_with_one_line(md: Path, change: Change, needle: str) -> None:
    change(md)
    for load in (check_model_dir, ModelDirEmbedder):
        with pytest.raises(ModelUnavailableError, match=needle) as err:
            load(md)
        assert "\n" not in str(err.value) and str(md) in str(err.value)


def test_missing_paths_files_and_unlisted_files_are_refused(md: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ModelUnavailableError, match=r"no MODEL_DIR at .*nowhere: expected a directory written"
    ):
        ModelDirEmbedder(tmp_path / "nowhere")
    with pytest.raises(ModelUnavailableError, match="is a file, expected a MODEL_DIR"):
        ModelDirEmbedder(md / CARD_FILE)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        ModelUnavailableError, match=r"is not a MODEL_DIR: expected card.json in it, found an empty"
    ):
        ModelDirEmbedder(empty)
    (md / CARD_FILE).rename(md / "card.old")
    with pytest.raises(ModelUnavailableError, match=r"expected card.json in it, found card.old, impostors"):
        check_model_dir(md)
    (md / "card.old").rename(md / CARD_FILE)
    card = _card(md)
    del card["files"][IMPOSTORS_FLIP_FILE]
    card.pop("model_id")
    _write_card(md, card)
    with pytest.raises(ModelUnavailableError, match=r"impostors\+flip.json in .* is not listed in its card"):
        check_model_dir(md)


GRAPHS = [
    (
        "not ONNX",
        b"this is not an ONNX file",
        "onnxruntime cannot load model.onnx in .*: .*expected an ONNX graph",
    ),
    (
        "float input",
        tiny_onnx(DIM, input_type="float32"),
        r"does not fit a MODEL_DIR: expected input 'crops' uint8",
    ),
    (
        "112 px chips",
        tiny_onnx(DIM, side=112),
        r"found inputs 'crops' tensor\(uint8\) \('batch', 112, 112, 3\)",
    ),
    ("another input name", tiny_onnx(DIM, input_name="images"), "found inputs 'images'"),
    ("another output name", tiny_onnx(DIM, output_name="embeddings"), "outputs 'embeddings'"),
    ("another dim", tiny_onnx(DIM * 2), rf"float32 \(N, {DIM}\), found .*\('batch', {2 * DIM}\)"),
]


@pytest.mark.parametrize("data, needle", [g[1:] for g in GRAPHS], ids=[g[0] for g in GRAPHS])
def test_a_graph_onnxruntime_cannot_run_as_the_card_says_is_refused(
    md: Path, data: bytes, needle: str
) -> None:
    _graph(data)(md)
    card = _card(md)
    model = f"dlib-ft@test+{card['files'][ONNX_FILE][:8]}"  # the impostors must follow the new id
    for name, mid in ((IMPOSTORS_FILE, model), (IMPOSTORS_FLIP_FILE, model + "+flip")):
        (md / name).write_text(json.dumps(scoring.fit_distribution(synthetic_scores(), mid, "x")))
    _resign(md)
    check_model_dir(md)  # the files are consistent: only loading the graph tells
    with pytest.raises(ModelUnavailableError, match=needle) as err:
        ModelDirEmbedder(md)
    assert "\n" not in str(err.value)


# -- resolution ----------------------------------------------------------------------------
def test_an_embedder_argument_that_is_a_path_is_a_model_dir(
    md: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("dlib", "dlib-onnx", "nosuch"):
        assert not is_model_dir(name)
    for name in ("./tiny", "tiny/", "~/models/x", "../x", "/abs/x", "tiny"):  # "tiny" exists here
        assert is_model_dir(name), name
    (tmp_path / "dlib").mkdir()  # a folder named like an embedder does not shadow it
    assert not is_model_dir("dlib")
    assert embedder_class("tiny") is ModelDirEmbedder
    emb = create_embedder("tiny", {"batch_size": 4}, threads=1)
    assert isinstance(emb, ModelDirEmbedder) and emb.name == "tiny" and emb.batch_size == 4
    check_embedder("tiny")
    check_embedder("dlib-onnx")  # a registered name: nothing loaded
    with pytest.raises(
        UnknownComponentError,
        match=r"expected one of dlib, dlib-onnx, dlib-onnx-int8, faceplugin, mobilefacenet .* "
        r"or a MODEL_DIR written by",
    ):
        check_embedder("nosuch")
    with pytest.raises(ModelUnavailableError, match=r"no MODEL_DIR at ./gone"):
        check_embedder("./gone")


def test_recognizer_pipeline_spec_and_faceprint_embedder_take_a_model_dir(
    md: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faceprint.evaluation.embedset import PipelineSpec, pipeline_model_id, pipeline_names

    rec = Recognizer(NoFaces(), str(md), threads=1)  # type: ignore[arg-type]
    card = _card(md)
    assert isinstance(rec.embedder, ModelDirEmbedder) and rec.model_id == card["model_id"]
    assert rec.threshold == 0.906 and Recognizer(NoFaces(), str(md), flip=True).threshold == 0.91  # type: ignore[arg-type]
    spec = PipelineSpec("hog", str(md), flip=True)
    assert (
        pipeline_names(spec) == ("hog", f"{md}+flip")
        and pipeline_model_id(spec) == card["model_id"] + "+flip"
    )
    monkeypatch.setenv("FACEPRINT_EMBEDDER", str(md))
    assert default_embedder_name() == str(md)
    assert Recognizer(NoFaces()).embedder.name == str(md)  # type: ignore[arg-type]
    assert pipeline_model_id(PipelineSpec("hog")) == card["model_id"]
    _flip_byte(ONNX_FILE)(md)
    with pytest.raises(ModelUnavailableError, match="changed after training"):
        PipelineSpec("hog")  # the default, FACEPRINT_EMBEDDER, is checked before any worker starts
    with pytest.raises(ModelUnavailableError, match="changed after training"):
        Recognizer(NoFaces())  # type: ignore[arg-type]


# -- the open-set threshold -----------------------------------------------------------------
def _bound_store(path: Path, model: str, people: int = 3) -> SqliteStore:
    store = SqliteStore(path)
    rng = np.random.default_rng(1)
    for i in range(people):
        v = rng.standard_normal(DIM).astype(np.float32)
        store.add_faces(
            f"p{i}", [FaceRecord(uuid.uuid4().hex, f"p{i}", v / np.linalg.norm(v), model, f"s{i}")]
        )
    return store


def test_loading_registers_the_impostor_distributions_for_the_model_ids(md: Path) -> None:
    card = _card(md)
    mid = card["model_id"]
    assert scoring.find_distribution(mid) is None
    ModelDirEmbedder(md)
    for m in (mid, mid + "+flip"):
        dist = scoring.find_distribution(m)
        assert dist is not None and dist is scoring.registered_distribution(m)
        assert dist.model == m and dist.source == f"MODEL_DIR {md}"
    assert scoring.open_set_threshold(mid, 10) > scoring.open_set_threshold(mid, 1)
    with pytest.raises(GalleryError, match=r"fitted for 'other@1\+00000000', not 'x@1'"):
        scoring.register_distribution(
            scoring.fit_distribution(synthetic_scores(), "other@1+00000000", "s"), "x@1", "t"
        )


def test_a_gallery_bound_to_a_model_dir_uses_its_open_set_threshold(
    md: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mid = _card(md)["model_id"]
    store = _bound_store(tmp_path / "g.sqlite", mid)
    rec = Recognizer(NoFaces(), str(md))  # type: ignore[arg-type]
    op = Gallery(store, rec).operating_point()
    dist = scoring.find_distribution(mid)
    assert dist is not None
    assert op.source == "open-set" and op.model == mid and op.people == 3 and op.far == scoring.DEFAULT_FAR
    assert op.threshold == scoring.open_set_threshold(dist, 3, scoring.DEFAULT_FAR)
    assert f"MODEL_DIR {md}" in op.note and "2000 different-person pairs" in op.note
    # Without a recognizer (listing, `gallery threshold`), FACEPRINT_EMBEDDER=MODEL_DIR is
    # registered from its files on the first call, without loading its graph.
    monkeypatch.setattr(scoring, "_REGISTERED", {})
    monkeypatch.setenv("FACEPRINT_EMBEDDER", str(md))
    lazy = Gallery(store)
    assert lazy.operating_point() == op and lazy._recognizer is None
    monkeypatch.setattr(scoring, "_REGISTERED", {})
    monkeypatch.delenv("FACEPRINT_EMBEDDER")
    op = Gallery(store).operating_point()  # the MODEL_DIR is nowhere to be found: say why
    assert op.source == "embedder default" and "MODEL_DIR brings its own" in op.note


def test_a_gallery_of_another_model_names_reembed(md: Path, tmp_path: Path) -> None:
    store = _bound_store(tmp_path / "g.sqlite", "dlib@resnet_v1+55533b28")
    rec = Recognizer(NoFaces(), str(md))  # type: ignore[arg-type]
    with pytest.raises(IncompatibleEmbeddingError) as err:
        Gallery(store, rec).check_model()
    msg = str(err.value)
    assert "dlib@resnet_v1+55533b28" in msg and rec.model_id in msg
    assert f"faceprint gallery reembed --embedder {md} --images DIR" in msg


# -- the command line ------------------------------------------------------------------------
def _invoke(*args: str) -> tuple[int, str, str]:
    from faceprint.cli.main import app

    res = CliRunner().invoke(app, list(args))
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    from PIL import Image

    p = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), (90, 120, 150)).save(p)
    return p


def test_the_cli_checks_a_model_dir_before_loading_anything(md: Path, photo: Path, tmp_path: Path) -> None:
    img = str(photo)
    cases = [
        (
            ["verify", img, img, "-e", str(tmp_path / "nowhere")],
            2,
            "or a MODEL_DIR written by faceprint train",
        ),
        (["verify", img, img, "-e", str(photo)], 2, f"found a file at {photo}"),
        (["eval", "pairs", "--dir", ".", "--embedder", "./nowhere"], 2, "found nothing at ./nowhere"),
        (["verify", img, img, "-e", "nosuch"], 2, "unknown embedder 'nosuch'"),
    ]
    (md / IMPOSTORS_FILE).unlink()
    cases.append((["verify", img, img, "-e", str(md)], 1, "is incomplete: expected impostors.json"))
    for args, code, needle in cases:
        got, stdout, stderr = _invoke(*args)
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        assert got == code and len(lines) == 1 and lines[0].startswith("error: "), (args, stderr)
        assert needle in lines[0] and stdout == "", (args, lines[0])
    code, stdout, _ = _invoke("verify", "--help")
    assert code == 0 and "MODEL_DIR written by faceprint train" in " ".join(stdout.replace("│", " ").split())
