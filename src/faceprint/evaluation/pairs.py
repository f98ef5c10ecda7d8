"""The LFW pairs protocol: parse pairs files and score them with cross-validated thresholds.

File formats (from the LFW distribution):

* View 1 (``pairsDevTrain.txt``, ``pairsDevTest.txt``): a first line ``N``, then ``N``
  same-person lines ``name i j`` and ``N`` different-person lines ``name1 i name2 j``.
* View 2 (``pairs.txt``): a first line ``F N``, then ``F`` folds of ``N`` same and ``N``
  different lines.

Protocols (:func:`score_protocol`):

* ``folds``: a View 2 file; the threshold is fitted on 9 folds and applied to the 10th.
* ``train/test``: a threshold fitted on a separate training file (``pairsDevTrain``) and
  applied to the test file; the std is over 10 seeded chunks of the test pairs.
* ``cv``: a lone one-set file; pairs are shuffled with a fixed seed and split into 10
  folds, each scored with a threshold fitted on the other 9 (so no fold is fitted on the
  same-pair half alone).

LFW labels the face at the *centre* of each 250x250 image, so evaluation uses the face
nearest the centre (:func:`central_face`), not the largest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EvaluationError
from ..selection import central_face
from . import metrics

__all__ = ["Pair", "PairsFile", "ProtocolResult", "central_face", "read_pairs", "score_protocol"]


@dataclass(frozen=True)
class Pair:
    """Two LFW images (name, 1-based index) and whether they show the same person."""

    name_a: str
    index_a: int
    name_b: str
    index_b: int
    same: bool
    fold: int

    def paths(self, root: Path) -> tuple[Path, Path]:
        return (
            root / self.name_a / f"{self.name_a}_{self.index_a:04d}.jpg",
            root / self.name_b / f"{self.name_b}_{self.index_b:04d}.jpg",
        )


@dataclass(frozen=True)
class PairsFile:
    """A parsed pairs file: its pairs, in file order, and the number of folds."""

    path: Path
    pairs: tuple[Pair, ...]
    folds: int

    def labels(self) -> np.ndarray:
        return np.array([p.same for p in self.pairs], dtype=bool)


def read_pairs(path: str | Path) -> PairsFile:
    """Parse a View 1 or View 2 pairs file; malformed files raise :class:`EvaluationError`."""
    p = Path(path)
    try:
        lines = [ln.split() for ln in p.read_text().splitlines() if ln.strip()]
    except OSError as exc:
        raise EvaluationError(f"cannot read pairs file {p}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise EvaluationError(f"{p}: not a text pairs file") from exc
    if not lines:
        raise EvaluationError(f"{p}: empty pairs file")
    head = lines[0]
    try:
        if len(head) == 1:
            folds, per = 1, int(head[0])
        elif len(head) == 2:
            folds, per = int(head[0]), int(head[1])
        else:
            raise ValueError
    except ValueError:
        raise EvaluationError(
            f"{p}: first line must be 'N' (View 1) or 'FOLDS N' (View 2), got {' '.join(head)!r}"
        ) from None
    body = lines[1:]
    if len(body) != folds * per * 2:
        raise EvaluationError(
            f"{p}: header promises {folds} fold(s) of {per} same + {per} different pairs "
            f"({folds * per * 2} lines), found {len(body)} lines"
        )
    pairs = []
    for k, toks in enumerate(body):
        fold, pos = divmod(k, 2 * per)
        same = pos < per
        try:
            if same and len(toks) == 3:
                pairs.append(Pair(toks[0], int(toks[1]), toks[0], int(toks[2]), True, fold))
            elif not same and len(toks) == 4:
                pairs.append(Pair(toks[0], int(toks[1]), toks[2], int(toks[3]), False, fold))
            else:
                raise ValueError
        except ValueError:
            kind = "'name i j'" if same else "'name1 i name2 j'"
            raise EvaluationError(f"{p}: line {k + 2} should be {kind}, got {' '.join(toks)!r}") from None
    return PairsFile(p, tuple(pairs), folds)


@dataclass(frozen=True)
class ProtocolResult:
    """Accuracy of a pairs protocol run: mean/std over folds, and the threshold(s) used.

    ``auc`` is ``None`` when a class is empty; ``tar_at_far_1e3`` is ``None`` also when
    there are fewer than 1,000 different-person pairs, too few to resolve a FAR of 1e-3.
    """

    protocol: str
    accuracy_mean: float
    accuracy_std: float
    threshold: float
    fold_accuracies: tuple[float, ...]
    fold_thresholds: tuple[float, ...]
    auc: float | None
    tar_at_far_1e3: float | None


def _folds_cv(
    scores: np.ndarray, labels: np.ndarray, fold_ids: np.ndarray
) -> tuple[list[float], list[float]]:
    accs, thrs = [], []
    for k in np.unique(fold_ids):
        test = fold_ids == k
        thr, _ = metrics.best_threshold(scores[~test], labels[~test])
        accs.append(metrics.accuracy(scores[test], labels[test], thr))
        thrs.append(thr)
    return accs, thrs


def score_protocol(
    scores: np.ndarray,
    labels: np.ndarray,
    folds: np.ndarray | None = None,
    train: tuple[np.ndarray, np.ndarray] | None = None,
    n_folds: int = 10,
    seed: int = 0,
) -> ProtocolResult:
    """Score pairs with the protocol that fits the inputs (see the module docstring).

    ``scores`` are cosine similarities (:data:`metrics.NO_FACE_SCORE` where a face was
    missing); ``folds`` are the file's fold ids; ``train`` are (scores, labels) of a
    separate training file.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    curve = metrics.roc(scores, labels)
    auc = curve.auc
    tar = curve.tar_at_far(1e-3).tar
    rng = np.random.default_rng(seed)
    if train is not None:
        thr, _ = metrics.best_threshold(*train)
        chunks = np.array_split(rng.permutation(len(scores)), n_folds)
        accs = [metrics.accuracy(scores[c], labels[c], thr) for c in chunks]
        overall = metrics.accuracy(scores, labels, thr)
        return ProtocolResult("train/test", overall, float(np.std(accs)), thr, tuple(accs), (thr,), auc, tar)
    if folds is not None and len(np.unique(folds)) > 1:
        accs, thrs = _folds_cv(scores, labels, np.asarray(folds))
        name = "folds"
    else:
        fold_ids = np.empty(len(scores), dtype=int)
        for k, chunk in enumerate(np.array_split(rng.permutation(len(scores)), n_folds)):
            fold_ids[chunk] = k
        accs, thrs = _folds_cv(scores, labels, fold_ids)
        name = "cv"
    return ProtocolResult(
        name,
        float(np.mean(accs)),
        float(np.std(accs)),
        float(np.median(thrs)),
        tuple(accs),
        tuple(thrs),
        auc,
        tar,
    )
