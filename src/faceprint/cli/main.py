"""``faceprint`` entry point: detect, verify, enroll, identify, lookalike, gallery, models, eval,
calibrate, watch, serve, keys, index, cluster, photos, train.

Exit codes: 0 success, 1 error (one line on stderr, never a traceback), 2 usage error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import FaceprintError
from . import common
from .collections import cluster_app, index, photos
from .evaluate import calibrate, eval_app
from .gallery import enroll, gallery_app, identify, lookalike
from .models import models_app
from .server import keys_app, serve
from .train import train
from .video import watch

app = typer.Typer(
    name="faceprint",
    cls=common.OneLineErrors,
    help="Offline face detection, verification, identification and evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(models_app, name="models")
app.add_typer(eval_app, name="eval")
app.add_typer(gallery_app, name="gallery")
app.add_typer(keys_app, name="keys")
app.add_typer(cluster_app, name="cluster")
app.command()(enroll)
app.command()(identify)
app.command()(lookalike)
app.command()(calibrate)
app.command()(watch)
app.command()(serve)
app.command()(index)
app.command()(photos)
app.command()(train)

DetectorOpt = common.DetectorOpt
EmbedderOpt = common.EmbedderOpt
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
#: HogDetector.MAX_UPSAMPLE (not imported: that would load numpy and dlib for --help).
MAX_UPSAMPLE = 3
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="log progress details to stderr")]


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        common.out.print(f"faceprint {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: VerboseOpt = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    common.setup_logging(verbose)
    common.quiet_native_logs()


@app.command()
def detect(
    images: Annotated[list[Path], typer.Argument(help="image files")],
    detector: DetectorOpt = None,
    upsample: Annotated[
        int | None,
        typer.Option(
            min=0, max=MAX_UPSAMPLE, help="hog only: times to double the image first (finds smaller faces)"
        ),
    ] = None,
    draw: Annotated[
        Path | None,
        typer.Option(
            help="write annotated copies into this directory (faces labelled #N, as enroll --face N takes)",
            callback=common.check_out_dir,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Find faces: boxes (xyxy pixels), scores and 5 landmarks per image."""
    from ..io import load_image
    from ..recognizer import Recognizer, default_detector_name

    opts = None
    if upsample is not None:
        if (detector or default_detector_name()) != "hog":
            raise common.usage("--upsample applies to the hog detector only (add --detector hog)")
        opts = {"upsample": upsample}
    if draw is not None:  # before any model loads: a bad place fails at once
        common.make_dirs(draw)
    rec = Recognizer(detector=detector, detector_options=opts)
    rows: list[dict[str, object]] = []
    failed = 0
    with common.progress_bar("detecting", len(images), len(images) > 3) as advance:
        for path in images:
            try:
                img = load_image(path)
                faces = rec.detector.detect(img)
            except FaceprintError as exc:
                failed += 1
                common.err.print(f"error: {exc}", markup=False)
                rows.append({"image": str(path), "error": str(exc)})
                advance()
                continue
            if draw is not None:
                from ..draw import draw_faces, save_image

                # The same #N that the table prints and that `enroll --face N` takes.
                labels = [f"#{i} {f.score:.2f}" for i, f in enumerate(faces)]
                save_image(draw_faces(img, faces, labels), str(draw / f"{path.stem}.jpg"))
            rows.append(
                {
                    "image": str(path),
                    "width": img.shape[1],
                    "height": img.shape[0],
                    "faces": [f.to_dict() for f in faces],
                }
            )
            advance()
    if as_json:
        common.print_json({"detector": rec.detector_name, "images": rows})
    else:
        common.out.print(f"detector: {rec.detector_name}")
        for r in rows:
            if "error" in r:
                continue
            faces_l = r["faces"]
            assert isinstance(faces_l, list)
            common.out.print(f"{r['image']}: {len(faces_l)} face(s)")
            for i, f in enumerate(faces_l):
                b = f["box"]
                common.out.print(
                    f"  #{i} box=({b['x1']:.0f}, {b['y1']:.0f}, {b['x2']:.0f}, {b['y2']:.0f}) "
                    f"score={f['score']:.3f}"
                )
    if failed:
        raise typer.Exit(1)


@app.command()
def verify(
    image_a: Annotated[Path, typer.Argument(help="first photo")],
    image_b: Annotated[Path, typer.Argument(help="second photo")],
    detector: DetectorOpt = None,
    embedder: EmbedderOpt = None,
    threshold: Annotated[
        float | None,
        typer.Option(help="cosine similarity threshold, in [-1, 1]", callback=common.check_similarity),
    ] = None,
    strict: Annotated[bool, typer.Option(help="error when a photo has several faces")] = False,
    flip: Annotated[bool, typer.Option(help="also embed mirrored crops and average")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Are the two photos the same person? Prints similarity, threshold and the verdict."""
    from ..recognizer import Recognizer

    rec = Recognizer(detector=detector, embedder=embedder, threshold=threshold, flip=flip)
    v = rec.verify(image_a, image_b, strict=strict)
    if as_json:
        common.print_json(v.to_dict())
        return
    for note in v.notes:
        common.err.print(f"note: {note}", markup=False)
    verdict = "same person" if v.same else "different people"
    common.out.print(
        f"{verdict}: similarity {v.similarity:.4f} (threshold {v.threshold:.4f}, "
        f"detector {v.detector}, embedder {v.embedder})"
    )


def run() -> None:
    """Console-script entry point (errors become one line: see common.OneLineErrors).
    ``--ray`` takes an optional value, which click cannot parse: see ``ray_argv``."""
    import sys

    from .collections import ray_argv

    app(args=ray_argv(sys.argv[1:]), prog_name="faceprint")


if __name__ == "__main__":
    run()
