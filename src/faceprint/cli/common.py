"""Shared CLI plumbing: consoles (results on stdout, progress on stderr), errors, JSON,
and the validation of option values shared by several commands.

Exit codes: 0 success, 1 error, 2 usage error (a bad option value, a missing argument,
an unknown detector or embedder name). Either is ONE line on stderr, ``error: ...``,
never a traceback and never typer's boxed panel: :class:`OneLineErrors` is the root
command group and turns click's usage errors and every :class:`FaceprintError` into that
line, whether the app runs from the console script or from a test's ``CliRunner``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from typer.core import TyperGroup

from ..errors import FaceprintError, InvalidArgumentError, UnknownComponentError
from ..registry import detectors, embedders

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

# click's exception classes, wherever this typer keeps click (vendored or not).
_UsageError: type[Exception] = typer.BadParameter.__base__  # type: ignore[assignment]
_ClickException: type[Exception] = _UsageError.__base__  # type: ignore[assignment]


def _one_line(message: str) -> str:
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


class OneLineErrors(TyperGroup):
    """The root group: every failure ends as one ``error:`` line on stderr (see module doc).

    A usage error (click's, a :class:`~faceprint.errors.UnknownComponentError` or an
    :class:`~faceprint.errors.InvalidArgumentError`) exits 2, any other
    :class:`~faceprint.errors.FaceprintError` or an ``OSError`` (a file that cannot be
    written) exits 1. Anything else is a bug and keeps its traceback."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help is already printed
                sys.exit(2)
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            err.print(f"error: {_one_line(exc.format_message())}{hint}", markup=False)  # type: ignore[attr-defined]
            sys.exit(2)
        except _ClickException as exc:
            err.print(f"error: {_one_line(exc.format_message())}", markup=False)  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        except (UnknownComponentError, InvalidArgumentError) as exc:
            err.print(f"error: {_one_line(str(exc))}", markup=False)
            sys.exit(2)
        except FaceprintError as exc:
            err.print(f"error: {_one_line(str(exc))}", markup=False)
            sys.exit(1)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            err.print(f"error: {where}{exc.strerror or exc}", markup=False)
            sys.exit(1)
        except typer.Abort:
            err.print("error: aborted", markup=False)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


def wide_out() -> Console:
    """A stdout console at least 160 columns wide: tables piped to a file or a pager would
    otherwise wrap every path at 80 columns."""
    return Console(highlight=False, width=max(out.width, 160))


#: What OpenCV and its FFmpeg backend may print themselves: nothing below an error for
#: OpenCV ("ERROR"), nothing at all for FFmpeg (-8 is AV_LOG_QUIET). Their messages
#: ("moov atom not found", "can't open camera by index") are not ours to show: faceprint
#: reports the failure itself, in one line.
NATIVE_LOG_LEVELS = {"OPENCV_LOG_LEVEL": "ERROR", "OPENCV_FFMPEG_LOGLEVEL": "-8"}


def quiet_native_logs() -> None:
    """Keep OpenCV's and FFmpeg's own log lines off the user's terminal.

    Both read their level from the environment when they start (FFmpeg's when the first
    video opens), so setting it here, before either runs, covers this process and the
    worker processes it spawns, without importing cv2 for commands that never use it. A
    level the user set themselves (to debug) is kept. When cv2 is already loaded (a test
    runner), its level is set directly as well."""
    for key, level in NATIVE_LOG_LEVELS.items():
        os.environ.setdefault(key, level)
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        with contextlib.suppress(Exception):  # best effort only
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )


def fail(message: str) -> typer.Exit:
    """Print a one-line error to stderr and return the exit to raise (code 1)."""
    err.print(f"error: {_one_line(message)}", markup=False)
    return typer.Exit(1)


def usage(message: str) -> typer.Exit:
    """Print a one-line usage error to stderr and return the exit to raise (code 2)."""
    err.print(f"error: {_one_line(message)}", markup=False)
    return typer.Exit(2)


# -- option values checked while parsing (a bad one is a usage error, exit 2) ----------


def _check_registered(registry: Any, name: str | None) -> str | None:
    """``name`` when ``registry`` knows it (or None for the default); else a usage error
    listing the valid names (the registry's own message), without importing any model."""
    if name is not None and name not in registry:
        try:
            registry.resolve(name)
        except UnknownComponentError as exc:
            raise typer.BadParameter(str(exc)) from None
    return name


def check_detector(name: str | None) -> str | None:
    """A registered detector name (or None for the default); else the list of valid ones."""
    return _check_registered(detectors, name)


def check_embedder(name: str | None) -> str | None:
    """A registered embedder name or a MODEL_DIR path (or None for the default), checked
    before any model loads (:func:`faceprint.registry.check_embedder`): an unknown name, or
    a path where no directory is, is a usage error (exit 2) listing the valid names; a
    MODEL_DIR that is incomplete or was changed after training is an error (exit 1) that
    says what was expected and found."""
    from ..registry import MODEL_DIR_HINT, is_model_dir
    from ..registry import check_embedder as check

    if name is None:
        return None
    if is_model_dir(name):
        where = Path(name).expanduser()
        if not where.is_dir():
            found = "a file" if where.exists() else "nothing"
            raise typer.BadParameter(
                f"expected one of {', '.join(embedders.names())} {MODEL_DIR_HINT}; found {found} at {name}"
            )
    try:
        check(name)  # a MODEL_DIR's problems raise ModelUnavailableError: one line, exit 1
    except UnknownComponentError as exc:
        raise typer.BadParameter(str(exc)) from None
    return name


def check_similarity(value: float | None) -> float | None:
    """A threshold: a finite cosine similarity in [-1, 1] (or None for the default)."""
    if value is not None and not (math.isfinite(value) and -1.0 <= value <= 1.0):
        raise typer.BadParameter(f"expected a cosine similarity in [-1, 1], got {value}")
    return value


def check_rate(value: float | None) -> float | None:
    """A false-alarm / false-accept rate: strictly between 0 and 1 (or None)."""
    if value is not None and not (math.isfinite(value) and 0.0 < value < 1.0):
        raise typer.BadParameter(f"expected a rate between 0 and 1 (e.g. 0.001), got {value}")
    return value


def check_positive(value: float | None) -> float | None:
    """A finite number above 0 (or None)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"expected a number above 0, got {value}")
    return value


def check_out_dir(path: Path | None) -> Path | None:
    """A directory to write into: it may not exist yet, but must not be a file."""
    if path is not None and path.exists() and not path.is_dir():
        raise typer.BadParameter(f"expected a directory to write into, found a file: {path}")
    return path


def check_out_file(path: Path | None) -> Path | None:
    """A file to write: it may exist, but must not be a directory."""
    if path is not None and path.is_dir():
        raise typer.BadParameter(f"expected a file name, found a directory: {path}")
    return path


def make_dirs(path: Path) -> Path:
    """Create ``path`` (and its parents); a failure is one error line (exit 1)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(f"cannot create the directory {path}: {exc.strerror or exc}") from None
    return path


def existing_gallery(location: str | None) -> str:
    """The gallery ``location`` resolves to (``--gallery``, else the default), which must
    exist: reading commands never create one, so a mistyped path is an error, not an empty
    gallery that names everybody ``unknown``. Only ``enroll`` and ``gallery import``
    create a gallery. A PostgreSQL URL is not checked here (the server answers)."""
    from ..gallery import default_location, is_postgres_url

    where = location if location is not None else default_location()
    if not is_postgres_url(where) and not Path(where).is_file():
        raise fail(f"no gallery at {where}; enrol someone first or check the path")
    return where


#: The defaults named here are recognizer.default_detector_name and DEFAULT_EMBEDDER
#: (a test holds them together; importing the recognizer here would load numpy for --help).
DETECTOR_HELP = (
    f"one of {', '.join(detectors.names())} "
    "(default: FACEPRINT_DETECTOR, else yunet if its model is present, else hog)"
)
EMBEDDER_HELP = (
    f"one of {', '.join(embedders.names())}, or a MODEL_DIR written by faceprint train "
    "(default: FACEPRINT_EMBEDDER, else dlib-onnx)"
)
DetectorOpt = Annotated[
    str | None, typer.Option("--detector", "-d", help=DETECTOR_HELP, callback=check_detector)
]
EmbedderOpt = Annotated[
    str | None, typer.Option("--embedder", "-e", help=EMBEDDER_HELP, callback=check_embedder)
]
WorkersOpt = Annotated[int | None, typer.Option(min=1, help="worker processes (default: one per core)")]


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


@contextmanager
def progress_bar(description: str, total: int | None, enabled: bool = True) -> Iterator[Any]:
    """A rich progress bar on stderr; yields ``advance(n)``. Only on a terminal: piped or
    logged stderr gets the errors and notes, not a bar's leftovers."""
    if not enabled or not err.is_terminal:

        def skip(n: int = 1) -> None:
            pass

        skip.set_total = lambda t: None  # type: ignore[attr-defined]
        yield skip
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
