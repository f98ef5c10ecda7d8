"""``faceprint gallery reembed`` with the real models: a gallery filled by the stock model
refuses a MODEL_DIR's vectors with a message naming reembed, reembed converts it (every
backend) so identify works with the new model and its open-set threshold, missing photos
stop it with nothing written unless ``--drop-missing``, and a SIGKILL inside its
transaction leaves the gallery as it was."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from faceprint.errors import GalleryError, IncompatibleEmbeddingError
from faceprint.gallery import open_gallery, open_store
from faceprint.gallery.gallery import Gallery
from faceprint.gallery.records import FaceRecord, Store
from faceprint.gallery.sqlite import SqliteStore
from faceprint.recognizer import Recognizer

from .conftest import KNN, StoreFactory
from .test_gallery_durability import HOOK, _wait_for

STOCK = "dlib@resnet_v1+55533b28"


@pytest.fixture
def tuned(recognizer: Recognizer, stock_model_dir: Path) -> Recognizer:
    """The suite's detector with the MODEL_DIR's embedder (dlib-onnx's vectors, its own id)."""
    return Recognizer(recognizer.detector, str(stock_model_dir))


def _vectors(store: Store) -> dict[str, np.ndarray]:
    snap = store.snapshot()
    return dict(zip(snap.face_ids, snap.vectors, strict=True))


def _labels(g: Gallery, *images: Path) -> list[list[str]]:
    return [[r.label for r in rs] for rs in g.identify(list(images))]


def test_reembed_converts_a_stock_gallery_to_a_model_dir(knn_gallery: Gallery, tuned: Recognizer) -> None:
    store = knn_gallery.store
    assert store.model() == (STOCK, 128)
    knn_gallery.set_threshold(0.8)
    before = _vectors(store)
    with pytest.raises(IncompatibleEmbeddingError) as err:
        Gallery(store, tuned).identify([KNN / "test" / "obama1.jpg"])
    assert f"faceprint gallery reembed --embedder {tuned.embedder.name} --images DIR" in str(err.value)

    report = Gallery(store, tuned).reembed([KNN / "train"])
    assert report.written and report.faces == report.reembedded == 9 and not report.dropped
    assert (report.old_model, report.model, report.cleared) == (STOCK, tuned.model_id, ("threshold",))
    assert store.model() == (tuned.model_id, 128)
    after = _vectors(store)
    assert set(after) == set(before)
    # the same weights: every stored face was found again and gives the same vector
    assert min(float(np.dot(before[f], after[f])) for f in before) >= 0.9999
    g = Gallery(store, tuned)
    test = KNN / "test"
    assert _labels(g, test / "obama1.jpg", test / "johnsnow_test1.jpg") == [["obama"], ["kit_harington"]]
    op = g.operating_point()
    assert op.source == "open-set" and op.model == tuned.model_id and "MODEL_DIR" in op.note
    with pytest.raises(IncompatibleEmbeddingError):  # and the stock model no longer fits it
        knn_gallery.identify([test / "obama1.jpg"])
    again = Gallery(store, tuned).reembed([KNN / "train"])
    assert not again.written and again.model == again.old_model == tuned.model_id


def invoke(*args: str) -> tuple[int, str, str]:
    from faceprint.cli.main import app

    res = CliRunner().invoke(app, list(args))
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.stdout, res.stderr


def test_reembed_cli_stops_on_missing_photos_unless_dropped(
    tmp_path: Path, recognizer: Recognizer, stock_model_dir: Path
) -> None:
    path = tmp_path / "g.sqlite"
    with Gallery(SqliteStore(path), recognizer) as g:
        assert all(r.ok for r in g.enroll_dir(KNN / "train"))
        before = _vectors(g.store)
    photos = tmp_path / "photos"  # every photo but obama's two, one folder deeper
    shutil.copytree(
        KNN / "train", photos / "copy", ignore=lambda d, names: ["obama"] if "obama" in names else []
    )
    md = str(stock_model_dir)
    code, out, err = invoke("gallery", "reembed", "-e", md, "--images", str(photos), "-g", str(path))
    lines = err.strip().splitlines()
    assert code == 1 and out == "", err
    assert [ln.split(":")[:2] for ln in lines[:2]] == [["missing", " obama"], ["missing", " obama"]]
    assert "its image was not found in the folders given" in lines[0]
    assert lines[2].startswith("error: 2 of 9 face(s) cannot be re-embedded") and "--drop-missing" in lines[2]
    with open_gallery(path) as g:  # nothing was written
        assert g.store.model() == (STOCK, 128) and _vectors(g.store).keys() == before.keys()

    code, out, err = invoke(
        "gallery", "reembed", "-e", md, "--images", str(photos), "-g", str(path), "--drop-missing", "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["written"] and report["reembedded"] == 7 and report["faces"] == 9
    assert [d["person"] for d in report["dropped"]] == ["obama", "obama"] and report["old_model"] == STOCK
    assert err.count("dropped: obama: face ") == 2
    code, out, err = invoke("identify", str(KNN / "test" / "obama_and_biden.jpg"), "-g", str(path), "-e", md)
    assert code == 0, err
    assert "biden" in out and "obama " not in out and f"model {report['model']}" in out
    code, out, _ = invoke("gallery", "reembed", "-e", md, "--images", str(photos), "-g", str(path))
    assert code == 0 and "already holds vectors of" in out


KILLED = r"""
import logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
from faceprint.cli.main import run
run()
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigkill_inside_the_reembed_transaction_leaves_the_gallery_as_it_was(
    tmp_path: Path, recognizer: Recognizer, stock_model_dir: Path, backend: str
) -> None:
    """The reembed command is held by the test hook after its writes, before COMMIT, and
    SIGKILLed there: the reopened gallery is bound to the stock model with its old vectors."""
    if backend == "postgres":
        from .pg import shared_server

        location = shared_server().create_database()
    else:
        location = str(tmp_path / "g.sqlite")
    with open_gallery(location, recognizer) as g:
        assert all(r.ok for r in g.enroll_dir(KNN / "train"))
        before, generation = _vectors(g.store), g.store.generation()
    env = {**os.environ, "FACEPRINT_TEST_SLEEP_BEFORE_COMMIT": "600"}
    args = ["gallery", "reembed", "-e", str(stock_model_dir), "--images", str(KNN / "train"), "-g", location]
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        m, err = _wait_for(proc.stderr, HOOK, timeout=300)
        assert m is not None, f"the command never reached the hook: {err}"
        assert int(m.group(1)) == 9, err  # the open transaction holds the 9 re-embedded faces
        other = open_store(location)  # nobody else sees the new model before COMMIT
        try:
            assert other.model() == (STOCK, 128)
        finally:
            other.close()
    finally:
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    with open_gallery(location, recognizer) as g:
        assert g.store.model() == (STOCK, 128) and g.store.generation() == generation
        after = _vectors(g.store)
        assert after.keys() == before.keys()
        assert all(np.array_equal(before[f], after[f]) for f in before)
        assert _labels(g, KNN / "test" / "obama1.jpg") == [["obama"]]


def test_replace_vectors_can_change_the_dimension_on_every_backend(store_factory: StoreFactory) -> None:
    """A model of another dimension: the vectors, the bound (model, dim) and the search
    (pgvector's typed column and HNSW index) all follow, in one transaction."""
    rng = np.random.default_rng(0)

    def unit(n: int, dim: int) -> np.ndarray:
        v = rng.standard_normal((n, dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    store = store_factory()
    for i, v in enumerate(unit(4, 128)):
        store.add_faces(f"p{i}", [FaceRecord(uuid.uuid4().hex, f"p{i}", v, STOCK, f"sha{i}")])
    ids = list(store.snapshot().face_ids)
    new = dict(zip(ids[:3], unit(3, 16), strict=True))
    with pytest.raises(GalleryError, match="changed while it was re-embedded"):
        store.replace_vectors("dlib-ft@x+00000000", 16, new)  # p3's face is neither re-embedded nor dropped
    assert store.model() == (STOCK, 128)
    store.replace_vectors("dlib-ft@x+00000000", 16, new, [ids[3]])
    assert store.model() == ("dlib-ft@x+00000000", 16)
    snap = store.snapshot()
    assert list(snap.face_ids) == ids[:3] and snap.vectors.shape == (3, 16)
    hits = store.search_faces(np.stack([new[ids[1]]]), 2)
    assert hits[0][0][:2] == (ids[1], "p1") and hits[0][0][2] == pytest.approx(1.0, abs=1e-5)
    assert store.count_people() == 3 and {f.model for f in store.person("p0")[1]} == {"dlib-ft@x+00000000"}
