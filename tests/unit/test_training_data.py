"""Training data rules (faceprint.training.data): the person-disjoint split, P x K batches,
and the errors for folders a triplet loss cannot use. Synthetic chips; no weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceprint.errors import TrainingError
from faceprint.training.augment import CONTEXT
from faceprint.training.data import FaceSet, check_trainable, context_templates, pk_batches, split_people


def faceset(counts: list[int]) -> FaceSet:
    labels = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    chips = np.zeros((len(labels), CONTEXT, CONTEXT, 3), np.uint8)
    chips[:, 0, 0, 0] = np.arange(len(labels)) % 256  # tell faces apart
    people = tuple(f"p{i:03d}" for i in range(len(counts)))
    paths = tuple(f"{people[lab]}/{i}.jpg" for i, lab in enumerate(labels))
    return FaceSet(chips, labels, people, paths)


def test_split_is_person_disjoint_seeded_and_keeps_singletons_in_training() -> None:
    faces = faceset([1, 3, 2, 5, 1, 4, 2, 2, 3, 6, 2, 2])
    train, val = split_people(faces, 0.3, seed=1)
    assert not set(train.people) & set(val.people)
    assert set(train.people) | set(val.people) == set(faces.people)
    assert {"p000", "p004"} <= set(train.people)  # one image each: never validation
    assert all(c >= 2 for c in val.counts)
    assert len(val.people) == round(0.3 * 10)
    again = split_people(faces, 0.3, seed=1)[1]
    assert again.people == val.people
    assert split_people(faces, 0.3, seed=2)[1].people != val.people
    # chips follow their labels through the subset
    for i, person in enumerate(val.labels):
        src = faces.paths.index(val.paths[i])
        assert faces.people[faces.labels[src]] == val.people[person]
        assert faces.chips[src, 0, 0, 0] == val.chips[i, 0, 0, 0]


def test_pk_batches_have_p_people_with_k_faces_each() -> None:
    faces = faceset([5, 2, 3, 1, 4, 2, 6, 2, 3])  # 8 people with 2+ faces
    rng = np.random.default_rng(0)
    batches = pk_batches(faces, 3, 4, rng)
    assert len(batches) == 3  # ceil(8 / 3)
    seen = set()
    for idx in batches:
        labels = faces.labels[idx]
        people, counts = np.unique(labels, return_counts=True)
        assert len(people) == 3 and (counts == 4).all()
        assert 3 not in people  # the one-face person can give no positive
        seen |= set(people.tolist())
        for person in people:  # without replacement when a person has K or more
            own = idx[labels == person]
            if faces.counts[person] >= 4:
                assert len(set(own.tolist())) == 4
            else:
                assert set(own.tolist()) == set(np.flatnonzero(faces.labels == person).tolist())
    assert seen == set(faces.multi_image_people().tolist())


def test_pk_batches_with_fewer_people_than_p_use_them_all() -> None:
    faces = faceset([2, 3])
    (batch,) = pk_batches(faces, 32, 2, np.random.default_rng(0))
    assert sorted(np.unique(faces.labels[batch]).tolist()) == [0, 1]


@pytest.mark.parametrize("counts", [[1, 1, 1, 1], [5, 1, 1], [4]])
def test_a_folder_without_two_people_with_two_faces_is_refused(counts: list[int]) -> None:
    with pytest.raises(TrainingError, match="at least 2 such people"):
        check_trainable(faceset(counts))


def test_too_few_people_to_hold_out_is_a_clear_error() -> None:
    with pytest.raises(TrainingError, match="too few to hold out"):
        split_people(faceset([2, 2, 2]), 0.5, seed=0)
    with pytest.raises(TrainingError, match="between 0 and 1"):
        split_people(faceset([2, 2, 2, 2, 2]), 1.5, seed=0)


def test_batches_need_two_people_and_two_images() -> None:
    with pytest.raises(TrainingError, match="at least 2 people x 2 images"):
        pk_batches(faceset([3, 3]), 1, 4, np.random.default_rng(0))


def test_context_templates_shift_the_chip_by_the_margin() -> None:
    from faceprint.embedding.dlib import chip_templates

    ctx = context_templates(chip_templates())
    for scheme, tpl in chip_templates().items():
        moved = np.asarray(ctx[scheme].points) - np.asarray(tpl.points)
        assert np.allclose(moved, 38.0) and ctx[scheme].size == CONTEXT


def test_load_faces_skips_what_it_cannot_use(tmp_path: Path) -> None:
    from faceprint.embedding.dlib import chip_templates
    from faceprint.training.data import load_faces
    from faceprint.types import Box, Face

    for person in ("ann", "bob"):
        (tmp_path / person).mkdir()
    import cv2

    img = np.full((120, 100, 3), 128, np.uint8)
    for name in ("ann/1.jpg", "ann/2.jpg", "bob/1.jpg"):
        cv2.imwrite(str(tmp_path / name), img)
    (tmp_path / "bob" / "2.jpg").write_bytes(b"not an image")
    lm = np.array([[35, 50], [65, 50], [50, 65], [38, 80], [62, 80]], np.float32)

    def detect(image: np.ndarray) -> list[Face]:
        return [Face(Box(20, 30, 80, 100), 0.9, lm, landmark_scheme="std5")]

    faces = load_faces(tmp_path, detect, chip_templates())
    assert faces.chips.shape == (3, CONTEXT, CONTEXT, 3)
    assert faces.people == ("ann", "bob") and faces.labels.tolist() == [0, 0, 1]
    assert [s.path.endswith("bob/2.jpg") for s in faces.skipped] == [True]
    assert "unreadable" in faces.skipped[0].reason
    assert len(faces.sha256) == 3 and len(set(faces.sha256)) == 1  # the same bytes
    none = load_faces(tmp_path, lambda image: [], chip_templates())
    assert len(none) == 0 and [s.reason for s in none.skipped].count("no face found") == 3
