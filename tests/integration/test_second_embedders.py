"""The npm embedders (mobilefacenet, faceplugin) and the fused embedders follow the
embedder contract on real faces; their licence is stated and warned about; a wrong file
is refused; a fused gallery never mixes with a plain one."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import LFW, MODELS, need
from faceprint import models
from faceprint.embedding import Embedder, model_id
from faceprint.errors import IncompatibleEmbeddingError, ModelUnavailableError, UnknownComponentError
from faceprint.registry import create_embedder

NPM = {
    "mobilefacenet": ("npm/expo_mobilefacenet.tflite", 192),
    "faceplugin": ("npm/faceplugin_fr_feature.onnx", 512),
}


@pytest.fixture(scope="module")
def faces() -> list[tuple[np.ndarray, object]]:
    """(image, face) of 6 LFW dev images: 3 of the first person with 3, then 3 others."""
    from faceprint.detection.yunet import YuNetDetector
    from faceprint.evaluation.pairs import central_face
    from faceprint.io import load_image

    for rel in NPM.values():
        need(MODELS / rel[0])
    dirs = [d for d in sorted(need(LFW).iterdir()) if d.is_dir()]
    person = next(d for d in dirs if len(list(d.glob("*.jpg"))) >= 3)
    paths = sorted(person.glob("*.jpg"))[:3]
    others = [d for d in dirs if d != person]
    paths += [sorted(d.glob("*.jpg"))[0] for d in others[:: len(others) // 3]][:3]
    det = YuNetDetector()
    out = []
    for p in paths:
        img = load_image(p)
        face = central_face(det.detect(img), img.shape)
        assert face is not None, p
        out.append((img, face))
    return out


@pytest.mark.parametrize("name", sorted(NPM))
def test_npm_embedder_contract(name: str, faces: list[tuple[np.ndarray, object]]) -> None:
    from faceprint.alignment import align_crops

    emb = create_embedder(name, threads=1)
    dim = NPM[name][1]
    assert isinstance(emb, Embedder)
    assert (emb.name, emb.dim) == (name, dim)
    assert model_id(emb) == f"{emb.network}@{emb.version}+{models.CATALOG[name].files[0].sha256[:8]}"
    assert [set(t) for t in emb.crop_templates] == [{"std5", "dlib5"}]
    assert emb.embed([]).shape == (0, dim)
    with pytest.raises(ValueError, match="112x112x3 uint8"):
        emb.embed([np.zeros((150, 150, 3), np.uint8)])
    crops = [c for img, f in faces for c in align_crops(img, f, emb.crop_templates)]
    assert all(c.shape == (112, 112, 3) for c in crops)
    vecs = emb.embed(crops)
    assert vecs.shape == (6, dim) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    one_by_one = np.concatenate([emb.embed([c]) for c in crops])  # the batch is dynamic
    assert np.abs(vecs - one_by_one).max() < 1e-5
    sims = vecs @ vecs.T
    same, other = sims[:3, :3][np.triu_indices(3, 1)], sims[:3, 3:]
    assert same.min() > emb.default_threshold > other.max()


def test_licence_is_stated_and_warned_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in NPM:
        need(MODELS / NPM[name][0])
        spec = models.CATALOG[name]
        assert spec.commercial_use is None and spec.licence.startswith("not established")
    monkeypatch.setattr(models, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="faceprint.models"):
        create_embedder("mobilefacenet", threads=1)
        create_embedder("dlib-onnx+mobilefacenet", threads=1)
    hits = [r.getMessage() for r in caplog.records if "licence is not established" in r.getMessage()]
    assert len(hits) == 1 and "'mobilefacenet'" in hits[0] and "commercial use: not established" in hits[0]


def test_a_file_with_another_sha256_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = need(MODELS / NPM["faceplugin"][0])
    bad = tmp_path / "models" / NPM["faceplugin"][0]
    bad.parent.mkdir(parents=True)
    data = bytearray(src.read_bytes())
    data[-10] ^= 0xFF
    bad.write_bytes(bytes(data))
    monkeypatch.setenv("FACEPRINT_MODELS", str(tmp_path / "models"))
    from faceprint.config import get_settings
    from faceprint.model_import import import_model

    with pytest.raises(ModelUnavailableError) as err:
        create_embedder("faceplugin", threads=1)
    msg = str(err.value)
    assert models.CATALOG["faceplugin"].files[0].sha256 in msg and models.sha256_file(bad) in msg
    assert "refused" in msg and not list(get_settings().cache_dir.rglob("*.onnx"))
    with pytest.raises(ModelUnavailableError, match="refused"):  # nor can it be imported
        import_model("faceplugin", bad, tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()


def test_fused_vectors_are_the_weighted_concatenation(faces: list[tuple[np.ndarray, object]]) -> None:
    from faceprint.embedding.fused import FUSIONS, FusedEmbedder
    from faceprint.recognizer import Recognizer

    rec = Recognizer("yunet", "mobilefacenet+dlib-onnx", threads=1)  # any order: parts in the fitted order
    emb = rec.embedder
    assert isinstance(emb, FusedEmbedder) and isinstance(emb, Embedder)
    assert [p.name for p in emb.parts] == ["dlib-onnx", "mobilefacenet"]
    fusion = FUSIONS[("dlib", "mobilefacenet")]
    assert emb.weights == fusion.weights and emb.dim == 128 + 192 and len(emb.crop_templates) == 2
    assert rec.model_id == (
        f"fuse({model_id(emb.parts[0])}={fusion.weights[0]:g},{model_id(emb.parts[1])}={fusion.weights[1]:g})"
    )
    flipped = Recognizer(rec.detector, emb, flip=True)
    assert flipped.model_id == rec.model_id + "+flip"
    crops = [c for img, f in faces for c in rec.crops(img, f)]
    assert [c.shape for c in crops[:2]] == [(150, 150, 3), (112, 112, 3)]
    fused = emb.embed(crops)
    parts = emb.embed_parts(crops)
    assert np.allclose(np.linalg.norm(fused, axis=1), 1, atol=1e-5)
    want = sum(w * (p @ p.T) for w, p in zip(fusion.weights, parts, strict=True))
    assert np.abs(fused @ fused.T - want).max() < 1e-5  # cosine = weighted mean of the parts' cosines
    # the parts' vectors are the plain embedders' own
    alone = create_embedder("mobilefacenet", threads=1)
    assert np.abs(parts[1] - alone.embed(crops[1::2])).max() < 1e-6
    ((f0,),) = rec.embed_batch([faces[0][0]], [[faces[0][1]]])
    assert f0.embedding_model == rec.model_id and np.abs(f0.embedding - fused[0]).max() < 1e-6
    # flip TTA mirrors every part's crop: the re-normalised sum of both fused vectors
    got = flipped.embed_batch([faces[0][0], faces[1][0]], [[faces[0][1]], [faces[1][1]]])
    mirrored = emb.embed([np.ascontiguousarray(c[:, ::-1]) for c in crops[:4]])
    for i, ((f,),) in enumerate(zip(got, strict=True)):
        want_flip = (fused[i] + mirrored[i]) / np.linalg.norm(fused[i] + mirrored[i])
        assert f.embedding_model == rec.model_id + "+flip" and np.abs(f.embedding - want_flip).max() < 1e-5
    # enrolment views: the re-normalised mean of the fused vectors of crop, mirror and re-crops
    from faceprint.alignment import align_crops
    from faceprint.recognizer import VIEW_ZOOMS

    img, face = faces[0]
    views = [crops[:2], [np.ascontiguousarray(c[:, ::-1]) for c in crops[:2]]]
    views += [align_crops(img, face, emb.crop_templates, zoom=z) for z in VIEW_ZOOMS]
    mean = emb.embed([c for v in views for c in v]).mean(axis=0)
    ((fv,),) = rec.embed_batch([img], [[face]], views=True)
    assert np.abs(fv.embedding - mean / np.linalg.norm(mean)).max() < 1e-5
    with pytest.raises(ValueError, match="2 crops per face"):
        emb.embed(crops[:3])


@pytest.mark.parametrize(
    "name, message",
    [
        ("dlib-onnx+nosuch", "'nosuch' is not an embedder that can be fused"),
        ("dlib-onnx+dlib", "a network appears twice"),
        ("dlib-onnx+flip", "use --flip"),
    ],
)
def test_bad_fusion_names_are_usage_errors(name: str, message: str) -> None:
    from faceprint.registry import check_embedder

    with pytest.raises(UnknownComponentError, match=message) as err:
        check_embedder(name)
    assert "dlib-onnx, mobilefacenet, faceplugin" in str(err.value)


def test_cli_names_a_bad_fusion_and_exits_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from faceprint.cli.main import app

    img = str(need(LFW / "George_W_Bush" / "George_W_Bush_0353.jpg"))
    r = CliRunner().invoke(app, ["verify", img, img, "--embedder", "dlib-onnx+nosuch"])
    assert (
        r.exit_code == 2 and "not an embedder that can be fused" in r.output and "Traceback" not in r.output
    )


def test_a_fused_gallery_refuses_a_plain_embedder_and_back(tmp_path: Path, dat: Path) -> None:
    from faceprint.gallery.gallery import Gallery
    from faceprint.gallery.sqlite import SqliteStore
    from faceprint.recognizer import Recognizer

    photo = need(LFW / "George_W_Bush" / "George_W_Bush_0353.jpg")
    plain = Recognizer("yunet", "dlib-onnx", threads=1)
    fused = Recognizer("yunet", "dlib-onnx+mobilefacenet", threads=1)
    for filler, other in ((fused, plain), (plain, fused)):
        path = tmp_path / f"{filler.embedder.name}.db"
        g = Gallery(SqliteStore(path), filler, enrol_views=False)
        assert g.enroll("bush", [photo]).ok
        g.store.close()
        g2 = Gallery(SqliteStore(path), other)
        with pytest.raises(IncompatibleEmbeddingError) as err:
            g2.identify([photo])
        assert filler.model_id in str(err.value) and other.model_id in str(err.value)
        g2.store.close()
    shutil.rmtree(tmp_path, ignore_errors=True)
