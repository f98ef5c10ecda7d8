"""Re-embedding a gallery without weights: ``Store.replace_vectors`` on SQLite (one
transaction, rebinding, settings of the old model cleared, stale search indexes dropped,
refusal when the gallery changed meanwhile) and the re-embedding plan (photos found by
sha256, faces matched by IoU, every missing face reported, nothing written unless
``drop_missing``), with a scripted detector and embedder."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage

from faceprint.errors import GalleryError
from faceprint.gallery.ann_cache import ids_path, sidecar_path
from faceprint.gallery.records import FaceRecord
from faceprint.gallery.reembed import (
    MIN_IOU,
    apply_reembed,
    image_files,
    plan_reembed,
    scan_images,
    stored_faces,
)
from faceprint.gallery.sqlite import SqliteStore
from faceprint.types import Box, Face

OLD, NEW = "dlib@resnet_v1+55533b28", "dlib-ft@test+0123abcd"


def unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def _face(person: str, sha: str, box: Box | None, rng: np.random.Generator) -> FaceRecord:
    return FaceRecord(uuid.uuid4().hex, person, unit(rng, 8), OLD, sha, box, 0.9)


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    """Three people, four faces of OLD (8-D), a threshold, a calibration and a FAR stored."""
    rng = np.random.default_rng(0)
    s = SqliteStore(tmp_path / "g.sqlite")
    s.add_faces(
        "ann", [_face("ann", "a1", Box(0, 0, 10, 10), rng), _face("ann", "a2", Box(0, 0, 10, 10), rng)]
    )
    s.add_faces("bob", [_face("bob", "b1", Box(5, 5, 20, 20), rng)])
    s.add_faces("cy", [_face("cy", "c1", Box(1, 1, 9, 9), rng)])
    for key, value in (("threshold", "0.5"), ("calibration", '{"threshold": 0.5}'), ("far", "0.001")):
        s.set_setting(key, value)
    return s


def test_replace_vectors_rebinds_in_one_transaction(store: SqliteStore) -> None:
    faces = stored_faces(store)
    assert len(faces) == 4
    rng = np.random.default_rng(1)
    new = {f.face_id: unit(rng, 4) for f in faces[:3]}
    gen = store.generation()
    assert store.index_path is not None
    for p in (store.index_path, ids_path(store.index_path), sidecar_path(store.index_path)):
        p.write_bytes(b"an HNSW cache of the old vectors")
    store.replace_vectors(NEW, 4, new, [faces[3].face_id])
    assert store.model() == (NEW, 4) and store.generation() == gen + 1
    assert not store.index_path.exists() and not ids_path(store.index_path).exists()
    after = {f.face_id: f for f in stored_faces(store)}
    assert set(after) == set(new) and {f.model for f in after.values()} == {NEW}
    for fid, v in new.items():
        np.testing.assert_array_equal(after[fid].vector, v)
        old = next(f for f in faces if f.face_id == fid)
        assert (after[fid].image_sha256, after[fid].box, after[fid].person) == (
            old.image_sha256,
            old.box,
            old.person,
        )
    assert store.get_setting("threshold") is None and store.get_setting("calibration") is None
    assert store.get_setting("far") == "0.001"
    hits = store.search_faces(np.stack([new[faces[0].face_id]]), 1)  # the 4-D vectors are searched
    assert hits[0][0][0] == faces[0].face_id and hits[0][0][2] == pytest.approx(1.0, abs=1e-6)
    assert [p.name for p in store.people()] == ["ann", "bob", "cy"]  # cy kept, with no face
    assert store.count_people() == 2


def test_replace_vectors_refuses_a_gallery_that_changed_and_writes_nothing(store: SqliteStore) -> None:
    faces = stored_faces(store)
    rng = np.random.default_rng(2)
    before = store.snapshot()
    with pytest.raises(
        GalleryError, match=r"changed while it was re-embedded \(1 face\(s\) enrolled, 0 removed"
    ):
        store.replace_vectors(NEW, 8, {f.face_id: unit(rng, 8) for f in faces[:2]}, [faces[2].face_id])
    with pytest.raises(GalleryError, match="expected finite 8-D vectors"):
        store.replace_vectors(NEW, 8, {f.face_id: np.full(8, np.nan, np.float32) for f in faces})
    with pytest.raises(GalleryError, match="both re-embedded and dropped"):
        store.replace_vectors(NEW, 8, {f.face_id: unit(rng, 8) for f in faces}, [faces[0].face_id])
    after = store.snapshot()
    assert store.model() == (OLD, 8) and after.generation == before.generation
    np.testing.assert_array_equal(after.vectors, before.vectors)
    assert store.get_setting("threshold") == "0.5"


# -- the plan -------------------------------------------------------------------------------
class Scripted:
    """A recognizer whose detector finds the boxes scripted for an image's colour and whose
    embedder maps a box to a fixed 4-D unit vector."""

    model_id = NEW

    def __init__(self, boxes: dict[int, list[Box]]) -> None:
        self.boxes = boxes
        self.detector = self
        self.embedder = type("E", (), {"dim": 4})()

    def detect_batch(self, images: Sequence[Any]) -> list[list[Face]]:
        return [[Face(b, 0.9, None) for b in self.boxes.get(int(img[0, 0, 0]), [])] for img in images]

    @staticmethod
    def vector(box: Box) -> np.ndarray:
        v = np.array([box.x1 + 1, box.y1 + 2, box.x2 + 3, box.y2 + 4], np.float32)
        return v / np.linalg.norm(v)

    def embed_batch(
        self, images: Sequence[Any], faces: Sequence[Sequence[Face]], views: bool = False
    ) -> list[list[Face]]:
        return [[f.with_embedding(self.vector(f.box), NEW) for f in fs] for fs in faces]


def _photo(path: Path, shade: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new("RGB", (40, 40), (shade, shade, shade)).save(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_faces_are_found_by_sha256_and_box_and_the_missing_ones_named(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    photos = tmp_path / "photos"
    group = _photo(photos / "nested" / "deeper" / "group.png", 10)  # ann and bob, two boxes
    solo = _photo(photos / "cy.PNG", 20)  # cy's face moved: the detector finds it elsewhere
    _photo(photos / ".hidden.png", 30)
    (photos / "notes.txt").write_text("not a photo")
    broken = photos / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    faces = [
        _face("ann", group, Box(0, 0, 10, 10), rng),
        _face("bob", group, Box(20, 20, 30, 30), rng),
        _face("cy", solo, Box(0, 0, 10, 10), rng),
        _face("dee", "f" * 64, Box(0, 0, 10, 10), rng),  # a photo not in the folders
        _face("eve", hashlib.sha256(b"not a jpeg").hexdigest(), Box(0, 0, 10, 10), rng),
    ]
    store = SqliteStore(tmp_path / "g.sqlite")
    for f in faces:
        store.add_faces(f.person, [f])
    files = image_files([photos])
    assert sorted(p.name for p in files) == ["broken.jpg", "cy.PNG", "group.png"]
    found = scan_images(files, {f.image_sha256 for f in faces if f.image_sha256})
    assert set(found) == {group, solo, faces[4].image_sha256}
    detected = {10: [Box(19, 19, 31, 31), Box(1, 0, 11, 10)], 20: [Box(8, 8, 18, 18)]}
    rec = Scripted(detected)
    done: list[int] = []
    plan = plan_reembed(store, rec, found, progress=done.append)  # type: ignore[arg-type]
    assert sum(done) == 3 and plan.faces == 5 and plan.old_model == OLD and (plan.model, plan.dim) == (NEW, 4)
    assert set(plan.vectors) == {faces[0].face_id, faces[1].face_id}
    np.testing.assert_array_equal(plan.vectors[faces[1].face_id], Scripted.vector(Box(19, 19, 31, 31)))
    np.testing.assert_array_equal(plan.vectors[faces[0].face_id], Scripted.vector(Box(1, 0, 11, 10)))
    why = {m.person: m.reason for m in plan.missing}
    assert list(why) == ["cy", "dee", "eve"]
    assert why["cy"].startswith("face not found") and f"need {MIN_IOU}" in why["cy"]
    assert why["dee"] == "its image was not found in the folders given"
    assert why["eve"].startswith("its image cannot be read")
    assert next(m for m in plan.missing if m.person == "cy").image == str(photos / "cy.PNG")

    report = apply_reembed(store, plan)  # missing faces: nothing written
    assert not report.written and len(report.missing) == 3 and report.reembedded == 0
    assert store.model() == (OLD, 8) and len(stored_faces(store)) == 5
    report = apply_reembed(store, plan, drop_missing=True)
    assert (
        report.written
        and report.reembedded == 2
        and [m.person for m in report.dropped] == ["cy", "dee", "eve"]
    )
    assert store.model() == (NEW, 4) and {f.person for f in stored_faces(store)} == {"ann", "bob"}
    assert report.to_dict()["dropped"][0]["reason"].startswith("face not found")
    stale = replace(plan, vectors={})  # a plan of the gallery as it was: refused now
    with pytest.raises(GalleryError, match="changed while it was re-embedded"):
        apply_reembed(store, stale, drop_missing=True)
    with pytest.raises(GalleryError, match="found no directory at"):
        image_files([tmp_path / "nowhere"])
