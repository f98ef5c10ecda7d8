"""``faceprint watch SOURCE``: recognise the faces of a video file, camera or stream per track.

Writes, as asked: an annotated video (``--out``: box, name or ``unknown``, similarity and
track id on every detected face), events as JSON lines flushed as they happen (``--events``,
so a consumer can ``tail -f`` them; appended, and each run starts with a ``run_started``
line naming the source, models and start time, so runs in one file stay separable; the
events are :mod:`faceprint.video.stream`'s, the same the service streams), and a
window (``--show``, where OpenCV has a GUI and a display exists). A progress bar on stderr
for files; a summary per track at the end, saying why a track stayed ``unknown``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from ..quality import MIN_FACE_PX, MIN_QUALITY
from ..video.schedule import SCAN_EVERY
from . import common

GalleryOpt = Annotated[
    str | None,
    typer.Option("--gallery", "-g", help="SQLite file or postgresql:// URL (default: FACEPRINT_GALLERY)"),
]


def _writer(path: Path, fps: float, size: tuple[int, int]) -> Any:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), max(fps, 1.0), size)
    if not w.isOpened():
        raise common.fail(
            f"cannot write a video to {path} (OpenCV has no encoder for it; try a .mp4 or .avi name)"
        )
    return w


def _can_show() -> bool:
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return False
    try:
        import cv2

        cv2.namedWindow("faceprint")
        return True
    except Exception:  # headless OpenCV build: no highgui
        return False


def annotate(result: Any) -> Any:
    """The frame of ``result`` (RGB) with the box, label, similarity and id of each track
    whose face was detected (``FrameResult.visible``: coasting tracks are not drawn)."""
    from ..draw import draw_faces

    labels = []
    shown = result.visible
    for r in shown:
        sim = f" {r.best.similarity:.2f}" if r.best is not None else ""
        labels.append(f"#{r.track_id} {r.label}{sim}")
    return draw_faces(result.image, [r.face for r in shown], labels)


def watch(
    source: Annotated[str, typer.Argument(help="video file, camera index (0) or rtsp:// / http:// URL")],
    gallery: GalleryOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(help="write an annotated video here (.mp4)", callback=common.check_out_file),
    ] = None,
    events: Annotated[
        Path | None,
        typer.Option(help="append events here as JSON lines", callback=common.check_out_file),
    ] = None,
    show: Annotated[
        bool, typer.Option(help="show a window (needs a display and a GUI build of OpenCV)")
    ] = False,
    detect_every: Annotated[
        int, typer.Option(min=1, help="run the detector every N frames (track between)")
    ] = 1,
    scan_every: Annotated[
        int,
        typer.Option(
            min=1,
            help="frames over 960 px: detect on the whole frame at full resolution every N frames (a new "
            "small face is found within N frames), else on a 640 px copy plus full-resolution crops around "
            "small tracked faces; 1: the whole frame at full resolution every time (slow)",
        ),
    ] = SCAN_EVERY,
    embed_every: Annotated[int, typer.Option(min=1, help="re-embed a track every N frames")] = 10,
    min_frames: Annotated[int, typer.Option(min=1, help="embeddings a track needs before it is named")] = 3,
    max_age: Annotated[
        int, typer.Option(min=0, help="detector frames a track survives without its face (occlusions)")
    ] = 30,
    max_fps: Annotated[
        float | None,
        typer.Option(help="process at most this many frames per second", callback=common.check_positive),
    ] = None,
    max_frames: Annotated[
        int | None, typer.Option(min=1, help="stop after this many processed frames (default: all)")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="fixed threshold in [-1, 1] (default: the gallery's)", callback=common.check_similarity
        ),
    ] = None,
    reconnect: Annotated[bool, typer.Option(help="reopen a network stream that drops")] = False,
    no_gallery: Annotated[bool, typer.Option("--no-gallery", help="track only, name nobody")] = False,
    detector: common.DetectorOpt = None,
    embedder: common.EmbedderOpt = None,
    min_face_size: common.MinFaceSizeOpt = MIN_FACE_PX,
    min_quality: common.MinQualityOpt = MIN_QUALITY,
) -> None:
    """Track faces and name each track (or 'unknown') by voting over its frames."""
    from ..video.sources import open_source
    from ..video.stream import recognize_stream, run_header, tracking_recognizer
    from ..video.tracking import Tracker

    if show and not _can_show():
        raise common.fail("--show needs a display and a GUI build of OpenCV (pip install opencv-python)")
    # Every output place is checked before the video opens: a typo fails now, in one line,
    # not after minutes of video (or never, with nothing written).
    if not no_gallery:
        gallery = common.existing_gallery(gallery)
    for path in (out, events):
        if path is not None:
            common.make_dirs(path.parent)
    src_arg: str | int = int(source) if source.isdigit() else source
    rec = tracking_recognizer(detector, embedder)
    g = None
    if not no_gallery:
        from ..gallery import open_gallery

        g = open_gallery(gallery, rec)
    gate = common.quality_gate(min_face_size, min_quality)
    src = open_source(src_arg, max_fps=max_fps, reconnect=reconnect)
    common.err.print(f"watching {src.description}", markup=False)
    writer = None
    try:
        log: IO[str] | None = events.open("a", encoding="utf-8") if events is not None else None
    except OSError as exc:
        src.close()
        if g is not None:
            g.close()
        raise common.fail(f"cannot write events to {events}: {exc.strerror or exc}") from None
    if log is not None:
        log.write(json.dumps(run_header(src, rec, g)) + "\n")
        log.flush()
    total = src.frame_count if not src.live else None
    tracks: dict[int, dict[str, Any]] = {}
    frames = 0
    t0 = time.perf_counter()
    done = 0  # source frames read (a file read with --max-fps skips some)
    try:
        with common.progress_bar("watching", total, bool(total) and not show) as advance:
            for res in recognize_stream(
                rec, g, src, threshold=threshold, detect_every=detect_every, embed_every=embed_every,
                min_frames=min_frames, tracker=Tracker(max_age=max_age), gate=gate, max_frames=max_frames,
                scan_every=scan_every,
            ):  # fmt: skip
                if res.image is not None:
                    frames += 1
                    advance(res.index + 1 - done)
                    done = res.index + 1
                for ev in res.events:
                    if log is not None:
                        log.write(json.dumps(ev) + "\n")
                        log.flush()
                    if ev["event"] == "track_ended":
                        tracks[ev["track_id"]] = ev
                if res.image is None:
                    continue
                if out is not None or show:
                    import cv2

                    bgr = cv2.cvtColor(annotate(res), cv2.COLOR_RGB2BGR)
                    if out is not None:
                        if writer is None:
                            writer = _writer(out, src.fps or 25.0, (bgr.shape[1], bgr.shape[0]))
                        writer.write(bgr)
                    if show:
                        cv2.imshow("faceprint", bgr)
                        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                            break
    except KeyboardInterrupt:
        common.err.print("interrupted", markup=False)
    finally:
        if writer is not None:
            writer.release()
        if log is not None:
            log.close()
        if g is not None:
            g.close()
        src.close()
    secs = time.perf_counter() - t0
    o = common.out
    o.print(f"{frames} frames in {secs:.1f} s ({frames / max(secs, 1e-9):.1f} fps), dropped {src.dropped}")
    for tid in sorted(tracks):
        ev = tracks[tid]
        sim = "" if ev["similarity"] is None else f", similarity {ev['similarity']:.3f}"
        why = f" ({ev['reason']})" if ev.get("reason") else ""
        o.print(
            f"  track #{tid}: {ev['label']}{why}{sim}, {ev['duration']:.1f} s, {ev['frames']} frames",
            markup=False,
        )
    if out is not None and writer is not None:
        o.print(f"  annotated video: {out}")
