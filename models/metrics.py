"""Top-K ranking metrics, computed on tensors of scores.

Conventions (as in the papers we compare with):

* ``hit_rate_at_k`` — fraction of queries whose single target is in the top K. SR-GNN calls
  this P@K; SEFrame calls it HR@K.
* ``mrr_at_k`` — mean of 1/rank of the target, 0 when the target is outside the top K.
* ``recall_at_k`` / ``ndcg_at_k`` — multi-target versions (LightGCN protocol): recall is
  |top-K ∩ targets| / |targets|; NDCG uses binary relevance and the ideal DCG over
  min(|targets|, K) positions.
* ``ndcg_at_k_single`` — NDCG with one target: 1/log2(rank+1) inside the top K.

Ties in scores are broken by item index (lower index first) in every metric, so constant or
degenerate scores cannot earn hits.
"""
from __future__ import annotations

import torch
from torch import Tensor


def _target_rank(scores: Tensor, targets: Tensor) -> Tensor:
    """1-based rank of each target among its row's scores.

    Ties go to the lower item index, as ``topk`` would list them, so a constant score vector
    ranks the target by its index instead of first; NaN scores rank last.
    """
    scores = torch.nan_to_num(scores, nan=float("-inf"))
    target_scores = scores.gather(1, targets.view(-1, 1))
    higher = (scores > target_scores).sum(dim=1)
    index = torch.arange(scores.size(1), device=scores.device).unsqueeze(0)
    tied_before = ((scores == target_scores) & (index < targets.view(-1, 1))).sum(dim=1)
    return higher + tied_before + 1


def hit_rate_at_k(scores: Tensor, targets: Tensor, k: int) -> Tensor:
    """Per-query 0/1 hits. ``scores``: [Q, N]; ``targets``: [Q] item indices."""
    return (_target_rank(scores, targets) <= k).float()


def mrr_at_k(scores: Tensor, targets: Tensor, k: int) -> Tensor:
    """Per-query reciprocal rank, 0 outside the top K."""
    rank = _target_rank(scores, targets).float()
    return torch.where(rank <= k, 1.0 / rank, torch.zeros_like(rank))


def ndcg_at_k_single(scores: Tensor, targets: Tensor, k: int) -> Tensor:
    """Per-query NDCG with one relevant item."""
    rank = _target_rank(scores, targets).float()
    return torch.where(rank <= k, 1.0 / torch.log2(rank + 1.0), torch.zeros_like(rank))


def recall_ndcg_at_k(scores: Tensor, relevant: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Per-query recall@K and NDCG@K for multi-target queries.

    ``relevant``: boolean [Q, N] mask of held-out items. Rows with no relevant item give 0
    for both (callers normally drop such users before scoring). Already-seen training items
    must be excluded by the caller, e.g. by setting their scores to ``-inf``.
    """
    top = scores.topk(k, dim=1).indices
    hits = relevant.gather(1, top).float()  # [Q, K]
    n_rel = relevant.sum(dim=1).float()
    recall = hits.sum(dim=1) / n_rel.clamp(min=1.0)
    discounts = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float, device=scores.device))
    dcg = (hits * discounts).sum(dim=1)
    ideal_len = n_rel.clamp(max=k).long()
    cum = torch.cat([torch.zeros(1, device=scores.device), discounts.cumsum(0)])
    idcg = cum[ideal_len]
    ndcg = torch.where(idcg > 0, dcg / idcg.clamp(min=1e-12), torch.zeros_like(dcg))
    return recall, ndcg
