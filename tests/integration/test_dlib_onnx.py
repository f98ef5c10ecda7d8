"""dlib's ResNet converted to ONNX gives dlib's vectors, and its cache is safe to share."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import lfw_chips
from faceprint import models
from faceprint.config import get_settings
from faceprint.embedding import Embedder
from faceprint.embedding.dlib_onnx import (
    ONNX_FILENAME,
    DlibOnnxEmbedder,
    build_onnx,
    ensure_onnx,
)
from faceprint.errors import ModelUnavailableError
from faceprint.types import Image

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

N_FACES = 48


@pytest.fixture(scope="module")
def built(dat: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One conversion per module, into a private directory."""
    return build_onnx(dat, tmp_path_factory.mktemp("onnx") / ONNX_FILENAME)


@pytest.fixture(scope="module")
def onnx_embedder(dat: Path, built: Path) -> DlibOnnxEmbedder:
    return DlibOnnxEmbedder(model_path=str(dat), onnx_path=str(built))


@pytest.fixture(scope="module")
def lfw_crops() -> list[Image]:
    """dlib-aligned 150x150 RGB chips of LFW dev faces, one per person."""
    return lfw_chips(N_FACES, 40)


def _props(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_vectors_equal_dlibs(onnx_embedder: DlibOnnxEmbedder, lfw_crops: list[Image]) -> None:
    from faceprint.embedding.dlib import DlibEmbedder

    ref = DlibEmbedder(model_path=None).embed(lfw_crops)
    ours = onnx_embedder.embed(lfw_crops)
    assert ours.shape == (len(lfw_crops), 128) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cos = (ref * ours).sum(axis=1)
    assert cos.min() >= 0.9999, f"min cosine {cos.min():.7f} over {len(cos)} faces"


def test_batch_of_one_equals_batch_of_32(onnx_embedder: DlibOnnxEmbedder, lfw_crops: list[Image]) -> None:
    crops = lfw_crops[:32]
    batched = onnx_embedder.embed(crops)
    single = np.concatenate([onnx_embedder.embed([c]) for c in crops])
    np.testing.assert_allclose(single, batched, atol=1e-5)
    assert ((single * batched).sum(axis=1)).min() >= 0.999999


def test_follows_the_embedder_contract(onnx_embedder: DlibOnnxEmbedder) -> None:
    from faceprint.embedding.dlib import DEFAULT_THRESHOLD, DlibEmbedder

    assert isinstance(onnx_embedder, Embedder)
    assert (onnx_embedder.name, onnx_embedder.version, onnx_embedder.dim) == ("dlib-onnx", "resnet_v1", 128)
    assert onnx_embedder.default_threshold == DEFAULT_THRESHOLD
    assert onnx_embedder.crop_templates == DlibEmbedder(model_path=None).crop_templates
    assert onnx_embedder.embed([]).shape == (0, 128)
    with pytest.raises(ValueError, match="150x150x3 uint8"):
        onnx_embedder.embed([np.zeros((112, 112, 3), np.uint8)])


def test_first_use_builds_into_the_cache_dir(dat: Path) -> None:
    emb = DlibOnnxEmbedder(intra_op_threads=1)
    expected = get_settings().cache_dir / ONNX_FILENAME
    assert emb.onnx_path == expected and expected.is_file()
    assert _props(expected)["source_sha256"] == models.sha256_file(dat)


def _corrupt_variants(dat: Path) -> dict[str, bytes]:
    data = dat.read_bytes()
    rng = np.random.default_rng(7)
    garbage_head = bytearray(data)
    garbage_head[280:600] = rng.integers(0, 256, 320, dtype=np.uint8).tobytes()  # input + first con
    return {
        "empty": b"",
        "truncated-header": data[:100],
        "truncated-half": data[: len(data) // 2],
        "truncated-last-byte": data[:-1],
        "random-bytes": rng.integers(0, 256, 1 << 16, dtype=np.uint8).tobytes(),
        "garbage-in-header": bytes(garbage_head),
        "trailing-garbage": data + b"\x01\x02garbage",
    }


@pytest.mark.parametrize(
    "variant",
    [
        "empty",
        "truncated-header",
        "truncated-half",
        "truncated-last-byte",
        "random-bytes",
        "garbage-in-header",
        "trailing-garbage",
    ],
)
def test_corrupt_dat_raises_and_leaves_nothing(dat: Path, tmp_path: Path, variant: str) -> None:
    bad = tmp_path / "bad.dat"
    bad.write_bytes(_corrupt_variants(dat)[variant])
    out_dir = tmp_path / "cache"
    out = out_dir / ONNX_FILENAME
    with pytest.raises(ModelUnavailableError, match="not a usable dlib network file"):
        build_onnx(bad, out)
    left = sorted(p.name for p in out_dir.iterdir()) if out_dir.exists() else []
    assert all(name.endswith(".lock") for name in left), f"left behind: {left}"


def test_stale_or_unreadable_cache_is_rebuilt(dat: Path, built: Path, tmp_path: Path) -> None:
    out = tmp_path / ONNX_FILENAME
    model = onnx.load(str(built))
    for prop in model.metadata_props:
        if prop.key == "source_sha256":
            prop.value = "0" * 64
    onnx.save(model, str(out))
    assert ensure_onnx(dat, out) == out
    assert _props(out)["source_sha256"] == models.sha256_file(dat)
    assert out.read_bytes() == built.read_bytes()

    before = out.stat().st_mtime_ns
    ensure_onnx(dat, out)  # current: kept as is
    assert out.stat().st_mtime_ns == before

    out.write_bytes(b"not an onnx model")
    ensure_onnx(dat, out)
    assert out.read_bytes() == built.read_bytes()


def _build_in_child(barrier: Any, dat: str, out: str) -> None:
    barrier.wait(timeout=60)
    ensure_onnx(dat, out)


def test_two_processes_building_at_once(
    dat: Path, built: Path, tmp_path: Path, lfw_crops: list[Image], onnx_embedder: DlibOnnxEmbedder
) -> None:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    out = tmp_path / "cache" / ONNX_FILENAME
    procs = [ctx.Process(target=_build_in_child, args=(barrier, str(dat), str(out))) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    assert [p.exitcode for p in procs] == [0, 0]
    assert out.read_bytes() == built.read_bytes()
    assert not [n for n in os.listdir(out.parent) if n.endswith(".tmp")]
    fresh = DlibOnnxEmbedder(model_path=str(dat), onnx_path=str(out))
    np.testing.assert_allclose(fresh.embed(lfw_crops[:4]), onnx_embedder.embed(lfw_crops[:4]), atol=1e-6)


def test_cli_style_build_overwrites(dat: Path, built: Path, tmp_path: Path) -> None:
    out = tmp_path / ONNX_FILENAME
    shutil.copyfile(built, out)
    assert build_onnx(dat, out) == out  # force=True: the explicit build always converts
    assert out.read_bytes() == built.read_bytes()
