"""The torch twin of dlib's ResNet computes dlib-onnx's descriptors and is trainable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import lfw_chips
from faceprint.embedding.dlib_format import read_network
from faceprint.types import Image

TRAIN = "the torch twin needs the [train] extra: pip install 'faceprint[train]'"
torch = pytest.importorskip("torch", reason=TRAIN)
pytest.importorskip("onnxruntime", reason="the parity check runs dlib-onnx, which needs onnxruntime")

from faceprint.embedding.dlib_onnx import (  # noqa: E402
    INPUT_NAME,
    ONNX_FILENAME,
    OUTPUT_NAME,
    DlibOnnxEmbedder,
    build_onnx,
)
from faceprint.training.dlib_resnet import Affine, DlibResNet  # noqa: E402

N_FACES = 32


@pytest.fixture(scope="module")
def onnx_embedder(dat: Path, tmp_path_factory: pytest.TempPathFactory) -> DlibOnnxEmbedder:
    built = build_onnx(dat, tmp_path_factory.mktemp("onnx") / ONNX_FILENAME)
    return DlibOnnxEmbedder(model_path=str(dat), onnx_path=str(built))


@pytest.fixture(scope="module")
def twin(dat: Path) -> DlibResNet:
    return DlibResNet.from_dat(dat)


@pytest.fixture(scope="module")
def lfw_crops() -> list[Image]:
    """dlib-aligned 150x150 RGB chips of LFW dev faces, one per person."""
    return lfw_chips(N_FACES, 16)


def test_unit_vectors_equal_dlib_onnx(
    twin: DlibResNet, onnx_embedder: DlibOnnxEmbedder, lfw_crops: list[Image]
) -> None:
    ref = onnx_embedder.embed(lfw_crops)
    ours = twin.embed(lfw_crops, batch_size=8)
    assert ours.shape == (len(lfw_crops), 128) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cos = (ref * ours).sum(axis=1)
    assert cos.min() >= 0.9999, f"min cosine {cos.min():.7f} over {len(cos)} faces"


def test_raw_descriptors_equal_the_onnx_graph(
    twin: DlibResNet, onnx_embedder: DlibOnnxEmbedder, lfw_crops: list[Image]
) -> None:
    """forward() returns dlib's raw, unnormalised descriptor, like the graph's output."""
    import onnxruntime as ort

    batch = np.stack(lfw_crops[:8])
    sess = ort.InferenceSession(str(onnx_embedder.onnx_path), providers=["CPUExecutionProvider"])
    ref = sess.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
    with torch.no_grad():
        ours = twin(twin.preprocess(batch)).numpy()
    assert ours.shape == ref.shape == (8, 128)
    assert not np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-3)  # really raw
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


def test_preprocess_is_dlibs_normalisation(twin: DlibResNet, dat: Path) -> None:
    mean = np.asarray(read_network(dat).mean_rgb, np.float32)
    crop = np.zeros((150, 150, 3), np.uint8)
    crop[..., 0], crop[..., 1], crop[..., 2] = 0, 128, 255  # R, G, B
    x = twin.preprocess([crop])
    assert x.shape == (1, 3, 150, 150) and x.dtype == torch.float32
    expected = (np.array([0, 128, 255], np.float32) - mean) / 256
    np.testing.assert_allclose(x[0, :, 75, 75].numpy(), expected, rtol=0, atol=1e-7)
    pixels = torch.from_numpy(crop).permute(2, 0, 1)[None].float()
    assert torch.equal(twin.normalize(pixels), x)
    assert twin.preprocess([]).shape == (0, 3, 150, 150)
    assert twin.embed([]).shape == (0, 128)
    with pytest.raises(ValueError, match="150x150x3 uint8"):
        twin.preprocess([np.zeros((112, 112, 3), np.uint8)])


def test_backward_gives_finite_gradients(dat: Path, lfw_crops: list[Image]) -> None:
    model = DlibResNet.from_dat(dat)
    model.train()
    x = model.preprocess(lfw_crops[:3])
    out = torch.nn.functional.normalize(model(x), dim=1)
    # A triplet-style loss: pull faces 0 and 1 together, push 0 and 2 apart (cosine).
    loss = (1 - (out[0] * out[1]).sum()) + (out[0] * out[2]).sum()
    loss.backward()
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    affine = next(m for m in model.modules() if isinstance(m, Affine))
    for name, grad in [
        ("first conv weight", first_conv.weight.grad),
        ("first conv bias", first_conv.bias.grad if first_conv.bias is not None else None),
        ("affine gamma", affine.gamma.grad),
        ("affine beta", affine.beta.grad),
    ]:
        assert grad is not None, f"{name} got no gradient"
        assert torch.isfinite(grad).all(), f"{name} has non-finite gradients"
        assert grad.abs().sum() > 0, f"{name} has an all-zero gradient"
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n_params > 5_000_000  # every conv, affine and the fc are learnable


def test_importing_the_training_package_imports_no_torch() -> None:
    code = "import sys, faceprint, faceprint.training\nprint('torch' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
