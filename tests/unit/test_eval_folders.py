"""Labelled folders: reading, seeded pairs, identification splits, and their bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceprint.errors import EvaluationError
from faceprint.evaluation.folders import make_pairs, read_labelled_dir, split_identification


def _tree(root: Path, counts: dict[str, int]) -> Path:
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            (root / name / f"{i:03d}.jpg").write_bytes(b"not decoded here")
    return root


def test_read_ignores_hidden_top_level_and_non_images(tmp_path: Path) -> None:
    root = _tree(tmp_path / "d", {"ann": 2, "bob": 1, ".git": 3})
    (root / "ann" / "notes.txt").write_text("x")
    (root / "loose.jpg").write_bytes(b"x")
    (root / "empty").mkdir()
    people = read_labelled_dir(root)
    assert list(people) == ["ann", "bob"] and [p.name for p in people["ann"]] == ["000.jpg", "001.jpg"]


@pytest.mark.parametrize(
    ("counts", "match"),
    [({"solo": 3}, "only one person"), ({}, "no images found")],
)
def test_read_refuses_one_person_and_no_images(tmp_path: Path, counts: dict[str, int], match: str) -> None:
    root = _tree(tmp_path / "d", counts)
    (root / "x").mkdir(parents=True)
    (root / "x" / "readme.md").write_text("not an image")
    with pytest.raises(EvaluationError, match=match):
        read_labelled_dir(root)


def test_read_refuses_a_file_or_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="not a directory"):
        read_labelled_dir(tmp_path / "missing")


def test_pairs_are_balanced_seeded_and_labelled_right(tmp_path: Path) -> None:
    people = read_labelled_dir(_tree(tmp_path / "d", {f"p{i:02d}": 2 + i % 4 for i in range(30)}))
    a = make_pairs(people, per_class=40, seed=7)
    b = make_pairs(people, per_class=40, seed=7)
    c = make_pairs(people, per_class=40, seed=8)
    assert a.a == b.a and a.b == b.b and (a.same == b.same).all()
    assert a.a != c.a
    assert a.same.sum() == 40 == (~a.same).sum()
    for x, y, s in zip(a.a, a.b, a.same, strict=True):
        assert (x.parent.name == y.parent.name) == s and x != y
    assert len({(x, y) for x, y, s in zip(a.a, a.b, a.same, strict=True) if not s}) == 40  # no repeats
    # 30 people >= 20: folds are person-disjoint
    fold_people: dict[int, set[str]] = {}
    for x, y, f in zip(a.a, a.b, a.folds, strict=True):
        fold_people.setdefault(int(f), set()).update({x.parent.name, y.parent.name})
    seen: set[str] = set()
    for names in fold_people.values():
        assert not names & seen
        seen |= names
    assert a.note == ""


def test_few_people_shuffle_folds_and_say_so(tmp_path: Path) -> None:
    people = read_labelled_dir(_tree(tmp_path / "d", {"a": 3, "b": 3, "c": 2}))
    lp = make_pairs(people, per_class=100)
    assert lp.same.sum() == 3 + 3 + 1  # every same-person pair, fewer than asked
    assert (~lp.same).sum() == 7 and "not person-disjoint" in lp.note
    assert set(np.unique(lp.folds)) <= set(range(10))


def test_no_same_person_pair_is_an_error(tmp_path: Path) -> None:
    people = read_labelled_dir(_tree(tmp_path / "d", {"a": 1, "b": 1}))
    with pytest.raises(EvaluationError, match="2 or more images"):
        make_pairs(people)


def test_identification_split(tmp_path: Path) -> None:
    people = read_labelled_dir(_tree(tmp_path / "d", {f"p{i}": 1 + i % 3 for i in range(10)}))
    s = split_identification(people, gallery_per_person=1, unknown_fraction=0.2, seed=1)
    assert len(s.gallery) == 8 and all(len(v) == 1 for v in s.gallery.values())
    strangers = {n for _, n in s.stranger_probes}
    assert len(strangers) == 2 and not strangers & set(s.gallery)
    assert all(n in s.gallery and p not in s.gallery[n] for p, n in s.known_probes)
    assert split_identification(people, 1, 0.2, seed=1) == s
    with pytest.raises(EvaluationError, match="no known probe"):
        split_identification(people, gallery_per_person=5)
    with pytest.raises(EvaluationError, match="unknown_fraction"):
        split_identification(people, unknown_fraction=1.0)
