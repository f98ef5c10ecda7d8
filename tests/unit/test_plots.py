"""Evaluation plots: valid PNG files, written and returned, of one fixed pixel size
whatever the data; similarity axes fitted to the data, legends off the axes; and no
matplotlib at import."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceprint.evaluation import metrics, plots
from faceprint.evaluation.metrics import NO_FACE_SCORE

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SIZE = (640, 480)


def _data(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.5
    return np.where(y, rng.normal(0.85, 0.05, n), rng.normal(0.6 + seed / 20, 0.1, n)), y


def _draw_all(seed: int, n: int, out: Path) -> dict[str, bytes]:
    s, y = _data(seed, n)
    ranks = np.random.default_rng(seed).integers(0, 25, 3 * n)
    return {
        "roc": plots.roc_plot({"model": metrics.roc(s, y)}, out / "roc.png", title=f"ROC {n}"),
        "hist": plots.score_histogram(s[y], s[~y], 0.7 + seed / 10, out / "hist.png"),
        "sweep": plots.threshold_curves(metrics.threshold_sweep(s, y), None, out / "sweep.png"),
        "cmc": plots.cmc_plot(
            {"model": metrics.cmc(ranks), "other": metrics.cmc(ranks // 2)}, out / "cmc.png"
        ),
    }


def _check_png(data: bytes, path: Path) -> None:
    assert data.startswith(PNG_SIGNATURE)
    assert path.read_bytes() == data
    with Image.open(io.BytesIO(data)) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == SIZE


def test_every_plot_is_a_png_of_one_fixed_size(tmp_path: Path) -> None:
    a = _draw_all(0, 200, tmp_path / "a")
    b = _draw_all(3, 5000, tmp_path / "b" / "nested")  # other data, other spread, new folder
    for name in a:
        _check_png(a[name], tmp_path / "a" / f"{name}.png")
        _check_png(b[name], tmp_path / "b" / "nested" / f"{name}.png")
        assert a[name] != b[name]


@pytest.mark.parametrize(
    "draw",
    [
        lambda p: plots.roc_plot({}, p),
        lambda p: plots.roc_plot({"no impostors": metrics.roc([0.9, 0.8], [True, True])}, p),
        lambda p: plots.score_histogram([], [], None, p),
        lambda p: plots.score_histogram([-np.inf, NO_FACE_SCORE, 3.0], [-1.0], 2.5, p, names=("a", "b")),
        lambda p: plots.threshold_curves(metrics.threshold_sweep([], []), 0.5, p),
        lambda p: plots.cmc_plot({"empty": np.array([])}, p),
    ],
    ids=["roc-empty", "roc-undefined", "hist-empty", "hist-out-of-range", "sweep-empty", "cmc-empty"],
)
def test_degenerate_inputs_still_give_the_same_frame(draw: Callable[[Path], bytes], tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    _check_png(draw(path), path)


def _spy(mp: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """Record, at each savefig, the axes limits, legend texts and whether the legend's
    box overlaps the axes' box (in pixels)."""
    from matplotlib.figure import Figure

    seen: list[dict[str, object]] = []
    real_savefig = Figure.savefig

    def spy(self: Figure, *args: object, **kwargs: object) -> None:
        ax = self.axes[0]
        legend = ax.get_legend()
        r = self.canvas.get_renderer()  # type: ignore[attr-defined]
        box, leg = ax.get_window_extent(r), legend.get_window_extent(r)
        seen.append({
            "xlim": ax.get_xlim(), "ylim": ax.get_ylim(),
            "texts": [t.get_text() for t in legend.get_texts()],
            "legend_on_axes": box.overlaps(leg),
            "legend_in_figure": leg.x0 >= 0 and leg.y0 >= 0 and leg.x1 <= self.bbox.x1,
        })  # fmt: skip
        real_savefig(self, *args, **kwargs)  # type: ignore[arg-type]

    mp.setattr(Figure, "savefig", spy)
    return seen


def test_histogram_axes_fit_the_data_and_faceless_scores_are_counted(tmp_path: Path) -> None:
    """dlib's similarities lie in 0.7-1.0: on a fixed [-0.2, 1] axis the histogram sat in
    its right 15% and its peaks went off the top."""
    rng = np.random.default_rng(0)
    gen, imp = rng.normal(0.94, 0.02, 500), rng.normal(0.84, 0.04, 500)
    with pytest.MonkeyPatch.context() as mp:
        seen = _spy(mp)
        plots.score_histogram(np.append(gen, -np.inf), imp, 0.906, tmp_path / "h.png")
    (got,) = seen
    lo, hi = got["xlim"]  # type: ignore[misc]
    data_lo, data_hi = min(gen.min(), imp.min()), max(gen.max(), imp.max())
    assert lo < data_lo and hi > data_hi  # everything is on the axes
    assert (data_hi - data_lo) / (hi - lo) > 0.85  # and the data fill them
    assert "same person (n=500, 1 without a face)" in got["texts"]  # type: ignore[operator]
    assert "threshold 0.906" in got["texts"]  # type: ignore[operator]
    dens = np.histogram(imp, bins=np.linspace(lo, hi, plots.BINS + 1), density=True)[0]
    assert got["ylim"][1] >= dens.max()  # type: ignore[index]  # no peak off the axis


def test_threshold_axis_fits_where_the_curves_move(tmp_path: Path) -> None:
    s, y = _data(0, 400)
    with pytest.MonkeyPatch.context() as mp:
        seen = _spy(mp)
        plots.threshold_curves(metrics.threshold_sweep(s, y), 0.7, tmp_path / "t.png")
    lo, hi = seen[0]["xlim"]  # type: ignore[misc]
    assert lo > s.min() - 0.1 and hi < s.max() + 0.1 and lo < 0.7 < hi


def test_no_legend_covers_the_axes(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        seen = _spy(mp)
        _draw_all(0, 300, tmp_path)
    assert len(seen) == 4
    for got in seen:
        assert not got["legend_on_axes"] and got["legend_in_figure"], got["texts"]


def test_import_loads_no_matplotlib() -> None:
    code = (
        "import sys, faceprint.evaluation.plots, faceprint.evaluation.metrics\n"
        "print('matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
