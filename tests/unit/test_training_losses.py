"""Triplet mining and CosFace (faceprint.training.losses): values checked by hand on tiny
batches, so a wrong mining rule (positive/negative swapped, diagonal counted) fails."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from faceprint.training.losses import CosFace, batch_hard, distances, semi_hard  # noqa: E402


def unit(*angles: float) -> torch.Tensor:
    """Unit vectors in the plane at ``angles`` (radians)."""
    return torch.tensor([[math.cos(a), math.sin(a)] for a in angles], dtype=torch.float32)


def chord(a: float) -> float:
    """Euclidean distance between unit vectors ``a`` radians apart."""
    return 2 * math.sin(a / 2)


def test_distances_are_euclidean_on_the_unit_circle_with_a_finite_gradient() -> None:
    e = unit(0.0, 0.5, 2.0).requires_grad_()
    d = distances(e)
    assert d[0, 1].item() == pytest.approx(chord(0.5), abs=1e-5)
    assert d[0, 2].item() == pytest.approx(chord(2.0), abs=1e-5)
    d.sum().backward()
    assert torch.isfinite(e.grad).all()


def test_batch_hard_takes_the_farthest_positive_and_the_nearest_negative() -> None:
    # person 0 at 0, 0.1, 0.3 rad; person 1 at 0.5 and 2.0 rad
    e = unit(0.0, 0.1, 0.3, 0.5, 2.0)
    labels = torch.tensor([0, 0, 0, 1, 1])
    margin = 0.1
    out = batch_hard(e, labels, margin)
    angles = [0.0, 0.1, 0.3, 0.5, 2.0]
    expected = []
    for i, a in enumerate(angles):
        pos = [chord(abs(a - b)) for j, b in enumerate(angles) if j != i and labels[j] == labels[i]]
        neg = [chord(abs(a - b)) for j, b in enumerate(angles) if labels[j] != labels[i]]
        expected.append(max(0.0, max(pos) - min(neg) + margin))
    assert out.loss.item() == pytest.approx(sum(expected) / len(expected), abs=1e-5)
    assert out.active == pytest.approx(sum(x > 0 for x in expected) / len(expected))


def test_batch_hard_is_zero_when_every_person_is_far_apart() -> None:
    e = unit(0.0, 0.01, 3.0, 3.01)
    out = batch_hard(e, torch.tensor([0, 0, 1, 1]), 0.2)
    assert out.loss.item() == 0.0 and out.active == 0.0


def test_an_anchor_without_a_positive_is_left_out() -> None:
    e = unit(0.0, 0.05, 0.02)  # the singleton (label 1) sits between the pair
    out = batch_hard(e, torch.tensor([0, 0, 1]), 0.1)
    # anchors 0 and 1 only: hardest positive 0.05 rad, nearest negative 0.02 / 0.03 rad
    want = (max(0, chord(0.05) - chord(0.02) + 0.1) + max(0, chord(0.05) - chord(0.03) + 0.1)) / 2
    assert out.loss.item() == pytest.approx(want, abs=1e-5)


def test_semi_hard_picks_the_nearest_negative_beyond_the_positive() -> None:
    # anchor 0 at 0, positive at 0.2; negatives at 0.1 (inside), 0.25 and 1.0 (beyond)
    e = unit(0.0, 0.2, 0.1, 0.25, 1.0)
    labels = torch.tensor([0, 0, 1, 2, 3])
    out = semi_hard(e, labels, 0.2)
    # pair (0, 1): semi-hard negative is 0.25 rad from the anchor
    l01 = max(0.0, chord(0.2) - chord(0.25) + 0.2)
    # pair (1, 0): distances from 0.2: 0.1 -> 0.1, 0.25 -> 0.05, 1.0 -> 0.8; positive 0.2; beyond: 0.8
    l10 = max(0.0, chord(0.2) - chord(0.8) + 0.2)
    assert out.loss.item() == pytest.approx((l01 + l10) / 2, abs=1e-5)


def test_semi_hard_falls_back_to_the_farthest_negative() -> None:
    e = unit(0.0, 1.0, 0.5)  # the only negative is nearer than the positive for both
    out = semi_hard(e, torch.tensor([0, 0, 1]), 0.1)
    want = max(0.0, chord(1.0) - chord(0.5) + 0.1)
    assert out.loss.item() == pytest.approx(want, abs=1e-5)
    assert out.active == 1.0


def test_cosface_starts_from_the_centroids_and_its_loss_falls_when_trained() -> None:
    torch.manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    head = CosFace(4, 8, centroids=centres)
    assert torch.allclose(head.weight.data, centres, atol=1e-6)
    emb = torch.nn.functional.normalize(centres.repeat(3, 1) + 0.3 * torch.randn(12, 8), dim=1)
    labels = torch.arange(4).repeat(3)
    opt = torch.optim.SGD(head.parameters(), lr=0.5)
    first = head(emb, labels).loss.item()
    for _ in range(30):
        opt.zero_grad()
        head(emb, labels).loss.backward()
        opt.step()
    assert head(emb, labels).loss.item() < first
    with pytest.raises(ValueError, match="centroids of shape"):
        CosFace(3, 8, centroids=centres)


def test_cli_defaults_are_train_configs() -> None:
    """`faceprint train` repeats TrainConfig's defaults (its --help must not import torch)."""
    import inspect

    from faceprint.cli import train as cli
    from faceprint.training.finetune import TrainConfig

    params = inspect.signature(cli.train).parameters
    want = TrainConfig()
    assert want.augment == cli.DEFAULT_AUGMENT
    for name in ("epochs", "patience", "loss", "distill", "margin", "lr", "tune", "people_per_batch",
                 "images_per_person", "val_fraction", "seed", "device"):  # fmt: skip
        assert params[name].default == getattr(want, name), name
