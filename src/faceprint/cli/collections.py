"""``faceprint index``, ``faceprint cluster [name|merge|split|remove-face]`` and
``faceprint photos``: a photo collection on a gallery (:mod:`faceprint.collections`).

Results go to stdout, progress and per-photo failures to stderr. ``index`` may create the
gallery (like ``enroll``); the others need one that exists.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..quality import MIN_FACE_PX, MIN_QUALITY
from . import common
from .gallery import DetectorOpt, EmbedderOpt, GalleryOpt, JsonOpt, _open

if TYPE_CHECKING:
    from ..collections.collection import Collection

cluster_app = typer.Typer(
    help="Group the indexed faces into people (run it after 'faceprint index'), and correct "
    "the groups: name, merge, split, remove-face. Corrections are kept when clustering again."
)
ClusterArg = Annotated[int, typer.Argument(help="a cluster id (faceprint cluster lists them)", min=0)]
#: Failed photos printed one per line before the rest are summed up.
SHOW_FAILED = 20


def _collection(
    gallery: str | None, create: bool = False, detector: str | None = None, embedder: str | None = None
) -> Collection:
    from ..collections.collection import Collection

    return Collection(_open(gallery, detector, embedder, create=create))


#: What may follow ``--ray`` as its address; anything else is the next argument (a photo).
_RAY_ADDRESS = re.compile(r"^(ray://.+|auto|local|[\w.-]+:\d+)$")


def ray_argv(argv: list[str]) -> list[str]:
    """``--ray`` takes an optional address: insert ``local`` after a bare ``--ray`` (one
    followed by nothing, an option or something that is not an address, e.g. a folder)."""
    out = list(argv)
    for i, a in enumerate(out):
        if a == "--":
            break
        if a == "--ray" and (i + 1 == len(out) or not _RAY_ADDRESS.match(out[i + 1])):
            out.insert(i + 1, "local")
            break
    return out


def index(
    photos: Annotated[list[Path], typer.Argument(help="photos and folders of photos")],
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="also index the sub-folders")] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="processes detecting and embedding, each loading the models (default 1); with "
            "--ray, actors (default: one per CPU of the cluster)",
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="[ADDRESS]",
            help="run on Ray (pip install 'faceprint[distributed]'): alone, a local runtime; "
            "HOST:PORT, ray://HOST:PORT or auto joins a cluster that sees the same photo paths",
        ),
    ] = None,
    gallery: GalleryOpt = None,
    detector: DetectorOpt = None,
    embedder: EmbedderOpt = None,
    as_json: JsonOpt = False,
    min_face_size: common.MinFaceSizeOpt = MIN_FACE_PX,
    min_quality: common.MinQualityOpt = MIN_QUALITY,
) -> None:
    """Find every face in a collection of photos and store it, unlabelled, in the gallery.

    Incremental: a photo already indexed (same path and content) is skipped. Killed at any
    point, the next run continues; a photo that fails is reported and never stops the run.
    """
    gate = common.quality_gate(min_face_size, min_quality)
    col = _collection(gallery, create=True, detector=detector, embedder=embedder)
    with col.gallery:
        with common.progress_bar("indexing", None) as adv:
            summary = col.index(
                [str(p) for p in photos],
                recursive=recursive,
                workers=workers if workers is not None else (0 if ray is not None else 1),
                gate=gate,
                progress=adv,
                on_total=getattr(adv, "set_total", None),
                ray=ray,
            )
        totals = col.counts()
    if as_json:
        common.print_json({"gallery": col.store.location, **summary.to_dict(), "collection": totals})
    else:
        for path, why in summary.failed[:SHOW_FAILED]:
            common.err.print(f"failed: {path}: {why}", markup=False)
        if len(summary.failed) > SHOW_FAILED:
            common.err.print(
                f"... and {len(summary.failed) - SHOW_FAILED} more failed photos (--json lists all)"
            )
        common.out.print(
            f"{summary.indexed} photos indexed ({summary.faces} faces, {summary.rejected} below the quality "
            f"gate), {summary.already} already indexed, {summary.duplicates} duplicates of indexed photos, "
            f"{len(summary.failed)} failed"
            + (f", {summary.not_images} non-image files skipped" if summary.not_images else "")
            + f" in {summary.seconds:.1f} s",
            markup=False,
        )
        common.out.print(
            f"collection: {totals['photos']} photos, {totals['faces']} faces; next: faceprint cluster",
            markup=False,
        )
    if summary.interrupted:
        common.err.print(
            "interrupted: the photos indexed so far are stored; run the same command to continue"
        )
        raise typer.Exit(130)
    if summary.listed == 0 and not summary.failed:
        raise common.fail(
            "no photos found (folders are read for .jpg .jpeg .png .bmp .webp .tif .tiff; -r for sub-folders)"
        )
    if summary.indexed + summary.already + summary.duplicates == 0 and summary.failed:
        raise common.fail(f"nothing indexed: all {len(summary.failed)} photos failed")


@cluster_app.callback(invoke_without_command=True)
def cluster(
    ctx: typer.Context,
    gallery: GalleryOpt = None,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="write every face and cluster as JSON to this file ('-': stdout)"),
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="write an HTML page of the clusters, with thumbnails")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="average-linkage cosine similarity (default: fitted on LFW for the model)",
            callback=common.check_similarity,
        ),
    ] = None,
    recluster: Annotated[
        bool, typer.Option(help="start over (keeping names and corrections) instead of adding new faces")
    ] = False,
) -> None:
    """Cluster the indexed faces into people; new faces join the existing clusters."""
    if ctx.invoked_subcommand is not None:
        return
    if json_out is not None and str(json_out) != "-":
        common.check_out_file(json_out)
    if report is not None:
        common.check_out_file(report)
    col = _collection(gallery)
    with col.gallery:
        if col.counts()["faces"] == 0:
            raise common.fail(
                f"gallery {col.store.location}: no faces indexed yet; run faceprint index PHOTOS first"
            )
        run = col.cluster(threshold, recluster=recluster)
        view = col.view()
        if report is not None:
            from ..collections.report import write_report

            write_report(view, report)
    payload = {"gallery": col.store.location, "run": run.to_dict(), **view.to_dict()}
    if json_out is not None:
        import json

        text = json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
        if str(json_out) == "-":
            common.print_json(payload)
            return
        from ..files import atomic_write

        atomic_write(json_out, lambda tmp: tmp.write_text(text, encoding="utf-8"), mode=0o644)
    c = payload["counts"]
    common.out.print(
        f"{run.mode} clustering at {run.threshold:.3f}: {c['clusters']} clusters of {c['clustered']} faces, "
        f"{c['not_clustered']} not clustered, {c['below_quality_gate']} below the quality gate "
        f"({run.seconds:.1f} s)",
        markup=False,
    )
    for cl in view.clusters[:20]:
        who = cl.person or (
            f"looks like {cl.proposed.identity} ({cl.proposed.similarity:.3f})" if cl.proposed else ""
        )
        common.out.print(f"  cluster {cl.id:>5}: {cl.size:>5} faces  {who}", markup=False)
    if len(view.clusters) > 20:
        common.out.print(f"  ... {len(view.clusters) - 20} more (--json or --report lists all)", markup=False)
    if report is not None:
        common.out.print(f"report: {report}", markup=False)


@cluster_app.command()
def name(
    cluster_id: ClusterArg,
    person: Annotated[str, typer.Argument(help="the person's name")],
    merge: Annotated[
        bool, typer.Option(help="the name is enrolled already: add the cluster's faces to them")
    ] = False,
    gallery: GalleryOpt = None,
) -> None:
    """Enrol a cluster's faces as a person (identification knows them from then on)."""
    col = _collection(gallery)
    with col.gallery:
        who, n = col.name(cluster_id, person, merge=merge)
    common.out.print(f"cluster {cluster_id} is {who}: {n} face(s) enrolled", markup=False)


@cluster_app.command("merge")
def merge_(
    a: ClusterArg,
    b: Annotated[int, typer.Argument(help="the cluster that joins A", min=0)],
    gallery: GalleryOpt = None,
) -> None:
    """Merge cluster B into cluster A (kept when clustering again)."""
    col = _collection(gallery)
    with col.gallery:
        size = col.merge(a, b)
    common.out.print(f"cluster {b} merged into {a}: {size} faces", markup=False)


@cluster_app.command()
def split(
    cluster_id: ClusterArg,
    face: Annotated[list[int], typer.Option("--face", help="a face id to move out (repeatable)")],
    gallery: GalleryOpt = None,
) -> None:
    """Move some faces of a cluster into a new cluster (kept apart when clustering again)."""
    col = _collection(gallery)
    with col.gallery:
        new = col.split(cluster_id, face)
    common.out.print(
        f"{len(set(face))} face(s) moved from cluster {cluster_id} to new cluster {new}", markup=False
    )


@cluster_app.command("remove-face")
def remove_face(
    face_id: Annotated[int, typer.Argument(help="the face id (under its thumbnail in --report)", min=0)],
    gallery: GalleryOpt = None,
) -> None:
    """Take a face out of its cluster for good (and out of the person it was named as)."""
    col = _collection(gallery)
    with col.gallery:
        left = col.remove_face(face_id)
    common.out.print(f"face {face_id} removed from cluster {left}", markup=False)


def photos(
    person: Annotated[str | None, typer.Argument(help="an enrolled or named person")] = None,
    image: Annotated[
        Path | None, typer.Option("--image", help="find photos of the face in this photo instead")
    ] = None,
    gallery: GalleryOpt = None,
    detector: DetectorOpt = None,
    embedder: EmbedderOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every indexed photo that shows a person, with the face's box."""
    if (person is None) == (image is None):
        raise common.usage("give a person's NAME or --image PHOTO (one of them)")
    col = _collection(gallery, detector=detector, embedder=embedder)
    with col.gallery:
        hits = col.photos(person) if person is not None else col.photos_like(str(image))
    if as_json:
        common.print_json(
            {
                "gallery": col.store.location,
                "query": person or str(image),
                "photos": [h.to_dict() for h in hits],
            }
        )
        return
    for h in hits:
        b = h.box
        extra = f" {h.source}" + (f" {h.similarity:.3f}" if h.similarity is not None else "")
        common.out.print(f"{h.images[0]}  [{b.x1:.0f},{b.y1:.0f},{b.x2:.0f},{b.y2:.0f}]{extra}", markup=False)
    n_photos = len({h.images[0] for h in hits})
    common.err.print(f"{n_photos} photo(s) of {person or 'that face'}", markup=False)
