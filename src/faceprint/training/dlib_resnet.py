"""dlib's face recognition ResNet v1 as a trainable ``torch.nn.Module``.

Why: fine-tuning needs gradients, which neither dlib-bin nor the ONNX port gives. This
twin is built from the same ``.dat`` file (read by :mod:`faceprint.embedding.dlib_format`,
no dlib needed) by walking its layer list, so the architecture lives in one place; its
descriptors equal the ``dlib-onnx`` embedder's (cosine similarity >= 0.9999, checked by
``tests/integration/test_training_twin.py``; measured >= 0.9999998 on 32 LFW faces, raw
values within 5e-7).

Conventions:

* :meth:`DlibResNet.forward` takes float32 **NCHW** ``(N, 3, 150, 150)`` input that is
  **already normalised** the way dlib's ``input_rgb_image_sized`` does it, channels in
  **RGB** order: ``(pixel - mean_rgb) / 256`` with the per-channel means stored in the
  file. :meth:`DlibResNet.preprocess` turns RGB ``uint8`` NHWC crops into such a tensor
  and :meth:`DlibResNet.normalize` does the same for float NCHW pixels in ``[0, 255]``,
  so training code can augment either before or after normalising, in float.
* The output is dlib's raw 128-D descriptor, ``(N, 128)``, **not** normalised (as the
  ONNX graph's ``descriptors``); L2-normalise it and compare by cosine similarity.
  :meth:`DlibResNet.embed` does that and returns numpy, for parity checks.
* Layer by layer, as :func:`faceprint.embedding.dlib_onnx.to_onnx` maps them: ``con`` is
  a cross-correlation with bias, symmetric zero padding and floor output size
  (``nn.Conv2d``); ``affine`` is a learnable scale and shift (:class:`Affine`, dlib's
  frozen batch norm); ``max_pool`` ignores padding and ``avg_pool`` averages only pixels
  inside the image (``count_include_pad=False``), a window of 0 meaning the whole input;
  ``add_prev`` adds two tensors of different shapes by zero-padding both to the larger
  one, aligned at the top-left corner (channels, rows and columns), as dlib does; ``fc``
  flattens NCHW and multiplies by the stored ``(inputs, outputs)`` matrix.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import MissingExtraError, ModelUnavailableError
from ..types import Image

try:
    import torch
    import torch.nn.functional as F
    from torch import Tensor, nn
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtraError(
        "faceprint.training needs PyTorch, which is not installed: pip install 'faceprint[train]'"
    ) from exc

from .. import models
from ..embedding import check_crops, l2_normalize
from ..embedding.dlib_format import Layer, Network, read_network

__all__ = ["Affine", "DlibResNet", "Pool", "Route", "build_layers", "zero_pad_add"]


def _unbuildable(what: str) -> ModelUnavailableError:
    return ModelUnavailableError(f"the dlib network cannot be rebuilt in torch: {what}")


class Affine(nn.Module):
    """dlib's ``affine_`` layer: ``x * gamma + beta``, with learnable ``gamma`` and ``beta``.

    dlib stores batch norm folded into this per-channel scale and shift (``gamma`` and
    ``beta`` of shape ``(C, 1, 1)``; ``(C, H, W)`` in dlib's FC mode), which broadcast
    over an NCHW batch. Fine-tuning learns them like any other parameter.
    """

    def __init__(self, gamma: NDArray[np.float32], beta: NDArray[np.float32]) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.from_numpy(np.array(gamma, dtype=np.float32)))
        self.beta = nn.Parameter(torch.from_numpy(np.array(beta, dtype=np.float32)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma + self.beta

    def extra_repr(self) -> str:
        return f"channels={self.gamma.shape[0]}, shape={tuple(self.gamma.shape)}"


class Pool(nn.Module):
    """dlib's ``max_pool_``/``avg_pool_``: floor output size; a window of 0 spans the input.

    A max pool ignores its zero padding and an average pool averages only the pixels
    inside the image, exactly as torch's pools do with ``count_include_pad=False``.
    """

    def __init__(
        self, kind: str, window: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
    ) -> None:
        super().__init__()
        if kind not in ("max_pool", "avg_pool"):
            raise _unbuildable(f"pool kind {kind!r}")
        for w, p in zip(window, padding, strict=True):
            if w and p > w // 2:  # torch's limit; dlib's nets use 0 (or window // 2)
                raise _unbuildable(f"{kind} padding {padding} exceeds half its window {window}")
        self.kind, self.window, self.stride, self.padding = kind, window, stride, padding

    def forward(self, x: Tensor) -> Tensor:
        window = (self.window[0] or x.shape[2], self.window[1] or x.shape[3])
        if self.kind == "max_pool":
            return F.max_pool2d(x, window, self.stride, self.padding)
        return F.avg_pool2d(x, window, self.stride, self.padding, count_include_pad=False)

    def extra_repr(self) -> str:
        return f"{self.kind}, window={self.window}, stride={self.stride}, padding={self.padding}"


class Route(nn.Module):
    """A ``tag``, ``skip`` or ``add_prev`` layer: no computation of its own.

    :class:`DlibResNet` keeps the latest tensor of each tag id; ``skip`` continues from
    it and ``add_prev`` adds it to the current tensor (see :func:`zero_pad_add`).
    """

    def __init__(self, kind: str, tag: int) -> None:
        super().__init__()
        self.kind, self.tag = kind, tag

    def extra_repr(self) -> str:
        return f"{self.kind}, tag={self.tag}"


def zero_pad_add(a: Tensor, b: Tensor) -> Tensor:
    """``a + b`` for NCHW tensors whose C, H or W differ: both are zero-padded at the end
    of each dimension to the larger size (top-left aligned), as dlib's ``add_prev`` does
    where a downsampling block meets its pooled shortcut with fewer channels."""
    target = [max(a.shape[d], b.shape[d]) for d in (1, 2, 3)]

    def pad(t: Tensor) -> Tensor:
        c, h, w = (target[i] - t.shape[i + 1] for i in range(3))
        return F.pad(t, (0, w, 0, h, 0, c)) if c or h or w else t

    return pad(a) + pad(b)


def _tensor(a: NDArray[np.float32]) -> Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32))


def _conv(layer: Layer, channels: int) -> nn.Module:
    a, w = layer.attrs, layer.arrays["filters"]
    if w.shape[1] != channels:
        raise _unbuildable(f"con_ filters {w.shape} applied to {channels} channels")
    conv = nn.Conv2d(
        channels,
        w.shape[0],
        (w.shape[2], w.shape[3]),
        stride=(int(a["stride_y"]), int(a["stride_x"])),
        padding=(int(a["padding_y"]), int(a["padding_x"])),
        bias=True,
    )
    with torch.no_grad():
        conv.weight.copy_(_tensor(w))
        if conv.bias is not None:  # always: created with bias=True
            conv.bias.copy_(_tensor(layer.arrays["bias"]))
    return nn.Sequential(conv, nn.ReLU()) if a["use_relu"] else conv


def _fc(layer: Layer) -> nn.Module:
    w = layer.arrays["weights"]  # dlib: (inputs, outputs); torch's Linear wants (outputs, inputs)
    linear = nn.Linear(w.shape[0], w.shape[1], bias="bias" in layer.arrays)
    with torch.no_grad():
        linear.weight.copy_(_tensor(w.T))
        if linear.bias is not None:
            linear.bias.copy_(_tensor(layer.arrays["bias"]))
    return nn.Sequential(nn.Flatten(1), linear)


def build_layers(net: Network) -> nn.ModuleList:
    """One module per entry of ``net.layers``, in the same order (bottom-up).

    Weights are copied from the file. Channel counts are followed to catch a file whose
    layers do not fit together; any such mismatch raises :class:`ModelUnavailableError`.
    """
    channels, out = 3, nn.ModuleList()
    tag_channels: dict[int, int] = {}  # tag id -> channels of the tensor it holds
    for layer in net.layers:
        a, kind = layer.attrs, layer.kind
        if kind in ("skip", "add_prev") and layer.tag not in tag_channels:
            raise _unbuildable(f"{kind} refers to tag{layer.tag}, which no layer below sets")
        if kind == "con":
            out.append(_conv(layer, channels))
            channels = layer.arrays["filters"].shape[0]
        elif kind == "affine":
            if a["disabled"]:
                out.append(nn.Identity())
                continue
            gamma = layer.arrays["gamma"]
            if gamma.shape[0] != channels:
                raise _unbuildable(f"affine_ of {gamma.shape} applied to {channels} channels")
            out.append(Affine(gamma, layer.arrays["beta"]))
        elif kind == "relu":
            out.append(nn.ReLU())
        elif kind in ("max_pool", "avg_pool"):
            ints = {k: int(v) for k, v in a.items()}
            out.append(
                Pool(
                    kind,
                    (ints["nr"], ints["nc"]),
                    (ints["stride_y"], ints["stride_x"]),
                    (ints["padding_y"], ints["padding_x"]),
                )
            )
        elif kind in ("tag", "skip", "add_prev"):
            out.append(Route(kind, layer.tag))
            if kind == "tag":
                tag_channels[layer.tag] = channels
            elif kind == "skip":
                channels = tag_channels[layer.tag]
            else:
                channels = max(channels, tag_channels[layer.tag])
        elif kind == "fc":
            out.append(_fc(layer))
            channels = int(a["num_outputs"])
        else:
            raise _unbuildable(f"layer kind {kind!r} has no torch translation")
    return out


class DlibResNet(nn.Module):
    """The dlib face recognition ResNet v1, trainable, with dlib's weights.

    Build it from a parsed :class:`~faceprint.embedding.dlib_format.Network` or, more
    usually, with :meth:`from_dat`. Input: float32 NCHW RGB, normalised (see the module
    docstring); output: raw ``(N, 128)`` descriptors. The network has no batch norm or
    dropout, so ``train()`` and ``eval()`` compute the same function.
    """

    def __init__(self, net: Network) -> None:
        super().__init__()
        self.input_size: tuple[int, int] = net.input_size  # (rows, columns)
        self.layers = build_layers(net)
        mean = torch.tensor(net.mean_rgb, dtype=torch.float32).reshape(1, 3, 1, 1)
        self.register_buffer("mean_rgb", mean)
        fcs = [int(layer.attrs["num_outputs"]) for layer in net.layers if layer.kind == "fc"]
        self.dim = fcs[-1] if fcs else 0  # 128: the descriptor's length

    @classmethod
    def from_dat(cls, path: str | os.PathLike[str] | None = None) -> DlibResNet:
        """The twin of the ``.dat`` at ``path`` (default: ``models.resolve("dlib")``)."""
        return cls(read_network(models.resolve("dlib", path=path)))

    @property
    def device(self) -> torch.device:
        """Where the parameters (and so :meth:`preprocess`'s output) live."""
        return self.get_buffer("mean_rgb").device

    def normalize(self, pixels: Tensor) -> Tensor:
        """dlib's input normalisation of float NCHW RGB pixels in ``[0, 255]``:
        ``(pixels - mean_rgb) / 256`` (dividing by 256 is exact in float32)."""
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"expected float NCHW pixels of shape (N, 3, H, W), got {tuple(pixels.shape)}")
        return (pixels - self.get_buffer("mean_rgb")) / 256.0

    def preprocess(self, crops: Sequence[Image] | NDArray[np.uint8]) -> Tensor:
        """Normalised float32 NCHW tensor on :attr:`device` from RGB uint8 NHWC crops of
        the network's input size (150x150 chips from :func:`faceprint.alignment.align`)."""
        rows, cols = self.input_size
        if rows != cols:
            raise ValueError(f"non-square input {self.input_size} is not supported")
        if len(crops) == 0:
            return torch.zeros((0, 3, rows, cols), dtype=torch.float32, device=self.device)
        check_crops(list(crops), rows, "dlib torch twin")
        batch = torch.from_numpy(np.ascontiguousarray(np.stack(list(crops))))
        pixels = batch.to(self.device).permute(0, 3, 1, 2).to(torch.float32)
        return self.normalize(pixels)

    def forward(self, x: Tensor) -> Tensor:
        """Raw descriptors ``(N, 128)`` of normalised NCHW input ``(N, 3, 150, 150)``."""
        return self.run(x, 0, len(self.layers))

    def run(self, x: Tensor, start: int, stop: int) -> Tensor:
        """Layers ``start`` to ``stop - 1`` on ``x``; :meth:`forward` is ``run(x, 0, len)``.

        Why: fine-tuning only the upper layers runs the frozen lower part without
        gradients, then the rest with them. ``start`` must be ``0`` or a block start
        (:meth:`block_starts`), where no tag set below is read above, so the two parts
        need not share their tags.
        """
        if start not in (0, len(self.layers)) and start not in {i for i, _ in self.block_starts()}:
            raise ValueError(f"layer {start} is not a block start: expected one of {self.block_starts()}")
        tags: dict[int, Tensor] = {}
        for module in self.layers[start:stop]:
            if isinstance(module, Route):
                if module.kind == "tag":
                    tags[module.tag] = x
                elif module.kind == "skip":
                    x = tags[module.tag]
                else:
                    x = zero_pad_add(x, tags[module.tag])
            else:
                x = module(x)
        return x

    def block_starts(self) -> list[tuple[int, int]]:
        """``(layer index, output channels)`` of every residual block's first layer (its
        ``tag``), bottom-up: where the network may be split (:meth:`run`)."""
        out: list[tuple[int, int]] = []
        for i, module in enumerate(self.layers):
            if isinstance(module, Route) and module.kind == "tag" and i + 1 < len(self.layers):
                nxt = self.layers[i + 1]
                conv = nxt[0] if isinstance(nxt, nn.Sequential) else nxt
                if isinstance(conv, nn.Conv2d):
                    out.append((i, int(conv.out_channels)))
        return out

    def embed(self, crops: Sequence[Image] | NDArray[np.uint8], batch_size: int = 32) -> NDArray[np.float32]:
        """``(N, 128)`` float32 L2-normalised descriptors of RGB uint8 crops, no gradients;
        the same vectors as the ``dlib-onnx`` embedder's (compare by cosine similarity)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if len(crops) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts: list[NDArray[Any]] = []
        with torch.inference_mode():
            for i in range(0, len(crops), batch_size):
                out = self.forward(self.preprocess(crops[i : i + batch_size]))
                parts.append(out.float().cpu().numpy())
        return l2_normalize(np.concatenate(parts))
