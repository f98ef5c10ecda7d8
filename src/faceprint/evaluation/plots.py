"""Evaluation plots as PNG files, on the same axes for every run so that runs compare.

Every figure is 6.4 x 4.8 inches at 100 dpi (640 x 480 pixels) with fixed margins and
fixed axis limits, whatever the data: a value outside the limits is clipped or counted in
the legend, never allowed to rescale the axes. Each function writes the PNG to ``path``
(creating its folder) and returns the PNG bytes, for an HTML report to inline.

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
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .metrics import NO_FACE_SCORE, Roc, Sweep

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FIGSIZE = (6.4, 4.8)
DPI = 100
#: x range of the similarity plots (histogram and threshold curves).
SCORE_RANGE = (-0.2, 1.0)
#: histogram bin width: 60 bins over :data:`SCORE_RANGE`.
BIN_WIDTH = 0.02
#: y limit of the histogram's densities; a taller peak is named in the legend.
DENSITY_MAX = 15.0
FAR_RANGE = (1e-4, 1.0)
CMC_MAX_RANK = 20


def _figure(title: str) -> tuple[Figure, Axes]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    # fixed margins (no tight layout): the axes sit at the same pixels on every run
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.11, top=0.91)
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


def _legend(ax: Axes, loc: Literal["upper left", "lower left", "lower right"]) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc=loc, fontsize=8, framealpha=0.9)
    else:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="grey")


def _threshold_line(ax: Axes, threshold: float | None) -> None:
    if threshold is None:
        return
    lo, hi = SCORE_RANGE
    off = "" if lo <= threshold <= hi else ", off the axis"
    ax.axvline(
        min(max(threshold, lo), hi), color="black", ls="--", lw=1, label=f"threshold {threshold:.3f}{off}"
    )


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
    _legend(ax, "lower right")
    return _save(fig, path)


def _histogram(values: NDArray[np.float64]) -> tuple[NDArray[np.float64], int, int]:
    """Densities over the fixed bins, with values outside :data:`SCORE_RANGE` clipped into
    the edge bins; and how many were below / above the range."""
    lo, hi = SCORE_RANGE
    edges = np.linspace(lo, hi, round((hi - lo) / BIN_WIDTH) + 1)
    counts, _ = np.histogram(np.clip(values, lo, hi), bins=edges)
    dens = counts / (len(values) * BIN_WIDTH) if len(values) else counts.astype(np.float64)
    return dens.astype(np.float64), int((values < lo).sum()), int((values > hi).sum())


def score_histogram(
    genuine: ArrayLike,
    impostor: ArrayLike,
    threshold: float | None,
    path: str | Path,
    title: str = "Similarity: same person vs different people",
    names: tuple[str, str] = ("same person", "different people"),
) -> bytes:
    """Densities of the genuine and impostor similarities over [-0.2, 1.0] in bins of 0.02.

    Values outside the range go into the edge bins and are counted in the legend; scores
    of pairs or probes without a face (at or below ``NO_FACE_SCORE``, or ``-inf``) are left
    out of the densities and counted in the legend. Each density integrates to 1 over the
    faces it has. ``threshold`` (or ``None``) is drawn as a dashed line.
    """
    lo, hi = SCORE_RANGE
    edges = np.linspace(lo, hi, round((hi - lo) / BIN_WIDTH) + 1)
    fig, ax = _figure(title)
    for values, name, colour in ((genuine, names[0], "tab:green"), (impostor, names[1], "tab:red")):
        v = np.asarray(values, dtype=np.float64).ravel()
        face = np.isfinite(v) & (v > NO_FACE_SCORE)
        dens, below, above = _histogram(v[face])
        notes = [f"n={int(face.sum())}"]
        if below:
            notes.append(f"{below} below {lo:g}")
        if above:
            notes.append(f"{above} above {hi:g}")
        if (~face).sum():
            notes.append(f"{int((~face).sum())} without a face")
        if len(dens) and dens.max() > DENSITY_MAX:
            notes.append(f"peak {dens.max():.1f} off the axis")
        ax.stairs(dens, edges, fill=True, alpha=0.35, color=colour)
        ax.stairs(dens, edges, color=colour, lw=1.2, label=f"{name} ({', '.join(notes)})")
    _threshold_line(ax, threshold)
    ax.set_xlim(lo, hi)
    ax.set_ylim(0.0, DENSITY_MAX)
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    _legend(ax, "upper left")
    return _save(fig, path)


def threshold_curves(
    sweep: Sweep,
    threshold: float | None,
    path: str | Path,
    title: str = "Accuracy and F1 against the threshold",
) -> bytes:
    """Accuracy and F1 (with TAR and FAR, thinner) against the threshold over [-0.2, 1.0],
    rates from 0 to 1; ``threshold`` (or ``None``) as a dashed line."""
    lo, hi = SCORE_RANGE
    fig, ax = _figure(title)
    t = sweep.thresholds
    ax.plot(t, sweep.accuracy, lw=1.8, color="tab:blue", label=_best("accuracy", t, sweep.accuracy))
    ax.plot(t, sweep.f1, lw=1.8, color="tab:orange", label=_best("F1", t, sweep.f1))
    ax.plot(t, sweep.tar, lw=1, ls="-.", color="tab:green", label="TAR (same accepted)")
    ax.plot(t, sweep.far, lw=1, ls="-.", color="tab:red", label="FAR (different accepted)")
    _threshold_line(ax, threshold)
    ax.set_xlim(lo, hi)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("threshold (cosine similarity)")
    ax.set_ylabel("rate")
    _legend(ax, "lower left")
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
    _legend(ax, "lower right")
    return _save(fig, path)
