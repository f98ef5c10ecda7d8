"""Model ids with the real models: dlib and dlib-onnx share the stock weights' id, flip TTA
and swapped weights get their own, and galleries of the previous release (``name@version``
ids) are migrated on open on every backend and keep working."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from faceprint.embedding import model_id
from faceprint.errors import IncompatibleEmbeddingError
from faceprint.gallery.gallery import Gallery
from faceprint.gallery.records import FaceRecord, Store
from faceprint.recognizer import Recognizer

from .conftest import KNN, StoreFactory

STOCK = "dlib@resnet_v1+55533b28"


def _reopen(store: Store) -> Store:
    """The same gallery opened again, as a new process would."""
    from faceprint.gallery.sqlite import SqliteStore

    store.close()
    if isinstance(store, SqliteStore):
        return SqliteStore(store.path)
    from faceprint.gallery.postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    return PostgresStore(store._url)


def test_an_old_gallery_is_migrated_and_keeps_working(
    store_factory: StoreFactory, recognizer: Recognizer
) -> None:
    assert recognizer.model_id == STOCK
    old = "dlib-onnx@resnet_v1"  # what the previous release stored for these vectors
    store = store_factory()
    for name, image in (("obama", "train/obama/obama.jpg"), ("biden", "train/biden/biden.jpg")):
        (face,) = recognizer.process(KNN / image)
        assert face.embedding is not None
        store.add_faces(name, [FaceRecord(uuid.uuid4().hex, name, face.embedding, old, name)])
    store.set_setting("calibration", json.dumps({"threshold": 0.9, "model": old, "far_target": 0.001}))
    assert store.model() == (old, 128)
    store = _reopen(store)
    assert store.model() == (STOCK, 128)
    assert {f.model for f in store.person("obama")[1]} == {STOCK}
    g = Gallery(store, recognizer)
    assert g.identify([KNN / "test" / "obama1.jpg"])[0][0].label == "obama"
    assert g.enroll("kit", [KNN / "train" / "kit_harington" / "john1.jpeg"]).ok
    assert json.loads(store.get_setting("calibration") or "{}")["model"] == STOCK


def test_dlib_and_dlib_onnx_share_one_id_and_flip_has_its_own(recognizer: Recognizer) -> None:
    bin_ = Recognizer("yunet", "dlib")
    flip = Recognizer(recognizer.detector, recognizer.embedder, flip=True)
    assert model_id(bin_.embedder) == model_id(recognizer.embedder) == STOCK
    (a,), (b,) = (r.process(KNN / "test" / "obama1.jpg") for r in (recognizer, flip))
    assert a.embedding_model == STOCK and b.embedding_model == STOCK + "+flip"


def test_swapped_weights_cannot_enrol_into_a_stock_gallery(
    store_factory: StoreFactory, recognizer: Recognizer, dat: Path, tmp_path: Path
) -> None:
    data = bytearray(dat.read_bytes())
    data[len(data) // 2] ^= 0x01  # one weight of a middle layer nudged: "fine-tuned" weights
    tuned_dat = tmp_path / "tuned.dat"
    tuned_dat.write_bytes(bytes(data))
    options = {"model_path": str(tuned_dat), "onnx_path": str(tmp_path / "t.onnx")}
    tuned = Recognizer(recognizer.detector, "dlib-onnx", embedder_options=options)
    tuned_bin = Recognizer(recognizer.detector, "dlib", embedder_options={"model_path": str(tuned_dat)})
    assert tuned.model_id == tuned_bin.model_id != STOCK
    assert tuned.model_id.startswith("dlib@resnet_v1+")
    g = Gallery(store_factory(), recognizer)
    assert g.enroll("obama", [KNN / "train" / "obama" / "obama.jpg"]).ok
    with pytest.raises(IncompatibleEmbeddingError) as err:
        Gallery(g.store, tuned).enroll("biden", [KNN / "train" / "biden" / "biden.jpg"])
    msg = str(err.value)
    assert STOCK in msg and tuned.model_id in msg and "weights differ" in msg
    assert [p.name for p in g.people()] == ["obama"]
