"""Name -> implementation registries with lazy import.

A registry maps short lowercase ids (``"hog"``, ``"yunet"``, ``"dlib"``) to
``"module:Class"`` strings. The module is imported only when the name is first
used, so ``import faceprint`` never loads cv2, dlib, onnxruntime or torch.
"""

from __future__ import annotations

import difflib
import importlib
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
