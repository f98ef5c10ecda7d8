"""Shared CLI plumbing: consoles (results on stdout, progress on stderr), errors, JSON."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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
