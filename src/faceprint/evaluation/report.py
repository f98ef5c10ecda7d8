"""A self-contained HTML evaluation report: numbers, plots, and the faces it got wrong.

The report is where a user sees *why* the system fails, so besides the summary tables and
plots it shows the hardest errors of each kind (false accepts, false rejects) as face
thumbnails side by side. It is one file with nothing outside it: figures (PNG) and
thumbnails (JPEG) are ``data:`` URIs, the CSS is inline and there is no script, so it can
be mailed, archived or opened offline and still show everything.

Face photos belong to third parties, so reports are built on demand and never committed.

Thumbnails (:mod:`.thumbnails`) are the face box grown by a margin and made square; a
photo that cannot be read becomes a grey placeholder naming the reason: one bad file must
not cost the user the whole report. This module picks the errors to show
(:func:`hardest_errors`) and renders the page.
"""

from __future__ import annotations

import base64
import html
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import InvalidArgumentError
from ..files import atomic_write
from .metrics import NO_FACE_SCORE
from .thumbnails import Thumb, ThumbKey, render_thumbnails, thumb_key

__all__ = ["ErrorCase", "ErrorSection", "Figure", "Thumb", "hardest_errors", "render_report", "write_report"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErrorCase:
    """One wrong decision: two faces side by side (``right`` is ``None`` for a single
    face, e.g. an identification probe), their cosine similarity and a caption."""

    left: Thumb
    right: Thumb | None
    score: float | None
    caption: str


@dataclass(frozen=True)
class ErrorSection:
    """A titled group of error cases (e.g. the 20 hardest false accepts)."""

    title: str
    cases: Sequence[ErrorCase]
    note: str = ""


@dataclass(frozen=True)
class Figure:
    """A plot already rendered as PNG bytes, with its caption."""

    caption: str
    png: bytes


def hardest_errors(
    scores: ArrayLike, labels: ArrayLike, threshold: float, n: int = 20
) -> tuple[list[int], list[int]]:
    """Indexes of the ``n`` hardest false accepts and the ``n`` hardest false rejects.

    The decision is ``same = score >= threshold`` (cosine similarity), as in
    :mod:`.metrics`. False accepts are different-person pairs at or above ``threshold``,
    highest score first. False rejects are same-person pairs below it, lowest score first.

    A pair without a face (score :data:`.metrics.NO_FACE_SCORE`, or any non-finite
    score) is always judged "different", so a same-person such pair is a false reject
    whatever the threshold. Those pairs are listed *after* the scored false rejects (in
    input order): they are detector failures, and sorting them first by their sentinel
    score would crowd every embedder error out of the top ``n``. A caller tells them apart
    by their score. Ties keep input order, so the result is deterministic.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if s.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"scores and labels must be 1-D and of one length, got {s.shape} and {y.shape}")
    if not math.isfinite(threshold):
        raise InvalidArgumentError(f"threshold must be a finite cosine similarity, got {threshold}")
    if n < 0:
        raise InvalidArgumentError(f"n must be >= 0, got {n}")
    missing = ~np.isfinite(s) | (s <= NO_FACE_SCORE)
    fa = np.flatnonzero(~y & ~missing & (s >= threshold))
    fa = fa[np.lexsort((fa, -s[fa]))]
    fr = np.flatnonzero(y & ~missing & (s < threshold))
    fr = fr[np.lexsort((fr, s[fr]))]
    fr = np.concatenate([fr, np.flatnonzero(y & missing)])
    return [int(i) for i in fa[:n]], [int(i) for i in fr[:n]]


# ---------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em auto;max-width:1200px;
 padding:0 1em;color:#222;line-height:1.4}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
nav a{margin-right:1em}
table{border-collapse:collapse;margin:.3em 0}
th,td{border:1px solid #ccc;padding:.2em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.text{white-space:pre-wrap;word-break:break-word}
figure{margin:0}.fig{margin:1em 0}.fig img{max-width:100%;border:1px solid #ddd}
.cases{display:flex;flex-wrap:wrap;gap:12px}
.case{border:1px solid #ddd;border-radius:4px;padding:6px;background:#fafafa}
.pair{display:flex;gap:4px}.thumb{text-align:center;font-size:11px;color:#555}
.thumb img,.placeholder{display:block;border-radius:2px}
.placeholder{background:#999;color:#fff;font-size:10px;overflow:hidden;word-break:break-word;
 display:flex;align-items:center;justify-content:center;text-align:center;box-sizing:border-box;padding:4px}
.caption{font-size:12px;margin-top:4px;word-break:break-word}.score{font-family:monospace}
.none{color:#666;font-style:italic}.note{color:#444}footer{margin-top:2em;color:#888;font-size:12px}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _scalar(v: Any) -> tuple[str, bool]:
    """(text, is_number) for a summary value: floats with 4 decimals, tiny non-zero ones
    (a FAR of 1e-5) in 4 significant digits so they do not read as 0, None as n/a."""
    if isinstance(v, np.generic):
        v = v.item()
    if v is None:
        return "n/a", False
    if isinstance(v, bool):
        return ("yes" if v else "no"), False
    if isinstance(v, int):
        return str(v), True
    if isinstance(v, float):
        if not math.isfinite(v):
            return ("n/a" if math.isnan(v) else str(v)), True
        return (f"{v:.4g}" if 0 < abs(v) < 1e-3 else f"{v:.4f}"), True
    return str(v), False


def _value(v: Any) -> str:
    """A summary value as an HTML cell body: dicts become sub-tables, lists of dicts
    tables with one column per key, other lists comma-separated values."""
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, Mapping):
        return _table(v)
    if isinstance(v, list | tuple):
        if v and all(isinstance(x, Mapping) for x in v):
            return _records(v)
        return _e(", ".join(_scalar(x)[0] for x in v))
    return _e(_scalar(v)[0])


def _cell(v: Any) -> str:
    nested = isinstance(v, Mapping | list | tuple | np.ndarray)
    cls = "" if nested else (' class="num"' if _scalar(v)[1] else ' class="text"')
    return f"<td{cls}>{_value(v)}</td>"


def _table(d: Mapping[str, Any]) -> str:
    if not d:
        return '<p class="none">(empty)</p>'
    rows = "".join(f"<tr><th>{_e(k)}</th>{_cell(v)}</tr>" for k, v in d.items())
    return f"<table>{rows}</table>"


def _records(items: Sequence[Mapping[str, Any]]) -> str:
    cols: list[str] = []
    for it in items:
        cols += [str(k) for k in it if str(k) not in cols]
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    rows = [{str(k): v for k, v in it.items()} for it in items]
    body = "".join("<tr>" + "".join(_cell(r.get(c)) for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _thumb_html(t: Thumb, uris: Mapping[ThumbKey, str], size: int) -> str:
    uri = uris[thumb_key(t)]
    label = t.label or Path(t.image).name
    if uri.startswith("!"):
        pic = (
            f'<div class="placeholder" style="width:{size}px;height:{size}px" '
            f'title="{_e(uri[1:])}">image unavailable: {_e(uri[1:])}</div>'
        )
    else:
        pic = f'<img src="{uri}" width="{size}" height="{size}" alt="{_e(label)}">'
    return f'<figure class="thumb">{pic}<figcaption>{_e(label)}</figcaption></figure>'


def _score_text(score: float | None) -> str:
    if score is None:
        return ""
    if not math.isfinite(score) or score <= NO_FACE_SCORE:
        return '<div class="score">no face found</div>'
    return f'<div class="score">similarity {score:.4f}</div>'


def _case_html(c: ErrorCase, uris: Mapping[ThumbKey, str], size: int) -> str:
    thumbs = [c.left] + ([c.right] if c.right is not None else [])
    pair = "".join(_thumb_html(t, uris, size) for t in thumbs)
    # a long caption wraps under the thumbnails instead of widening the card
    width = 2 * size + 4
    return (
        f'<div class="case"><div class="pair">{pair}</div>'
        f'<div class="caption" style="max-width:{width}px">{_e(c.caption)}{_score_text(c.score)}</div></div>'
    )


def _figure_html(f: Figure) -> str:
    kind = "png" if f.png.startswith(b"\x89PNG\r\n\x1a\n") else "jpeg" if f.png[:3] == b"\xff\xd8\xff" else ""
    if not kind:
        log.warning("report: figure %r is not PNG data; shown as a placeholder", f.caption)
        pic = '<div class="placeholder" style="width:320px;height:80px">figure data is not a PNG image</div>'
    else:
        data = base64.b64encode(f.png).decode("ascii")
        pic = f'<img src="data:image/{kind};base64,{data}" alt="{_e(f.caption)}">'
    return f'<figure class="fig">{pic}<figcaption>{_e(f.caption)}</figcaption></figure>'


def _section_html(i: int, s: ErrorSection, uris: Mapping[ThumbKey, str], size: int) -> str:
    parts = [f'<section id="errors-{i}"><h2>{_e(s.title)}</h2>']
    if s.note:
        parts.append(f'<p class="note">{_e(s.note)}</p>')
    if s.cases:
        parts.append('<div class="cases">' + "".join(_case_html(c, uris, size) for c in s.cases) + "</div>")
    else:
        parts.append('<p class="none">No errors of this kind.</p>')
    parts.append("</section>")
    return "".join(parts)


def render_report(
    *,
    title: str,
    summary: Mapping[str, Any],
    description: Mapping[str, str],
    figures: Sequence[Figure] = (),
    errors: Sequence[ErrorSection] = (),
    thumb_size: int = 112,
) -> str:
    """The report as an HTML5 string (see :func:`write_report`)."""
    if not 16 <= thumb_size <= 1024:
        raise InvalidArgumentError(f"thumb_size must be 16..1024 pixels, got {thumb_size}")
    from .. import __version__

    uris = render_thumbnails(
        (t for s in errors for c in s.cases for t in (c.left, c.right) if t is not None), thumb_size
    )
    nav = ['<a href="#description">Model and data</a>', '<a href="#summary">Numbers</a>']
    if figures:
        nav.append('<a href="#figures">Plots</a>')
    nav += [f'<a href="#errors-{i}">{_e(s.title)}</a>' for i, s in enumerate(errors)]
    body = [
        f"<h1>{_e(title)}</h1><nav>{''.join(nav)}</nav>",
        f'<section id="description"><h2>Model and data</h2>{_table(description)}</section>',
        f'<section id="summary"><h2>Numbers</h2>{_table(summary)}</section>',
    ]
    if figures:
        body.append('<section id="figures"><h2>Plots</h2>' + "".join(_figure_html(f) for f in figures))
        body.append("</section>")
    body += [_section_html(i, s, uris, thumb_size) for i, s in enumerate(errors)]
    body.append(f"<footer>Generated by faceprint {_e(__version__)}. Similarities are cosine.</footer>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def write_report(
    path: str | Path,
    *,
    title: str,
    summary: Mapping[str, Any],
    description: Mapping[str, str],
    figures: Sequence[Figure] = (),
    errors: Sequence[ErrorSection] = (),
    thumb_size: int = 112,
) -> Path:
    """Write the self-contained HTML report to ``path`` and return it.

    ``summary`` is a nested dict of numbers and strings, rendered as tables (floats with 4
    decimals, ``None`` as n/a, dicts as sub-tables, lists of dicts as tables);
    ``description`` says which detector, embedder, dataset and protocol produced it.
    Thumbnails are ``thumb_size`` pixels square. The file is written to a temporary name
    and renamed, so a reader never sees half a report; parent directories are created.
    """
    out = Path(path)
    text = render_report(
        title=title,
        summary=summary,
        description=description,
        figures=figures,
        errors=errors,
        thumb_size=thumb_size,
    )
    atomic_write(
        out, lambda tmp: tmp.write_text(text, encoding="utf-8", newline="\n"), mode=0o644, fsync=True
    )
    return out
