"""The pipeline: load -> detect -> align -> embed -> compare. Holds no model code.

``Recognizer`` composes a detector and an embedder from the registries. Every batch entry
point aligns the crops of all faces of all images in a call and embeds them in one
embedder call. Results name the detector and embedder that produced them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import models
from .alignment import align_crops
from .config import Settings, get_settings
from .detection import Detector
from .embedding import Embedder, l2_normalize, model_id
from .errors import ModelUnavailableError, MultipleFacesError, NoFaceError
from .io import ImageInput, load_image
from .registry import create_embedder, detectors, instantiate
from .types import Face, Image, Verification

log = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "dlib-onnx"

Progress = Callable[[int], None]

#: Enrolment views (``views=True``): the aligned crop, its mirror, and the crop with the
#: landmarks spread 0.93x and 1.07x about its centre (zoomed out, zoomed in). Their unit
#: vectors are averaged into the face's vector. Why: one enrolment photo is one draw of
#: pose and alignment noise; averaging views the probe may show smooths it out. Measured
#: on LFW dev's held-out people (``bench/inference_gains.py``, ``bench/identification.py
#: --views``): one-shot DIR@FAR=1% rises; probes stay one crop (two with ``flip``), so
#: only enrolment pays the 4x embedding. The scores such a vector gives strangers are
#: slightly higher, so it has its own impostor distribution (``<model id>+views``).
VIEW_ZOOMS = (0.93, 1.07)


def default_detector_name(settings: Settings | None = None) -> str:
    """The best detector available: ``FACEPRINT_DETECTOR``, else ``yunet`` when its model
    file is present locally, else ``hog`` (which needs no file)."""
    s = settings or get_settings()
    if s.detector:
        return s.detector
    try:
        models.resolve("yunet", settings=s, download=False)
        return "yunet"
    except ModelUnavailableError:
        return "hog"


def default_embedder_name(settings: Settings | None = None) -> str:
    """The embedder used when none is named: ``FACEPRINT_EMBEDDER`` (a registered name or a
    MODEL_DIR path), else :data:`DEFAULT_EMBEDDER`."""
    return (settings or get_settings()).embedder or DEFAULT_EMBEDDER


def no_face_error(label: str, detector: str) -> NoFaceError:
    """The error for an image without a face: it names the detector used and the others,
    since each misses faces the others find (pose, size, lighting)."""
    others = ", ".join(n for n in detectors.names() if n != detector)
    return NoFaceError(
        f"{label}: expected a face, found none (detector {detector}); try another detector: {others}"
    )


def _label(image: ImageInput, i: int) -> str:
    return str(image) if isinstance(image, str) or hasattr(image, "__fspath__") else f"image #{i + 1}"


class Recognizer:
    """Detect, align and embed faces; verify pairs.

    ``detector``/``embedder`` are registry names or ready objects (``embedder`` may also be
    the path of a MODEL_DIR written by ``faceprint train``:
    :func:`faceprint.registry.create_embedder`); ``None`` picks the defaults (see
    :func:`default_detector_name`, :func:`default_embedder_name`). ``threshold`` is a cosine similarity
    and defaults to the embedder's LFW-fitted value (its flip value with ``flip``).
    ``flip`` averages each face's vector with its mirrored crop's (test-time
    augmentation; twice the embedding cost). ``threads`` sets onnxruntime's intra-op
    threads for the components that use it (0 = one per core).
    """

    def __init__(
        self,
        detector: str | Detector | None = None,
        embedder: str | Embedder | None = None,
        *,
        threshold: float | None = None,
        flip: bool = False,
        detector_options: dict[str, Any] | None = None,
        embedder_options: dict[str, Any] | None = None,
        threads: int | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        if detector is None or isinstance(detector, str):
            name = detector or default_detector_name(self.settings)
            self.detector: Detector = instantiate(detectors.resolve(name), detector_options, threads)
        else:
            self.detector = detector
        if embedder is None or isinstance(embedder, str):
            name = embedder or default_embedder_name(self.settings)
            self.embedder: Embedder = create_embedder(name, embedder_options, threads)
        else:
            self.embedder = embedder
        self.flip = flip
        if threshold is None:
            # Flip TTA shifts the similarity distribution slightly; use its own fitted value.
            default = self.embedder.default_threshold
            threshold = getattr(self.embedder, "flip_threshold", default) if flip else default
        self.threshold = float(threshold)

    @property
    def detector_name(self) -> str:
        return str(getattr(self.detector, "name", type(self.detector).__name__))

    @property
    def embedder_name(self) -> str:
        return self.embedder.name + ("+flip" if self.flip else "")

    @property
    def model_id(self) -> str:
        """The id of this pipeline's vectors, ``network@version+<sha8>`` (``+flip`` with
        flip TTA; :func:`faceprint.embedding.model_id`): what ``Face.embedding_model``
        carries and galleries bind to."""
        return model_id(self.embedder, self.flip)

    # -- detection -------------------------------------------------------------------
    def detect(self, image: ImageInput) -> list[Face]:
        """Faces in one image (path, bytes or RGB array), highest score first."""
        return self.detector.detect(load_image(image))

    def detect_batch(self, images: Sequence[ImageInput]) -> list[list[Face]]:
        """Faces in each of many images."""
        return self.detector.detect_batch([load_image(im) for im in images])

    # -- embedding -------------------------------------------------------------------
    def embed_crops(self, crops: Sequence[Image]) -> NDArray[np.float32]:
        """Unit vectors for aligned crops (face-major, as :meth:`crops` cuts them: one per
        face for a plain embedder, one per part for a fused one), in one embedder call (two
        with ``flip``, which mirrors every crop)."""
        if not self.flip or len(crops) == 0:
            return self.embedder.embed(crops)
        mirrored = [np.ascontiguousarray(c[:, ::-1]) for c in crops]
        both = self.embedder.embed(list(crops) + mirrored)
        n = len(both) // 2  # faces, not crops: a fused embedder takes several crops per face
        return l2_normalize(both[:n] + both[n:])

    def embed(self, image: ImageInput, faces: Sequence[Face]) -> list[Face]:
        """Copies of ``faces`` (found in ``image``) carrying their embeddings."""
        return self.embed_batch([image], [faces])[0]

    def crops(self, image: Image, face: Face) -> list[Image]:
        """The aligned crops the embedder takes of ``face`` found in the RGB ``image``: one
        for a plain embedder, one per part for a fused one
        (:func:`faceprint.alignment.align_crops`). Feed them, face-major, to
        :meth:`embed_crops`."""
        return align_crops(image, face, self.embedder.crop_templates)

    def embed_batch(
        self, images: Sequence[ImageInput], faces: Sequence[Sequence[Face]], views: bool = False
    ) -> list[list[Face]]:
        """Embed every face of every image with a single embedder call. ``views``: each
        face's vector is the re-normalised mean of its enrolment views (:data:`VIEW_ZOOMS`;
        for enrolment only, four crops per face and part)."""
        if len(images) != len(faces):
            raise ValueError(f"{len(images)} images but {len(faces)} face lists")
        crops: list[Image] = []
        templates = self.embedder.crop_templates
        for image, fs in zip(images, faces, strict=True):
            if not fs:
                continue
            img = load_image(image)
            for f in fs:
                base = align_crops(img, f, templates)
                crops.extend(base)
                if views:
                    crops.extend(np.ascontiguousarray(c[:, ::-1]) for c in base)
                    for z in VIEW_ZOOMS:
                        crops.extend(align_crops(img, f, templates, zoom=z))
        if views:
            n = 2 + len(VIEW_ZOOMS)
            raw = self.embedder.embed(crops)
            vecs = l2_normalize(raw.reshape(-1, n, raw.shape[-1]).mean(axis=1))
        else:
            vecs = self.embed_crops(crops)
        mid = self.model_id
        out: list[list[Face]] = []
        k = 0
        for fs in faces:
            out.append([f.with_embedding(vecs[k + j], mid) for j, f in enumerate(fs)])
            k += len(fs)
        return out

    def process(self, image: ImageInput) -> list[Face]:
        """Detect and embed all faces of one image."""
        return self.process_batch([image])[0]

    def process_batch(
        self,
        images: Sequence[ImageInput],
        select: Callable[[list[Face], Image], list[Face]] | None = None,
        progress: Progress | None = None,
        chunk: int = 32,
    ) -> list[list[Face]]:
        """Detect and embed all faces of many images; each image is decoded once, a chunk
        ahead of the networks (:func:`faceprint.prefetch.ahead`), and each chunk is
        detected in one ``detect_batch`` call (SCRFD and MTCNN batch their networks).

        ``select`` may keep a subset of each image's faces before embedding (e.g. the
        central one). Crops are embedded ``chunk`` images at a time to bound memory.
        """
        from .prefetch import ahead

        results: list[list[Face]] = []
        chunks = [images[start : start + chunk] for start in range(0, len(images), chunk)]
        # the next chunk is decoded in a background thread while this one runs the networks
        for part in ahead(chunks, lambda c: [load_image(im) for im in c]):
            found = self.detector.detect_batch(part)
            if select is not None:
                found = [select(fs, img) for fs, img in zip(found, part, strict=True)]
            results.extend(self.embed_batch(part, found))
            if progress is not None:
                progress(len(part))
        return results

    # -- verification ----------------------------------------------------------------
    def _one_face(self, image: ImageInput, i: int, strict: bool, notes: list[str]) -> tuple[Image, Face]:
        img = load_image(image)
        faces = self.detector.detect(img)
        label = _label(image, i)
        if not faces:
            raise no_face_error(label, self.detector_name)
        if len(faces) > 1:
            if strict:
                raise MultipleFacesError(
                    f"{label}: expected one face, found {len(faces)} (drop --strict to use the largest)"
                )
            notes.append(f"{label}: {len(faces)} faces found; used the largest")
        return img, max(faces, key=lambda f: f.box.area)

    def verify(self, a: ImageInput, b: ImageInput, strict: bool = False) -> Verification:
        """Are the faces in ``a`` and ``b`` the same person? (1:1, cosine similarity)

        Each image must hold a face; with several, the largest is used and a note says so,
        unless ``strict`` makes that a :class:`MultipleFacesError`.
        """
        notes: list[str] = []
        img_a, fa = self._one_face(a, 0, strict, notes)
        img_b, fb = self._one_face(b, 1, strict, notes)
        (ea,), (eb,) = self.embed_batch([img_a, img_b], [[fa], [fb]])
        assert ea.embedding is not None and eb.embedding is not None
        sim = float(np.dot(ea.embedding, eb.embedding))
        return Verification(
            similarity=sim,
            threshold=self.threshold,
            same=sim >= self.threshold,
            detector=self.detector_name,
            embedder=self.embedder_name,
            faces=(fa, fb),
            notes=tuple(notes),
        )
