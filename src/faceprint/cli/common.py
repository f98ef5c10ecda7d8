"""Shared CLI plumbing: consoles (results on stdout, progress on stderr), errors, JSON."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def wide_out() -> Console:
    """A stdout console at least 160 columns wide: tables piped to a file or a pager would
    otherwise wrap every path at 80 columns."""
    return Console(highlight=False, width=max(out.width, 160))


def quiet_native_logs() -> None:
    """Keep OpenCV's own warnings off the user's terminal (they are not ours to show)."""
    try:
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except Exception:  # pragma: no cover - best effort only
        pass


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )


def fail(message: str) -> typer.Exit:
    """Print a one-line error to stderr and return the exit to raise (code 1)."""
    err.print(f"error: {message}", markup=False)
    return typer.Exit(1)


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


@contextmanager
def progress_bar(description: str, total: int | None, enabled: bool = True) -> Iterator[Any]:
    """A rich progress bar on stderr; yields ``advance(n)``."""
    if not enabled:
        yield lambda n=1: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as prog:
        task = prog.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            prog.advance(task, n)

        def set_total(t: int) -> None:
            prog.update(task, total=t)

        advance.set_total = set_total  # type: ignore[attr-defined]
        yield advance


# -- the face-quality gate (faceprint.quality): one pair of options for every command ------
MinFaceSizeOpt = Annotated[
    float,
    typer.Option(
        "--min-face-size",
        min=0.0,
        metavar="PX",
        help="faces whose shorter side is under PX pixels are not named or enrolled (0: no limit)",
    ),
]
MinQualityOpt = Annotated[
    float,
    typer.Option(
        "--min-quality",
        min=0.0,
        max=1.0,
        metavar="Q",
        help="faces of quality under Q (score x size x frontality x sharpness) are not named (0: no limit)",
    ),
]


def quality_gate(min_face_size: float, min_quality: float) -> Any:
    """The :class:`~faceprint.quality.QualityGate` of the ``--min-face-size`` / ``--min-quality`` options."""
    from ..quality import QualityGate

    return QualityGate(min_face_size, min_quality)
