"""embed_images: one embedding per distinct image, worker processes, unreadable files, cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import LFW, need
from faceprint.evaluation.embedset import CHUNK, EmbeddingCache, PipelineSpec, embed_images
from faceprint.recognizer import Recognizer


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    need(LFW / "pairsDevTest.txt")
    src = sorted(LFW.glob("A*/*.jpg"))[: 2 * CHUNK + 4]
    out = []
    for p in src:
        q = tmp_path / p.name
        shutil.copy(p, q)
        out.append(q)
    dup = tmp_path / "copy_of_first.jpg"
    shutil.copy(out[0], dup)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    return [*out, dup, bad]


def test_workers_match_one_process_and_duplicates_are_embedded_once(
    images: list[Path], yunet_model: Path
) -> None:
    seen: list[int] = []
    pooled = embed_images(PipelineSpec("yunet"), images, workers=2, progress=seen.append)
    assert sum(seen) == len(images)  # duplicates count in the progress, but cost one embedding
    single = embed_images(Recognizer("yunet"), images, workers=1)
    for p in images[:-1]:
        a, b = pooled[p], single[p]
        assert a.vector is not None and b.vector is not None and a.faces >= 1
        assert float(a.vector @ b.vector) > 0.9999
    first, dup = pooled[images[0]], pooled[images[-2]]
    assert first.sha256 == dup.sha256 and dup.path == images[-2]
    assert np.array_equal(first.vector, dup.vector)
    broken = pooled[images[-1]]
    assert broken.vector is None and broken.error and "broken.jpg" in broken.error


def test_cache_answers_a_second_call_without_embedding(images: list[Path], yunet_model: Path) -> None:
    rec = Recognizer("yunet")
    cache = EmbeddingCache()
    first = embed_images(rec, images[:5], cache=cache)
    assert len(cache) == 5

    class Exploding:
        def __getattr__(self, name: str) -> None:
            raise AssertionError("the cache should have answered")

    rec.detector = Exploding()  # type: ignore[assignment]
    again = embed_images(rec, images[:5], cache=cache)
    assert all(np.array_equal(first[p].vector, again[p].vector) for p in images[:5])
    with pytest.raises(ValueError, match="pick"):
        embed_images(rec, images[:1], pick="first")
