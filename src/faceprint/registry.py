"""Name -> implementation registries with lazy import.

A registry maps short lowercase ids (``"hog"``, ``"yunet"``, ``"dlib"``) to
``"module:Class"`` strings. The module is imported only when the name is first
used, so ``import faceprint`` never loads cv2, dlib, onnxruntime or torch.

Embedders are also named by path: an embedder argument that is not a registered name but
looks like a path (:func:`is_model_dir`) is a MODEL_DIR written by ``faceprint train``
(:mod:`faceprint.embedding.model_dir`). :func:`create_embedder` and :func:`check_embedder`
are the one way to build and validate an embedder from such an argument; every command,
the pipeline, the evaluators and the service go through them.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
from pathlib import Path
from typing import Any, Generic, TypeVar

from .errors import MissingExtraError, UnknownComponentError

T = TypeVar("T")

#: Python modules that belong to an optional extra, and the extra that installs them.
_EXTRAS = {"torch": "train", "ray": "distributed", "fastapi": "server", "psycopg": "postgres"}


class Registry(Generic[T]):
    """A lazily importing registry of one kind of component (e.g. detectors)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._targets: dict[str, str] = {}

    def register(self, name: str, target: str) -> None:
        """Register ``name`` as ``"package.module:Class"``."""
        self._targets[name] = target

    def names(self) -> list[str]:
        return sorted(self._targets)

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def resolve(self, name: str) -> type[T]:
        """The class registered as ``name``; imports its module now."""
        if name not in self._targets:
            close = difflib.get_close_matches(name, self._targets, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownComponentError(
                f"unknown {self.kind} {name!r}: expected one of {', '.join(self.names())}.{hint}"
            )
        module_name, _, attr = self._targets[name].partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            missing = (exc.name or "").split(".")[0]
            extra = _EXTRAS.get(missing)
            if extra:
                raise MissingExtraError(
                    f"{self.kind} {name!r} needs {missing!r}: pip install 'faceprint[{extra}]'"
                ) from exc
            raise
        cls: type[T] = getattr(module, attr)
        return cls

    def create(self, name: str, **kwargs: Any) -> T:
        """Instantiate the component registered as ``name``."""
        return self.resolve(name)(**kwargs)


detectors: Registry[Any] = Registry("detector")
detectors.register("hog", "faceprint.detection.hog:HogDetector")
detectors.register("yunet", "faceprint.detection.yunet:YuNetDetector")
detectors.register("scrfd", "faceprint.detection.scrfd:ScrfdDetector")
detectors.register("mtcnn", "faceprint.detection.mtcnn:MtcnnDetector")

embedders: Registry[Any] = Registry("embedder")
embedders.register("dlib", "faceprint.embedding.dlib:DlibEmbedder")
embedders.register("dlib-onnx", "faceprint.embedding.dlib_onnx:DlibOnnxEmbedder")
embedders.register("dlib-onnx-int8", "faceprint.embedding.dlib_int8:DlibInt8Embedder")
embedders.register("mobilefacenet", "faceprint.embedding.mobilefacenet:MobileFaceNetEmbedder")
embedders.register("faceplugin", "faceprint.embedding.faceplugin:FacepluginEmbedder")

#: What an embedder argument may be besides a registered name (for messages and help).
MODEL_DIR_HINT = "(or several joined by '+', fused) or a MODEL_DIR written by faceprint train"


def is_fused(name: str) -> bool:
    """Whether the embedder argument ``name`` names a fusion of registered embedders
    (``dlib-onnx+mobilefacenet``, :mod:`faceprint.embedding.fused`) rather than a
    registered name or a MODEL_DIR path."""
    return "+" in name and name not in embedders and not is_model_dir(name)


def embedder_parts(name: str) -> list[str]:
    """The registered embedders the embedder argument ``name`` runs: its parts for a
    fusion (in vector order), else ``[name]``. Raises :class:`UnknownComponentError` for
    a fusion that is not fitted or names an unknown part."""
    if is_fused(name):
        from .embedding.fused import parse

        return parse(name)[0]
    return [name]


def is_model_dir(name: str) -> bool:
    """Whether the embedder argument ``name`` is a MODEL_DIR path rather than a registered
    name: it is not registered, and it holds a path separator, starts with ``.`` or ``~``,
    or names an existing directory. A registered name always wins (a folder called
    ``dlib`` in the working directory does not shadow the ``dlib`` embedder)."""
    if name in embedders:
        return False
    seps = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    return any(sep in name for sep in seps) or name.startswith((".", "~")) or Path(name).is_dir()


def _unknown_embedder(name: str) -> UnknownComponentError:
    close = difflib.get_close_matches(name, embedders.names(), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UnknownComponentError(
        f"unknown embedder {name!r}: expected one of {', '.join(embedders.names())} {MODEL_DIR_HINT}.{hint}"
    )


def embedder_class(name: str) -> type[Any]:
    """The class that builds embedder ``name``: the registered one (its module imported
    now), or :class:`~faceprint.embedding.model_dir.ModelDirEmbedder` for a MODEL_DIR
    path. Raises :class:`UnknownComponentError` listing the valid names otherwise."""
    if is_model_dir(name):
        from .embedding.model_dir import ModelDirEmbedder

        return ModelDirEmbedder
    if is_fused(name):
        from .embedding.fused import FusedEmbedder, parse

        parse(name)  # an unknown part or fusion fails here, listing the embedders
        return FusedEmbedder
    if name not in embedders:
        raise _unknown_embedder(name)
    return embedders.resolve(name)


def check_embedder(name: str) -> None:
    """Validate an embedder argument without loading any weights: a registered name, or a
    MODEL_DIR whose card and files check out
    (:func:`~faceprint.embedding.model_dir.check_model_dir`, which hashes its files but
    does not start onnxruntime). Raises :class:`UnknownComponentError` (the valid names)
    or :class:`~faceprint.errors.ModelUnavailableError` (what is wrong with the MODEL_DIR)."""
    if is_model_dir(name):
        from .embedding.model_dir import check_model_dir

        check_model_dir(name)
    elif is_fused(name):
        embedder_parts(name)  # raises for an unknown part or an unfitted fusion
    elif name not in embedders:
        embedder_class(name)  # raises, listing the valid names


def instantiate(cls: type[T], options: dict[str, Any] | None, threads: int | None, *args: Any) -> T:
    """``cls(*args, **options)``; ``threads`` goes to components that run on onnxruntime
    (their ``intra_op_threads`` option) and is ignored by the others (dlib, OpenCV)."""
    opts = dict(options or {})
    if threads is not None and "intra_op_threads" in inspect.signature(cls).parameters:
        opts.setdefault("intra_op_threads", threads)
    return cls(*args, **opts)


def create_embedder(name: str, options: dict[str, Any] | None = None, threads: int | None = None) -> Any:
    """The embedder ``name`` (a registered name or a MODEL_DIR path, :func:`is_model_dir`)
    built with ``options``; ``threads`` as in :func:`instantiate`. A MODEL_DIR embedder
    keeps ``name`` as given as its own name, so results and pipeline specs round-trip."""
    cls = embedder_class(name)
    return instantiate(cls, options, threads, *((name,) if is_model_dir(name) or is_fused(name) else ()))
