"""``faceprint eval lfw`` and ``faceprint eval pairs``: 1:1 verification end to end.

* :func:`evaluate_lfw` runs an LFW pairs file (View 1 or View 2, :mod:`.pairs`) under an
  LFW root. Each image's face is the detection nearest the image centre (LFW labels that
  one).
* :func:`evaluate_dir` builds seeded, balanced pairs from a folder of the user's own
  labelled faces (``DIR/<person>/<image>``, :mod:`.folders`) and runs the same analysis;
  each image's face is the largest (or, with ``face="central"``, the most central).

Both embed every distinct image once, on every core (:mod:`.embedset`), and return the
JSON-ready report of :func:`.verification.analyse` plus the dataset's counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EvaluationError
from ..recognizer import Recognizer
from .embedset import EmbeddingCache, PipelineSpec, embed_images, pipeline_names
from .folders import make_pairs, read_labelled_dir
from .pairs import PairsFile, read_pairs
from .verification import PairSet, analyse, describe, finish, image_counts

Progress = Callable[[int], None]


def pairset(pf: PairsFile, root: Path) -> PairSet:
    a, b = zip(*(pr.paths(root) for pr in pf.pairs), strict=True) if pf.pairs else ((), ())
    folds = np.array([p.fold for p in pf.pairs], dtype=np.int64)
    return PairSet(list(a), list(b), pf.labels(), folds)


def _embed(
    pipeline: PipelineSpec | Recognizer,
    paths: list[Path],
    pick: str,
    workers: int | None,
    progress: Progress | None,
    on_total: Progress | None,
    cache: EmbeddingCache | None = None,
) -> dict[Path, Any]:
    if on_total is not None:
        on_total(len(paths))
    return embed_images(pipeline, paths, pick=pick, workers=workers, progress=progress, cache=cache)


def embed_pairs_files(
    pipeline: PipelineSpec | Recognizer,
    root: Path,
    files: list[PairsFile],
    workers: int | None,
    progress: Progress | None,
    on_total: Progress | None,
    cache: EmbeddingCache | None = None,
) -> dict[Path, Any]:
    """The central face of every image the pairs ``files`` name under ``root``, each
    embedded once; a missing image is an :class:`EvaluationError` before any work."""
    paths = sorted({p for pf in files for pr in pf.pairs for p in pr.paths(root)})
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise EvaluationError(
            f"{len(missing)} image(s) named by the pairs file(s) are missing, e.g. {missing[0]}"
        )
    return _embed(pipeline, paths, "central", workers, progress, on_total, cache)


def evaluate_lfw(
    pipeline: PipelineSpec | Recognizer,
    root: str | Path,
    pairs: str | Path,
    train_pairs: str | Path | None = None,
    *,
    exclude_failures: bool = False,
    workers: int | None = None,
    plots_dir: Path | None = None,
    report_path: Path | None = None,
    progress: Progress | None = None,
    on_total: Progress | None = None,
    cache: EmbeddingCache | None = None,
) -> dict[str, Any]:
    """Score ``pairs`` under ``root`` (View 2: 10 folds; with ``train_pairs``: threshold
    fitted on that file; else seeded 10-fold cross-validation; see :mod:`.pairs`)."""
    t0 = time.perf_counter()
    root = Path(root)
    if not root.is_dir():
        raise EvaluationError(f"LFW root {root} is not a directory")
    test = read_pairs(pairs)
    train = read_pairs(train_pairs) if train_pairs else None
    files = [test] + ([train] if train else [])
    results = embed_pairs_files(pipeline, root, files, workers, progress, on_total, cache)
    ps = pairset(test, root).score(results)
    train_sl = None
    if train is not None:
        tr = pairset(train, root).score(results)
        if exclude_failures:
            tr = tr.subset(~tr.failed)
        train_sl = (tr.scores, tr.labels)
    excluded = int(ps.failed.sum()) if exclude_failures else None
    if exclude_failures:
        ps = ps.subset(~ps.failed)
    rep = analyse(ps, train_sl)
    det, emb = pipeline_names(pipeline)
    rep.update(image_counts(results))
    rep.update(
        kind="lfw", excluded_pairs=excluded, detector=det, embedder=emb,
        pairs_file=str(pairs), train_pairs_file=str(train_pairs) if train_pairs else None,
    )  # fmt: skip
    notes = [
        ("dataset", f"LFW root {root}: {rep['images']} distinct images in the pairs file(s)"),
        ("pairs", f"{pairs}: {rep['pairs']} pairs"),
    ]
    if train_pairs:
        notes.append(("threshold fitted on", str(train_pairs)))
    notes.append(("protocol", rep["protocol"]))
    if excluded is not None:
        notes.append(("--exclude-failures", f"used: {excluded} pair(s) with no face dropped"))
    return finish(
        rep, ps, title=f"LFW verification: {det} + {emb}", description=describe(pipeline, notes),
        plots_dir=plots_dir, report_path=report_path, started=t0,
        label=lambda p: p.stem,
    )  # fmt: skip


def evaluate_dir(
    pipeline: PipelineSpec | Recognizer,
    root: str | Path,
    *,
    per_class: int = 3000,
    seed: int = 0,
    exclude_failures: bool = False,
    workers: int | None = None,
    plots_dir: Path | None = None,
    report_path: Path | None = None,
    progress: Progress | None = None,
    on_total: Progress | None = None,
    cache: EmbeddingCache | None = None,
    face: str = "largest",
) -> dict[str, Any]:
    """Verification on pairs drawn from ``root/<person>/<image>`` (see :mod:`.folders`):
    the threshold is cross-validated over 10 folds (person-disjoint with 20+ people)."""
    t0 = time.perf_counter()
    people = read_labelled_dir(root)
    lp = make_pairs(people, per_class=per_class, seed=seed)
    paths = sorted(set(lp.a) | set(lp.b))
    results = _embed(pipeline, paths, face, workers, progress, on_total, cache)
    ps = PairSet(list(lp.a), list(lp.b), lp.same, lp.folds).score(results)
    excluded = int(ps.failed.sum()) if exclude_failures else None
    if exclude_failures:
        ps = ps.subset(~ps.failed)
    rep = analyse(ps)
    det, emb = pipeline_names(pipeline)
    rep.update(image_counts(results))
    rep.update(
        kind="pairs", excluded_pairs=excluded, detector=det, embedder=emb, dir=str(root), face=face,
        people=len(people), seed=seed, note=lp.note,
    )  # fmt: skip
    notes = [
        (
            "dataset",
            f"{root}: {len(people)} people, {sum(map(len, people.values()))} images, "
            f"{len(paths)} of them in the pairs drawn (the 'images' counted in the numbers)",
        )
    ]
    notes.append(("pairs", f"{rep['genuine_pairs']} same + {rep['impostor_pairs']} different, seed {seed}"))
    if lp.note:
        notes.append(("note", lp.note))
    if excluded is not None:
        notes.append(("--exclude-failures", f"used: {excluded} pair(s) with no face dropped"))
    return finish(
        rep, ps, title=f"Verification on {Path(root).name}: {det} + {emb}",
        description=describe(pipeline, notes), plots_dir=plots_dir, report_path=report_path,
        started=t0, label=lambda p: f"{p.parent.name}/{p.name}",
    )  # fmt: skip
