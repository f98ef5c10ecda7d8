"""Constrained average-linkage clustering (faceprint.collections.cluster) on synthetic
unit vectors: no model needed."""

from __future__ import annotations

import numpy as np
import pytest

from faceprint.collections.cluster import cluster_faces, extend_clusters, knn_graph
from faceprint.errors import InvalidArgumentError


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def blobs(
    people: int, per: int, dim: int = 32, noise: float = 0.15, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(people, dim)))
    truth = np.repeat(np.arange(people), per)
    return unit(centres[truth] + noise * rng.normal(size=(len(truth), dim)) / np.sqrt(dim)), truth


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = {(int(x), int(y)) for x, y in zip(a, b, strict=True)}
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_separate_people_come_out_whole_and_largest_first() -> None:
    v, truth = blobs(6, 5)
    extra, _ = blobs(1, 4, seed=9)  # a seventh person with more photos
    v = np.concatenate([v, extra])
    truth = np.concatenate([truth, np.full(4, 6)])
    v = np.concatenate([v[:30], v[30:]])
    labels = cluster_faces(v, 0.7)
    assert same_partition(labels, truth)
    sizes = np.bincount(labels)
    assert list(sizes) == sorted(sizes, reverse=True)


def test_equals_full_average_linkage_when_every_pair_is_a_candidate() -> None:
    """With k = n - 1 every pair is compared: the reciprocal-best rounds must give exactly
    scipy's average-linkage clusters cut at the same cosine similarity."""
    from scipy.cluster.hierarchy import fcluster, linkage

    rng = np.random.default_rng(3)
    for trial in range(5):
        v, _ = blobs(8, 6, dim=16, noise=1.2, seed=trial)
        v = unit(v + 0.3 * rng.normal(size=v.shape).astype(np.float32))
        for t in (0.3, 0.5, 0.7):
            ours = cluster_faces(v, t, k=len(v) - 1)
            z = linkage(v.astype(np.float64), method="average", metric="cosine")
            theirs = fcluster(z, t=1 - t, criterion="distance")
            assert same_partition(ours, theirs), (trial, t)


def test_one_lookalike_pair_does_not_chain_two_people() -> None:
    """Two people joined only through one very similar pair (a5 looks like b5): single
    linkage makes them one cluster at this threshold (checked with scipy), average
    linkage keeps every other photo of A apart from every other photo of B."""
    from scipy.cluster.hierarchy import fcluster, linkage

    rng = np.random.default_rng(1)
    dim = 24
    ca, cb = np.eye(dim)[0], 0.3 * np.eye(dim)[0] + np.sqrt(1 - 0.09) * np.eye(dim)[1]
    noise = 0.35 * rng.normal(size=(10, dim)) / np.sqrt(dim)
    noise[:, :2] = 0
    a = unit(ca + noise[:5])
    b = unit(cb + noise[5:])
    a[4] = unit((ca + 1.2 * cb)[None, :] + 0.05 * noise[4])[0]
    b[4] = unit((cb + 1.2 * ca)[None, :] + 0.05 * noise[9])[0]
    v = np.concatenate([a, b])
    t = 0.62
    single = fcluster(linkage(v.astype(np.float64), "single", metric="cosine"), 1 - t, "distance")
    assert len(set(single.tolist())) == 1  # the chain
    labels = cluster_faces(v, t)
    assert not set(labels[:4].tolist()) & set(labels[5:9].tolist())
    assert len(set(labels[:4].tolist())) == 1 and len(set(labels[5:9].tolist())) == 1


def test_two_faces_of_one_photo_are_never_one_person() -> None:
    v, _ = blobs(1, 4, noise=0.05)
    groups = ["a.jpg", "a.jpg", "b.jpg", "c.jpg"]  # faces 0 and 1 share a photo
    labels = cluster_faces(v, 0.5, groups=groups)
    assert labels[0] != labels[1]
    assert len(set(labels.tolist())) == 2
    assert len(set(cluster_faces(v, 0.5).tolist())) == 1  # without the photo constraint: one


def test_user_constraints_are_kept() -> None:
    v, _ = blobs(2, 4, noise=0.05)
    # cannot-link splits a person; must-link joins two people
    apart = cluster_faces(v, 0.5, cannot_link=[(0, 1)])
    assert apart[0] != apart[1]
    far, _ = blobs(2, 4, noise=0.8)
    together = cluster_faces(far, 0.99, must_link=[(0, 4)])
    assert together[0] == together[4] and len(set(together.tolist())) == 7
    with pytest.raises(InvalidArgumentError, match="must stay apart"):
        cluster_faces(v, 0.5, must_link=[(0, 1)], cannot_link=[(0, 1)])
    with pytest.raises(InvalidArgumentError, match="must stay apart"):
        cluster_faces(v, 0.5, groups=["x", "x", "y", "z", "p", "q", "r", "s"], must_link=[(0, 1)])


def test_small_clusters_are_not_clustered() -> None:
    v, _ = blobs(3, 3, noise=0.05)
    loner = unit(np.random.default_rng(7).normal(size=(1, v.shape[1])))
    labels = cluster_faces(np.concatenate([v, loner]), 0.8, min_size=2)
    assert labels[-1] == -1 and sorted(set(labels[:-1].tolist())) == [0, 1, 2]


def test_bad_input_is_refused() -> None:
    v, _ = blobs(2, 2)
    for bad, match in (
        (v * 2, "L2-normalised"),
        (v[0], r"\(n, d\)"),
        (np.full_like(v, np.nan), "finite"),
    ):
        with pytest.raises(InvalidArgumentError, match=match):
            cluster_faces(bad, 0.5)
    with pytest.raises(InvalidArgumentError, match="cosine similarity"):
        cluster_faces(v, 1.5)
    with pytest.raises(InvalidArgumentError, match="one per face"):
        cluster_faces(v, 0.5, groups=["a"])
    with pytest.raises(InvalidArgumentError, match="outside"):
        cluster_faces(v, 0.5, must_link=[(0, 9)])
    with pytest.raises(InvalidArgumentError, match="itself"):
        cluster_faces(v, 0.5, cannot_link=[(1, 1)])
    assert cluster_faces(np.zeros((0, 8), np.float32), 0.5).shape == (0,)
    assert list(cluster_faces(v[:1], 0.5)) == [0]


def test_the_hnsw_graph_matches_the_exact_one(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("usearch", reason="the [ann] extra is not installed")
    v, truth = blobs(60, 5, dim=32, noise=0.3)
    exact = set(zip(*(a.tolist() for a in knn_graph(v, 5)), strict=True))
    monkeypatch.setattr("faceprint.gallery.index.EXACT_MAX_SIZE", 10)
    approx = set(zip(*(a.tolist() for a in knn_graph(v, 5)), strict=True))
    assert len(exact & approx) >= 0.95 * len(exact)
    assert same_partition(cluster_faces(v, 0.8), truth)


def test_new_faces_join_their_people_and_old_clusters_keep_their_ids() -> None:
    v, truth = blobs(5, 6, noise=0.3)
    old_rows = np.flatnonzero(np.arange(len(v)) % 6 < 4)  # 4 photos each clustered first
    first = cluster_faces(v[old_rows], 0.7)
    assert same_partition(first, truth[old_rows])
    newcomer, _ = blobs(1, 3, noise=0.3, seed=5)  # and a person never seen
    allv = np.concatenate([v, newcomer])
    labels = np.full(len(allv), -1)
    labels[old_rows] = first
    out = extend_clusters(allv, labels, 0.7)
    assert np.array_equal(out[old_rows], first)  # nothing renumbered
    assert same_partition(out[: len(v)], truth)  # the new photos joined their people
    assert set(out[len(v) :].tolist()) == {int(first.max()) + 1}
    assert np.array_equal(extend_clusters(allv, out, 0.7), out)  # nothing free: unchanged


def test_extending_keeps_the_constraints() -> None:
    v, _ = blobs(1, 5, noise=0.1)
    labels = np.array([0, 0, 1, -1, -1])  # one person split in two clusters by the user
    groups = ["p1", "p2", "p3", "p1", "p4"]  # face 3 is in the same photo as face 0
    out = extend_clusters(v, labels, 0.5, groups=groups)
    assert out[0] == 0 and out[2] == 1  # two existing clusters are never merged here
    assert out[3] == 1  # not cluster 0: it holds a face of the same photo
    assert out[4] in (0, 1)
    with pytest.raises(InvalidArgumentError, match="labels"):
        extend_clusters(v, labels[:2], 0.5)
