"""YuNet: a 75k-parameter CNN face detector with 5 landmarks, on ONNX Runtime or OpenCV.

Two backends run the same network, the shipped ``face_detection_yunet_2023mar.onnx``, and
give the same faces (tests/integration/test_yunet_backends.py):

* ``"onnxruntime"`` (the default): the graph made size-dynamic once and cached, decoded
  as OpenCV decodes it (:mod:`.yunet_onnx`). It is about twice as fast as OpenCV's DNN
  engine here (README, "YuNet backends"; ``bench/yunet_backends.py``), and takes
  ``intra_op_threads`` like the embedders.
* ``"opencv"``: ``cv2.FaceDetectorYN``, the reference; it runs on OpenCV's own thread
  pool (``cv2.setNumThreads``), so ``intra_op_threads`` does not apply.

YuNet returns the subject's right eye first; as seen by the viewer that is the left one,
so its order already is ``std5`` (viewer's left eye, right eye, nose tip, left mouth
corner, right mouth corner). Boxes are xyxy pixels of the original image.

Input scaling: the network runs on the image at its own size (images larger than
``max_side`` are shrunk first). opencv_zoo states that YuNet detects faces of about
10x10 to 300x300 px "due to the training scheme"; measured on facenet-pytorch's test
photos, scores stay above 0.9 up to about 400 px, fall to 0.6-0.8 at about 600 px with
boxes that cover only part of the face, and a face about 1000 px tall (a selfie or an
ID photo at camera resolution: ``paul_rudd/1.jpg``) is not found at all. So when an
image larger than :data:`RETRY_SIDE` yields no face of at most :data:`LARGEST_FACE` px,
the detector looks again on smaller copies (see :meth:`YuNetDetector._retry_smaller`)
and maps boxes and landmarks back to the original pixels. An image with a face in
range on the first pass, and any image of at most :data:`RETRY_SIDE` px (LFW's are
250), gets exactly the single pass it always had. Padding the image with a border does
not help: the network input follows the image size, so a border leaves the face as many
pixels tall as before; tight 160x160 crops are found without it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from .. import models
from ..errors import InvalidArgumentError, ModelUnavailableError
from ..types import Box, Face, Image
from . import too_small

#: The backends, by name (``backend`` option); the first is the default.
BACKENDS = ("onnxruntime", "opencv")

#: Long side of the smallest copy searched. A face can be at most this many pixels
#: across there, within YuNet's range; the smallest face rescued this way (one just too
#: large for the first pass, about 400 px in an image of ``max_side``) is still about
#: 50 px across there.
RETRY_SIDE = 320

#: Faces larger than this (px, the box's longer side in the network input) are beyond
#: what YuNet finds reliably.
LARGEST_FACE = 400

#: A face found on a shrunken copy replaces oversized ones found at full size only where
#: their boxes overlap this much (intersection over union).
MIN_IOU = 0.3


class _Network(Protocol):
    """What a backend does: OpenCV's rows ``(n, 15)`` float32 (box x, y, w, h; five
    landmarks x, y; score; pixels of the images as given) for RGB images of one size."""

    def run(self, images: Sequence[Image]) -> list[NDArray[np.float32]]: ...


class _OpenCvNetwork:
    """``cv2.FaceDetectorYN``, one image at a time (it holds one input size; a lock keeps
    threads from changing it under each other)."""

    def __init__(self, path: str, score_threshold: float, nms_threshold: float, top_k: int) -> None:
        import cv2

        try:
            self._net = cv2.FaceDetectorYN.create(path, "", (320, 320), score_threshold, nms_threshold, top_k)
        except cv2.error as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise ModelUnavailableError(
                f"could not load {path} as the YuNet model: expected "
                f"face_detection_yunet_2023mar.onnx, found a file OpenCV rejects ({reason}); "
                "run faceprint models download yunet"
            ) from None
        self._lock = threading.Lock()

    def run(self, images: Sequence[Image]) -> list[NDArray[np.float32]]:
        out = []
        for image in images:
            h, w = image.shape[:2]
            bgr = np.ascontiguousarray(image[:, :, ::-1])  # RGB -> BGR for OpenCV
            with self._lock:
                self._net.setInputSize((w, h))
                _, rows = self._net.detect(bgr)
            out.append(np.zeros((0, 15), np.float32) if rows is None else np.asarray(rows, np.float32))
        return out


class YuNetDetector:
    """YuNet (module doc). ``score_threshold`` is YuNet's face confidence (0..1);
    ``nms_threshold`` and ``top_k`` are ``FaceDetectorYN``'s; ``max_side`` shrinks larger
    images first; ``backend`` is ``"onnxruntime"`` (default) or ``"opencv"``;
    ``intra_op_threads`` (onnxruntime only; 0 = one per physical core) and ``providers``
    (ONNX Runtime execution providers, default CPU) go to ONNX Runtime. ``max_batch``
    bounds how many same-size images :meth:`detect_batch` runs in one ONNX Runtime call;
    ``None`` picks :func:`default_max_batch` for the thread count."""

    name = "yunet"

    def __init__(
        self,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        max_side: int | None = 2560,
        model_path: str | None = None,
        backend: str = "onnxruntime",
        intra_op_threads: int = 0,
        providers: Sequence[str] | None = None,
        max_batch: int | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise InvalidArgumentError(
                f"unknown YuNet backend {backend!r}: expected one of {', '.join(BACKENDS)}"
            )
        if intra_op_threads < 0 or (max_batch is not None and max_batch < 1):
            raise InvalidArgumentError(
                f"need intra_op_threads >= 0 and max_batch >= 1, got {intra_op_threads} and {max_batch}"
            )
        self.model_path = models.resolve("yunet", path=model_path)
        self.score_threshold = score_threshold
        self.max_side = max_side
        self.backend = backend
        self._net: _Network
        if backend == "opencv":
            self.max_batch = 1  # FaceDetectorYN takes one image at a time
            self._net = _OpenCvNetwork(str(self.model_path), score_threshold, nms_threshold, top_k)
        else:
            from . import yunet_onnx

            self.max_batch = max_batch if max_batch is not None else default_max_batch(intra_op_threads)
            self._net = yunet_onnx.YuNetOnnx(
                self.model_path,
                score_threshold,
                nms_threshold,
                top_k,
                intra_op_threads=intra_op_threads,
                providers=providers,
            )

    def detect(self, image: Image) -> list[Face]:
        """Faces in an RGB uint8 image, highest score first; xyxy boxes in its pixels."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[Image]) -> list[list[Face]]:
        """Faces for each RGB uint8 image, in input order (each as :meth:`detect` finds them).

        First passes of the same size (LFW's 250x250 images, a video's frames) run up to
        ``max_batch`` at a time in one network call; the searches of smaller copies that
        some images need afterwards run image by image.
        """
        results: list[list[Face]] = [[] for _ in images]
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            if not too_small(image):
                h, w = image.shape[:2]
                by_size.setdefault(_scaled(w, h, self._first_side(max(h, w))), []).append(i)
        for size, todo in by_size.items():
            for start in range(0, len(todo), self.max_batch):
                chunk = todo[start : start + self.max_batch]
                originals = [np.ascontiguousarray(images[i]) for i in chunk]  # cv2 wants plain strides
                found = self._net.run([_resize(im, size) for im in originals])
                for i, image, rows in zip(chunk, originals, found, strict=True):
                    results[i] = self._finish(
                        image, _faces(rows, size[0] / image.shape[1], size[1] / image.shape[0])
                    )
        return results

    def _first_side(self, long_side: int) -> int:
        """The long side of the first pass: the image's own, or ``max_side`` if smaller."""
        return min(long_side, self.max_side) if self.max_side else long_side

    def _finish(self, image: Image, faces: list[Face]) -> list[Face]:
        """An image's faces from its first pass, after the search of smaller copies where it
        found none in YuNet's range (module doc); highest score first."""
        long_side = max(image.shape[:2])
        first = self._first_side(long_side)
        if first > RETRY_SIDE and not _in_range(faces, first / long_side):
            faces = self._retry_smaller(image, faces, first)
        faces.sort(key=lambda f: -f.score)
        return faces

    def _retry_smaller(self, image: Image, found: list[Face], side: int) -> list[Face]:
        """Search smaller copies, down to :data:`RETRY_SIDE`, for faces in range.

        ``found`` holds the faces found at ``side``: none, or only oversized ones. With
        none, one copy of :data:`RETRY_SIDE` is searched: for a 1920x1080 video frame with no
        face, the common case, that copy has 1/36 of the frame's pixels. Oversized faces are refined on
        copies of halving size, so that each is found as large as YuNet handles well; a
        smaller copy's faces replace them only where they overlap them, because a shrunken
        image shows YuNet "faces" in textures too (the painting behind Biden in
        face_recognition's ``biden2.jpg``) that the full-size pass has ruled out.
        Returns ``found`` when no copy has a face in range.
        """
        long_side = max(image.shape[:2])
        while side > RETRY_SIDE:
            side = max(RETRY_SIDE, side // 2) if found else RETRY_SIDE
            faces = self._detect_at(image, side)
            if found:
                faces = [f for f in faces if any(f.box.iou(g.box) >= MIN_IOU for g in found)]
            if _in_range(faces, side / long_side):
                return faces
        return found

    def _detect_at(self, image: Image, long_side: int) -> list[Face]:
        """Faces in an RGB image resized to ``long_side``, in the original image's pixels."""
        h, w = image.shape[:2]
        size = _scaled(w, h, long_side)
        (rows,) = self._net.run([_resize(image, size)])
        return _faces(rows, size[0] / w, size[1] / h)


def default_max_batch(intra_op_threads: int) -> int:
    """How many same-size images the ONNX Runtime backend runs in one call by default:
    one on one thread, 8 on more (0 = ONNX Runtime's default, one per physical core).
    Measured here on 300 LFW images (``bench/results/yunet_backends.json``, ms per image,
    network and decoding, batches of 1, 4, 8, 32): on 1 thread 1.83, 1.85, 1.87, 2.21 (a
    batch is no faster, and a large one outgrows the cache); on 2 threads 2.15, 1.55,
    1.43, 1.35 (one image is too little work to share between two threads that sleep
    between ops, as every faceprint session's do). 8 takes most of the gain and keeps the
    input of a batch of video frames small."""
    return 1 if intra_op_threads == 1 else 8


def _scaled(w: int, h: int, long_side: int) -> tuple[int, int]:
    """(width, height) of a ``w`` x ``h`` image resized to ``long_side``. Each axis is
    rounded on its own, so boxes map back by each axis's own factor."""
    scale = long_side / max(h, w)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _resize(image: Image, size: tuple[int, int]) -> Image:
    """``image`` at ``size`` = (width, height), shrunk by pixel-area averaging; itself if
    it has that size already."""
    import cv2

    if size == (image.shape[1], image.shape[0]):
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.uint8, copy=False)


def _faces(rows: NDArray[np.float32], sx: float, sy: float) -> list[Face]:
    """Faces from OpenCV's rows found on a copy scaled by ``sx``, ``sy``: xyxy boxes and
    ``std5`` landmarks in the original image's pixels."""
    faces = []
    for row in np.asarray(rows, dtype=np.float64) / np.r_[[sx, sy] * 7, 1.0]:
        x, y, bw, bh = row[:4]
        lm = row[4:14].reshape(5, 2).astype(np.float32)
        box = Box(float(x), float(y), float(x + bw), float(y + bh))
        faces.append(Face(box=box, score=float(row[14]), landmarks=lm, landmark_scheme="std5"))
    return faces


def _in_range(faces: list[Face], scale: float) -> bool:
    """Whether any face is at most :data:`LARGEST_FACE` px across in the network input."""
    return any(max(f.box.width, f.box.height) * scale <= LARGEST_FACE for f in faces)
