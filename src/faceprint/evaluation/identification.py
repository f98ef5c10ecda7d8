"""``faceprint eval identification``: open-set 1:N identification on labelled folders.

Protocol (:func:`.folders.split_identification`, seeded): the first N images of each
enrolled person form the gallery, their other images are *known probes*, and a held-out
fraction of the people probe as *strangers*. The evaluation runs the real
:class:`~faceprint.gallery.Gallery` code path: people are enrolled with
``Gallery.enroll`` (the ``face`` of each image: largest, or central for LFW-style
photos) into a throwaway SQLite gallery, and
probes are ranked with ``Gallery.rank`` (centroid scores, the same index as
``faceprint identify``); only the probes' embedding is done beforehand, on every core.

Reported (cosine similarities; a probe is *identified* when its top person is right and
scores at or above the threshold; a stranger is *named*, a false alarm, when its top
score reaches the threshold):

* closed-set rank-1 and rank-5 (and the CMC curve to rank 20);
* DIR@FAR at 1% and 0.1% of strangers named, with the number of strangers behind it;
* the gallery's own operating point (its open-set threshold for this many people at the
  target false-alarm rate, or ``--threshold``): the fraction of strangers it named and
  the DIR it reached.

A probe with no face found, or an enrolment image refused, counts against the system: the
probe is a miss (a stranger without a face is, correctly, not named).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EvaluationError
from ..recognizer import Recognizer
from ..types import Match
from . import metrics
from .embedset import EmbeddingCache, ImageResult, PipelineSpec, embed_images
from .folders import read_labelled_dir, split_identification
from .verification import describe, figures, image_counts

Progress = Callable[[int], None]
MAX_RANK = 20
DIR_TARGETS = (1e-2, 1e-3)
HARDEST = 20


def evaluate_identification(
    pipeline: PipelineSpec | Recognizer,
    root: str | Path,
    *,
    gallery_per_person: int = 1,
    unknown_fraction: float = 0.2,
    seed: int = 0,
    threshold: float | None = None,
    far: float | None = None,
    workers: int | None = None,
    plots_dir: Path | None = None,
    report_path: Path | None = None,
    progress: Progress | None = None,
    on_total: Progress | None = None,
    cache: EmbeddingCache | None = None,
    face: str = "largest",
) -> dict[str, Any]:
    """Run the protocol of the module doc on ``root/<person>/<image>``; a JSON-ready dict."""
    from ..gallery.gallery import Gallery
    from ..gallery.sqlite import SqliteStore

    t0 = time.perf_counter()
    people = read_labelled_dir(root)
    split = split_identification(people, gallery_per_person, unknown_fraction, seed)
    probes = split.known_probes + split.stranger_probes
    enrol_images = sum(len(v) for v in split.gallery.values())
    if on_total is not None:
        on_total(len(probes) + enrol_images)
    rec = pipeline if isinstance(pipeline, Recognizer) else pipeline.build()
    results = embed_images(
        pipeline, [p for p, _ in probes], pick=face, workers=workers, progress=progress, cache=cache
    )
    with tempfile.TemporaryDirectory(prefix="faceprint-eval-") as tmp:
        gallery = Gallery(SqliteStore(Path(tmp) / "gallery.sqlite"), rec)
        refused: list[dict[str, str]] = []
        enrolled: dict[str, list[Any]] = {}
        for name, imgs in split.gallery.items():
            r = gallery.enroll(name, imgs, face=face)
            refused += [{"person": name, "image": x.image, "reason": x.reason} for x in r.refused]
            if progress is not None:
                progress(len(imgs))
            if r.added:
                enrolled[name] = [(a.image, a.box) for a in r.added]
        if far is not None:
            gallery.set_far(far)
        op = gallery.operating_point(threshold)
        ranked = _rank_all(gallery, probes, results)
        gallery.close()
    rep, cases = _score(split, ranked, op.threshold)
    cases["results"] = results
    rep.update(image_counts(results))
    det, emb = rec.detector_name, rec.embedder_name
    rep.update(
        kind="identification", dir=str(root), seed=seed, face=face, gallery_per_person=gallery_per_person,
        unknown_fraction=unknown_fraction, people=len(people), enrolled_people=len(enrolled),
        enrolment_images=enrol_images, refused_enrolment_images=refused,
        operating_point=op.to_dict(), detector=det, embedder=emb,
    )  # fmt: skip
    notes = [
        ("dataset", f"{root}: {len(people)} people, {enrol_images + len(probes)} images: {enrol_images} "
                    f"for enrolment, {len(split.known_probes)} known probes, {len(split.stranger_probes)} "
                    "strangers' probes ('images' in the numbers counts the probes)"),
        ("split", f"first {gallery_per_person} image(s) per person enrolled; "
                  f"{len(split.gallery)} enrolled, {len(people) - len(split.gallery)} held out as strangers, "
                  f"seed {seed}"),
        ("operating point", f"threshold {op.threshold:.4f} ({op.source})"),
    ]  # fmt: skip
    _outputs(rep, cases, enrolled, op.threshold, plots_dir, report_path, describe(rec, notes))
    rep["seconds"] = round(time.perf_counter() - t0, 2)
    return rep


def _rank_all(
    gallery: Any, probes: list[tuple[Path, str]], results: dict[Path, ImageResult]
) -> list[tuple[Match, ...] | None]:
    """Top-:data:`MAX_RANK` people of each probe, best first (``None``: no face in the probe)."""
    have = [i for i, (p, _) in enumerate(probes) if results[p].vector is not None]
    out: list[tuple[Match, ...] | None] = [None] * len(probes)
    if have:
        q = np.stack([v for i in have if (v := results[probes[i][0]].vector) is not None])
        for i, matches in zip(have, gallery.rank(q, MAX_RANK), strict=True):
            out[i] = matches
    return out


def _score(
    split: Any, ranked: list[tuple[Match, ...] | None], thr: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    n_known = len(split.known_probes)
    known, strangers = ranked[:n_known], ranked[n_known:]
    ranks = np.zeros(n_known, dtype=np.int64)
    k_top = np.full(n_known, -np.inf)
    k_ok = np.zeros(n_known, dtype=bool)
    for i, ((_, name), r) in enumerate(zip(split.known_probes, known, strict=True)):
        if not r:  # no face, or nobody to match
            continue
        matches = r
        k_top[i] = matches[0].similarity
        k_ok[i] = matches[0].identity == name
        names = [m.identity for m in matches]
        ranks[i] = names.index(name) + 1 if name in names else 0
    s_top = np.array([r[0].similarity if r else -np.inf for r in strangers])
    cmc = metrics.cmc(ranks, MAX_RANK)
    rep: dict[str, Any] = {
        "known_probes": n_known,
        "stranger_probes": len(strangers),
        "rank1": float(cmc[0]),
        "rank5": float(cmc[4]),
        "cmc": [float(x) for x in cmc],
        "dir_at_far": [metrics.dir_at_far(k_top, k_ok, s_top, f).to_dict() for f in DIR_TARGETS],
        "at_operating_point": {
            "threshold": thr,
            "strangers_named": metrics.false_alarm_rate(s_top, thr),
            "dir": metrics.dir_at_threshold(k_top, k_ok, thr),
        },
    }
    return rep, {"split": split, "known": known, "strangers": strangers, "k_top": k_top, "k_ok": k_ok,
                 "s_top": s_top, "cmc": cmc}  # fmt: skip


def _outputs(
    rep: dict[str, Any],
    cases: dict[str, Any],
    enrolled: dict[str, list[Any]],
    thr: float,
    plots_dir: Path | None,
    report_path: Path | None,
    description: dict[str, str],
) -> None:
    if plots_dir is None and report_path is None:
        return
    from . import plots

    pngs: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = plots_dir or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        pngs["cmc.png"] = plots.cmc_plot({rep["embedder"]: cases["cmc"]}, out / "cmc.png", title="CMC")
        pngs["histogram.png"] = plots.score_histogram(
            cases["k_top"][cases["k_ok"]], cases["s_top"], thr, out / "histogram.png",
            title="Top score: known probes named right vs strangers",
            names=(f"of {len(cases['k_ok'])} known probes, those right at rank 1", "strangers' probes"),
        )  # fmt: skip
    if plots_dir is not None:
        rep["plots"] = [str(plots_dir / n) for n in pngs]
    if report_path is None:
        return
    from .report import write_report

    write_report(
        report_path,
        title=f"Identification: {rep['detector']} + {rep['embedder']}",
        summary={k: rep[k] for k in ("known_probes", "stranger_probes", "rank1", "rank5", "enrolled_people")}
        | {"DIR at FAR": rep["dir_at_far"], "at the operating point": rep["at_operating_point"]},
        description=description,
        figures=figures(pngs),
        errors=_error_sections(cases, enrolled, thr),
    )
    rep["report"] = str(report_path)


def _error_sections(cases: dict[str, Any], enrolled: dict[str, list[Any]], thr: float) -> list[Any]:
    """Strangers named (highest score first) and known probes missed (wrongly named first)."""
    from .report import ErrorCase, ErrorSection, Thumb

    split = cases["split"]

    def box_of(path: Path) -> Any:
        return cases["results"][path].box

    def gallery_thumb(name: str) -> Thumb | None:
        got = enrolled.get(name)
        return Thumb(got[0][0], got[0][1], f"enrolled: {name}") if got else None

    named = [i for i, s in enumerate(cases["s_top"]) if s >= thr]
    named.sort(key=lambda i: -cases["s_top"][i])
    fa = []
    for i in named[:HARDEST]:
        (p, who), r = split.stranger_probes[i], cases["strangers"][i]
        m = r[0]  # named, so it has a match
        fa.append(
            ErrorCase(
                Thumb(p, box_of(p), f"stranger: {who}"),
                gallery_thumb(m.identity),
                m.similarity,
                f"{p.name} ({who}, not enrolled) named {m.identity}, {m.similarity:.3f} >= {thr:.3f}",
            )
        )
    missed = [
        i for i in range(len(split.known_probes)) if not (cases["k_ok"][i] and cases["k_top"][i] >= thr)
    ]
    missed.sort(key=lambda i: (bool(cases["k_ok"][i]), -cases["k_top"][i]))
    fr = []
    for i in missed[:HARDEST]:
        (p, who), r = split.known_probes[i], cases["known"][i]
        if not r:
            why = "no face found" if r is None else "nobody enrolled to match"
            fr.append(
                ErrorCase(Thumb(p, box_of(p), who), gallery_thumb(who), None, f"{p.name} ({who}): {why}")
            )
            continue
        m = r[0]
        why = (
            f"named {m.identity} instead of {who}" if m.identity != who else f"{who} but below the threshold"
        )
        fr.append(ErrorCase(Thumb(p, box_of(p), f"probe: {who}"), gallery_thumb(m.identity), m.similarity,
                            f"{p.name}: {why}, {m.similarity:.3f} vs {thr:.3f}"))  # fmt: skip
    return [
        ErrorSection(f"Strangers named as someone ({len(named)} in all)", fa,
                     "The held-out person's photo, and the enrolled face of the person it was taken for."),
        ErrorSection(f"Known people missed ({len(missed)} in all)", fr,
                     "Wrong names first (by score), then right names below the threshold."),
    ]  # fmt: skip


def check_dir(root: str | Path) -> None:
    """Raise :class:`EvaluationError` early when ``root`` cannot hold a protocol."""
    read_labelled_dir(root)


__all__ = ["EvaluationError", "check_dir", "evaluate_identification"]
