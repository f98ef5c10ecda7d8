"""Training data: a folder of people turned into aligned context chips, a person-disjoint
split, and P x K batches.

Why context chips: augmentation jitters the crop (scale, shift, rotation) around the
alignment, which needs pixels beyond the 150x150 chip. Each face is aligned once, at
load time, into a ``CONTEXT`` (226) px chip at the same pixel scale as the embedder's chip
with a ``MARGIN`` (38) px border (:mod:`.augment`); its centre crop *is* the chip, so no
detection or warping of whole photos happens during training.

Conventions: folders are ``DIR/<person>/<image>`` (:func:`faceprint.evaluation.folders.
read_labelled_dir`); chips are RGB uint8 ``(N, 226, 226, 3)``; labels index ``people``.
Everything random takes a seeded ``numpy.random.Generator``, so a run is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from ..alignment import AlignmentTemplate, align
from ..errors import FaceprintError, TrainingError
from ..evaluation.folders import read_labelled_dir
from ..io import load_image
from ..models import sha256_file
from ..selection import central_face, largest_face
from ..types import Face
from .augment import CONTEXT, MARGIN

FacePick = Literal["largest", "central"]

#: A person needs this many usable images to give a genuine (same-person) pair.
MIN_IMAGES = 2


def context_templates(templates: dict[str, AlignmentTemplate]) -> dict[str, AlignmentTemplate]:
    """The embedder's chip templates moved into the ``CONTEXT`` px chip: same pixel scale,
    every landmark shifted by ``MARGIN`` (so the centre crop is the embedder's chip)."""
    out = {}
    for scheme, tpl in templates.items():
        if tpl.size + 2 * MARGIN != CONTEXT:
            raise TrainingError(f"expected {CONTEXT - 2 * MARGIN} px chip templates, got {tpl.size} px")
        pts = tuple((x + MARGIN, y + MARGIN) for x, y in tpl.points)
        out[scheme] = AlignmentTemplate(tpl.scheme, pts, CONTEXT, tpl.method)
    return out


@dataclass(frozen=True)
class Skipped:
    """An image left out of training, and why (no face, several faces, unreadable)."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass
class FaceSet:
    """Aligned context chips with person labels.

    ``chips[i]`` is a face of ``people[labels[i]]`` from ``paths[i]``; ``skipped`` lists
    the images that gave no chip. ``sha256`` lists each used file's hash (for the card).
    """

    chips: NDArray[np.uint8]
    labels: NDArray[np.int64]
    people: tuple[str, ...]
    paths: tuple[str, ...]
    sha256: tuple[str, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    counts: NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        if len(self.chips) != len(self.labels) or len(self.labels) != len(self.paths):
            raise ValueError(f"{len(self.chips)} chips, {len(self.labels)} labels, {len(self.paths)} paths")
        self.counts = np.bincount(self.labels, minlength=len(self.people)).astype(np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, people: Sequence[int]) -> FaceSet:
        """The faces of ``people`` (indices into :attr:`people`), relabelled 0..len-1."""
        keep = np.isin(self.labels, np.asarray(people, dtype=np.int64))
        remap = {p: i for i, p in enumerate(people)}
        labels = np.asarray([remap[int(x)] for x in self.labels[keep]], dtype=np.int64)
        idx = np.flatnonzero(keep)
        return FaceSet(
            chips=self.chips[idx],
            labels=labels,
            people=tuple(self.people[p] for p in people),
            paths=tuple(self.paths[i] for i in idx),
            sha256=tuple(self.sha256[i] for i in idx) if self.sha256 else (),
        )

    def multi_image_people(self) -> NDArray[np.int64]:
        """Indices of the people with at least :data:`MIN_IMAGES` faces (anchors)."""
        return np.flatnonzero(self.counts >= MIN_IMAGES).astype(np.int64)


def load_faces(
    root: str | Path,
    detect: Callable[[NDArray[np.uint8]], list[Face]],
    templates: dict[str, AlignmentTemplate],
    face: FacePick = "largest",
    progress: Callable[[int], None] | None = None,
    folders: Mapping[str, Sequence[Path]] | None = None,
) -> FaceSet:
    """Detect and align one face per image of ``root`` (``DIR/<person>/<image>``;
    ``folders``: that listing when the caller already made it, so the folder is read once).

    ``detect`` maps an RGB image to its faces (a detector's ``detect``); ``templates`` are
    the embedder's chip templates (moved into context chips here). An image with no face,
    or one that cannot be read, is skipped and listed. With several faces ``face`` picks
    one: ``largest`` (a user's own photos) or ``central`` (LFW-style crops, where the
    labelled face is the one in the middle); the others are not used.
    """
    if face not in ("largest", "central"):
        raise TrainingError(f"--face must be largest or central, got {face!r}")
    if folders is None:
        try:
            folders = read_labelled_dir(root)
        except FaceprintError as exc:
            raise TrainingError(str(exc)) from None
    ctx = context_templates(templates)
    chips: list[NDArray[np.uint8]] = []
    labels: list[int] = []
    paths: list[str] = []
    hashes: list[str] = []
    skipped: list[Skipped] = []
    people = tuple(folders)
    for label, person in enumerate(people):
        for path in folders[person]:
            try:
                image = load_image(path)
                found = detect(image)
            except (FaceprintError, OSError) as exc:
                skipped.append(Skipped(str(path), f"unreadable: {exc}"))
                found = None
            if found is not None and not found:
                skipped.append(Skipped(str(path), "no face found"))
            elif found:
                chosen = largest_face(found) if face == "largest" else central_face(found, image.shape)
                assert chosen is not None and chosen.landmarks is not None
                tpl = ctx.get(chosen.landmark_scheme)
                if tpl is None:
                    raise TrainingError(
                        f"the embedder has no template for {chosen.landmark_scheme} landmarks"
                    )
                chips.append(align(image, chosen.landmarks, tpl))
                labels.append(label)
                paths.append(str(path))
                hashes.append(sha256_file(path))
            if progress is not None:
                progress(1)
    stack = np.stack(chips) if chips else np.zeros((0, CONTEXT, CONTEXT, 3), np.uint8)
    return FaceSet(stack, np.asarray(labels, np.int64), people, tuple(paths), tuple(hashes), tuple(skipped))


def check_trainable(faces: FaceSet, what: str = "the training folder") -> None:
    """Raise :class:`TrainingError` unless ``faces`` can drive a triplet loss: at least 2
    people with :data:`MIN_IMAGES`+ usable faces (each anchor needs a positive from its
    own person and a negative from another)."""
    multi = faces.multi_image_people()
    if len(multi) < 2:
        raise TrainingError(
            f"{what} has {len(multi)} people with {MIN_IMAGES} or more usable face images "
            f"({len(faces.people)} people, {len(faces)} faces, {len(faces.skipped)} images skipped): "
            "a triplet loss needs at least 2 such people (a same-person pair for each anchor and "
            "another person for the negative)"
        )


def split_people(faces: FaceSet, val_fraction: float, seed: int) -> tuple[FaceSet, FaceSet]:
    """A person-disjoint (train, validation) split.

    Validation people are drawn (seeded) from those with :data:`MIN_IMAGES`+ faces, since
    only they give genuine pairs; ``val_fraction`` of them, at least 2, while leaving at
    least 2 for training. People with one face stay in training (as negatives).
    """
    if not 0.0 < val_fraction < 1.0:
        raise TrainingError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    check_trainable(faces)
    multi = faces.multi_image_people()
    n_val = max(2, round(val_fraction * len(multi)))
    if len(multi) - n_val < 2:
        raise TrainingError(
            f"{len(multi)} people have {MIN_IMAGES}+ faces: too few to hold out {n_val} for validation "
            "and keep 2 for training (add people, or lower --val-fraction)"
        )
    rng = np.random.default_rng(seed)
    val = np.sort(rng.choice(multi, size=n_val, replace=False))
    train = np.setdiff1d(np.arange(len(faces.people)), val)
    return faces.subset(train.tolist()), faces.subset(val.tolist())


def pk_batches(faces: FaceSet, p: int, k: int, rng: np.random.Generator) -> list[NDArray[np.int64]]:
    """One epoch of P x K batches: indices into ``faces``.

    The people with :data:`MIN_IMAGES`+ faces are shuffled and cut into groups of ``p``
    (the last group is topped up with people drawn from the others, so every batch has
    ``p`` people); each person gives ``k`` faces, without replacement when they have
    ``k`` or more, else every face once and the rest drawn again (augmentation makes the
    repeats differ). Every anchor thus has a positive and ``(p - 1) * k`` negatives.
    """
    if p < 2 or k < 2:
        raise TrainingError(f"need at least 2 people x 2 images per batch, got {p} x {k}")
    multi = faces.multi_image_people()
    if len(multi) < 2:
        check_trainable(faces)
    p = min(p, len(multi))
    by_person = {int(c): np.flatnonzero(faces.labels == c) for c in multi}
    order = rng.permutation(multi)
    batches: list[NDArray[np.int64]] = []
    for start in range(0, len(order), p):
        group = list(order[start : start + p])
        if len(group) < p:
            rest = np.setdiff1d(multi, group)
            group += list(rng.choice(rest, size=p - len(group), replace=False))
        idx: list[int] = []
        for person in group:
            own = by_person[int(person)]
            if len(own) >= k:
                idx.extend(rng.choice(own, size=k, replace=False))
            else:
                idx.extend(own)
                idx.extend(rng.choice(own, size=k - len(own), replace=True))
        batches.append(np.asarray(idx, dtype=np.int64))
    return batches
