"""A user's own labelled faces: ``DIR/<person>/<image>``, turned into pairs or a gallery split.

Most users have no pairs.txt. :func:`read_labelled_dir` reads one folder per person;
:func:`make_pairs` draws genuine and impostor pairs from it and :func:`split_identification`
splits it into a gallery, known probes and strangers. Both are deterministic for a given
``seed`` (numpy's PCG64), so a run can be reproduced and two models compared on the
same pairs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EvaluationError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def read_labelled_dir(root: str | Path) -> dict[str, list[Path]]:
    """Person name (sub-folder) -> sorted image paths, for every sub-folder holding images.

    Hidden entries and files without an image suffix are ignored; files at the top level
    are ignored too (they carry no label). Raises :class:`EvaluationError` when ``root``
    is not a folder, holds no images, or holds fewer than 2 people (no impostor pair).
    """
    root = Path(root)
    if not root.is_dir():
        raise EvaluationError(f"{root} is not a directory (expected DIR/<person>/<image>)")
    people: dict[str, list[Path]] = {}
    for sub in sorted(root.iterdir()):
        if sub.name.startswith(".") or not sub.is_dir():
            continue
        imgs = sorted(
            p for p in sub.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        )  # fmt: skip
        if imgs:
            people[sub.name] = imgs
    if not people:
        raise EvaluationError(
            f"{root}: no images found in person folders (expected DIR/<person>/<image> with "
            f"suffixes {', '.join(IMAGE_SUFFIXES)})"
        )
    if len(people) < 2:
        raise EvaluationError(
            f"{root}: only one person ({next(iter(people))}); at least 2 people are needed "
            "to form different-person pairs"
        )
    return people


@dataclass(frozen=True)
class LabelledPairs:
    """Pairs of image paths with labels (True = same person) and a fold per pair."""

    a: tuple[Path, ...]
    b: tuple[Path, ...]
    same: np.ndarray  # (n,) bool
    folds: np.ndarray  # (n,) int
    seed: int
    note: str = ""

    def __len__(self) -> int:
        return len(self.a)


def _sample(n_total: int, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n_total, size=n, replace=False)) if n < n_total else np.arange(n_total)


def make_pairs(
    people: dict[str, list[Path]],
    per_class: int = 3000,
    seed: int = 0,
    n_folds: int = 10,
) -> LabelledPairs:
    """Balanced genuine and impostor pairs, as in LFW.

    Genuine: every within-person pair, sampled down to ``per_class``. Impostor: as many
    pairs of images of two different people, drawn uniformly among all such pairs
    (sampling an image pair uniformly, rejecting same-person draws). Folds are
    *person-disjoint* when there are at least ``2 * n_folds`` people (each person belongs
    to one fold; an impostor pair is drawn within one fold), as in LFW View 2; with fewer
    people the folds are a seeded shuffle of the pairs and ``note`` says so.
    """
    if per_class < 1:
        raise EvaluationError(f"per_class must be at least 1, got {per_class}")
    rng = np.random.default_rng(seed)
    names = sorted(people)
    disjoint = len(names) >= 2 * n_folds
    fold_of = {n: i % n_folds for i, n in enumerate(rng.permutation(names).tolist())}
    genuine = [
        (a, b, fold_of[n]) for n in names for a, b in itertools.combinations(people[n], 2)
    ]  # fmt: skip
    if not genuine:
        raise EvaluationError("no person has 2 or more images: no same-person pair can be formed")
    pick = _sample(len(genuine), per_class, rng)
    gen = [genuine[i] for i in pick]
    n_imp = len(gen)
    flat = [(p, n) for n in names for p in people[n]]
    by_fold: dict[int, list[tuple[Path, str]]] = {}
    for p, n in flat:
        by_fold.setdefault(fold_of[n] if disjoint else 0, []).append((p, n))
    imp: set[tuple[int, int, int]] = set()
    folds_cycle = sorted(f for f, items in by_fold.items() if len({n for _, n in items}) >= 2)
    # the number of distinct impostor pairs bounds what can be drawn
    possible = sum(
        (len(items) ** 2 - sum(len(people[n]) ** 2 for n in {n for _, n in items})) // 2
        for f, items in by_fold.items()
        if f in folds_cycle
    )
    n_imp = min(n_imp, possible)
    tries = 0
    while len(imp) < n_imp:
        f = folds_cycle[len(imp) % len(folds_cycle)] if disjoint else 0
        items = by_fold[f]
        i, j = rng.integers(0, len(items), size=2).tolist()
        tries += 1
        if tries > 100 * n_imp + 1000:
            break
        if items[i][1] == items[j][1]:
            continue
        imp.add((f, min(i, j), max(i, j)))
    imps = sorted(imp)
    a = [p for p, _, _ in gen] + [by_fold[f][i][0] for f, i, _ in imps]
    b = [q for _, q, _ in gen] + [by_fold[f][j][0] for f, _, j in imps]
    same = np.array([True] * len(gen) + [False] * len(imps))
    if disjoint:
        folds = np.array([f for _, _, f in gen] + [f for f, _, _ in imps])
        note = ""
    else:
        folds = np.empty(len(a), dtype=int)
        for k, chunk in enumerate(np.array_split(rng.permutation(len(a)), n_folds)):
            folds[chunk] = k
        note = f"only {len(names)} people (< {2 * n_folds}): folds are not person-disjoint"
    return LabelledPairs(tuple(a), tuple(b), same, folds, seed, note)


@dataclass(frozen=True)
class IdentificationSplit:
    """Who is enrolled with which images, who probes as whom, and who is a stranger."""

    gallery: dict[str, list[Path]]
    known_probes: list[tuple[Path, str]]
    stranger_probes: list[tuple[Path, str]]
    seed: int


def split_identification(
    people: dict[str, list[Path]],
    gallery_per_person: int = 1,
    unknown_fraction: float = 0.2,
    seed: int = 0,
) -> IdentificationSplit:
    """The first ``gallery_per_person`` images (sorted by name) of each enrolled person form
    the gallery, their other images are known probes; a seeded ``unknown_fraction`` of the
    people is held out entirely, and all their images probe as strangers.

    People with no image beyond their gallery images are still enrolled (they are
    distractors that strangers and probes can be confused with) but give no probe.
    """
    if gallery_per_person < 1:
        raise EvaluationError(f"gallery_per_person must be at least 1, got {gallery_per_person}")
    if not 0.0 <= unknown_fraction < 1.0:
        raise EvaluationError(f"unknown_fraction must be in [0, 1), got {unknown_fraction}")
    rng = np.random.default_rng(seed)
    names = sorted(people)
    n_unknown = round(unknown_fraction * len(names))
    if unknown_fraction > 0 and n_unknown == 0:
        n_unknown = 1
    if len(names) - n_unknown < 1:
        raise EvaluationError(f"{len(names)} people: none left to enrol after holding out {n_unknown}")
    unknown = set(rng.permutation(names)[:n_unknown].tolist())
    gallery = {n: people[n][:gallery_per_person] for n in names if n not in unknown}
    known = [(p, n) for n in names if n not in unknown for p in people[n][gallery_per_person:]]
    strangers = [(p, n) for n in names if n in unknown for p in people[n]]
    if not known:
        raise EvaluationError(
            f"no known probe: every enrolled person has at most {gallery_per_person} image(s); "
            "add images or lower --gallery-per-person"
        )
    return IdentificationSplit(gallery, known, strangers, seed)
