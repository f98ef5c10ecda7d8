"""Indexing a photo collection: list the photos, find and embed every face, store them.

Why this shape: a collection is tens of thousands of photos that nobody has checked, so
one bad file must never stop the run (:class:`PhotoResult` carries its reason instead),
a run killed at any point must continue where it stopped without duplicating anything
(each batch is one transaction, faces keyed by the photo's sha256 and face index), and a
second run over the same folder must cost only the hashing (a path indexed with the same
sha256 is skipped; new bytes under a known path are indexed again).

Conventions: paths are stored absolute (not resolved: two links to one file are two
paths of one image); boxes are xyxy pixels of the decoded photo (EXIF orientation
applied); every face is embedded, and those the quality gate refuses are stored with the
reason and kept out of clustering.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..detection import detect_each
from ..errors import FaceprintError, IncompatibleEmbeddingError, InvalidArgumentError
from ..evaluation.folders import IMAGE_SUFFIXES
from ..quality import DEFAULT_GATE, QualityGate
from ..types import Box, Face, Image
from .store import CollectionStore, IndexedFace, PhotoResult

if TYPE_CHECKING:
    from ..recognizer import Recognizer

log = logging.getLogger(__name__)

#: Photos per batch: one detector/embedder round and one database transaction. Eight
#: 12-megapixel photos decoded at once hold about 300 MB.
BATCH = 8


@dataclass(frozen=True)
class PhotoFile:
    """A photo to index: absolute path, content sha256, size and mtime when listed."""

    path: str
    sha256: str
    size: int
    mtime: float


@dataclass
class Listing:
    """What a set of paths holds: image files, and what could not be listed and why."""

    files: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    not_images: int = 0


@dataclass
class IndexSummary:
    """The outcome of one ``index`` run (counts are of this run)."""

    listed: int = 0
    already: int = 0
    duplicates: int = 0
    indexed: int = 0
    faces: int = 0
    rejected: int = 0
    not_images: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "listed": self.listed,
            "already_indexed": self.already,
            "duplicates": self.duplicates,
            "indexed": self.indexed,
            "faces": self.faces,
            "faces_below_quality_gate": self.rejected,
            "not_images": self.not_images,
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted,
        }


# -- listing ----------------------------------------------------------------------------
def list_photos(paths: Iterable[str | Path], recursive: bool = False) -> Listing:
    """The image files under ``paths`` (files as given; folders' image files by suffix,
    hidden ones skipped, sub-folders with ``recursive``), sorted, without repeats. A
    missing path, an unreadable folder or a symlink loop is a problem, not an error."""
    out = Listing()
    seen_dirs: set[tuple[int, int]] = set()
    found: dict[str, None] = {}
    for raw in paths:
        p = Path(os.path.abspath(os.path.expanduser(str(raw))))
        try:
            st = p.stat()
        except FileNotFoundError:
            out.problems.append((str(p), "no such file or folder"))
            continue
        except OSError as exc:
            out.problems.append((str(p), f"cannot read it ({exc.strerror or exc})"))
            continue
        if stat.S_ISREG(st.st_mode):
            found[str(p)] = None
        elif stat.S_ISDIR(st.st_mode):
            _walk(p, recursive, seen_dirs, found, out)
        else:
            out.problems.append((str(p), "not a regular file or folder"))
    out.files = sorted(found)
    return out


def _walk(
    root: Path, recursive: bool, seen: set[tuple[int, int]], found: dict[str, None], out: Listing
) -> None:
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = folder.stat()
        except OSError as exc:
            out.problems.append((str(folder), f"cannot read the folder ({exc.strerror or exc})"))
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:  # a symlink loop, or two links to one folder: each folder once
            if folder != root:
                log.info("%s: already listed (a link to a folder seen before); skipped", folder)
            continue
        seen.add(key)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            out.problems.append((str(folder), f"cannot read the folder ({exc.strerror or exc})"))
            continue
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                is_dir = e.is_dir()  # follows links
                is_file = e.is_file()
            except OSError:
                is_dir = is_file = False
            if is_dir:
                if recursive:
                    stack.append(Path(e.path))
            elif is_file:
                if Path(e.name).suffix.lower() in IMAGE_SUFFIXES:
                    found[os.path.abspath(e.path)] = None
                else:
                    out.not_images += 1
            elif e.is_symlink():
                out.problems.append((e.path, "a broken link or a link loop"))


def hash_file(path: str) -> tuple[PhotoFile | None, str | None]:
    """The photo's sha256 and stat, or why it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                return None, "not a regular file"
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except FileNotFoundError:
        return None, "the file disappeared before it could be read"
    except IsADirectoryError:
        return None, "a folder, not a photo"
    except OSError as exc:
        return None, f"cannot read it ({exc.strerror or exc})"
    if st.st_size == 0:
        return None, "empty file (0 bytes)"
    return PhotoFile(path, h.hexdigest(), int(st.st_size), float(st.st_mtime)), None


# -- analysing photos (in this process, or in a worker) ------------------------------------
def analyse(recognizer: Recognizer, gate: QualityGate, photos: Sequence[PhotoFile]) -> list[PhotoResult]:
    """Detect, check and embed every face of ``photos``; one embedder call for the batch.
    Each photo that cannot be read or decoded becomes a result with its reason."""
    from ..io import load_image

    results: list[PhotoResult | None] = [None] * len(photos)
    decoded: list[tuple[int, PhotoFile, Image]] = []
    for i, ph in enumerate(photos):
        try:
            with open(ph.path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            results[i] = PhotoResult(ph.path, None, error="the file disappeared before it could be read")
            continue
        except OSError as exc:
            results[i] = PhotoResult(ph.path, None, error=f"cannot read it ({exc.strerror or exc})")
            continue
        sha = hashlib.sha256(data).hexdigest()
        try:
            img = load_image(data)
        except FaceprintError as exc:
            results[i] = PhotoResult(ph.path, sha, error=str(exc).removeprefix("image bytes: "))
            continue
        decoded.append((i, PhotoFile(ph.path, sha, len(data), ph.mtime), img))  # the bytes read now
    images: list[Image] = []
    found: list[list[Face]] = []
    where: list[tuple[int, PhotoFile]] = []
    checks = []
    # one detect_batch call for the batch's photos; a photo the detector refuses fails alone
    for (i, ph, img), faces in zip(
        decoded, detect_each(recognizer.detector, [d[2] for d in decoded]), strict=True
    ):
        if isinstance(faces, FaceprintError):
            results[i] = PhotoResult(ph.path, ph.sha256, error=str(faces).removeprefix("image bytes: "))
            continue
        images.append(img)
        found.append(faces)
        where.append((i, ph))
        checks.append([gate.check(img, f) if gate.active else (None, None) for f in faces])
    embedded = recognizer.embed_batch(images, found) if images else []
    for (i, ph), img, faces, chk in zip(where, images, embedded, checks, strict=True):
        results[i] = PhotoResult(
            ph.path, ph.sha256, ph.size, ph.mtime, int(img.shape[1]), int(img.shape[0]),
            tuple(_indexed(j, f, q, r) for j, (f, (q, r)) in enumerate(zip(faces, chk, strict=True))),
        )  # fmt: skip
    return [r for r in results if r is not None]


def _indexed(j: int, f: Face, quality: float | None, rejected: str | None) -> IndexedFace:
    assert f.embedding is not None
    lm = None if f.landmarks is None else [[float(x), float(y)] for x, y in np.asarray(f.landmarks)]
    b = f.box
    return IndexedFace(
        j, Box(float(b.x1), float(b.y1), float(b.x2), float(b.y2)), lm, float(f.score), quality, rejected,
        np.asarray(f.embedding, np.float32),
    )  # fmt: skip


_worker: tuple[Any, QualityGate] | None = None


def _init_worker(detector: str, embedder: str, flip: bool, gate: QualityGate) -> None:
    global _worker
    from ..recognizer import Recognizer

    _worker = (Recognizer(detector, embedder, flip=flip, threads=1), gate)


def _work(photos: list[PhotoFile]) -> list[PhotoResult]:
    assert _worker is not None, "worker not initialised"
    return analyse(_worker[0], _worker[1], photos)


# -- the run ----------------------------------------------------------------------------------
def index_photos(
    store: CollectionStore,
    recognizer: Recognizer,
    paths: Iterable[str | Path],
    *,
    recursive: bool = False,
    workers: int = 1,
    gate: QualityGate = DEFAULT_GATE,
    batch: int = BATCH,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    ray: str | None = None,
) -> IndexSummary:
    """Index the photos under ``paths`` into ``store`` (module doc). ``workers`` > 1 runs
    detection and embedding in that many processes (each loads the models once); the
    results are written here, one transaction per batch. ``ray``: run them on a Ray
    cluster instead (``"local"`` starts one here; ``HOST:PORT``, ``ray://HOST:PORT`` or
    ``auto`` joins one; :mod:`.distributed`), ``workers`` actors (0: one per CPU of the
    cluster). Ctrl-C stops after the batches already written: the summary says
    ``interrupted`` and the next run continues."""
    if ray is not None:
        from .distributed import check_address

        check_address(ray)  # a malformed address fails before any photo is hashed
    if workers < (0 if ray is not None else 1):
        raise InvalidArgumentError(f"workers must be >= 1, got {workers}")
    if batch < 1:
        raise InvalidArgumentError(f"batch must be >= 1, got {batch}")
    model = recognizer.model_id
    bound = store.model()
    if bound is not None and bound != model:
        raise IncompatibleEmbeddingError(
            f"gallery {store.location}: its photos were indexed with {bound}, not {model}; "
            "index with the same detector/embedder options, or use another gallery"
        )
    gallery_model = store.db.store.model()
    if gallery_model is not None and gallery_model[0] != model:
        raise IncompatibleEmbeddingError(
            f"gallery {store.location}: its people were enrolled with {gallery_model[0]}, not {model}; "
            "naming clusters needs the same model"
        )
    start = time.perf_counter()
    listing = list_photos(paths, recursive)
    summary = IndexSummary(listed=len(listing.files), not_images=listing.not_images)
    summary.failed.extend(listing.problems)
    done = store.indexed(listing.files)
    todo: list[PhotoFile] = []
    for path in listing.files:
        pf, why = hash_file(path)
        if pf is None:
            assert why is not None
            summary.failed.append((path, why))
            continue
        if done.get(path) == pf.sha256:
            summary.already += 1
            continue
        todo.append(pf)
    if on_total is not None:
        on_total(len(todo))
    if todo:
        store.bind_model(model)
    known = store.known_images(p.sha256 for p in todo)
    fresh: list[PhotoFile] = []
    dups: list[PhotoResult] = []
    seen: set[str] = set()
    for pf in todo:
        if pf.sha256 in known or pf.sha256 in seen:
            dups.append(PhotoResult(pf.path, pf.sha256, pf.size, pf.mtime, duplicate=True))
        else:
            seen.add(pf.sha256)
            fresh.append(pf)
    # a duplicate of a photo indexed in this run is written after it (the batches go in order)
    first_of = {pf.sha256: n // batch for n, pf in enumerate(fresh)}
    batches = [fresh[i : i + batch] for i in range(0, len(fresh), batch)]
    pending_dups: dict[int, list[PhotoResult]] = {}
    for d in dups:
        pending_dups.setdefault(first_of.get(d.image_sha256 or "", -1), []).append(d)

    def write(k: int, results: list[PhotoResult], stored: bool = False) -> None:
        extra = pending_dups.pop(k, [])
        store.add_results(extra if stored else [*results, *extra], model)
        for r in results:
            if r.error is not None:
                summary.failed.append((r.path, r.error))
            else:
                summary.indexed += 1
                summary.faces += len(r.faces)
                summary.rejected += sum(f.rejected is not None for f in r.faces)
        summary.duplicates += len(extra)
        if progress is not None:
            progress(len(results) + len(extra))

    try:
        write(-1, [])  # duplicates of photos indexed in earlier runs
        if ray is not None and batches:
            from .distributed import run_batches

            run_batches(store, recognizer, gate, batches, ray, workers or None, write)
        elif workers == 1 or len(batches) <= 1:
            for k, b in enumerate(batches):
                write(k, analyse(recognizer, gate, b))
        else:
            _run_pool(recognizer, gate, batches, workers, write)
    except KeyboardInterrupt:
        summary.interrupted = True
    summary.seconds = time.perf_counter() - start
    summary.failed.sort()
    return summary


def _run_pool(
    recognizer: Recognizer,
    gate: QualityGate,
    batches: list[list[PhotoFile]],
    workers: int,
    write: Callable[[int, list[PhotoResult], bool], None],
) -> None:
    """Batches through ``workers`` processes, at most two in flight per worker, written
    in order (so a duplicate's first copy is stored before it)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # onnxruntime's and dlib's threads do not survive fork
    args = (recognizer.detector_name, recognizer.embedder.name, recognizer.flip, gate)
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=args)
    try:
        futures: dict[int, Future[list[PhotoResult]]] = {}
        nxt = 0
        for k in range(len(batches)):
            while nxt < len(batches) and nxt < k + 2 * workers:
                futures[nxt] = pool.submit(_work, batches[nxt])
                nxt += 1
            write(k, futures.pop(k).result(), False)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
