"""Evaluation plots as PNG files: axes fitted to the data, legends off the curves.

Every figure is 6.4 x 4.8 inches at 100 dpi (640 x 480 pixels) with fixed margins, and
its legend sits in a band *below* the axes, so it never hides a curve. Rate axes (TAR,
FAR, accuracy, identification rate) are fixed (0 to 1; FAR on a log axis from 1e-4),
so those plots compare across runs. Similarity axes are fitted to the data, with a small
margin: cosine similarities of one embedder crowd into a narrow band (dlib's same/different
pairs lie within 0.7-1.0), and a fixed [-0.2, 1] axis left them in its right 15%. The
histogram's density axis is fitted to the tallest bin. Each function writes the PNG to
``path`` (creating its folder) and returns the PNG bytes, for an HTML report to inline.

Scores are cosine similarities (higher = more alike); a pair or probe is accepted when
``score >= threshold``. matplotlib is imported inside the functions, with its Agg canvas
and no pyplot global state, so ``import faceprint`` stays light and threads do not share
figures.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .metrics import NO_FACE_SCORE, Roc, Sweep

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FIGSIZE = (6.4, 4.8)
DPI = 100
#: x range of the similarity plots when there is no data to fit them to.
SCORE_RANGE = (-0.2, 1.0)
#: bins of the similarity histogram, over the fitted range.
BINS = 60
#: margin around fitted data ranges, as a fraction of the range (at least MIN_MARGIN).
MARGIN = 0.05
MIN_MARGIN = 0.01
FAR_RANGE = (1e-4, 1.0)
CMC_MAX_RANK = 20


def _figure(title: str) -> tuple[Figure, Axes]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    # fixed margins (no tight layout): the axes sit at the same pixels on every run, with
    # a band below them for the legend (see _legend)
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.27, top=0.92)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _save(fig: Figure, path: str | Path) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    data = buf.getvalue()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return data


def _legend(ax: Axes) -> None:
    """The legend in the band below the axes, never over a curve: two columns, or one
    when a label would not fit in half the width."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ncol = 2 if max(map(len, labels)) <= 48 else 1
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=ncol, fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="grey")


def _threshold_line(ax: Axes, threshold: float | None) -> None:
    if threshold is None:
        return
    ax.axvline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:.3f}")


def fit_range(values: ArrayLike, threshold: float | None = None) -> tuple[float, float]:
    """The x range of a similarity plot: the finite ``values`` and ``threshold``, with a
    margin of :data:`MARGIN` of their span (at least :data:`MIN_MARGIN`) on each side;
    :data:`SCORE_RANGE` when there is nothing to fit."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if threshold is not None and math.isfinite(threshold):
        v = np.append(v, threshold)
    if len(v) == 0:
        return SCORE_RANGE
    lo, hi = float(v.min()), float(v.max())
    pad = max(MARGIN * (hi - lo), MIN_MARGIN)
    return lo - pad, hi + pad


def roc_plot(curves: Mapping[str, Roc], path: str | Path, title: str = "ROC") -> bytes:
    """TAR against FAR on a log FAR axis from 1e-4 to 1, TAR from 0 to 1.

    A curve starts at its first resolvable FAR, 1/#impostors: below it a data set cannot
    tell a FAR apart from 0, so that band is shaded in the curve's colour and left empty.
    A curve with an empty class is listed in the legend as undefined.
    """
    fig, ax = _figure(title)
    ax.set_xscale("log")
    lo, hi = FAR_RANGE
    grid = np.geomspace(lo, hi, 50)
    ax.plot(grid, grid, color="grey", ls=":", lw=1, label="chance (TAR = FAR)")
    shaded = False
    for name, curve in curves.items():
        if not curve.defined:
            ax.plot([], [], ls="none", label=f"{name}: undefined (a class is empty)")
            continue
        keep = curve.far > 0
        auc = curve.auc
        (line,) = ax.plot(
            curve.far[keep],
            curve.tar[keep],
            lw=1.5,
            label=f"{name} (AUC {auc:.4f}, {curve.n_impostors} different pairs)",
        )
        floor = 1.0 / curve.n_impostors
        if floor > lo:
            ax.axvspan(
                lo,
                min(floor, hi),
                color=line.get_color(),
                alpha=0.12,
                lw=0,
                label=None if shaded else "FAR < 1/#different pairs: not resolved",
            )
            shaded = True
    ax.set_xlim(lo, hi)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("FAR (false accept rate)")
    ax.set_ylabel("TAR (true accept rate)")
    _legend(ax)
    return _save(fig, path)


def score_histogram(
    genuine: ArrayLike,
    impostor: ArrayLike,
    threshold: float | None,
    path: str | Path,
    title: str = "Similarity: same person vs different people",
    names: tuple[str, str] = ("same person", "different people"),
) -> bytes:
    """Densities of the genuine and impostor similarities in :data:`BINS` bins over the
    range of the data and the threshold (:func:`fit_range`), density axis up to the
    tallest bin.

    Scores of pairs or probes without a face (at or below ``NO_FACE_SCORE``, or ``-inf``)
    are left out of the densities and counted in the legend. Each density integrates to 1
    over the faces it has. ``threshold`` (or ``None``) is drawn as a dashed line.
    """
    sets = []
    for values in (genuine, impostor):
        v = np.asarray(values, dtype=np.float64).ravel()
        face = np.isfinite(v) & (v > NO_FACE_SCORE)
        sets.append((v[face], int((~face).sum())))
    lo, hi = fit_range(np.concatenate([v for v, _ in sets]), threshold)
    edges = np.linspace(lo, hi, BINS + 1)
    width = (hi - lo) / BINS
    fig, ax = _figure(title)
    top = 0.0
    for (v, faceless), name, colour in zip(sets, names, ("tab:green", "tab:red"), strict=True):
        counts, _ = np.histogram(v, bins=edges)
        dens = counts / (len(v) * width) if len(v) else counts.astype(np.float64)
        top = max(top, float(dens.max()) if len(dens) else 0.0)
        notes = [f"n={len(v)}"] + ([f"{faceless} without a face"] if faceless else [])
        ax.stairs(dens, edges, fill=True, alpha=0.35, color=colour)
        ax.stairs(dens, edges, color=colour, lw=1.2, label=f"{name} ({', '.join(notes)})")
    _threshold_line(ax, threshold)
    ax.set_xlim(lo, hi)
    ax.set_ylim(0.0, top * 1.05 if top > 0 else 1.0)
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    _legend(ax)
    return _save(fig, path)


def threshold_curves(
    sweep: Sweep,
    threshold: float | None,
    path: str | Path,
    title: str = "Accuracy and F1 against the threshold",
) -> bytes:
    """Accuracy and F1 (with TAR and FAR, thinner) against the threshold, rates from 0 to
    1; ``threshold`` (or ``None``) as a dashed line. The threshold axis is fitted to where
    the curves move (TAR or FAR strictly between 0 and 1) and the threshold: elsewhere they
    are flat and say nothing."""
    t = sweep.thresholds
    moving = ((sweep.tar > 0) & (sweep.tar < 1)) | ((sweep.far > 0) & (sweep.far < 1))
    lo, hi = fit_range(t[moving], threshold)
    fig, ax = _figure(title)
    ax.plot(t, sweep.accuracy, lw=1.8, color="tab:blue", label=_best("accuracy", t, sweep.accuracy))
    ax.plot(t, sweep.f1, lw=1.8, color="tab:orange", label=_best("F1", t, sweep.f1))
    ax.plot(t, sweep.tar, lw=1, ls="-.", color="tab:green", label="TAR (same accepted)")
    ax.plot(t, sweep.far, lw=1, ls="-.", color="tab:red", label="FAR (different accepted)")
    _threshold_line(ax, threshold)
    ax.set_xlim(lo, hi)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("threshold (cosine similarity)")
    ax.set_ylabel("rate")
    _legend(ax)
    return _save(fig, path)


def _best(name: str, t: NDArray[np.float64], v: NDArray[np.float64]) -> str:
    ok = ~np.isnan(v)
    if not ok.any():
        return f"{name} (undefined)"
    i = int(np.flatnonzero(ok)[np.argmax(v[ok])])
    return f"{name} (best {v[i]:.4f} at {t[i]:.3f})"


def cmc_plot(curves: Mapping[str, ArrayLike], path: str | Path, title: str = "CMC") -> bytes:
    """Identification rate against rank, ranks 1 to 20, rate from 0 to 1 (a curve longer
    than 20 ranks is cut there)."""
    fig, ax = _figure(title)
    for name, curve in curves.items():
        rates = np.asarray(curve, dtype=np.float64).ravel()[:CMC_MAX_RANK]
        if len(rates) == 0 or math.isnan(rates[0]):
            ax.plot([], [], ls="none", label=f"{name}: undefined")
            continue
        ranks = np.arange(1, len(rates) + 1)
        ax.plot(ranks, rates, marker="o", ms=3, lw=1.5, label=f"{name} (rank-1 {rates[0]:.4f})")
    ax.set_xlim(0.5, CMC_MAX_RANK + 0.5)
    ax.set_xticks([1, 5, 10, 15, 20])
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate")
    _legend(ax)
    return _save(fig, path)
