"""Evaluation plots: valid PNG files, written and returned, of one fixed pixel size
whatever the data (so the plots of two runs compare), and no matplotlib at import."""

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


def test_out_of_range_scores_are_counted_not_lost(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    seen: list[str] = []
    real_savefig = Figure.savefig

    def spy(self: Figure, *args: object, **kwargs: object) -> None:
        seen.extend(t.get_text() for t in self.axes[0].get_legend().get_texts())
        real_savefig(self, *args, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Figure, "savefig", spy)
        plots.score_histogram([0.5, 1.3, -np.inf], [-0.5, -0.4, 0.1], 0.3, tmp_path / "h.png")
    # the densities of so few values exceed the fixed y axis: said in the legend too
    assert "same person (n=2, 1 above 1, 1 without a face, peak 25.0 off the axis)" in seen
    assert "different people (n=3, 2 below -0.2, peak 33.3 off the axis)" in seen
    assert "threshold 0.300" in seen


def test_import_loads_no_matplotlib() -> None:
    code = (
        "import sys, faceprint.evaluation.plots, faceprint.evaluation.metrics\n"
        "print('matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
