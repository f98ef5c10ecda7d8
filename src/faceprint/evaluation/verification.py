"""1:1 verification analysis shared by ``faceprint eval lfw`` and ``faceprint eval pairs``.

Input: pairs of images, each image's chosen face embedded once (:mod:`.embedset`), a
label per pair (True = same person) and a fold per pair. Output: a JSON-ready report --

* accuracy as mean ± std over folds, with the threshold fitted on the other folds (or on a
  separate training file), and the thresholds' spread across folds;
* ROC AUC, EER and TAR at FAR 1e-1, 1e-2, 1e-3, each with the number of genuine and
  impostor pairs behind it; a FAR below 1 / #impostors is reported as unreachable,
  never as 0 or 1;
* optional plots (``--plots DIR``) and a self-contained HTML report (``--report``) with
  the hardest false accepts and false rejects as thumbnails.

**Failures to detect count against the system**: a pair with an image where no face was
found (or that could not be read) scores :data:`metrics.NO_FACE_SCORE`, below every
threshold, so it is a false reject when genuine and a correct reject when not. With
``exclude_failures`` such pairs are dropped instead, and the report says how many.
Scores are cosine similarities (accept when score >= threshold).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..errors import EvaluationError
from ..types import Box
from . import metrics
from .embedset import ImageResult, pipeline_model_id, pipeline_names
from .pairs import score_protocol

if TYPE_CHECKING:
    from ..recognizer import Recognizer
    from .embedset import PipelineSpec

FAR_TARGETS = (1e-1, 1e-2, 1e-3)
HARDEST = 20


@dataclass
class PairSet:
    """Scored pairs: the raw material of the metrics, the plots and the report."""

    a: list[Path]
    b: list[Path]
    labels: NDArray[np.bool_]
    folds: NDArray[np.int64] | None
    scores: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    boxes_a: list[Box | None] = field(default_factory=list)
    boxes_b: list[Box | None] = field(default_factory=list)
    failed: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, bool))

    def score(self, results: Mapping[Path, ImageResult]) -> PairSet:
        """Fill scores and boxes from the embedded images (module doc for failures)."""
        n = len(self.a)
        self.scores = np.empty(n, dtype=np.float64)
        self.failed = np.zeros(n, dtype=bool)
        self.boxes_a, self.boxes_b = [], []
        for i, (pa, pb) in enumerate(zip(self.a, self.b, strict=True)):
            ra, rb = results[pa], results[pb]
            self.boxes_a.append(ra.box)
            self.boxes_b.append(rb.box)
            if ra.vector is None or rb.vector is None:
                self.scores[i] = metrics.NO_FACE_SCORE
                self.failed[i] = True
            else:
                self.scores[i] = float(np.dot(ra.vector, rb.vector))
        return self

    def subset(self, keep: NDArray[np.bool_]) -> PairSet:
        idx = np.flatnonzero(keep)
        return PairSet(
            [self.a[i] for i in idx],
            [self.b[i] for i in idx],
            self.labels[idx],
            None if self.folds is None else self.folds[idx],
            self.scores[idx],
            [self.boxes_a[i] for i in idx],
            [self.boxes_b[i] for i in idx],
            self.failed[idx],
        )


def image_counts(results: Mapping[Path, ImageResult]) -> dict[str, int]:
    """Distinct images, and how many had no face, could not be read, or held several faces."""
    rs = list(results.values())
    return {
        "images": len(rs),
        "no_face_images": sum(r.vector is None and r.error is None for r in rs),
        "unreadable_images": sum(r.error is not None for r in rs),
        "several_faces_images": sum(r.faces > 1 for r in rs),
    }


def analyse(
    ps: PairSet,
    train: tuple[NDArray[np.float64], NDArray[np.bool_]] | None = None,
) -> dict[str, Any]:
    """Accuracy over folds, threshold spread, AUC, EER and TAR@FAR (module doc)."""
    if len(ps.scores) == 0:
        raise EvaluationError("no pairs to evaluate")
    res = score_protocol(ps.scores, ps.labels, folds=ps.folds, train=train)
    curve = metrics.roc(ps.scores, ps.labels)
    e = metrics.eer(ps.scores, ps.labels)
    thr = np.asarray(res.fold_thresholds, dtype=np.float64)
    return {
        "protocol": res.protocol,
        "accuracy_mean": res.accuracy_mean,
        "accuracy_std": res.accuracy_std,
        "fold_accuracies": list(res.fold_accuracies),
        "threshold": res.threshold,
        "threshold_std": float(np.std(thr)) if len(thr) > 1 else 0.0,
        "threshold_range": [float(thr.min()), float(thr.max())],
        "fold_thresholds": list(res.fold_thresholds),
        "auc": curve.auc,
        "eer": None if e is None else e[0],
        "eer_threshold": None if e is None else e[1],
        "tar_at_far": [metrics.tar_at_far(ps.scores, ps.labels, f).to_dict() for f in FAR_TARGETS],
        "pairs": len(ps.scores),
        "genuine_pairs": int(ps.labels.sum()),
        "impostor_pairs": int((~ps.labels).sum()),
        "failed_pairs": int(ps.failed.sum()),
    }


def write_plots(ps: PairSet, threshold: float, out_dir: Path, title: str) -> dict[str, bytes]:
    """ROC, similarity histograms and accuracy/F1 against the threshold, as PNG files in
    ``out_dir`` (same axes on every run). Returns {file name: PNG bytes}."""
    from . import plots

    out_dir.mkdir(parents=True, exist_ok=True)
    gen, imp = ps.scores[ps.labels], ps.scores[~ps.labels]
    return {
        "roc.png": plots.roc_plot(
            {title: metrics.roc(ps.scores, ps.labels)}, out_dir / "roc.png", title="ROC"
        ),
        "histogram.png": plots.score_histogram(
            gen, imp, threshold, out_dir / "histogram.png", title="Same / different similarities"
        ),
        "threshold.png": plots.threshold_curves(
            metrics.threshold_sweep(ps.scores, ps.labels),
            threshold,
            out_dir / "threshold.png",
            title="Accuracy and F1 against the threshold",
        ),
    }


_CAPTIONS = {
    "roc.png": "ROC: true-accept rate against false-accept rate (log scale)",
    "histogram.png": "Cosine similarity of same-person (genuine) and different-person (impostor) pairs",
    "threshold.png": "Accuracy and F1 as the threshold varies; the vertical line is the chosen threshold",
    "cmc.png": "CMC: identification rate at each rank",
}


def figures(pngs: Mapping[str, bytes]) -> list[Any]:
    from .report import Figure

    return [Figure(_CAPTIONS.get(name, name), png) for name, png in pngs.items()]


def error_sections(ps: PairSet, threshold: float, label: Any = None) -> list[Any]:
    """The :data:`HARDEST` false accepts and false rejects at ``threshold``, as report sections."""
    from .report import ErrorCase, ErrorSection, Thumb, hardest_errors

    name = label or (lambda p: p.stem)
    fa, fr = hardest_errors(ps.scores, ps.labels, threshold, n=HARDEST)

    def case(i: int, kind: str) -> ErrorCase:
        s = float(ps.scores[i])
        if ps.failed[i]:
            text = f"{kind}: {name(ps.a[i])} vs {name(ps.b[i])}: no face found in one image"
        else:
            op = ">=" if kind == "false accept" else "<"
            text = f"{kind}: {name(ps.a[i])} vs {name(ps.b[i])}, similarity {s:.3f} {op} {threshold:.3f}"
        return ErrorCase(
            Thumb(ps.a[i], ps.boxes_a[i], name(ps.a[i])),
            Thumb(ps.b[i], ps.boxes_b[i], name(ps.b[i])),
            None if ps.failed[i] else s,
            text,
        )

    n_fa = int(((ps.scores >= threshold) & ~ps.labels).sum())
    n_fr = int(((ps.scores < threshold) & ps.labels).sum())
    return [
        ErrorSection(
            f"False accepts: different people scored at or above the threshold ({n_fa} in all)",
            [case(i, "false accept") for i in fa],
            "Hardest first: the highest-scoring different-person pairs.",
        ),
        ErrorSection(
            f"False rejects: the same person scored below the threshold ({n_fr} in all)",
            [case(i, "false reject") for i in fr],
            "Hardest first: the lowest-scoring same-person pairs (pairs with no face last).",
        ),
    ]


def summary_of(rep: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers shown at the top of the HTML report (the JSON holds everything)."""
    keys = (
        "protocol", "accuracy_mean", "accuracy_std", "threshold", "threshold_std", "auc", "eer",
        "eer_threshold", "pairs", "genuine_pairs", "impostor_pairs", "failed_pairs", "excluded_pairs",
        "images", "no_face_images", "unreadable_images", "several_faces_images",
    )  # fmt: skip
    out: dict[str, Any] = {k: rep[k] for k in keys if k in rep}
    out["TAR at FAR"] = [
        {k: p[k] for k in ("target", "tar", "threshold", "far", "n_impostors", "reachable")}
        for p in rep.get("tar_at_far", [])
    ]
    return out


def finish(
    rep: dict[str, Any],
    ps: PairSet,
    *,
    title: str,
    description: dict[str, str],
    plots_dir: Path | None,
    report_path: Path | None,
    label: Any = None,
    started: float | None = None,
) -> dict[str, Any]:
    """Write the requested plots and HTML report; returns ``rep`` with their paths."""
    pngs: dict[str, bytes] = {}
    if plots_dir is not None or report_path is not None:
        import tempfile

        if plots_dir is not None:
            pngs = write_plots(ps, rep["threshold"], plots_dir, title)
            rep["plots"] = [str(plots_dir / n) for n in pngs]
        else:
            with tempfile.TemporaryDirectory() as tmp:
                pngs = write_plots(ps, rep["threshold"], Path(tmp), title)
    if report_path is not None:
        from .report import write_report

        write_report(
            report_path,
            title=title,
            summary=summary_of(rep),
            description=description,
            figures=figures(pngs),
            errors=error_sections(ps, rep["threshold"], label),
        )
        rep["report"] = str(report_path)
    if started is not None:
        rep["seconds"] = round(time.perf_counter() - started, 2)
    return rep


def describe(pipeline: PipelineSpec | Recognizer, extra: Sequence[tuple[str, str]] = ()) -> dict[str, str]:
    """Model and data description for the report header. It names the detector and
    embedder actually used (a pipeline built from defaults says which ones, not
    "default") and the model id the vectors carry."""
    import datetime
    import platform

    from .. import __version__

    det, emb = pipeline_names(pipeline)
    d = {
        "detector": det,
        "embedder": emb,
        "model": pipeline_model_id(pipeline),
        "faceprint": __version__,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
    }
    d.update(dict(extra))
    return d
