"""Embedders whose ONNX graph faceprint builds from another model file, once, into the
cache dir: ``dlib-onnx`` (from dlib's ``.dat``), ``mobilefacenet`` (from a TFLite file) and
``faceplugin`` (from an ONNX file with a batch fixed at 1).

Why one module: the three share everything but the conversion. Each built file follows
the embedder graph contract of :mod:`.onnx_session` (input ``crops`` uint8 ``(N, size,
size, 3)`` RGB NHWC with a dynamic batch and the preprocessing inside; output
``descriptors`` float32 ``(N, dim)``, raw), and records in its ``metadata_props`` the
source file's sha256 (``source_sha256``) and the converter version. A cached file whose
record differs from the source (another file, or an older converter), or that cannot be
read, is rebuilt. Builds write a temporary file and ``os.replace`` it into place under an
exclusive ``fcntl.flock`` on ``<file>.lock``, so concurrent processes never see or leave a
half-written model.

The same machinery (:func:`open_built`, :func:`build`) also builds and caches YuNet's graph
made size-dynamic for ONNX Runtime (:mod:`faceprint.detection.yunet_onnx`): it records its
source and converter version the same way, only its graph is a detector's, not the
embedder contract.

**Model id.** The vectors' id hashes the *source* weights as the loaded graph records them
(:func:`recorded_sha256`), so a converted graph shares the id of the file it came from
(``dlib-onnx`` and ``dlib`` share ``dlib@resnet_v1+55533b28``), and a graph that names no
source is hashed itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from .. import models
from ..alignment import AlignmentTemplate
from ..config import get_settings
from ..errors import ModelUnavailableError
from ..files import atomic_write
from ..types import Image
from .onnx_session import check_options, embed_batched, new_session, require

if TYPE_CHECKING:  # onnx is imported lazily at run time
    import onnx

log = logging.getLogger(__name__)

#: Turns a source model file into the contract graph; its metadata is added by :func:`build`.
Converter = Callable[[Path], "onnx.ModelProto"]


def is_current(path: Path, sha256: str, converter_version: str) -> bool:
    """Whether ``path`` is a readable ONNX model converted from a source with ``sha256`` by
    converter ``converter_version``."""
    if not path.is_file():
        return False
    import onnx

    try:
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    except Exception as exc:  # any decoding failure means "rebuild"
        log.warning("cached ONNX model %s is unreadable (%s): rebuilding it", path, exc)
        return False
    if props.get("source_sha256") != sha256 or props.get("converter_version") != converter_version:
        log.info("cached ONNX model %s is stale: rebuilding it", path)
        return False
    return True


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Exclusive inter-process lock on ``<path>.lock`` (POSIX ``flock``)."""
    import fcntl

    with open(path.with_name(path.name + ".lock"), "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def build(
    source_model: str,
    convert: Converter,
    converter_version: str,
    out: Path,
    source_path: str | os.PathLike[str] | None = None,
    *,
    force: bool = True,
    strict: bool = False,
) -> Path:
    """Convert the file of catalogue model ``source_model`` (``source_path``, else where
    :func:`faceprint.models.resolve` finds it) with ``convert`` and write the graph to
    ``out``; returns ``out``.

    With ``force=False`` an existing file converted from the same source (same sha256, same
    converter version) is kept. A source whose sha256 differs from the catalogue's is
    refused with ``strict`` (naming both hashes), else converted with a warning (a user's
    own copy of dlib's weights); a corrupt one raises :class:`ModelUnavailableError` from
    ``convert`` and leaves no file behind.
    """
    require("onnx", f"the {source_model} converter")
    src = models.resolve(source_model, path=source_path)
    sha = models.sha256_file(src)
    if not force and is_current(out, sha, converter_version):
        return out
    check_source(source_model, src, sha, strict)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with locked(out):
            if not force and is_current(out, sha, converter_version):  # built meanwhile by another process
                return out
            log.info("converting %s to ONNX at %s", src, out)
            data = converted_bytes(convert, src, sha, converter_version)
            # warned only once converted: a corrupt file is one error line, not a warning first
            warn_unpublished(source_model, src, sha)
            atomic_write(out, lambda tmp: tmp.write_bytes(data), fsync=True)
    except OSError as exc:
        raise ModelUnavailableError(
            f"cannot write the ONNX model to {out}: {exc}; set FACEPRINT_CACHE to a writable directory"
        ) from exc
    return out


def check_source(source_model: str, src: Path, sha: str, strict: bool) -> None:
    """Refuse (``strict``) a source file whose sha256 ``sha`` is not the catalogue's for
    ``source_model`` (:func:`build`; without ``strict`` it is converted, and
    :func:`warn_unpublished` says so once it has converted)."""
    published = models.get_spec(source_model).files[0].sha256
    if sha != published and strict:
        raise ModelUnavailableError(
            f"{src} has sha256 {sha}, expected {published} (the published {source_model} file): refused; "
            f"{models.how_to_get(models.get_spec(source_model), models.get_spec(source_model).files[0])}"
        )


def warn_unpublished(source_model: str, src: Path, sha: str) -> None:
    """Log that the source file converted (not refused: :func:`check_source`) is not the
    catalogue's published one."""
    published = models.get_spec(source_model).files[0].sha256
    if sha != published:
        log.warning("%s has sha256 %s, not the published %s; converted it anyway", src, sha, published)


def converted_bytes(convert: Converter, src: Path, sha: str, converter_version: str) -> bytes:
    """``convert(src)`` serialised, its ``metadata_props`` recording the source (sha256
    ``sha``, file name) and ``converter_version``: what :func:`build` writes, and what a
    caller that cannot write the cache may run from memory."""
    model = convert(src)
    from onnx import helper

    props = {p.key: p.value for p in model.metadata_props}
    props.update(source_sha256=sha, source_file=src.name, converter_version=converter_version)
    del model.metadata_props[:]
    helper.set_model_props(model, props)
    return bytes(model.SerializeToString())


def open_current(
    path: Path,
    source_model: str,
    source_path: str | os.PathLike[str] | None,
    converter_version: str,
    intra_op_threads: int,
    providers: Sequence[str] | None,
    who: str,
    optimization: str = "all",
) -> Any:
    """A session on the cached graph at ``path`` when it loads and its recorded source
    sha256 and converter version are the current ones; else ``None``. Why not
    :func:`is_current`: it imports ``onnx`` (about 0.5 s on first import, for its
    ml_dtypes extension) in every process, worker and CLI call, only to read the
    metadata ONNX Runtime reads anyway."""
    if not path.is_file():
        return None
    sha = models.weights_sha256(models.resolve(source_model, path=source_path))
    try:
        session = new_session(path, intra_op_threads, providers, who, optimization)
    except Exception as exc:  # a damaged cache file: rebuilt by the caller
        log.warning("could not load %s (%s): rebuilding it", path, exc)
        return None
    props = dict(session.get_modelmeta().custom_metadata_map)
    if props.get("source_sha256") != sha or props.get("converter_version") != converter_version:
        log.info("cached ONNX model %s is stale: rebuilding it", path)
        return None
    return session


def open_built(
    source_model: str,
    convert: Converter,
    converter_version: str,
    path: Path,
    source_path: str | os.PathLike[str] | None = None,
    *,
    intra_op_threads: int = 0,
    providers: Sequence[str] | None = None,
    who: str,
    optimization: str = "all",
    strict: bool = False,
) -> Any:
    """A session on the graph converted from catalogue model ``source_model`` and cached
    at ``path``: the cached file when it is current (:func:`open_current`), else one
    built now by :func:`build` (over a stale or damaged file). The one way both the
    converted embedders and the ONNX Runtime YuNet detector open their graphs."""
    opened = open_current(
        path, source_model, source_path, converter_version, intra_op_threads, providers, who, optimization
    )
    if opened is not None:
        return opened
    built = build(
        source_model, convert, converter_version, path, source_path, force=path.is_file(), strict=strict
    )
    try:
        return new_session(built, intra_op_threads, providers, who, optimization)
    except Exception as again:
        raise ModelUnavailableError(f"onnxruntime cannot load {built}: {again}") from again


def recorded_sha256(session: Any, path: Path) -> str:
    """The sha256 behind the model id of the graph ``session`` runs: the source file it was
    converted from, as the loaded graph records it; else the ONNX file's own sha256."""
    props = dict(session.get_modelmeta().custom_metadata_map)
    source = str(props.get("source_sha256", ""))
    if props.get("converter_version") and len(source) == 64:
        return source.lower()
    return models.weights_sha256(path)


class ConvertedEmbedder:
    """Base of the embedders that run a graph built by :func:`build` (module doc).

    Subclasses set the class attributes and :meth:`convert`. ``model_path`` is the source
    file (default: resolved from the catalogue entry :attr:`source_model`); ``onnx_path``
    where the built graph is cached (default: ``Settings.cache_dir /`` the catalogue's
    ``built_file``); ``intra_op_threads`` goes to ONNX Runtime (0 = its default, one per
    physical core); ``providers`` are ONNX Runtime execution providers (default CPU);
    crops are run ``batch_size`` at a time.
    """

    name: ClassVar[str]
    network: ClassVar[str]
    version: ClassVar[str]
    dim: ClassVar[int]
    size: ClassVar[int]  # side of the square crop the graph takes
    default_threshold: ClassVar[float]
    flip_threshold: ClassVar[float]
    source_model: ClassVar[str]  # catalogue entry of the file converted
    converter_version: ClassVar[str]  # bump when the graph convert() writes changes
    #: ONNX Runtime's graph optimisation level for this graph (``onnx_session.new_session``):
    #: measured per model, since the fastest level differs (bench/fusion_speed.py)
    graph_optimization: ClassVar[str] = "all"
    #: Refuse a source file whose sha256 is not the catalogue's (else: convert, with a warning)
    strict_source: ClassVar[bool] = False

    def __init__(
        self,
        model_path: str | None = None,
        onnx_path: str | None = None,
        intra_op_threads: int = 0,
        providers: Sequence[str] | None = None,
        batch_size: int = 32,
    ) -> None:
        check_options(intra_op_threads, batch_size)
        who = f"the {self.name} embedder"
        require("onnxruntime", who)
        models.warn_licence_once(self.name)
        path = Path(onnx_path) if onnx_path is not None else self.cache_path()
        self._session: Any = open_built(
            self.source_model,
            self.convert,
            self.converter_version,
            path,
            model_path,
            intra_op_threads=intra_op_threads,
            providers=providers,
            who=who,
            optimization=self.graph_optimization,
            strict=self.strict_source,
        )
        self.onnx_path = path
        self.weights_sha256 = recorded_sha256(self._session, path)
        self.batch_size = batch_size
        self.crop_templates = (self.templates(),)

    @classmethod
    def templates(cls) -> dict[str, AlignmentTemplate]:
        """The crop's template per landmark scheme."""
        raise NotImplementedError

    @classmethod
    def convert(cls, source: Path) -> onnx.ModelProto:
        """The contract graph (module doc) of the source file at ``source``."""
        raise NotImplementedError

    @classmethod
    def cache_path(cls) -> Path:
        """Where the built graph lives by default: ``Settings.cache_dir /`` its catalogue file."""
        return get_settings().cache_dir / str(models.get_spec(cls.name).built_file)

    @classmethod
    def build(
        cls, model_path: str | os.PathLike[str] | None = None, onnx_path: str | os.PathLike[str] | None = None
    ) -> Path:
        """Convert the source now (whatever is cached) and return the graph's path."""
        return cls._build(model_path, onnx_path, force=True)

    @classmethod
    def ensure(
        cls, model_path: str | os.PathLike[str] | None = None, onnx_path: str | os.PathLike[str] | None = None
    ) -> Path:
        """The built graph, converted first if missing, stale or unreadable."""
        return cls._build(model_path, onnx_path, force=False)

    @classmethod
    def _build(
        cls, model_path: str | os.PathLike[str] | None, onnx_path: str | os.PathLike[str] | None, force: bool
    ) -> Path:
        out = Path(onnx_path) if onnx_path is not None else cls.cache_path()
        return build(
            cls.source_model,
            cls.convert,
            cls.converter_version,
            out,
            model_path,
            force=force,
            strict=cls.strict_source,
        )

    def embed(self, crops: Sequence[Image]) -> NDArray[np.float32]:
        """``(N, dim)`` float32 unit vectors for ``size`` x ``size`` RGB uint8 crops (any N)."""
        return embed_batched(self._session, crops, self.dim, self.batch_size, self.name, self.size)
