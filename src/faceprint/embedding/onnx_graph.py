"""A small accumulator of ONNX nodes and initializers, shared by the converters that write
embedder graphs node by node (:mod:`.dlib_onnx` from dlib's ``.dat``, :mod:`.tflite_onnx`
from a TFLite file). ``onnx`` is imported when a graph is started, never at import."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


class GraphBuilder:
    """Accumulates ONNX nodes and initializers under unique names (``<name>_<n>``)."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.count = 0

    def const(self, name: str, value: NDArray[Any]) -> str:
        """Add ``value`` as an initializer; returns its unique name."""
        self.count += 1
        full = f"{name}_{self.count}"
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(value), full))
        return full

    def op(self, op_type: str, inputs: list[str], name: str, **attrs: Any) -> str:
        """Add a one-output node; returns its output's unique name."""
        self.count += 1
        out = f"{name}_{self.count}"
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out
