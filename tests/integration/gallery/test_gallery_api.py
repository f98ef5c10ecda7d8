"""The Gallery API on real photos, run against every backend of ``store_factory``."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import LFW, need
from faceprint.errors import GalleryError, IncompatibleEmbeddingError
from faceprint.gallery.gallery import Gallery
from faceprint.gallery.records import EXPORT_FORMAT_VERSION, FaceRecord
from faceprint.recognizer import Recognizer

from .conftest import KNN, StoreFactory

STRANGER = LFW / "Aaron_Guiel" / "Aaron_Guiel_0001.jpg"  # not in the knn gallery


def _labels(g: Gallery, *images: Path) -> list[list[str]]:
    return [[r.label for r in rs] for rs in g.identify(list(images))]


def test_identify_names_enrolled_people_and_unknowns(knn_gallery: Gallery) -> None:
    test = KNN / "test"
    res = knn_gallery.identify(
        [test / "obama1.jpg", test / "johnsnow_test1.jpg", test / "alex_lacamoire1.jpg",
         test / "obama_and_biden.jpg", need(STRANGER)]
    )  # fmt: skip
    labels = [[r.label for r in rs] for rs in res]
    assert labels[0] == ["obama"]
    assert labels[1] == ["kit_harington"]
    assert labels[2] == ["alex_lacamoire"]
    assert {"obama", "biden"} <= set(labels[3])
    assert labels[4] == ["unknown"]
    op = res.operating_point
    assert op.people == 5 and op.source in ("open-set", "embedder default") and -1 < op.threshold < 1
    stranger = res[4][0]
    assert stranger.best is not None and stranger.best.similarity < op.threshold
    d = res.to_dict()
    assert d["operating_point"]["threshold"] == op.threshold
    face = d["images"][0]["faces"][0]
    assert face["label"] == "obama" and "embedding" not in face["face"] and face["matches"][0]["face_id"]


def test_threshold_per_call_then_stored(knn_gallery: Gallery) -> None:
    img = KNN / "test" / "obama1.jpg"
    assert _labels(knn_gallery, img) == [["obama"]]
    res = knn_gallery.identify([img], threshold=0.999)
    assert res[0][0].label == "unknown" and res.operating_point.source == "argument"
    knn_gallery.set_threshold(0.999)
    assert knn_gallery.operating_point().source == "gallery"
    assert _labels(knn_gallery, img) == [["unknown"]]
    knn_gallery.set_threshold(None)
    assert knn_gallery.operating_point().source != "gallery"
    with pytest.raises(GalleryError, match=r"\[-1, 1\]"):
        knn_gallery.set_threshold(3.0)


def test_lookalike_ranks_people_not_faces(knn_gallery: Gallery) -> None:
    knn_gallery.set_threshold(0.9999)  # lookalike ignores the threshold
    r = knn_gallery.lookalike(KNN / "test" / "obama1.jpg", top_k=5)
    names = [m.identity for m in r.matches]
    assert names[0] == "obama" and len(names) == 5 == len(set(names))
    sims = [m.similarity for m in r.matches]
    assert sims == sorted(sims, reverse=True)
    assert len(knn_gallery.lookalike(KNN / "test" / "obama1.jpg", top_k=2).matches) == 2


def test_people_are_scored_by_their_centroid(knn_gallery: Gallery) -> None:
    """A person with several faces scores the probe's cosine with the re-normalised mean of
    their vectors (measured better than the best face on LFW dev), on every backend."""
    _, faces = knn_gallery.person("obama")
    assert len(faces) == 2
    mean = np.sum([f.vector for f in faces], axis=0, dtype=np.float64)
    centroid = mean / np.linalg.norm(mean)
    r = knn_gallery.lookalike(KNN / "test" / "obama1.jpg", top_k=1)
    probe = np.asarray(r.face.embedding, np.float64)
    (m,) = r.matches
    assert m.identity == "obama"
    assert m.similarity == pytest.approx(float(probe @ centroid), abs=1e-5)
    face_sims = [float(probe @ f.vector) for f in faces]
    assert min(face_sims) < m.similarity  # not one face's score: the two differ
    assert m.face_id == faces[int(np.argmax(face_sims))].face_id


def test_duplicate_image_is_a_reported_no_op(knn_gallery: Gallery) -> None:
    gen = knn_gallery.store.generation()
    rep = knn_gallery.enroll("obama", [KNN / "train" / "obama" / "obama.jpg"])
    assert not rep.added and len(rep.duplicates) == 1 and "already enrolled" in rep.duplicates[0].reason
    assert rep.ok
    assert knn_gallery.store.generation() == gen  # nothing written
    assert knn_gallery.person("obama")[0].faces == 2


def test_refusals_are_listed_and_the_rest_enrols(gallery: Gallery, tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 200, 3), 127, np.uint8)).save(blank)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    group = KNN / "test" / "obama_and_biden.jpg"
    good = KNN / "train" / "biden" / "biden.jpg"
    rep = gallery.enroll("biden", [blank, group, broken, good])
    assert [a.image for a in rep.added] == [str(good)]
    reasons = {Path(r.image).name: r.reason for r in rep.refused}
    assert set(reasons) == {"blank.png", "obama_and_biden.jpg", "broken.jpg"}
    assert "no face" in reasons["blank.png"]
    assert "faces found" in reasons["obama_and_biden.jpg"] and "largest" in reasons["obama_and_biden.jpg"]
    assert "not a recognised image" in reasons["broken.jpg"]
    assert gallery.person("biden")[0].faces == 1
    # nothing usable: no person is created
    rep = gallery.enroll("ghost", [blank])
    assert not rep.ok and [p.name for p in gallery.people()] == ["biden"]


def test_face_largest_and_index(gallery: Gallery, recognizer: Recognizer) -> None:
    group = KNN / "test" / "obama_and_biden.jpg"
    rep = gallery.enroll("someone", [group], face="largest")
    assert len(rep.added) == 1
    faces = recognizer.detect(group)
    assert rep.added[0].box == max(faces, key=lambda f: f.box.area).box
    rep = gallery.enroll("second", [group], face=1)
    assert rep.added[0].box == faces[1].box
    rep = gallery.enroll("third", [group], face=99)
    assert not rep.added and "index 99" in rep.refused[0].reason


def test_remove_deletes_every_vector(knn_gallery: Gallery) -> None:
    assert knn_gallery.remove("obama") == 2
    snap = knn_gallery.store.snapshot()
    assert "obama" not in snap.persons and len(snap.face_ids) == 7
    r = knn_gallery.lookalike(KNN / "test" / "obama1.jpg", top_k=10)
    assert "obama" not in [m.identity for m in r.matches]
    assert _labels(knn_gallery, KNN / "test" / "obama1.jpg") == [["unknown"]]


def test_rename_and_unknown_names(knn_gallery: Gallery) -> None:
    knn_gallery.rename("kit_harington", "Jon Snow")
    assert _labels(knn_gallery, KNN / "test" / "johnsnow_test1.jpg") == [["Jon Snow"]]
    with pytest.raises(GalleryError, match="no such person"):
        knn_gallery.rename("nobody", "x")
    with pytest.raises(GalleryError, match="no such person"):
        knn_gallery.remove("nobody")
    with pytest.raises(GalleryError, match="already exists"):
        knn_gallery.rename("obama", "biden")
    with pytest.raises(GalleryError, match="reserved"):
        knn_gallery.rename("obama", "unknown")
    with pytest.raises(GalleryError):
        knn_gallery.person("nobody")


def test_names_with_unicode_slashes_and_quotes(gallery: Gallery) -> None:
    name = 'Zoë/O\'Brien "Jr"; DROP TABLE people;-- 王'
    rep = gallery.enroll(name, [KNN / "train" / "biden" / "biden.jpg"], metadata={"note": "ünï"})
    assert rep.added
    person, faces = gallery.person(name)
    assert person.metadata == {"note": "ünï"} and len(faces) == 1
    assert _labels(gallery, KNN / "train" / "biden" / "biden2.jpg") == [[name]]
    gallery.rename(name, name + "\\2")
    assert gallery.remove(name + "\\2") == 1
    for bad in ("", "   ", "a\nb", "Unknown"):
        with pytest.raises(GalleryError):
            gallery.enroll(bad, [KNN / "train" / "biden" / "biden.jpg"])


def test_vectors_of_another_model_are_refused(store_factory: StoreFactory, recognizer: Recognizer) -> None:
    store = store_factory()
    v = np.zeros(128, np.float32)
    v[0] = 1.0
    store.add_faces("x", [FaceRecord(uuid.uuid4().hex, "x", v, "other-model@2")])
    g = Gallery(store, recognizer)
    with pytest.raises(IncompatibleEmbeddingError, match="other-model@2"):
        g.enroll("y", [KNN / "train" / "biden" / "biden.jpg"])
    with pytest.raises(IncompatibleEmbeddingError):
        g.identify([KNN / "test" / "obama1.jpg"])
    with pytest.raises(IncompatibleEmbeddingError):
        g.lookalike(KNN / "test" / "obama1.jpg")
    with pytest.raises(IncompatibleEmbeddingError):
        store.add_faces("x", [FaceRecord(uuid.uuid4().hex, "x", v, "dlib@resnet_v1+55533b28")])


def test_export_import_round_trip_is_exact(
    knn_gallery: Gallery, store_factory: StoreFactory, recognizer: Recognizer, tmp_path: Path
) -> None:
    knn_gallery.set_metadata("obama", {"role": "president", "n": 44})
    knn_gallery.set_far(0.05)
    out = tmp_path / "export.jsonl"
    assert knn_gallery.export(out) == 9
    header = json.loads(out.read_text().splitlines()[0])
    assert header["format_version"] == EXPORT_FORMAT_VERSION and header["people"] == 5
    other = Gallery(store_factory(), recognizer)
    assert other.import_(out) == (9, 0)
    assert other.import_(out) == (0, 9)  # a second import adds nothing
    assert other.store.get_setting("far") == knn_gallery.store.get_setting("far")
    assert [(p.name, dict(p.metadata), p.faces) for p in other.people()] == [
        (p.name, dict(p.metadata), p.faces) for p in knn_gallery.people()
    ]
    for p in knn_gallery.people():
        a, b = knn_gallery.person(p.name)[1], other.person(p.name)[1]
        assert [f.to_dict() for f in a] == [f.to_dict() for f in b]
        assert all(x.vector.tobytes() == y.vector.tobytes() for x, y in zip(a, b, strict=True))
    assert _labels(other, KNN / "test" / "obama1.jpg") == [["obama"]]


def test_export_from_a_future_version_is_refused(
    knn_gallery: Gallery, store_factory: StoreFactory, recognizer: Recognizer, tmp_path: Path
) -> None:
    gallery = Gallery(store_factory(), recognizer)
    out = tmp_path / "export.jsonl"
    knn_gallery.export(out)
    lines = out.read_text().splitlines()
    header = json.loads(lines[0])
    header["format_version"] = EXPORT_FORMAT_VERSION + 1
    future = tmp_path / "future.jsonl"
    future.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    with pytest.raises(GalleryError, match="format_version"):
        gallery.import_(future)
    assert gallery.people() == []
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("hello\n")
    with pytest.raises(GalleryError, match="expected a faceprint gallery export"):
        gallery.import_(garbage)


def test_calibration_is_stored_and_bound_to_the_model(knn_gallery: Gallery) -> None:
    from faceprint.gallery.scoring import fit_distribution

    model = "dlib@resnet_v1+55533b28"
    imp = np.random.default_rng(0).normal(0.83, 0.035, 50_000)
    rec = {"threshold": 0.93, "model": model, "far_target": 0.001, "tar": 0.9, "source": "x",
           "impostor_pairs": len(imp), "impostors": fit_distribution(imp, model, "x")}  # fmt: skip
    knn_gallery.set_calibration(rec)
    op = knn_gallery.operating_point()
    assert (op.source, op.far) == ("calibrated", 0.01) and "TAR 0.9" in op.note
    assert knn_gallery.calibration() == rec
    assert knn_gallery.identify([KNN / "test" / "obama1.jpg"]).operating_point.source == "calibrated"
    with pytest.raises(IncompatibleEmbeddingError, match="calibrate with the gallery's embedder"):
        knn_gallery.set_calibration({**rec, "model": model + "+flip"})
    knn_gallery.set_threshold(0.95)  # a manual threshold replaces the calibration
    assert knn_gallery.operating_point().source == "gallery" and knn_gallery.calibration() is None


def test_face_central_enrols_the_face_nearest_the_centre(gallery: Gallery, recognizer: Recognizer) -> None:
    from faceprint.io import load_image
    from faceprint.selection import central_face

    img_path = KNN / "test" / "obama_and_biden.jpg"
    img = load_image(img_path)
    faces = recognizer.detector.detect(img)
    assert len(faces) >= 2
    want = central_face(faces, img.shape)
    assert want is not None
    (added,) = gallery.enroll("someone", [img_path], face="central").added
    assert added.box == want.box


def test_lookalike_without_a_face_names_other_detectors(gallery: Gallery, tmp_path: Path) -> None:
    from faceprint.errors import NoFaceError

    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (120, 160, 200)).save(blank)
    with pytest.raises(NoFaceError, match=r"found none \(detector \w+\); try another detector: "):
        gallery.lookalike(blank)


@pytest.mark.parametrize("meanwhile", ["rename", "delete"])
def test_enrol_by_id_follows_the_person_changed_while_embedding(
    gallery: Gallery, meanwhile: str, request: pytest.FixtureRequest
) -> None:
    """``enroll_id`` embeds outside any transaction; another client renaming or deleting
    the person meanwhile (here: from the progress callback, through another handle) must
    not enrol the faces under the old name, nor bring a deleted person back."""
    from faceprint.errors import UnknownPersonError
    from faceprint.gallery import open_store

    photo = need(KNN / "train" / "obama" / "obama.jpg")
    pid = gallery.store.create_person("Obama").id
    other = open_store(str(gallery.store.location))
    request.addfinalizer(other.close)

    def change(_: int) -> None:
        if meanwhile == "rename":
            other.rename_person("Obama", "Barack Obama")
        else:
            other.remove_person("Obama")

    if meanwhile == "rename":
        report = gallery.enroll_id(pid, [photo], progress=change)
        assert report.person == "Barack Obama" and len(report.added) == 1
        person, faces = gallery.store.person_by_id(pid)
        assert person.name == "Barack Obama" and len(faces) == 1
    else:
        with pytest.raises(UnknownPersonError):
            gallery.enroll_id(pid, [photo], progress=change)
    assert "Obama" not in {p.name for p in gallery.store.people()}
