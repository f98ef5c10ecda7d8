"""Run the LFW pairs protocol end to end: embed each unique image once, then score.

Each image's face is the detection nearest the image centre. An image with no face is
kept: its pairs score :data:`metrics.NO_FACE_SCORE` and count as "different", and the
number of such images is reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EvaluationError
from ..recognizer import Recognizer
from ..types import Embedding, Face, Image
from . import metrics
from .pairs import PairsFile, central_face, read_pairs, score_protocol


@dataclass(frozen=True)
class LfwReport:
    """What ``faceprint eval lfw`` prints and writes as JSON."""

    protocol: str
    accuracy_mean: float
    accuracy_std: float
    threshold: float
    auc: float
    tar_at_far_1e3: float
    pairs: int
    images: int
    no_face_images: int
    seconds: float
    detector: str
    embedder: str
    pairs_file: str
    train_pairs_file: str | None
    fold_accuracies: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pair_scores(pf: PairsFile, root: Path, vectors: dict[Path, Embedding | None]) -> np.ndarray:
    """Cosine similarity per pair; :data:`metrics.NO_FACE_SCORE` where a face is missing."""
    out = np.empty(len(pf.pairs), dtype=np.float64)
    for i, pr in enumerate(pf.pairs):
        a, b = (vectors[p] for p in pr.paths(root))
        out[i] = metrics.NO_FACE_SCORE if a is None or b is None else float(np.dot(a, b))
    return out


def embed_images(
    recognizer: Recognizer, paths: list[Path], progress: Callable[[int], None] | None = None
) -> dict[Path, Embedding | None]:
    """The central face's vector for each image path (``None`` when no face is found)."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise EvaluationError(
            f"{len(missing)} image(s) named by the pairs file are missing, e.g. {missing[0]}"
        )

    def pick(faces: list[Face], img: Image) -> list[Face]:
        c = central_face(faces, img.shape)
        return [c] if c is not None else []

    results = recognizer.process_batch([str(p) for p in paths], select=pick, progress=progress)
    return {p: (fs[0].embedding if fs else None) for p, fs in zip(paths, results, strict=True)}


def evaluate_lfw(
    recognizer: Recognizer,
    root: str | Path,
    pairs: str | Path,
    train_pairs: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> LfwReport:
    """Score ``pairs`` under root ``root`` (see :mod:`faceprint.evaluation.pairs`)."""
    t0 = time.perf_counter()
    root = Path(root)
    if not root.is_dir():
        raise EvaluationError(f"LFW root {root} is not a directory")
    test = read_pairs(pairs)
    train = read_pairs(train_pairs) if train_pairs else None
    files = [test] + ([train] if train else [])
    paths = sorted({p for pf in files for pr in pf.pairs for p in pr.paths(root)})
    if on_total is not None:
        on_total(len(paths))
    vectors = embed_images(recognizer, paths, progress)
    scores = pair_scores(test, root, vectors)
    fold_ids = np.array([p.fold for p in test.pairs])
    train_sl = (pair_scores(train, root, vectors), train.labels()) if train else None
    res = score_protocol(scores, test.labels(), folds=fold_ids, train=train_sl)
    return LfwReport(
        protocol=res.protocol,
        accuracy_mean=res.accuracy_mean,
        accuracy_std=res.accuracy_std,
        threshold=res.threshold,
        auc=res.auc,
        tar_at_far_1e3=res.tar_at_far_1e3,
        pairs=len(test.pairs),
        images=len(paths),
        no_face_images=sum(v is None for v in vectors.values()),
        seconds=round(time.perf_counter() - t0, 2),
        detector=recognizer.detector_name,
        embedder=recognizer.embedder_name,
        pairs_file=str(pairs),
        train_pairs_file=str(train_pairs) if train_pairs else None,
        fold_accuracies=res.fold_accuracies,
    )
