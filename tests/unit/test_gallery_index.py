"""Search indexes (exact and usearch HNSW) on synthetic unit vectors: no model weights.

Clustered vectors imitate face embeddings: one centre per person inside a cone (different
people ~0.6 cosine apart), a few noisy faces per person (same person ~0.93-0.97).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from faceprint.errors import GalleryError, IncompatibleEmbeddingError, MissingExtraError
from faceprint.gallery import index as index_mod
from faceprint.gallery.index import AnnIndex, ExactIndex, open_index
from faceprint.gallery.records import Snapshot

DIM = 128


def _unit(x: NDArray[np.float64]) -> NDArray[np.float32]:
    out: NDArray[np.float32] = (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)
    return out


def clustered(
    n: int, queries: int, seed: int = 0, per_person: int = 4
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """(gallery (n, DIM), queries): queries are fresh noisy faces of enrolled people."""
    rng = np.random.default_rng(seed)
    people = -(-n // per_person)
    mean = _unit(rng.normal(size=DIM))
    tau = np.sqrt(1 / 0.6 - 1)  # centres ~0.6 cosine apart
    centres = _unit(mean + tau * rng.normal(size=(people, DIM)) / np.sqrt(DIM))
    sigma = np.sqrt(1 / rng.uniform(0.93, 0.97, size=people) - 1)  # same person ~0.93-0.97

    def faces(who: NDArray[np.int64]) -> NDArray[np.float32]:
        noise = rng.normal(size=(len(who), DIM)) / np.sqrt(DIM)
        return _unit(centres[who] + sigma[who, None] * noise)

    return faces(np.arange(n) // per_person), faces(rng.integers(0, people, size=queries))


def snap(vectors: NDArray[np.float32], generation: int = 1, prefix: str = "f") -> Snapshot:
    n = len(vectors)
    return Snapshot(
        generation=generation,
        face_ids=tuple(f"{prefix}{i}" for i in range(n)),
        persons=tuple(f"p{i // 4}" for i in range(n)),
        vectors=vectors,
    )


def random_unit(n: int, seed: int = 0) -> NDArray[np.float32]:
    return _unit(np.random.default_rng(seed).normal(size=(n, DIM)))


needs_usearch = pytest.mark.skipif(
    not index_mod.ann_available(), reason="usearch ([ann] extra) not installed"
)


def test_exact_matches_brute_force() -> None:
    gallery, queries = random_unit(3000, 1), random_unit(70, 2)
    sims, rows = ExactIndex(snap(gallery)).search(queries, 7)
    full = queries @ gallery.T
    want = np.argsort(-full, axis=1, kind="stable")[:, :7]
    assert rows.dtype == np.int64 and sims.dtype == np.float32
    assert rows.shape == sims.shape == (70, 7)
    np.testing.assert_array_equal(rows, want)
    np.testing.assert_allclose(sims, np.take_along_axis(full, want, axis=1), rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(sims, axis=1) <= 0)


def test_exact_chunks_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    gallery, queries = random_unit(500, 3), random_unit(33, 4)
    whole = ExactIndex(snap(gallery)).search(queries, 5)
    monkeypatch.setattr(index_mod, "_CHUNK_ELEMENTS", 500 * 4)  # 4 queries per chunk
    chunked = ExactIndex(snap(gallery)).search(queries, 5)
    np.testing.assert_array_equal(whole[1], chunked[1])


def test_single_vector_query_and_float64() -> None:
    gallery = random_unit(100)
    sims, rows = ExactIndex(snap(gallery)).search(gallery[17].astype(np.float64), 1)
    assert rows.tolist() == [[17]] and sims[0, 0] == pytest.approx(1.0, abs=1e-5)


@needs_usearch
def test_ann_recall_on_clustered_20k() -> None:
    gallery, queries = clustered(20_000, 500, seed=5)
    s = snap(gallery)
    _, want = ExactIndex(s).search(queries, 1)
    ann = AnnIndex(s)
    sims, got = ann.search(queries, 10)
    recall = float(np.mean(got[:, 0] == want[:, 0]))
    assert recall >= 0.99, recall
    # similarities are exact dot products of the returned rows, best first
    np.testing.assert_allclose(sims, np.einsum("qkd,qd->qk", gallery[got], queries), rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(sims, axis=1) <= 0)


@needs_usearch
@pytest.mark.parametrize("dtype", ["f16", "i8"])
def test_ann_quantised_storage(dtype: str) -> None:
    gallery, queries = clustered(2000, 100, seed=6)
    _, want = ExactIndex(snap(gallery)).search(queries, 1)
    sims, got = AnnIndex(snap(gallery), dtype=dtype).search(queries, 3)
    assert float(np.mean(got[:, 0] == want[:, 0])) >= 0.97
    np.testing.assert_allclose(sims[:, 0], np.sum(gallery[got[:, 0]] * queries, axis=1), rtol=1e-5)


@needs_usearch
def test_persistence_round_trip(tmp_path: Path) -> None:
    gallery, queries = clustered(3000, 50, seed=7)
    path = tmp_path / "gallery.usearch"
    first = AnnIndex(snap(gallery, generation=4), path)
    assert first.rebuilt and path.exists()
    meta = json.loads((tmp_path / "gallery.usearch.json").read_text())
    assert meta["generation"] == 4 and meta["count"] == 3000 and meta["dim"] == DIM
    again = AnnIndex(snap(gallery, generation=4), path)
    assert not again.rebuilt
    for a, b in zip(first.search(queries, 5), again.search(queries, 5), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not list(tmp_path.glob("*.tmp"))  # no temp files left behind


@needs_usearch
def test_stale_index_is_rebuilt(tmp_path: Path) -> None:
    gallery = random_unit(1000, 8)
    path = tmp_path / "g.usearch"
    AnnIndex(snap(gallery[:900], generation=1), path)
    newer = AnnIndex(snap(gallery, generation=2), path)  # faces were added
    assert newer.rebuilt and newer.size == 1000
    _, rows = newer.search(gallery[950], 1)
    assert rows.tolist() == [[950]]
    assert json.loads((tmp_path / "g.usearch.json").read_text())["generation"] == 2
    # same generation and count but other face ids (another gallery at that path): rebuilt
    assert AnnIndex(snap(gallery, generation=2, prefix="other"), path).rebuilt
    assert not AnnIndex(snap(gallery, generation=2, prefix="other"), path).rebuilt


@needs_usearch
@pytest.mark.parametrize("damage", ["garbage", "flipped", "truncated", "empty", "sidecar", "no-sidecar"])
def test_corrupt_index_is_rebuilt(tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    gallery = random_unit(800, 9)
    path = tmp_path / "g.usearch"
    sidecar = tmp_path / "g.usearch.json"
    AnnIndex(snap(gallery), path)
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"\x00not an index" * (len(data) // 13))
        meta = json.loads(sidecar.read_text())
        sidecar.write_text(json.dumps({**meta, "bytes": path.stat().st_size}))  # size check passes
    elif damage == "flipped":  # same size, parses as an index, but the graph is damaged
        mid = len(data) // 2
        path.write_bytes(data[:mid] + b"\xff" * 4000 + data[mid + 4000 :])
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "sidecar":
        sidecar.write_text("{not json")
    else:
        sidecar.unlink()
    with caplog.at_level(logging.INFO, logger="faceprint.gallery.index"):
        ann = AnnIndex(snap(gallery), path)
    assert ann.rebuilt
    assert ann.search(gallery[5], 1)[1].tolist() == [[5]]
    assert not AnnIndex(snap(gallery), path).rebuilt  # and the rebuilt file is good


@needs_usearch
def test_unwritable_cache_still_searches(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    ann = AnnIndex(snap(random_unit(200)), blocker / "sub" / "g.usearch")  # parent is a file
    assert ann.search(random_unit(200)[3], 1)[1].tolist() == [[3]]


@pytest.mark.parametrize("kind", ["exact", "ann"])
def test_k_larger_than_n(kind: str) -> None:
    if kind == "ann" and not index_mod.ann_available():
        pytest.skip("usearch not installed")
    gallery = random_unit(6, 10)
    sims, rows = open_index(snap(gallery), kind=kind).search(random_unit(3, 11), 50)
    assert sims.shape == rows.shape == (3, 6)
    assert sorted(rows[0].tolist()) == list(range(6))


@pytest.mark.parametrize("kind", ["exact", "ann", "auto"])
def test_empty_snapshot(kind: str, tmp_path: Path) -> None:
    if kind == "ann" and not index_mod.ann_available():
        pytest.skip("usearch not installed")
    for vectors in (np.zeros((0, DIM), np.float32), np.zeros((0,), np.float32)):
        idx = open_index(Snapshot(0, (), (), vectors), tmp_path / "e.usearch", kind=kind)
        assert idx.size == 0
        sims, rows = idx.search(random_unit(2), 3)
        assert sims.shape == rows.shape == (2, 0)


def test_bad_queries_are_clear_errors() -> None:
    idx = ExactIndex(snap(random_unit(50)))
    with pytest.raises(IncompatibleEmbeddingError, match=r"512 dimensions.*128"):
        idx.search(np.zeros((1, 512), np.float32), 1)
    with pytest.raises(GalleryError, match=r"floating point.*int64"):
        idx.search(np.zeros((1, DIM), np.int64), 1)
    with pytest.raises(GalleryError, match=r"shape \(Q, D\).*\(1, 2, 128\)"):
        idx.search(np.zeros((1, 2, DIM), np.float32), 1)
    with pytest.raises(GalleryError, match="NaN"):
        idx.search(np.full((1, DIM), np.nan, np.float32), 1)
    for k in (0, -1, 2.5, True):
        with pytest.raises(GalleryError, match="positive integer"):
            idx.search(random_unit(1), k)  # type: ignore[arg-type]


def test_bad_snapshot_and_kind() -> None:
    with pytest.raises(GalleryError, match=r"inconsistent.*N = 3"):
        ExactIndex(Snapshot(1, ("a", "b", "c"), ("x", "y", "z"), random_unit(2)))
    with pytest.raises(GalleryError, match="floating point"):
        ExactIndex(Snapshot(1, ("a",), ("x",), np.ones((1, DIM), np.int32)))
    with pytest.raises(GalleryError, match=r"one of auto, exact, ann.*'faiss'"):
        open_index(snap(random_unit(3)), kind="faiss")


def test_auto_picks_by_size(monkeypatch: pytest.MonkeyPatch) -> None:
    small = snap(random_unit(20))
    assert open_index(small).kind == "exact"
    if index_mod.ann_available():
        monkeypatch.setattr(index_mod, "EXACT_MAX_SIZE", 10)
        assert open_index(small).kind == "ann"


def test_without_usearch(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "usearch.index", None)  # import now fails as if not installed
    monkeypatch.setattr(index_mod, "EXACT_MAX_SIZE", 10)
    small = snap(random_unit(20))
    with caplog.at_level(logging.WARNING, logger="faceprint.gallery.index"):
        assert open_index(small).kind == "exact"
    assert "faceprint[ann]" in caplog.text
    with pytest.raises(MissingExtraError, match=r"pip install 'faceprint\[ann\]'"):
        open_index(small, kind="ann")
