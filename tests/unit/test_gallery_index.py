"""Search indexes (exact and usearch HNSW) on synthetic unit vectors: no model weights.

Clustered vectors imitate face embeddings: one centre per person inside a cone (different
people ~0.6 cosine apart), a few noisy faces per person (same person ~0.93-0.97).
Separated vectors (centres uniform on the sphere, ~0 apart) are used where an HNSW answer
must equal exact search row for row: there the k <= 4 nearest faces of a query are its
person's, far ahead of anyone else, so any difference is a bug, not a recall miss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from faceprint.errors import GalleryError, IncompatibleEmbeddingError, MissingExtraError
from faceprint.gallery import ann as ann_mod
from faceprint.gallery import exact as exact_mod
from faceprint.gallery import hnsw
from faceprint.gallery import index as index_mod
from faceprint.gallery.index import AnnIndex, ExactIndex, open_index, refresh_index
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


def separated(n: int, queries: int, seed: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """(gallery (n, DIM), queries) of well-separated people: 4 faces each (~0.95 alike),
    centres uniform on the sphere; queries are fresh faces of random people."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(n // 4, DIM)))
    sigma = np.sqrt(1 / 0.95 - 1)

    def faces(who: NDArray[np.int64]) -> NDArray[np.float32]:
        return _unit(centres[who] + sigma * rng.normal(size=(len(who), DIM)) / np.sqrt(DIM))

    return faces(np.arange(n) // 4), faces(rng.integers(0, n // 4, size=queries))


def sub_snap(vectors: NDArray[np.float32], rows: NDArray[np.int64], generation: int) -> Snapshot:
    """The faces ``rows`` of ``vectors``, in that order: face ``i`` is always id ``f{i}`` of
    person ``p{i // 4}``, whatever its row in a given snapshot."""
    rows = np.asarray(rows)
    return Snapshot(
        generation=generation,
        face_ids=tuple(f"f{i}" for i in rows),
        persons=tuple(f"p{i // 4}" for i in rows),
        vectors=vectors[rows],
    )


def assert_same_as_exact(
    index: index_mod.SearchIndex, s: Snapshot, queries: NDArray[np.float32], k: int
) -> None:
    sims, rows = index.search(queries, k)
    want_sims, want_rows = ExactIndex(s).search(queries, k)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_allclose(sims, want_sims, rtol=0, atol=1e-6)
    assert sims.dtype == np.float32 and rows.dtype == np.int64


def files(folder: Path) -> dict[str, tuple[int, str]]:
    """Name -> (mtime_ns, sha256) of every file in ``folder``: proves nothing was rewritten."""
    return {
        f.name: (f.stat().st_mtime_ns, hashlib.sha256(f.read_bytes()).hexdigest())
        for f in sorted(folder.iterdir())
        if f.is_file()
    }


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
    monkeypatch.setattr(exact_mod, "CHUNK_ELEMENTS", 500 * 4)  # 4 queries per chunk
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
    ids = np.load(tmp_path / "gallery.usearch.ids.npy", allow_pickle=False)
    assert [b.decode() for b in ids.tolist()] == [f"f{i}" for i in range(3000)]
    assert (
        meta["ids_sha256"] == hashlib.sha256((tmp_path / "gallery.usearch.ids.npy").read_bytes()).hexdigest()
    )
    again = AnnIndex(snap(gallery, generation=4), path)
    assert not again.rebuilt
    for a, b in zip(first.search(queries, 5), again.search(queries, 5), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not list(tmp_path.glob("*.tmp"))  # no temp files left behind


@needs_usearch
def test_other_gallery_or_parameters_are_rebuilt(tmp_path: Path) -> None:
    gallery = random_unit(1000, 8)
    path = tmp_path / "g.usearch"
    sidecar = tmp_path / "g.usearch.json"
    AnnIndex(snap(gallery, generation=1), path)
    # same count, other face ids (another gallery at that path): every graph face is gone
    other = AnnIndex(snap(gallery, generation=2, prefix="other"), path)
    assert other.rebuilt and other.tombstones == 0 and other.delta_size == 0
    assert json.loads(sidecar.read_text())["generation"] == 2
    assert not AnnIndex(snap(gallery, generation=2, prefix="other"), path).rebuilt
    # other graph parameters, or a sidecar of the previous format: rebuilt
    assert AnnIndex(snap(gallery, generation=2, prefix="other"), path, connectivity=16).rebuilt
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "version": 1}))
    assert AnnIndex(snap(gallery, generation=2, prefix="other"), path, connectivity=16).rebuilt


DAMAGES = [
    "garbage",
    "flipped",
    "truncated",
    "empty",
    "sidecar",
    "no-sidecar",
    "ids-garbage",
    "ids-missing",
    "ids-forged",
    "crash-after-graph",
    "crash-after-ids",
]


@needs_usearch
@pytest.mark.parametrize("damage", DAMAGES)
def test_corrupt_index_is_rebuilt(tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    gallery = random_unit(800, 9)
    path = tmp_path / "g.usearch"
    sidecar = tmp_path / "g.usearch.json"
    ids = tmp_path / "g.usearch.ids.npy"
    AnnIndex(snap(gallery), path)
    data = path.read_bytes()
    meta = json.loads(sidecar.read_text())
    if damage == "garbage":
        path.write_bytes(b"\x00not an index" * (len(data) // 13))
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
    elif damage == "no-sidecar":
        sidecar.unlink()
    elif damage == "ids-garbage":  # same size, other bytes
        ids.write_bytes(b"\x93" * ids.stat().st_size)
    elif damage == "ids-missing":
        ids.unlink()
    elif damage == "ids-forged":  # checksums agree, but the file holds the wrong number of ids
        with ids.open("wb") as f:
            np.save(f, np.array([b"f0", b"f1"]), allow_pickle=False)
        digest = hashlib.sha256(ids.read_bytes()).hexdigest()
        sidecar.write_text(json.dumps({**meta, "ids_bytes": ids.stat().st_size, "ids_sha256": digest}))
    else:  # a save of another snapshot killed before its sidecar: new file(s), old sidecar
        other = tmp_path / "other" / "g.usearch"
        AnnIndex(snap(random_unit(800, 99), prefix="o"), other)
        shutil.copyfile(other, path)
        if damage == "crash-after-ids":
            shutil.copyfile(other.with_name("g.usearch.ids.npy"), ids)
    with caplog.at_level(logging.INFO, logger="faceprint.gallery"):
        ann = AnnIndex(snap(gallery), path)
    assert ann.rebuilt
    assert "rebuilding" in caplog.text or "building" in caplog.text
    assert ann.search(gallery[5], 1)[1].tolist() == [[5]]
    again = AnnIndex(snap(gallery), path)
    assert not again.rebuilt and again.delta_size == again.tombstones == 0  # the rebuilt file is good


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


# -- incremental ANN: a graph over an older snapshot, plus the exact delta, minus removed faces


def people_with_all_faces(rows: NDArray[np.int64], queries_person: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Which queries are of a person whose 4 faces are all among ``rows``."""
    count = np.bincount(np.asarray(rows) // 4, minlength=int(queries_person.max()) + 1)
    return np.asarray(count[queries_person] == 4)


def nearest_person(gallery: NDArray[np.float32], queries: NDArray[np.float32]) -> NDArray[np.int64]:
    return np.asarray(np.argmax(queries @ gallery.T, axis=1) // 4)


@needs_usearch
@pytest.mark.parametrize("order", ["appended", "interleaved"])
def test_enrolled_faces_are_searched_without_rebuild(tmp_path: Path, order: str) -> None:
    gallery, queries = separated(4000, 200, seed=11)
    rng = np.random.default_rng(12)
    base = np.arange(3000) if order == "appended" else np.sort(rng.permutation(4000)[:3000])
    added = np.setdiff1d(np.arange(4000), base)
    path = tmp_path / "g.usearch"
    assert AnnIndex(sub_snap(gallery, base, 1), path, threads=1).rebuilt
    before = files(tmp_path)
    now = sub_snap(gallery, np.arange(4000), 2)  # a new object (or process) with a newer snapshot
    idx = AnnIndex(now, path, threads=1)
    assert not idx.rebuilt and not idx.reused and files(tmp_path) == before
    assert (idx.size, idx.base_size, idx.base_generation, idx.generation) == (4000, 3000, 1, 2)
    assert (idx.delta_size, idx.tombstones) == (1000, 0)
    _, rows = idx.search(gallery[added], 1)  # each new face is its own nearest face
    np.testing.assert_array_equal(rows[:, 0], added)
    # people split between graph and delta: one merged top-k, rows of the *current* snapshot
    assert_same_as_exact(idx, now, queries, 4)
    assert_same_as_exact(idx, now, queries[:5], 4)  # few queries: the einsum path of exact search


@needs_usearch
def test_removed_faces_are_never_returned(tmp_path: Path) -> None:
    gallery, queries = separated(4000, 200, seed=13)
    path = tmp_path / "g.usearch"
    AnnIndex(sub_snap(gallery, np.arange(4000), 1), path, threads=1)
    gone = np.arange(0, 1000, 40)[:, None] * 4 + np.arange(4)  # 25 people, 100 faces, whole
    gone = np.union1d(gone.ravel(), np.arange(2001, 4000, 10))  # and ~200 single faces
    keep = np.setdiff1d(np.arange(4000), gone)
    now = sub_snap(gallery, keep, 2)
    before = files(tmp_path)
    idx = AnnIndex(now, path, threads=1)
    assert not idx.rebuilt and files(tmp_path) == before
    assert (idx.size, idx.delta_size, idx.tombstones) == (len(keep), 0, len(gone))
    # the removed faces themselves as queries: the graph's best answers are all dead
    sims, rows = idx.search(gallery[gone], 10)
    assert rows.min() >= 0 and rows.max() < len(keep)
    assert not {now.face_ids[r] for r in rows.ravel()} & {f"f{i}" for i in gone}
    np.testing.assert_allclose(sims, np.einsum("qkd,qd->qk", now.vectors[rows], gallery[gone]), atol=1e-6)
    assert np.all(np.diff(sims, axis=1) <= 0)
    whole = people_with_all_faces(keep, nearest_person(gallery, queries))
    assert whole.sum() > 100
    assert_same_as_exact(idx, now, queries[whole], 4)
    # k as large as the gallery: every live face exactly once
    _, rows = idx.search(queries[:3], len(keep) + 50)
    assert all(sorted(r) == list(range(len(keep))) for r in rows.tolist())


@needs_usearch
def test_mixed_enrolments_and_removals_in_another_order(tmp_path: Path) -> None:
    gallery, queries = separated(4000, 300, seed=14)
    rng = np.random.default_rng(15)
    base = np.sort(rng.permutation(4000)[:3000])
    removed = rng.choice(base, 250, replace=False)
    current = rng.permutation(np.setdiff1d(np.arange(4000), removed))  # rows in a new order
    path = tmp_path / "g.usearch"
    AnnIndex(sub_snap(gallery, base, 1), path, threads=1)
    now = sub_snap(gallery, current, 7)
    idx = AnnIndex(now, path, threads=1)
    assert not idx.rebuilt
    assert (idx.delta_size, idx.tombstones) == (1000, 250)
    _, rows = idx.search(queries, 8)
    assert not {now.face_ids[r] for r in rows.ravel()} & {f"f{i}" for i in removed}
    whole = people_with_all_faces(current, nearest_person(gallery, queries))
    assert_same_as_exact(idx, now, queries[whole], 4)
    assert_same_as_exact(idx, now, queries, 1)  # everyone kept a face: the best is theirs


@needs_usearch
def test_overfetch_grows_then_falls_back_to_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    gallery, _ = separated(2000, 0, seed=16)
    gone = np.arange(400, 480)  # 20 people
    keep = np.setdiff1d(np.arange(2000), gone)
    idx = AnnIndex(sub_snap(gallery, np.arange(2000), 1), threads=1)
    now = sub_snap(gallery, keep, 2)
    refreshed = idx.refreshed(now)
    assert refreshed is not None
    asked: list[int] = []
    real = hnsw.Graph.search

    def spy(self: hnsw.Graph, q: NDArray[np.float32], count: int, threads: int) -> NDArray[np.int64]:
        asked.append(count)
        return real(self, q, count, threads)

    monkeypatch.setattr(hnsw.Graph, "search", spy)
    monkeypatch.setattr(ann_mod, "_MIN_OVERFETCH", 1)
    # a removed face's 3 other faces crowd its top: 1 + 1 candidates are not enough
    _, rows = refreshed.search(gallery[gone], 1)
    assert asked == [2, 9] and not {now.face_ids[r] for r in rows.ravel()} & {f"f{i}" for i in gone}
    asked.clear()
    monkeypatch.setattr(ann_mod, "_MAX_CANDIDATES", 2)  # no growth allowed: exact search
    assert_same_as_exact(refreshed, now, gallery[gone], 3)
    assert asked == [6]  # k + max(k, _MIN_OVERFETCH), then no more


@needs_usearch
def test_too_many_changes_rebuild(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gallery = random_unit(3000, 17)
    path = tmp_path / "g.usearch"
    AnnIndex(sub_snap(gallery, np.arange(2000), 1), path, threads=1)
    # removals: 10% of the graph is tolerated, more is rebuilt
    assert not AnnIndex(sub_snap(gallery, np.arange(200, 2000), 2), path, threads=1).rebuilt
    idx = AnnIndex(sub_snap(gallery, np.arange(201, 2000), 3), path, threads=1)
    assert idx.rebuilt and (idx.base_size, idx.delta_size, idx.tombstones) == (1799, 0, 0)
    meta = json.loads((tmp_path / "g.usearch.json").read_text())
    assert (meta["generation"], meta["count"]) == (3, 1799)
    # enrolments: more than max(ANN_REBUILD_DELTA, 5% of the graph) is rebuilt
    monkeypatch.setattr(hnsw, "ANN_REBUILD_DELTA", 500)
    assert not AnnIndex(sub_snap(gallery, np.arange(201, 2500), 4), path, threads=1).rebuilt
    idx = AnnIndex(sub_snap(gallery, np.arange(201, 2501), 5), path, threads=1)
    assert idx.rebuilt and idx.base_generation == 5
    assert not AnnIndex(sub_snap(gallery, np.arange(201, 2501), 6), path, threads=1).rebuilt


@needs_usearch
def test_refresh_index_reuses_the_graph_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gallery, queries = separated(4000, 200, seed=18)
    path = tmp_path / "g.usearch"
    first = sub_snap(gallery, np.arange(3000), 1)
    old = AnnIndex(first, path, dtype="f16", threads=1)
    for f in tmp_path.iterdir():  # the refresh must neither read nor write files
        f.unlink()
    now = sub_snap(gallery, np.concatenate([np.arange(100, 3000), np.arange(3000, 4000)]), 2)
    new = refresh_index(old, now, path, kind="ann")
    assert isinstance(new, AnnIndex) and new.reused and not new.rebuilt
    assert new._graph is old._graph and not list(tmp_path.iterdir())
    assert (new.generation, new.delta_size, new.tombstones) == (2, 1000, 100)
    whole = people_with_all_faces(np.arange(100, 4000), nearest_person(gallery, queries))
    assert_same_as_exact(new, now, queries[whole], 4)
    assert_same_as_exact(old, first, queries[nearest_person(gallery, queries) < 750], 4)  # old unchanged
    assert refresh_index(new, now, path, kind="ann") is new  # same snapshot: nothing to do
    # kind "auto" above EXACT_MAX_SIZE reuses too
    monkeypatch.setattr(index_mod, "EXACT_MAX_SIZE", 10)
    assert getattr(refresh_index(old, now, path), "reused", False)
    # past the thresholds: rebuilt with the old index's parameters, and saved
    later = sub_snap(gallery, np.arange(400, 4000), 3)
    rebuilt = refresh_index(new, later, path)
    assert isinstance(rebuilt, AnnIndex) and rebuilt.rebuilt and not rebuilt.reused
    assert rebuilt.params["dtype"] == "f16" and path.exists()
    assert not AnnIndex(later, path, dtype="f16").rebuilt
    # otherwise it is open_index: no old index, exact asked for, another path
    monkeypatch.setattr(index_mod, "EXACT_MAX_SIZE", 20_000)
    assert refresh_index(None, now, path).kind == "exact"
    assert refresh_index(new, now, path, kind="exact").kind == "exact"
    assert refresh_index(new, now, path).kind == "exact"  # "auto" at 3,900 faces
    elsewhere = refresh_index(new, now, tmp_path / "other.usearch", kind="ann")
    assert isinstance(elsewhere, AnnIndex) and not elsewhere.reused and elsewhere.rebuilt
    empty = Snapshot(3, (), (), np.zeros((0, DIM), np.float32))
    assert refresh_index(new, empty, path, kind="ann").size == 0
