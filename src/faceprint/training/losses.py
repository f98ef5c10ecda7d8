"""Metric-learning losses on L2-normalised embeddings, mined online within a P x K batch.

Why online mining: FaceNet showed that most triplets of a batch are already satisfied
and teach nothing; the useful ones are the hard ones, found among the batch's own
pairs at no extra forward cost.

* :func:`batch_hard` (Hermans et al. 2017): per anchor, its farthest positive and its
  nearest negative in the batch.
* :func:`semi_hard` (Schroff et al. 2015, FaceNet): per anchor-positive pair, the nearest
  negative that is still farther than the positive (falling back to the farthest
  negative when none is): hard enough to teach, not so hard that label noise dominates.
* :class:`CosFace` (Wang et al. 2018): a margin-based softmax over the training people,
  for comparison; its class weights start at the people's mean embeddings so fine-tuning
  does not begin by destroying what the network knows.

Distances are Euclidean between unit vectors, ``d = sqrt(2 - 2 cos)``; a margin is in
that unit (0.2 there is about 0.02 to 0.1 of cosine similarity near faceprint's
thresholds). Every loss returns :class:`LossOut`, whose ``active`` is the fraction of
triplets (or samples) with a non-zero loss: when it falls toward 0 the batch has
nothing left to teach.
"""

from __future__ import annotations

from dataclasses import dataclass

try:
    import torch
    import torch.nn.functional as F
    from torch import Tensor, nn
except ImportError as exc:  # pragma: no cover - depends on the environment
    from ..errors import MissingExtraError

    raise MissingExtraError(
        "faceprint.training needs PyTorch, which is not installed: pip install 'faceprint[train]'"
    ) from exc

__all__ = ["LOSSES", "CosFace", "LossOut", "batch_hard", "distances", "semi_hard"]

#: The loss names ``faceprint train --loss`` accepts: ``distill`` is the distillation term
#: of :mod:`.finetune` alone (no metric loss).
LOSSES = ("batch-hard", "semi-hard", "cosface", "distill")


@dataclass(frozen=True)
class LossOut:
    """A loss value to back-propagate and the fraction of triplets that contributed."""

    loss: Tensor
    active: float


def distances(emb: Tensor) -> Tensor:
    """``(B, B)`` Euclidean distances between the rows of unit vectors ``emb``.

    Clamped below at 1e-12 before the square root, so the gradient is finite on the
    diagonal and between identical rows.
    """
    sim = emb @ emb.T
    return (2.0 - 2.0 * sim).clamp_min(1e-12).sqrt()


def _masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def batch_hard(emb: Tensor, labels: Tensor, margin: float) -> LossOut:
    """Mean over anchors of ``relu(d(a, hardest p) - d(a, hardest n) + margin)``.

    Anchors without a positive or a negative in the batch are left out; a batch with no
    usable anchor gives a zero loss (still differentiable) and ``active = 0``.
    """
    d = distances(emb)
    pos, neg = _masks(labels)
    usable = pos.any(1) & neg.any(1)
    if not bool(usable.any()):
        return LossOut(emb.sum() * 0.0, 0.0)
    hardest_pos = torch.where(pos, d, torch.zeros_like(d)).amax(1)
    hardest_neg = torch.where(neg, d, torch.full_like(d, 4.0)).amin(1)  # 4 > any distance (<= 2)
    per = F.relu(hardest_pos - hardest_neg + margin)[usable]
    return LossOut(per.mean(), float((per > 0).float().mean()))


def semi_hard(emb: Tensor, labels: Tensor, margin: float) -> LossOut:
    """Mean over anchor-positive pairs of ``relu(d(a, p) - d(a, n) + margin)`` with ``n``
    the nearest negative farther than ``p`` (else the farthest negative)."""
    d = distances(emb)
    pos, neg = _masks(labels)
    a, p = pos.nonzero(as_tuple=True)
    if len(a) == 0 or not bool(neg.any()):
        return LossOut(emb.sum() * 0.0, 0.0)
    d_ap = d[a, p]  # (T,)
    d_an = d[a]  # (T, B): anchor's distance to every sample
    is_neg = neg[a]
    beyond = is_neg & (d_an > d_ap[:, None])
    big = torch.full_like(d_an, 4.0)
    nearest_beyond = torch.where(beyond, d_an, big).amin(1)
    farthest = torch.where(is_neg, d_an, torch.zeros_like(d_an)).amax(1)
    d_neg = torch.where(beyond.any(1), nearest_beyond, farthest)
    keep = is_neg.any(1)
    per = F.relu(d_ap - d_neg + margin)[keep]
    return LossOut(per.mean(), float((per > 0).float().mean()))


class CosFace(nn.Module):
    """Large-margin cosine loss over ``n_classes`` training people.

    ``logits = scale * (cos(emb, w_c) - margin * [c == label])``, cross-entropy; class
    weights are unit vectors, initialised from ``centroids`` (each person's mean
    embedding under the starting network) when given. ``active`` is the fraction of
    samples whose own class does not yet beat every other by the margin.
    """

    def __init__(
        self,
        n_classes: int,
        dim: int,
        scale: float = 30.0,
        margin: float = 0.2,
        centroids: Tensor | None = None,
    ) -> None:
        super().__init__()
        init = centroids if centroids is not None else torch.randn(n_classes, dim)
        if tuple(init.shape) != (n_classes, dim):
            raise ValueError(f"centroids of shape {tuple(init.shape)}, expected {(n_classes, dim)}")
        self.weight = nn.Parameter(F.normalize(init.detach().clone().float(), dim=1))
        self.scale, self.margin = scale, margin

    def forward(self, emb: Tensor, labels: Tensor) -> LossOut:
        cos = emb @ F.normalize(self.weight, dim=1).T
        onehot = F.one_hot(labels, cos.shape[1]).to(cos.dtype)
        logits = self.scale * (cos - self.margin * onehot)
        loss = F.cross_entropy(logits, labels)
        with torch.no_grad():
            own = (cos * onehot).sum(1) - self.margin
            other = torch.where(onehot.bool(), torch.full_like(cos, -2.0), cos).amax(1)
            active = float((own <= other).float().mean())
        return LossOut(loss, active)
