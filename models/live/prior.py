"""A decayed-popularity prior on the GNN scores, with its weight fitted at training time.

The served score of item ``i`` is ``q·e_i + β·log(1 + pop_i)``, where ``pop_i`` is the item's
popularity in the graph store, decayed to the time of the last refresh. Decay is what makes the
prior follow the season: the same model then ranks what is popular *now* higher, which the
session and social encoders (trained on a frozen snapshot) cannot do on their own. Between two
refreshes every stored popularity decays by the same factor, so its log moves by a constant and
the ranking is unchanged: refreshing the prior with the embeddings is enough.

``β`` is fitted per model when the bundle is trained: on held-out recent sessions (their last
click, the model not trained on those sessions), the weight of a small grid with the best
MRR@20 wins; ``0`` (no prior) is in the grid, so a dataset where popularity does not help keeps
the plain model. The popularity the fit scores with leaves out the held-out (user, last item)
edges, as LightGCN's training graph does (:func:`edge_log_popularity` over that graph): a
served prior never holds the click it is predicting, and counting it would lift every held-out
target (a rare item most: ``log 2`` instead of ``0``), which on a sparse catalogue picked
weights that hurt the served model.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from graph_store import GraphStore

PRIOR_GRID: tuple[float, ...] = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0)


def item_log_popularity(store: GraphStore, item_ids: Sequence[str], now_ms: int) -> np.ndarray:
    """``log(1 + pop)`` of each id at ``now_ms`` (0 for an item without popularity), float32."""
    return np.log1p(store.item_popularity_of(item_ids, now_ms)).astype(np.float32)


def edge_log_popularity(items: Tensor, weight: Tensor, n_items: int) -> Tensor:
    """``log(1 + pop) [n_items]`` from user→item edges (item column ``items [E]``, decayed
    ``weight [E]``): an item's popularity is the sum of its edges' weights, so over the store's
    edges this is :func:`item_log_popularity`, and over a graph without some edges it is the
    popularity those edges' clicks never added to."""
    pop = torch.zeros(n_items, dtype=torch.float64).index_add_(0, items, weight.to(torch.float64))
    return torch.log1p(pop).to(torch.float32)


def mrr_at_k(scores: Tensor, targets: Tensor, k: int = 20) -> float:
    """MRR@k of ``scores [B, I]`` for ``targets [B]`` (ties count against the target)."""
    target_score = scores.gather(1, targets[:, None])
    rank = (scores >= target_score).sum(1)  # the target itself included: ties rank it last
    hit = rank <= k
    return float((hit.float() / rank.float()).mean()) if len(targets) else 0.0


def fit_prior_weight(scores: Tensor, prior: Tensor, targets: Tensor,
                     grid: Sequence[float] = PRIOR_GRID, k: int = 20) -> tuple[float, dict[str, float]]:
    """The grid weight with the best MRR@k of ``scores + β·prior`` (the smallest on ties).

    ``scores [B, I]`` are a model's held-out scores, ``prior [I]`` the log-popularity, ``targets
    [B]`` the held-out next items (column indices). Returns ``(β, {str(β): mrr})``.
    """
    if not grid or 0.0 not in grid:
        raise ValueError(f"the grid must contain 0.0 (the model without prior), got {tuple(grid)}")
    table = {str(b): mrr_at_k(scores + b * prior[None, :], targets, k) for b in sorted(grid)}
    best = max(sorted(grid), key=lambda b: (table[str(b)], -b))
    return best, table


def holdout_scores(score_batch: Callable[[list[int]], Tensor], n_holdout: int, *, batch: int = 512) -> Tensor:
    """``[n_holdout, I]`` scores of the held-out examples, ``batch`` at a time by
    ``score_batch(indices) -> [len(indices), I]`` (no gradients)."""
    with torch.no_grad():
        return torch.cat([score_batch(list(range(s, min(s + batch, n_holdout))))
                          for s in range(0, n_holdout, batch)])

