"""Enrolment views (faceprint.recognizer.VIEW_ZOOMS) on real photos: each enrolled vector
is the re-normalised mean of the face's crop, mirror and two re-crops; the gallery then
takes its open-set threshold from the distribution fitted for such vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import LFW, need
from faceprint.alignment import align_face
from faceprint.gallery.gallery import Gallery
from faceprint.gallery.scoring import VIEWS_SETTING, find_distribution, open_set_threshold, views_id
from faceprint.io import load_image
from faceprint.recognizer import VIEW_ZOOMS, Recognizer

from .conftest import KNN, StoreFactory

OBAMA = KNN / "train" / "obama" / "obama.jpg"


def _vector(g: Gallery, name: str) -> np.ndarray:
    snap = g.store.snapshot()
    (i,) = [k for k, p in enumerate(snap.persons) if p == name]
    return np.asarray(snap.vectors[i], np.float32)


def test_views_vector_is_the_mean_of_the_four_crops(recognizer: Recognizer) -> None:
    img = load_image(need(OBAMA))
    (face,) = recognizer.detect(img)
    (t,) = recognizer.embedder.crop_templates
    crop = align_face(img, face, t)
    crops = [crop, np.ascontiguousarray(crop[:, ::-1])]
    crops += [align_face(img, face, {k: v.zoomed(z) for k, v in t.items()}) for z in VIEW_ZOOMS]
    raw = recognizer.embedder.embed(crops)
    want = raw.mean(axis=0) / np.linalg.norm(raw.mean(axis=0))
    ((got,),) = recognizer.embed_batch([img], [[face]], views=True)
    ((plain,),) = recognizer.embed_batch([img], [[face]])
    assert got.embedding is not None and plain.embedding is not None
    np.testing.assert_allclose(got.embedding, want, atol=1e-5)
    assert abs(float(np.linalg.norm(got.embedding)) - 1) < 1e-5
    cos = float(got.embedding @ plain.embedding)
    assert 0.95 < cos < 0.9999  # the same face, but not the one-crop vector
    # the zoomed crops really differ from the crop (the face fills more / less of it)
    assert not np.array_equal(crops[2], crop) and not np.array_equal(crops[3], crop)


def test_enrolment_uses_views_where_their_distribution_is_shipped(
    store_factory: StoreFactory, recognizer: Recognizer
) -> None:
    assert find_distribution(views_id(recognizer.model_id)) is not None  # shipped for dlib's ResNet
    g = Gallery(store_factory(), recognizer)
    assert g.enrolment_views()
    g.enroll("obama", [need(OBAMA)])
    assert g.store.get_setting(VIEWS_SETTING) == "1"
    ((f,),) = recognizer.embed_batch([load_image(OBAMA)], [recognizer.detect(load_image(OBAMA))], views=True)
    assert f.embedding is not None
    np.testing.assert_allclose(_vector(g, "obama"), f.embedding, atol=1e-5)
    op = g.operating_point()
    want = open_set_threshold(find_distribution(views_id(recognizer.model_id)), 1, 0.01)  # type: ignore[arg-type]
    plain = open_set_threshold(find_distribution(recognizer.model_id), 1, 0.01)  # type: ignore[arg-type]
    assert op.source == "open-set" and op.threshold == pytest.approx(want) and op.threshold > plain
    assert f"impostor distribution {views_id(recognizer.model_id)}" in op.note
    res = g.identify([KNN / "test" / "obama1.jpg", need(LFW / "Aaron_Guiel" / "Aaron_Guiel_0001.jpg")])
    assert [r.label for r in res[0]] == ["obama"] and [r.label for r in res[1]] == ["unknown"]


def test_no_views_enrols_the_one_crop_vector(store_factory: StoreFactory, recognizer: Recognizer) -> None:
    g = Gallery(store_factory(), recognizer, enrol_views=False)
    g.enroll("obama", [need(OBAMA)])
    assert g.store.get_setting(VIEWS_SETTING) is None
    (f,) = recognizer.process(OBAMA)
    assert f.embedding is not None
    np.testing.assert_allclose(_vector(g, "obama"), f.embedding, atol=1e-6)
    op = g.operating_point()
    plain = open_set_threshold(find_distribution(recognizer.model_id), 1, 0.01)  # type: ignore[arg-type]
    assert op.threshold == pytest.approx(plain) and "views" not in op.note


def test_one_face_with_views_makes_the_whole_gallery_use_their_distribution(
    store_factory: StoreFactory, recognizer: Recognizer
) -> None:
    """Mixed galleries take the stricter threshold: a views face scores strangers higher."""
    store = store_factory()
    Gallery(store, recognizer, enrol_views=False).enroll("obama", [need(OBAMA)])
    g = Gallery(store, recognizer, enrol_views=True)
    g.enroll("biden", [need(KNN / "train" / "biden" / "biden.jpg")])
    op = g.operating_point()
    want = open_set_threshold(find_distribution(views_id(recognizer.model_id)), 2, 0.01)  # type: ignore[arg-type]
    assert op.threshold == pytest.approx(want)


def test_views_without_their_distribution_say_the_threshold_is_lax(
    tmp_path: Path, recognizer: Recognizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faceprint.gallery import scoring
    from faceprint.gallery.sqlite import SqliteStore

    real = scoring.find_distribution
    monkeypatch.setattr(
        "faceprint.gallery.gallery.find_distribution",
        lambda m: None if m.endswith("+views") else real(m),
    )
    g = Gallery(SqliteStore(tmp_path / "g.sqlite"), recognizer)
    assert not g.enrolment_views()  # auto: off where the threshold could not follow
    g.enrol_views = True
    g.enroll("obama", [need(OBAMA)])
    op = g.operating_point()
    assert op.source == "open-set" and "no impostor distribution for them" in op.note
    g.store.close()


def test_export_and_import_keep_the_views_mark(
    store_factory: StoreFactory, recognizer: Recognizer, tmp_path: Path
) -> None:
    g = Gallery(store_factory(), recognizer, enrol_views=True)
    g.enroll("obama", [need(OBAMA)])
    g.export(tmp_path / "g.jsonl")
    other = Gallery(store_factory(), recognizer)
    other.import_(tmp_path / "g.jsonl")
    assert other.store.get_setting(VIEWS_SETTING) == "1"
    assert other.operating_point().threshold == pytest.approx(g.operating_point().threshold)
