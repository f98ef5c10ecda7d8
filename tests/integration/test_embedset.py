"""embed_images: one embedding per distinct image, worker processes, unreadable files, cache;
embed_images_each: several pipelines in one pass over the images."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import LFW, need
from faceprint.evaluation.embedset import CHUNK, EmbeddingCache, PipelineSpec, embed_images, embed_images_each
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


def test_several_pipelines_in_one_pass_equal_one_at_a_time(
    images: list[Path], yunet_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each image is read once for all pipelines; pipelines sharing an embedder share its
    model; every result equals the pipeline's own run."""
    import faceprint.io

    specs = [PipelineSpec("yunet"), PipelineSpec("hog")]
    alone = [embed_images(s, images, workers=1) for s in specs]
    reads: list[Path] = []
    real_load = faceprint.io.load_image

    def counting(src: Any) -> Any:
        reads.append(Path(str(src)))
        return real_load(src)

    monkeypatch.setattr(faceprint.io, "load_image", counting)
    seen: list[int] = []
    both = embed_images_each(specs, images, workers=1, progress=seen.append)
    assert sorted(reads) == sorted(set(images[:-2]) | {images[-1]})  # the copy shares the first's read
    assert sum(seen) == len(images)
    for one, many in zip(alone, both, strict=True):
        for p in images:
            a, b = one[p], many[p]
            assert (a.sha256, a.path, a.faces, a.box, a.error) == (b.sha256, b.path, b.faces, b.box, b.error)
            if a.vector is None:
                assert b.vector is None
            else:
                assert b.vector is not None and float(a.vector @ b.vector) > 0.99999
    assert not np.allclose(both[0][images[0]].vector, both[1][images[0]].vector), "different crops"


def test_several_pipelines_with_workers_and_a_partial_cache(images: list[Path], yunet_model: Path) -> None:
    specs = [PipelineSpec("yunet"), PipelineSpec("yunet", flip=True)]
    caches = [EmbeddingCache(), EmbeddingCache()]
    embed_images(specs[0], images[:5], cache=caches[0], workers=1)
    pooled = embed_images_each(specs, images, workers=2, caches=caches)
    single = [embed_images(s, images, workers=1) for s in specs]
    for i in range(2):
        for p in images[:-1]:
            a, b = pooled[i][p].vector, single[i][p].vector
            assert a is not None and b is not None and float(a @ b) > 0.99999
    assert len(caches[0]) == len(caches[1]) == len(images) - 1  # the copy is the first's
    with pytest.raises(ValueError, match="caches"):
        embed_images_each(specs, images, caches=caches[:1])
