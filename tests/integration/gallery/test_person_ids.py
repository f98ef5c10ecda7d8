"""People addressed by a stable id, people with no faces, and removing one face: the Store
contract on every backend (no model needed: synthetic vectors).

* ``Person.id`` is a uuid4 hex given when a person is created (``create_person`` or a
  first enrolment), unchanged by renames and further enrolments; ``person_by_id`` finds it;
* "no such person" is :class:`UnknownPersonError`, a taken name :class:`NameTakenError`,
  an unknown face :class:`UnknownFaceError` (all GalleryErrors; a service's 404 and 409);
* a person with no faces (created empty, or whose faces were removed) is listed, but has
  no centroid, is never a search hit nor a ranked match, and does not count in K;
* export/import carries people with no faces; imported people get new ids.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import numpy as np
import pytest

from faceprint.errors import GalleryError, NameTakenError, UnknownFaceError, UnknownPersonError
from faceprint.gallery.gallery import Gallery
from faceprint.gallery.records import FaceRecord

from .conftest import StoreFactory

RNG = np.random.default_rng(23)
HEX32 = re.compile(r"[0-9a-f]{32}")


def faces(person: str, n: int, dim: int = 8) -> list[FaceRecord]:
    v = RNG.standard_normal((n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return [FaceRecord(uuid.uuid4().hex, person, v[i], "m@1", uuid.uuid4().hex) for i in range(n)]


def test_create_person_and_find_them_by_id(store_factory: StoreFactory) -> None:
    store = store_factory()
    ada = store.create_person("ada", {"team": "a", "n": [1, 2]})
    assert HEX32.fullmatch(ada.id) and ada.faces == 0 and ada.created_at
    assert ada.to_dict() == {"id": ada.id, "name": "ada", "metadata": {"team": "a", "n": [1, 2]},
                             "faces": 0, "created_at": ada.created_at}  # fmt: skip
    assert store.generation() == 1 and store.model() is None  # one write; binds no model
    assert store.people() == [ada]
    assert store.person("ada") == (ada, []) and store.person_by_id(ada.id) == (ada, [])
    bob = store.create_person("bob")
    assert bob.id != ada.id and bob.metadata == {} and [p.name for p in store.people()] == ["ada", "bob"]
    gen = store.generation()
    with pytest.raises(NameTakenError, match="'ada' already exists"):
        store.create_person("ada", {"other": 1})
    assert store.person("ada")[0].metadata == {"team": "a", "n": [1, 2]} and store.generation() == gen
    for bad in ("", "  ", "a\nb", "Unknown"):
        with pytest.raises(GalleryError):
            store.create_person(bad)
    with pytest.raises(GalleryError, match="JSON"):
        store.create_person("cyd", {"when": object()})
    with pytest.raises(UnknownPersonError, match="no such person"):
        store.person_by_id(uuid.uuid4().hex)
    with pytest.raises(UnknownPersonError):
        store.person_by_id("")
    assert store.generation() == gen and [p.name for p in store.people()] == ["ada", "bob"]

    g = Gallery(store)  # the facade: same calls, same checks
    cyd = g.create_person("cyd", {"k": 1})
    assert g.person_by_id(cyd.id) == (cyd, [])
    with pytest.raises(GalleryError, match="reserved"):
        g.create_person("unknown")
    with pytest.raises(NameTakenError):
        g.create_person("cyd")


def test_ids_survive_renames_and_enrolments(store_factory: StoreFactory) -> None:
    store = store_factory()
    store.add_faces("ada", faces("ada", 2))
    store.add_faces("bob", faces("bob", 1))
    pid = store.person("ada")[0].id
    assert HEX32.fullmatch(pid) and pid != store.person("bob")[0].id
    store.add_faces("ada", faces("ada", 1), {"x": 1})
    store.rename_person("ada", "Ada Lovelace")
    person, recs = store.person_by_id(pid)
    assert person.name == "Ada Lovelace" and person.faces == 3 and person.metadata == {"x": 1}
    assert {f.person for f in recs} == {"Ada Lovelace"}
    assert {p.name: p.id for p in store.people()}["Ada Lovelace"] == pid
    gen = store.generation()
    with pytest.raises(NameTakenError, match="'bob' already exists"):
        store.rename_person("Ada Lovelace", "bob")
    store.rename_person("bob", "bob")  # onto its own name: nothing to refuse
    for call in (
        lambda: store.person("ada"),
        lambda: store.rename_person("ada", "x"),
        lambda: store.set_metadata("ada", {}),
        lambda: store.remove_person("ada"),
    ):
        with pytest.raises(UnknownPersonError, match="'ada': no such person"):
            call()
    assert issubclass(UnknownPersonError, GalleryError) and issubclass(NameTakenError, GalleryError)
    assert store.generation() == gen + 1  # only the no-op rename committed
    assert store.remove_person("Ada Lovelace") == 3
    with pytest.raises(UnknownPersonError):
        store.person_by_id(pid)


def test_a_created_person_stays_when_enrolment_adds_nothing(store_factory: StoreFactory) -> None:
    store = store_factory()
    taken = faces("zed", 1)
    store.add_faces("zed", taken)
    ada = store.create_person("ada", {"team": "a"})
    # every face skipped (its face_id exists): a NEW person is not created, an existing one stays
    assert store.add_faces("new", taken) == ([], taken)
    assert store.add_faces("ada", taken, {"x": 1}) == ([], taken)
    assert [(p.name, p.faces) for p in store.people()] == [("ada", 0), ("zed", 1)]
    assert store.add_faces("ada", [], {"x": 1}) == ([], [])
    added, _ = store.add_faces("ada", faces("ada", 2), {"x": 2})
    person, recs = store.person_by_id(ada.id)
    assert person.name == "ada" and person.faces == 2 and person.metadata == {"team": "a", "x": 2}
    assert [f.face_id for f in recs] == [f.face_id for f in added]


def test_remove_face(store_factory: StoreFactory) -> None:
    store = store_factory()
    ada, bob = faces("ada", 3), faces("bob", 1)
    store.add_faces("ada", ada)
    store.add_faces("bob", bob)
    pid = store.person("ada")[0].id
    gen = store.generation()
    assert store.remove_face(ada[1].face_id) == "ada"
    assert store.generation() == gen + 1
    person, recs = store.person("ada")
    assert person.id == pid and person.faces == 2
    assert [f.face_id for f in recs] == [ada[0].face_id, ada[2].face_id]
    assert ada[1].face_id not in store.snapshot().face_ids
    hits = store.search_faces(ada[1].vector[None, :], 10)[0]
    assert ada[1].face_id not in {h[0] for h in hits} and len(hits) == 3
    assert store.remove_face(bob[0].face_id) == "bob"  # the last face: bob stays, with none
    assert [(p.name, p.faces) for p in store.people()] == [("ada", 2), ("bob", 0)]
    assert store.person("bob")[1] == []
    gen = store.generation()
    for fid in (bob[0].face_id, uuid.uuid4().hex, ""):
        with pytest.raises(UnknownFaceError, match="no such face"):
            store.remove_face(fid)
    assert issubclass(UnknownFaceError, GalleryError) and store.generation() == gen
    assert Gallery(store).remove_face(ada[0].face_id) == "ada"  # the facade
    assert len(store.snapshot().face_ids) == 1


def test_people_without_faces_are_listed_but_never_matched(store_factory: StoreFactory) -> None:
    store = store_factory()
    store.create_person("early")  # before any model is bound
    g = Gallery(store)
    q = faces("q", 1)[0].vector[None, :]
    assert store.model() is None and store.count_people() == 0 and len(store.snapshot().face_ids) == 0
    assert store.search_faces(q, 3) == [[]] and store.centroids(["early"]) == {}
    assert g.rank(q, 3) == [()]
    ada = faces("ada", 2)
    store.add_faces("ada", ada)
    store.add_faces("bob", faces("bob", 1))
    store.remove_face(store.person("bob")[1][0].face_id)
    store.create_person("late", {"k": 1})
    assert [(p.name, p.faces) for p in store.people()] == [("ada", 2), ("bob", 0), ("early", 0), ("late", 0)]
    assert store.count_people() == 1  # K of the open-set threshold: people who can be named
    assert g.operating_point().people == 1
    assert set(store.centroids(["ada", "bob", "early", "late", "nobody"])) == {"ada"}
    snap = store.snapshot()
    assert snap.persons == ("ada", "ada") and snap.vectors.shape == (2, 8)
    assert {h[1] for h in store.search_faces(q, 10)[0]} == {"ada"}
    (matches,) = g.rank(ada[0].vector[None, :], top_k=5)
    assert [m.identity for m in matches] == ["ada"]


def test_export_import_carries_people_without_faces(store_factory: StoreFactory, tmp_path: Path) -> None:
    src = store_factory()
    src.create_person("empty", {"note": "no photo yet"})
    src.add_faces("ada", faces("ada", 2), {"team": "a"})
    out = tmp_path / "export.jsonl"
    assert Gallery(src).export(out) == 2
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert lines[0]["people"] == 2 and lines[0]["faces"] == 2
    by_name = {d["name"]: d for d in lines[1:]}
    assert by_name["empty"]["faces"] == [] and by_name["empty"]["id"] == src.person("empty")[0].id

    target = store_factory()
    target.create_person("ada", {"mine": True})  # already there, empty: gets the faces, keeps its id
    ada_id = target.person("ada")[0].id
    assert Gallery(target).import_(out) == (2, 0)
    assert target.generation() == 2  # the create above, then the import: one transaction
    got = {p.name: (dict(p.metadata), p.faces) for p in target.people()}
    assert got == {"ada": ({"mine": True, "team": "a"}, 2), "empty": ({"note": "no photo yet"}, 0)}
    assert target.person("ada")[0].id == ada_id
    new_id = target.person("empty")[0].id  # imported people get new ids
    assert HEX32.fullmatch(new_id) and new_id != src.person("empty")[0].id
    assert Gallery(target).import_(out) == (0, 2)  # again: nothing added, nobody doubled
    assert [(p.name, p.faces) for p in target.people()] == [("ada", 2), ("empty", 0)]
    assert target.person("empty")[0].id == new_id


def test_the_people_count_follows_writes_of_another_store(
    store_factory: StoreFactory, request: pytest.FixtureRequest
) -> None:
    """``count_people`` is remembered per generation (every identify asks for it): a write
    through another handle of the same gallery (another process) must still show."""
    from faceprint.gallery import open_store

    a = store_factory()
    b = open_store(str(a.location))  # a second handle on the same gallery
    request.addfinalizer(b.close)
    a.add_faces("ada", faces("ada", 2))
    assert a.count_people() == 1 and a.count_people() == 1
    b.add_faces("bob", faces("bob", 1))
    assert a.count_people() == 2
    b.add_faces("ada", faces("ada", 1))  # a new face, not a new person: the count stays right
    assert a.count_people() == 2
    b.remove_person("bob")
    assert a.count_people() == 1 and b.count_people() == 1
