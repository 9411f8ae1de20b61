"""Training losses and scoring helpers shared by every model.

All losses return the **mean** over the batch (a 0-dim tensor), so learning rates do not
depend on batch size. Inputs are never modified.

Conventions:

* pairwise losses take ``pos`` and ``neg`` scores of equal shape ``[B]`` (or ``[B, M]`` for
  M negatives per positive, broadcast against ``pos[:, None]`` by the caller);
* ``softmax_cross_entropy`` takes full-catalogue ``logits [B, N]`` and integer ``targets [B]``;
* scoring helpers take query vectors ``[B, d]`` and candidate vectors ``[N, d]`` and return
  ``[B, N]`` scores.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_same_shape(pos: Tensor, neg: Tensor, name: str) -> None:
    if pos.shape != neg.shape:
        raise ValueError(
            f"{name}: positive scores have shape {tuple(pos.shape)} but negative scores "
            f"{tuple(neg.shape)}; pass one negative score per positive (broadcast first)"
        )


def bpr_loss(pos: Tensor, neg: Tensor) -> Tensor:
    r"""Bayesian personalised ranking (Rendle et al. 2009).

    .. math:: \mathcal{L} = -\frac{1}{B}\sum_b \log \sigma(\hat y_{b}^+ - \hat y_{b}^-)

    Computed as ``softplus(neg - pos)``, which is the same value without the overflow of
    ``log(sigmoid(x))`` for large negative ``x``.
    """
    _check_same_shape(pos, neg, "bpr_loss")
    return F.softplus(neg - pos).mean()


def max_margin_loss(pos: Tensor, neg: Tensor, margin: float = 1.0) -> Tensor:
    r"""Hinge / triplet ranking loss: :math:`\frac{1}{B}\sum_b \max(0, m - \hat y_b^+ + \hat y_b^-)`.

    ``margin`` must be non-negative (a negative margin rewards ranking negatives above
    positives).
    """
    if margin < 0:
        raise ValueError(f"max_margin_loss: margin must be >= 0, got {margin}")
    _check_same_shape(pos, neg, "max_margin_loss")
    return torch.clamp(margin - pos + neg, min=0.0).mean()


def softmax_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    r"""Full-softmax next-item loss (SR-GNN, eq. 10).

    .. math:: \mathcal{L} = -\frac{1}{B}\sum_b \log \frac{\exp z_{b,t_b}}{\sum_j \exp z_{b,j}}

    Shapes: ``logits [B, N]`` float, ``targets [B]`` integer indices in ``[0, N)``.
    """
    if logits.dim() != 2 or targets.dim() != 1 or logits.size(0) != targets.size(0):
        raise ValueError(
            f"softmax_cross_entropy: expected logits [B, N] and targets [B], got "
            f"{tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    return F.cross_entropy(logits, targets)


def bce_with_logits(logits: Tensor, labels: Tensor) -> Tensor:
    r"""Pointwise binary cross-entropy on raw scores, labels in {0, 1} (or soft in [0, 1]).

    .. math:: \mathcal{L} = -\frac{1}{n}\sum_i y_i\log\sigma(z_i) + (1-y_i)\log(1-\sigma(z_i))
    """
    _check_same_shape(logits, labels, "bce_with_logits")
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def l2_regularisation(*tensors: Tensor) -> Tensor:
    r"""LightGCN/NGCF-style embedding penalty :math:`\frac{1}{2B}\sum \lVert e\rVert^2`.

    ``B`` is the first dimension of the first tensor (the batch size), as in the reference
    implementations that scale the penalty per batch row.
    """
    if not tensors:
        raise ValueError("l2_regularisation: pass at least one tensor")
    batch = max(tensors[0].size(0), 1)
    return sum(t.pow(2).sum() for t in tensors) / (2.0 * batch)


def dot_scores(queries: Tensor, candidates: Tensor) -> Tensor:
    """Inner-product scores. Shapes: ``queries [B, d]``, ``candidates [N, d]`` → ``[B, N]``."""
    _check_dims(queries, candidates, "dot_scores")
    return queries @ candidates.t()


def cosine_scores(queries: Tensor, candidates: Tensor, eps: float = 1e-12) -> Tensor:
    """Cosine similarity; zero vectors score 0 against everything. ``[B, d] × [N, d] → [B, N]``."""
    _check_dims(queries, candidates, "cosine_scores")
    q = F.normalize(queries, dim=1, eps=eps)
    c = F.normalize(candidates, dim=1, eps=eps)
    return q @ c.t()


def _check_dims(queries: Tensor, candidates: Tensor, name: str) -> None:
    if queries.dim() != 2 or candidates.dim() != 2 or queries.size(1) != candidates.size(1):
        raise ValueError(
            f"{name}: expected queries [B, d] and candidates [N, d] with the same d, got "
            f"{tuple(queries.shape)} and {tuple(candidates.shape)}"
        )
