"""``faceprint enroll | identify | lookalike`` and ``faceprint gallery ...``.

Every command takes ``--gallery PATH|postgresql://...`` (default: ``FACEPRINT_GALLERY``,
else :data:`DEFAULT_GALLERY_HELP`). Results go to stdout (a table, or ``--json``: the dicts
of :mod:`faceprint.gallery.gallery`), progress bars and refusals to stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..quality import MIN_FACE_PX, MIN_QUALITY
from . import common

if TYPE_CHECKING:
    from ..gallery.gallery import Gallery

#: Where the default gallery is (config.Settings.data_dir); static text, since help is built
#: at import and nothing may read the environment then.
DEFAULT_GALLERY_HELP = (
    "gallery.sqlite in the user data directory: $XDG_DATA_HOME/faceprint, by default "
    "~/.local/share/faceprint (macOS: ~/Library/Application Support/faceprint), or $FACEPRINT_HOME "
    "when set. Files 0600 in a 0700 directory; a gallery left in ~/.cache/faceprint by an older "
    "faceprint is moved there on first use."
)

gallery_app = typer.Typer(
    help="List, inspect, rename, remove, export, import and re-embed enrolled people.\n\n"
    f"Default gallery: FACEPRINT_GALLERY, else {DEFAULT_GALLERY_HELP}"
)

GalleryOpt = Annotated[
    str | None,
    typer.Option(
        "--gallery",
        "-g",
        help="SQLite file or postgresql:// URL (default: FACEPRINT_GALLERY, else "
        "~/.local/share/faceprint/gallery.sqlite; see 'faceprint gallery --help')",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
DetectorOpt = common.DetectorOpt
EmbedderOpt = common.EmbedderOpt
ThresholdOpt = Annotated[
    float | None,
    typer.Option(
        help="cosine similarity threshold in [-1, 1] (default: the gallery's)",
        callback=common.check_similarity,
    ),
]
#: Images decoded at a time by identify (bounds memory; each chunk is one batch).
CHUNK = 32


def _open(
    location: str | None, detector: str | None = None, embedder: str | None = None, create: bool = False
) -> Gallery:
    """The gallery at ``location``; only ``create`` (enroll, import) may start a new one."""
    from ..gallery import open_gallery

    if not create:
        location = common.existing_gallery(location)
    rec = None
    if detector is not None or embedder is not None:
        from ..recognizer import Recognizer

        rec = Recognizer(detector=detector, embedder=embedder)
    return open_gallery(location, rec)


def _check_face(face: str) -> str:
    if face not in ("single", "largest", "central"):
        try:
            if int(face) < 0:
                raise ValueError
        except ValueError:
            raise typer.BadParameter(
                f"expected 'single', 'largest', 'central' or a face index (0, 1, ...), got {face!r}"
            ) from None
    return face


def _face_choice(face: str) -> str | int:
    return face if face in ("single", "largest", "central") else int(face)


def _meta(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise common.usage(f"--meta expects KEY=VALUE, got {p!r}")
        out[key] = value
    return out


def _box(b: dict[str, float]) -> str:
    return f"({b['x1']:.0f}, {b['y1']:.0f}, {b['x2']:.0f}, {b['y2']:.0f})"


def enroll(
    name: Annotated[str | None, typer.Argument(help="the person's name")] = None,
    images: Annotated[list[Path] | None, typer.Argument(help="photos of that person")] = None,
    from_dir: Annotated[
        Path | None, typer.Option(help="enrol DIR/<name>/*.jpg, one folder per person")
    ] = None,
    face: Annotated[
        str,
        typer.Option(
            help="single (refuse several faces), largest, central, or the #N that detect prints",
            callback=_check_face,
        ),
    ] = "single",
    meta: Annotated[list[str] | None, typer.Option(help="KEY=VALUE metadata (repeatable)")] = None,
    gallery: GalleryOpt = None,
    detector: DetectorOpt = None,
    embedder: EmbedderOpt = None,
    as_json: JsonOpt = False,
    min_face_size: common.MinFaceSizeOpt = MIN_FACE_PX,
    min_quality: common.MinQualityOpt = MIN_QUALITY,
    views: Annotated[
        bool | None,
        typer.Option(
            "--views/--no-views",
            help="average each face's mirror and two re-crops into its vector (one-shot DIR@FAR=1% "
            "+5.3 points on the LFW dev identification bench); default: on where the model has their "
            "impostor distribution",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Enrol a person from one or more photos (or a folder per person with --from-dir)."""
    choice = _face_choice(face)
    gate = common.quality_gate(min_face_size, min_quality)
    if from_dir is not None and (name or images):
        raise common.usage("give either NAME IMAGES... or --from-dir DIR, not both")
    if from_dir is None and (not name or not images):
        raise common.usage(
            "expected NAME and at least one image, or --from-dir DIR (see 'faceprint enroll --help')"
        )
    metadata = _meta(meta or [])
    g = _open(gallery, detector, embedder, create=True)
    g.enrol_views = views
    with g:
        before = {p.name: p.faces for p in g.people()}
        try:
            if from_dir is not None:
                n = sum(1 for d in from_dir.glob("*/*") if d.is_file()) if from_dir.is_dir() else 0
                with common.progress_bar("enrolling", n, n > 3) as adv:
                    reports = g.enroll_dir(from_dir, face=choice, progress=adv, gate=gate)
            else:
                assert name is not None and images is not None
                with common.progress_bar(f"enrolling {name}", len(images), len(images) > 3) as adv:
                    reports = [
                        g.enroll(name, list(images), face=choice, metadata=metadata, progress=adv, gate=gate)
                    ]
        except KeyboardInterrupt:
            # Each person is one transaction, so each is either in or not: count them in the
            # gallery itself (a report may not have been made when the interrupt came).
            done = sum(p.faces > before.get(p.name, 0) for p in g.people())
            common.err.print(f"interrupted: {done} people enrolled, the rest not", markup=False)
            raise typer.Exit(130) from None
    if as_json:
        common.print_json({"gallery": g.store.location, "reports": [r.to_dict() for r in reports]})
    else:
        for r in reports:
            for ref in r.refused:
                common.err.print(f"refused: {ref.image}: {ref.reason}", markup=False)
            for d in r.duplicates:
                common.err.print(f"skipped: {d.image}: {d.reason}", markup=False)
            common.out.print(
                f"{r.person}: {len(r.added)} face(s) added, {len(r.duplicates)} already enrolled, "
                f"{len(r.refused)} refused",
                markup=False,
            )
    if not any(r.ok for r in reports):
        raise common.fail(f"nothing enrolled: all {sum(len(r.refused) for r in reports)} image(s) refused")


def identify(
    images: Annotated[list[Path], typer.Argument(help="photos to identify")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="candidates listed per face")] = 1,
    threshold: ThresholdOpt = None,
    gallery: GalleryOpt = None,
    detector: DetectorOpt = None,
    embedder: EmbedderOpt = None,
    as_json: JsonOpt = False,
    min_face_size: common.MinFaceSizeOpt = MIN_FACE_PX,
    min_quality: common.MinQualityOpt = MIN_QUALITY,
) -> None:
    """Name every face in every image, or 'unknown' below the threshold; faces too small or
    too poor to be evidence are 'unknown (too small)' etc.

    An image that cannot be read is reported (one line on stderr; ``error`` in --json)
    and the others are still identified; the exit code is then 1."""
    from ..errors import FaceprintError
    from ..gallery.results import recognition_dict
    from ..io import load_image

    gate = common.quality_gate(min_face_size, min_quality)
    rows: list[tuple[Path, Any]] = []  # (image, its recognitions, or the error message)
    with _open(gallery, detector, embedder) as g:
        op = g.operating_point(threshold)
        with common.progress_bar("identifying", len(images), len(images) > 3) as adv:
            for start in range(0, len(images), CHUNK):
                good: list[tuple[int, Any]] = []
                for path in images[start : start + CHUNK]:
                    try:
                        good.append((len(rows), load_image(path)))
                        rows.append((path, None))
                    except FaceprintError as exc:
                        common.err.print(f"error: {exc}", markup=False)
                        rows.append((path, str(exc)))
                if good:
                    res = g.identify([img for _, img in good], top_k=top_k, threshold=threshold, gate=gate)
                    for (row, _), recs in zip(good, res, strict=True):
                        rows[row] = (rows[row][0], recs)
                adv(len(images[start : start + CHUNK]))
        loc = g.store.location
    failed = sum(isinstance(r, str) for _, r in rows)
    if op.people == 0:
        common.err.print(f"note: gallery {loc} has nobody enrolled: every face is unknown", markup=False)
    if as_json:
        common.print_json(
            {
                "gallery": loc,
                "operating_point": op.to_dict(),
                "images": [
                    {"image": str(p), "error": r}
                    if isinstance(r, str)
                    else {"image": str(p), "faces": [recognition_dict(x) for x in r]}
                    for p, r in rows
                ],
            }
        )
    else:
        common.out.print(
            f"threshold {op.threshold:.4f} ({op.source}; {op.people} people, model {op.model}"
            + (f", stranger false-alarm rate {op.far:g}" if op.far is not None else "")
            + ")",
            markup=False,
        )
        for image, recs in rows:
            if isinstance(recs, str):
                continue
            common.out.print(f"{image}: {len(recs)} face(s)", markup=False)
            for i, r in enumerate(recs):
                box = _box(r.face.box.to_dict())
                if r.reason is not None:
                    common.out.print(f"  #{i} {r.label} ({r.reason})  box={box}", markup=False)
                    continue
                sims = ", ".join(f"{m.identity} {m.similarity:.4f}" for m in r.matches) or "gallery is empty"
                common.out.print(f"  #{i} {r.label}  box={box}  [{sims}]", markup=False)
    if failed:
        raise typer.Exit(1)


def lookalike(
    image: Annotated[Path, typer.Argument(help="a photo (its largest face is used)")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="people listed")] = 5,
    gallery: GalleryOpt = None,
    detector: DetectorOpt = None,
    embedder: EmbedderOpt = None,
    as_json: JsonOpt = False,
    min_face_size: common.MinFaceSizeOpt = MIN_FACE_PX,
    min_quality: common.MinQualityOpt = MIN_QUALITY,
) -> None:
    """The enrolled people who look most like the face in IMAGE, whatever the threshold."""
    from ..gallery.results import recognition_dict

    gate = common.quality_gate(min_face_size, min_quality)
    with _open(gallery, detector, embedder) as g:
        r = g.lookalike(image, top_k=top_k, gate=gate)
    if as_json:
        common.print_json({"image": str(image), **recognition_dict(r)})
        return
    common.out.print(f"{image}: face box={_box(r.face.box.to_dict())}", markup=False)
    if r.reason is not None:
        common.out.print(
            f"  {r.label} ({r.reason}): nobody searched (--min-face-size / --min-quality lower the gate)",
            markup=False,
        )
    for rank, m in enumerate(r.matches, start=1):
        common.out.print(f"  {rank}. {m.identity}  {m.similarity:.4f}", markup=False)


@gallery_app.command("list")
def list_people(gallery: GalleryOpt = None, as_json: JsonOpt = False) -> None:
    """Every enrolled person with their number of faces."""
    with _open(gallery) as g:
        people, bound = g.people(), g.store.model()
    if as_json:
        common.print_json({"model": bound[0] if bound else None, "people": [p.to_dict() for p in people]})
        return
    for p in people:
        common.out.print(f"{p.name}\t{p.faces} face(s)", markup=False)
    common.err.print(f"{len(people)} people, {sum(p.faces for p in people)} faces", markup=False)


@gallery_app.command()
def show(
    name: Annotated[str, typer.Argument()], gallery: GalleryOpt = None, as_json: JsonOpt = False
) -> None:
    """One person: metadata and faces (image sha256, box, score, when added)."""
    with _open(gallery) as g:
        person, faces = g.person(name)
    if as_json:
        common.print_json({**person.to_dict(), "face_records": [f.to_dict() for f in faces]})
        return
    common.out.print(f"{person.name}: {person.faces} face(s), created {person.created_at}", markup=False)
    for k, v in person.metadata.items():
        common.out.print(f"  {k} = {v}", markup=False)
    for f in faces:
        box = _box(f.box.to_dict()) if f.box else "-"
        sha = (f.image_sha256 or "-")[:12]
        common.out.print(f"  {f.face_id}  sha256 {sha}  box={box}  {f.model}  {f.added_at}", markup=False)


@gallery_app.command()
def rename(
    old: Annotated[str, typer.Argument()], new: Annotated[str, typer.Argument()], gallery: GalleryOpt = None
) -> None:
    """Rename a person."""
    with _open(gallery) as g:
        g.rename(old, new)
    common.out.print(f"renamed {old} to {new}", markup=False)


@gallery_app.command()
def remove(name: Annotated[str, typer.Argument()], gallery: GalleryOpt = None) -> None:
    """Delete a person and erase every vector of theirs from the gallery's files."""
    with _open(gallery) as g:
        n = g.remove(name)
    common.out.print(f"removed {name} ({n} face(s))", markup=False)


@gallery_app.command("export")
def export_(
    file: Annotated[Path, typer.Argument(help="JSON-lines file to write (created 0600)")],
    force: Annotated[bool, typer.Option("--force", help="overwrite FILE if it exists")] = False,
    gallery: GalleryOpt = None,
) -> None:
    """Write the whole gallery, vectors included, to a versioned JSON-lines file (one snapshot)."""
    with _open(gallery) as g:
        n = g.export(file, force=force)
        with file.open(encoding="utf-8") as fh:  # the header counts what the snapshot held
            people = json.loads(fh.readline())["people"]
    common.out.print(f"exported {people} people, {n} faces to {file}", markup=False)


@gallery_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="a file written by 'gallery export'")],
    gallery: GalleryOpt = None,
) -> None:
    """Add the people of an export file in one transaction (a bad line imports nothing;
    faces already enrolled are skipped)."""
    with _open(gallery, create=True) as g:
        added, skipped = g.import_(file)
    common.out.print(f"imported {added} face(s), {skipped} already present", markup=False)


@gallery_app.command()
def threshold(
    value: Annotated[
        float | None,
        typer.Argument(help="store this threshold (cosine similarity)", callback=common.check_similarity),
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="drop the stored threshold")] = False,
    far: Annotated[
        float | None,
        typer.Option(
            help="store the target stranger false-alarm rate, in (0, 1)", callback=common.check_rate
        ),
    ] = None,
    gallery: GalleryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the operating point; store a fixed threshold or a target false-alarm rate."""
    if clear and value is not None:
        raise common.usage("give a VALUE or --clear, not both")
    with _open(gallery) as g:
        if clear or value is not None or far is not None:
            with g.store.transaction():  # VALUE and --far together, or neither
                if clear or value is not None:
                    g.set_threshold(value)
                if far is not None:
                    g.set_far(far)
        op = g.operating_point()
    if as_json:
        common.print_json(op.to_dict())
        return
    extra: list[Any] = [f"far {op.far:g}"] if op.far is not None else []
    detail = ", ".join([op.source, f"{op.people} people", *extra])
    common.out.print(f"threshold {op.threshold:.4f} ({detail})", markup=False)
    if op.note:
        common.err.print(f"note: {op.note}", markup=False)


#: Faces listed one line each by ``gallery reembed`` before the rest are only counted.
MAX_LISTED = 20


def _list_faces(label: str, faces: tuple[Any, ...]) -> None:
    """One stderr line per face (``MissingFace``), the first :data:`MAX_LISTED`, then a count."""
    for m in faces[:MAX_LISTED]:
        where = m.image or (f"image sha256 {m.image_sha256[:12]}" if m.image_sha256 else "no image")
        common.err.print(f"{label}: {m.person}: face {m.face_id} ({where}): {m.reason}", markup=False)
    if len(faces) > MAX_LISTED:
        common.err.print(f"{label}: ... and {len(faces) - MAX_LISTED} more", markup=False)


@gallery_app.command()
def reembed(
    images: Annotated[
        list[Path],
        typer.Option(
            "--images",
            "-i",
            help="a folder holding the enrolled photos, searched recursively, matched by sha256 (repeatable)",
            exists=True,
            file_okay=False,
        ),
    ],
    embedder: EmbedderOpt = None,
    detector: DetectorOpt = None,
    flip: Annotated[bool, typer.Option(help="make flip-TTA vectors (mirrored crop averaged in)")] = False,
    drop_missing: Annotated[
        bool,
        typer.Option(
            "--drop-missing", help="drop the faces whose photo or face is not found, instead of stopping"
        ),
    ] = False,
    gallery: GalleryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-embed every face of the gallery with another model (e.g. --embedder MODEL_DIR from
    faceprint train) and bind the gallery to it, in one transaction.

    The gallery keeps no photos: each face's photo is found by its sha256 under the --images
    folders, its face detected again and matched to the stored box (IoU >= 0.5). If any face
    cannot be re-embedded, nothing is written and they are listed (exit 1), unless
    --drop-missing drops them. The stored threshold and calibration (similarities of the old
    model) are cleared."""
    from ..gallery import open_gallery
    from ..gallery.reembed import apply_reembed, image_files, plan_reembed, scan_images, stored_faces
    from ..recognizer import Recognizer

    location = common.existing_gallery(gallery)
    rec = Recognizer(detector=detector, embedder=embedder, flip=flip)
    with open_gallery(location, rec) as g:
        bound = g.store.model()
        if bound is not None and bound == (rec.model_id, rec.embedder.dim):
            n = len(g.store.snapshot().face_ids)
            if as_json:
                from ..gallery.reembed import ReembedReport

                common.print_json(
                    ReembedReport(g.store.location, bound[0], rec.model_id, n, 0, False).to_dict()
                )
            else:
                common.out.print(
                    f"gallery {g.store.location} already holds vectors of {rec.model_id}: nothing to do",
                    markup=False,
                )
            return
        faces = stored_faces(g.store)
        files = image_files(images)
        wanted = {f.image_sha256 for f in faces if f.image_sha256}
        with common.progress_bar("finding the photos", len(files), len(files) > 50) as adv:
            found = scan_images(files, wanted, adv)
        with common.progress_bar("re-embedding", len(found), len(found) > 3) as adv:
            plan = plan_reembed(g.store, rec, found, faces, adv)
        report = apply_reembed(g.store, plan, drop_missing)
    if as_json:
        common.print_json(report.to_dict())
    if not report.written:
        _list_faces("missing", report.missing)
        raise common.fail(
            f"{len(report.missing)} of {report.faces} face(s) cannot be re-embedded (listed above): "
            "nothing was written; add the folders that hold their photos with --images, or drop them "
            "with --drop-missing"
        )
    _list_faces("dropped", report.dropped)
    for key in report.cleared:
        common.err.print(
            f"note: cleared the gallery's stored {key}: it was for the similarities of {report.old_model}",
            markup=False,
        )
    if not as_json:
        common.out.print(
            f"re-embedded {report.reembedded} face(s) of gallery {report.gallery} with {report.model} "
            f"(was {report.old_model or 'unbound'})"
            + (f"; dropped {len(report.dropped)}" if report.dropped else ""),
            markup=False,
        )
