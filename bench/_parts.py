"""Per-part face vectors of LFW images, computed once and fused in numpy.

Why: the fusion benchmark scores 3 single embedders and 4 fusions, each plain and with
flip TTA, and the identification benchmark needs enrolment views too; running every
configuration through its own Recognizer would embed each image a dozen times (Faceplugin
alone costs ~70 ms per crop here). Instead each image is detected once (YuNet, the face
nearest the image centre, as ``faceprint eval lfw`` picks it), each part embeds each view
of it once, and any fusion's vectors are computed from the parts' unit vectors exactly as
:class:`faceprint.embedding.fused.FusedEmbedder` and :class:`faceprint.Recognizer` do:

* plain: ``concat_p(sqrt(w_p) * v_p(crop))`` (unit length, weights sum to 1);
* flip: the re-normalised sum of the plain vector of the crop and of its mirror;
* views: the re-normalised mean of the plain vectors of crop, mirror and the two
  re-crops at :data:`faceprint.recognizer.VIEW_ZOOMS`.

:func:`check_against_recognizer` compares these with a real Recognizer on a few images, so
the shortcut is checked, not assumed. Vectors are cached in an ``.npz`` file by
(part, view); only what is missing is computed.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

PARTS = ("dlib-onnx", "mobilefacenet", "faceplugin")
VIEWS = ("crop", "mirror", "zoom0.93", "zoom1.07")
CHUNK = 32


def _zoom(view: str) -> float:
    return float(view.removeprefix("zoom")) if view.startswith("zoom") else 1.0


@dataclass
class PartVectors:
    """Unit vectors by (part, view) for ``paths``; ``ok[i]``: a face was found in image i."""

    paths: list[Path]
    ok: NDArray[np.bool_]
    vectors: dict[tuple[str, str], NDArray[np.float32]]

    def index(self) -> dict[Path, int]:
        return {p: i for i, p in enumerate(self.paths)}

    def fused(
        self, parts: Sequence[str], weights: Sequence[float], view: str = "crop"
    ) -> NDArray[np.float32]:
        """The fused (or, with one part and weight 1, the part's own) plain vectors of ``view``."""
        w = np.asarray(weights, np.float64)
        return np.concatenate(
            [np.sqrt(wi) * self.vectors[(p, view)] for p, wi in zip(parts, w, strict=True)], axis=1
        ).astype(np.float32)

    def flip(self, parts: Sequence[str], weights: Sequence[float]) -> NDArray[np.float32]:
        return _unit(self.fused(parts, weights, "crop") + self.fused(parts, weights, "mirror"))

    def views(self, parts: Sequence[str], weights: Sequence[float]) -> NDArray[np.float32]:
        return _unit(sum(self.fused(parts, weights, v) for v in VIEWS) / len(VIEWS))

    def kind(self, parts: Sequence[str], weights: Sequence[float], kind: str) -> NDArray[np.float32]:
        """``kind``: "plain", "flip" or "views"."""
        if kind == "plain":
            return self.fused(parts, weights)
        return self.flip(parts, weights) if kind == "flip" else self.views(parts, weights)


def _unit(x: Any) -> NDArray[np.float32]:
    x = np.asarray(x, np.float64)
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _load(cache: Path) -> PartVectors | None:
    if not cache.is_file():
        return None
    z = np.load(cache, allow_pickle=False)
    vecs = {}
    for key in z.files:
        if "|" in key:
            part, view = key.split("|")
            vecs[(part, view)] = z[key]
    return PartVectors([Path(p) for p in z["paths"]], z["ok"], vecs)


def _save(cache: Path, pv: PartVectors) -> None:
    arrays: dict[str, Any] = {"paths": np.array([str(p) for p in pv.paths]), "ok": pv.ok}
    arrays.update({f"{p}|{v}": a for (p, v), a in pv.vectors.items()})
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, cache)


def part_vectors(
    paths: Sequence[Path],
    cache: Path,
    parts: Sequence[str] = PARTS,
    views: Sequence[str] = ("crop", "mirror"),
    threads: int = 2,
) -> PartVectors:
    """Vectors of every (part, view) for ``paths`` (module doc), from ``cache`` where it has
    them; computes the missing ones (models found through ``FACEPRINT_MODELS``)."""
    want = [Path(p) for p in paths]
    have = _load(cache)
    if have is not None and have.paths == want:
        missing = [(p, v) for p in parts for v in views if (p, v) not in have.vectors]
        if not missing:
            print(f"part vectors from {cache}", file=sys.stderr)
            return have
    else:
        have = None
        missing = [(p, v) for p in parts for v in views]
    from faceprint.alignment import align_crops
    from faceprint.detection.yunet import YuNetDetector
    from faceprint.evaluation.pairs import central_face
    from faceprint.io import load_image
    from faceprint.registry import create_embedder

    det = YuNetDetector()
    embedders = {p: create_embedder(p, threads=threads) for p in sorted({p for p, _ in missing})}
    out = {k: np.zeros((len(want), embedders[k[0]].dim), np.float32) for k in missing}
    ok = np.zeros(len(want), bool)
    t0 = time.perf_counter()
    for start in range(0, len(want), CHUNK):
        idx, faces, imgs = [], [], []
        for i in range(start, min(start + CHUNK, len(want))):
            img = load_image(want[i])
            face = central_face(det.detect(img), img.shape)
            if face is not None:
                idx.append(i)
                faces.append(face)
                imgs.append(img)
        ok[idx] = True
        for (part, view), arr in out.items():
            emb = embedders[part]
            crops = []
            for img, face in zip(imgs, faces, strict=True):
                (c,) = align_crops(img, face, emb.crop_templates, zoom=_zoom(view))
                crops.append(np.ascontiguousarray(c[:, ::-1]) if view == "mirror" else c)
            if crops:
                arr[idx] = emb.embed(crops)
        if start % (CHUNK * 10) == 0:
            print(f"{start}/{len(want)} images, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if have is not None and not np.array_equal(have.ok, ok):
        raise RuntimeError("the cached detections differ from this run's: delete the cache")
    vectors = {**(have.vectors if have else {}), **out}
    pv = PartVectors(want, ok, vectors)
    _save(cache, pv)
    return pv


def check_against_recognizer(
    pv: PartVectors, name: str, parts: Sequence[str], weights: Sequence[float], n: int = 6
) -> float:
    """Max abs difference between ``pv``'s fused vectors (plain, flip, views) and what a
    real :class:`faceprint.Recognizer` with embedder ``name`` gives, on ``n`` images."""
    from faceprint.evaluation.pairs import central_face
    from faceprint.io import load_image
    from faceprint.recognizer import Recognizer

    worst = 0.0
    recs = {flip: Recognizer("yunet", name, flip=flip, threads=1) for flip in (False, True)}
    pos = [i for i in np.flatnonzero(pv.ok)[:: max(1, int(pv.ok.sum()) // n)][:n]]
    with_views = all((p, v) in pv.vectors for p in parts for v in VIEWS)
    kinds = {k: pv.kind(parts, weights, k) for k in ("plain", "flip", *(("views",) if with_views else ()))}
    for i in pos:
        img = load_image(pv.paths[i])
        face = central_face(recs[False].detector.detect(img), img.shape)
        assert face is not None
        for kind, flip, views in (("plain", False, False), ("flip", True, False), ("views", False, True)):
            if kind not in kinds:
                continue
            ((f,),) = recs[flip].embed_batch([img], [[face]], views=views)
            worst = max(worst, float(np.abs(np.asarray(f.embedding) - kinds[kind][i]).max()))
    return worst
