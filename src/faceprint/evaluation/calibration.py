"""``faceprint calibrate``: the threshold that reaches a target false-accept rate on the
user's own faces (or a pairs file), and, for a gallery, the user's impostor distribution.

Two rates, two questions:

* the **1:1 false-accept rate** (``--far``) is the fraction of different-person *pairs*
  whose similarity reaches a threshold: what ``verify`` risks on one comparison;
* the **1:N stranger false-alarm rate** is the chance that someone who is not enrolled
  is named by ``identify``: compared with K people, a stranger has K chances, so the
  threshold that holds it must grow with K (:mod:`faceprint.gallery.scoring`). It is the
  gallery's own setting (``faceprint gallery threshold --far``, default 1%).

Where the impostor scores come from:

* ``--dir DIR`` (``DIR/<person>/<image>``): *every* pair of images of two different
  people (all of them, not a sample: a FAR of 1e-3 needs thousands of impostor pairs to
  be resolved; above :data:`MAX_IMPOSTORS` a seeded Bernoulli sample of about that many),
  and every same-person pair for the TAR;
* ``--pairs FILE --root DIR``: the pairs of an LFW-format file.

The threshold is the smallest cosine similarity at which at most ``far`` of the impostor
pairs are accepted (:func:`metrics.threshold_at_far`); a target below 1 / #impostors is
refused as unreachable rather than guessed. The TAR is the fraction of same-person pairs
accepted at that threshold. Failures to detect count as rejections (they lower the TAR).

Stored with a gallery (``--gallery``), the calibration is *not* a fixed threshold (a 1:1
threshold named 39% of 256 unenrolled LFW people in a gallery that named 5 of them before,
``bench/calibrate_gallery.py``): the record keeps the user's impostor scores, fitted as
the shipped distributions are (:func:`~faceprint.gallery.scoring.fit_distribution`,
``impostors``), and ``identify`` derives its open-set threshold from them for the gallery's
number of people at its stranger false-alarm rate (``OperatingPoint.source ==
"calibrated"``). That is also how weights with no shipped distribution (fine-tuned) get
one. A gallery bound to another model refuses it (:class:`IncompatibleEmbeddingError`):
scores mean nothing for another model's similarities.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EvaluationError, GalleryError
from ..recognizer import Recognizer
from . import metrics
from .embedset import EmbeddingCache, PipelineSpec, embed_images, pipeline_model_id, pipeline_names
from .folders import read_labelled_dir
from .lfw import embed_pairs_files, pairset
from .pairs import read_pairs
from .scores import NO_FACE_SCORE

Progress = Callable[[int], None]
#: Impostor pairs used at most (sampled with the seed beyond): enough to resolve 1e-6.
MAX_IMPOSTORS = 5_000_000
#: Rows of the similarity matrix computed at once.
BLOCK = 1024


def dir_pair_scores(
    pipeline: PipelineSpec | Recognizer,
    root: Path,
    seed: int,
    workers: int | None,
    progress: Progress | None,
    on_total: Progress | None,
    cache: EmbeddingCache | None,
    face: str = "largest",
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(scores, labels, images, images with no face) of every pair of images in the labelled
    folder ``root`` (impostors sampled down to :data:`MAX_IMPOSTORS` with ``seed``), each
    image's ``face`` ("largest" or "central") embedded."""
    people = read_labelled_dir(root)
    paths = [p for n in sorted(people) for p in people[n]]
    if on_total is not None:
        on_total(len(paths))
    res = embed_images(pipeline, paths, pick=face, workers=workers, progress=progress, cache=cache)
    who = np.array([i for i, n in enumerate(sorted(people)) for _ in people[n]])
    ok = np.array([res[p].vector is not None for p in paths])
    dim = next((len(r.vector) for r in res.values() if r.vector is not None), 0)
    if dim == 0:
        raise EvaluationError(f"{root}: no face found in any image")
    zero = np.zeros(dim, np.float32)
    vecs = np.stack([v if (v := res[p].vector) is not None else zero for p in paths])
    n = len(paths)
    n_imp_total = (n * n - int(np.bincount(who).astype(np.int64) @ np.bincount(who))) // 2
    keep = min(1.0, MAX_IMPOSTORS / max(n_imp_total, 1))
    rng = np.random.default_rng(seed)
    gens: list[np.ndarray] = []
    imps: list[np.ndarray] = []
    # Row blocks of the upper triangle: memory stays ~(block x n), whatever n is.
    for start in range(0, n, BLOCK):
        stop = min(n, start + BLOCK)
        sims = (vecs[start:stop] @ vecs[start:].T).astype(np.float64)
        r, c = np.nonzero(np.arange(start, stop)[:, None] < np.arange(start, n)[None, :])
        ri, ci = r + start, c + start
        sc = np.where(ok[ri] & ok[ci], sims[r, c], metrics.NO_FACE_SCORE)
        same = who[ri] == who[ci]
        gens.append(sc[same])
        imp = sc[~same]
        if keep < 1.0:
            imp = imp[rng.random(len(imp)) < keep]
        imps.append(imp)
    gen, imp = np.concatenate(gens), np.concatenate(imps)
    labels = np.concatenate([np.ones(len(gen), bool), np.zeros(len(imp), bool)])
    return np.concatenate([gen, imp]), labels, len(paths), int((~ok).sum())


def calibrate(
    pipeline: PipelineSpec | Recognizer,
    far: float,
    *,
    dir: str | Path | None = None,
    pairs: str | Path | None = None,
    root: str | Path | None = None,
    seed: int = 0,
    workers: int | None = None,
    progress: Progress | None = None,
    on_total: Progress | None = None,
    cache: EmbeddingCache | None = None,
    face: str = "largest",
    fit_impostors: bool = False,
) -> dict[str, Any]:
    """The threshold for ``far`` and its TAR (module doc). Returns a JSON-ready record;
    with ``fit_impostors``, its ``impostors`` holds the distribution of the impostor scores
    (pairs where both images had a face) for a gallery (:meth:`Gallery.set_calibration`)."""
    t0 = time.perf_counter()
    if not 0.0 < far < 1.0:
        raise EvaluationError(f"the target false-accept rate must be in (0, 1), got {far}")
    if (dir is None) == (pairs is None):
        raise EvaluationError("give either a labelled folder (--dir) or a pairs file (--pairs with --root)")
    if dir is not None:
        scores, labels, n_images, n_failed = dir_pair_scores(
            pipeline, Path(dir), seed, workers, progress, on_total, cache, face
        )
        source = f"folder {dir}"
    else:
        if root is None:
            raise EvaluationError("--pairs needs --root, the folder the pairs file's images are under")
        pf = read_pairs(pairs)  # type: ignore[arg-type]
        res = embed_pairs_files(pipeline, Path(root), [pf], workers, progress, on_total, cache)
        ps = pairset(pf, Path(root)).score(res)
        scores, labels = ps.scores, ps.labels
        n_images, n_failed = len(res), sum(r.vector is None for r in res.values())
        source = f"pairs {pairs} under {root}"
    imp = scores[~labels]
    n_imp, n_gen = len(imp), int(labels.sum())
    if n_imp == 0:
        raise EvaluationError("no different-person pairs: cannot measure a false-accept rate")
    thr = metrics.threshold_at_far(imp, far)
    if thr is None:
        raise EvaluationError(
            f"a false-accept rate of {far:g} is unreachable with {n_imp} different-person pairs "
            f"(the smallest measurable is {1 / n_imp:.2g}): add people or images, or aim higher"
        )
    det, emb = pipeline_names(pipeline)
    model = pipeline_model_id(pipeline)
    record: dict[str, Any] = {
        "threshold": float(thr),
        "far_target": far,
        "far": float(np.mean(imp >= thr)),
        "tar": float(np.mean(scores[labels] >= thr)) if n_gen else None,
        "genuine_pairs": n_gen,
        "impostor_pairs": n_imp,
        "images": n_images,
        "failed_images": n_failed,
        "source": source,
        "detector": det,
        "embedder": emb,
        "model": model,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if fit_impostors:
        from ..gallery.scoring import fit_distribution

        try:
            record["impostors"] = fit_distribution(imp[imp > NO_FACE_SCORE], model, source)
        except GalleryError as exc:
            raise EvaluationError(f"cannot calibrate a gallery on {source}: {exc}") from None
    record["seconds"] = round(time.perf_counter() - t0, 2)
    return record
