"""A decayed-transition prior on the next-item scores, with its weight fitted at training time.

The served next-item score of item ``i`` for a session whose last item is ``j`` is

    ``q·e_i + β·log(1 + pop_i) + γ·log(1 + w(j → i))``

where ``w(j → i)`` is the store's item→item transition weight, decayed to the time of the
request (the ``M`` strongest successors of ``j``; every other item gets 0). This is what lets
decay reach the GNN: SR-GNN and LightGCN are trained on a snapshot and refreshed from it, so
when the *order* in which items are clicked drifts (an item's successors turn over with the
season), only the live graph knows which successors are current; with decay the old ones fade,
without it they keep their counts. The same weights are the ``transitions`` baseline's.

``β`` and ``γ`` are fitted together on the held-out recent sessions that fit the popularity
prior (:mod:`models.live.prior`): the pair of the grid with the best MRR@20 of their last
click wins, ``(0, 0)`` (the plain model) included. The transitions the fit reads leave out
every held-out session's last transition (the click being predicted, and the other held-out
ones): each was added to its edge at its session's last event time with increment 1, so its
share of the decayed weight now is exactly ``2^{-(now - t)/h}``, subtracted here.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from graph_store import GraphStore
from models.live.prior import PRIOR_GRID, mrr_at_k

Successors = list[tuple[str, float]]


def session_successors(store: GraphStore, session_items: Sequence[str], now_ms: int, k: int) -> Successors:
    """The ``k`` strongest decayed successors ``(item, weight)`` of the session's last item."""
    if not session_items or k <= 0:
        return []
    return [(n.node_id, n.weight) for n in store.neighbours("item", session_items[-1], "ii", now_ms, k=k)]


def held_out_transitions(store: GraphStore, session_ids: Sequence[str], now_ms: int) -> dict[tuple[str, str], float]:
    """``(prev, last) -> share of that edge's weight at now_ms`` added by each session's last
    transition (none where the session's last two items repeat: not a transition)."""
    states = [store.session_state(sid) for sid in session_ids]
    return last_transition_shares([(s.items, s.last_ts) for s in states if s is not None], now_ms,
                                  store.settings.half_life_ms)


def last_transition_shares(sessions: Iterable[tuple[Sequence[str], int]], now_ms: int,
                           half_life_ms: float) -> dict[tuple[str, str], float]:
    """:func:`held_out_transitions` of sessions given as ``(items oldest first, last event time)``."""
    shares: dict[tuple[str, str], float] = {}
    for items, ts in sessions:
        if len(items) < 2 or items[-2] == items[-1]:
            continue
        share = 1.0 if half_life_ms == math.inf else 2.0 ** (-max(0, now_ms - ts) / half_life_ms)
        key = (items[-2], items[-1])
        shares[key] = shares.get(key, 0.0) + share
    return shares


def transition_prior_rows(successors: Sequence[Successors], item_col: dict[str, int], n_items: int,
                          without: dict[tuple[str, str], float] | None = None,
                          prev: Sequence[str] | None = None) -> Tensor:
    """``log(1 + w) [B, n_items]`` from each row's successors (dense: for a fit over a few
    thousand held-out clicks); ``without[(prev[b], item)]`` is taken off first."""
    out = torch.zeros(len(successors), n_items, dtype=torch.float32)
    for b, succ in enumerate(successors):
        for item, w in succ:
            col = item_col.get(item)
            if col is None:
                continue
            if without is not None and prev is not None:
                w = w - without.get((prev[b], item), 0.0)
            if w > 1e-12:
                out[b, col] = math.log1p(w)
    return out


def fit_joint_prior_weights(scores: Tensor, popularity: Tensor, transitions: Tensor, targets: Tensor,
                            grid: Sequence[float] = PRIOR_GRID, k: int = 20) -> tuple[float, float, dict[str, float]]:
    """The grid pair ``(β, γ)`` with the best MRR@k of ``scores + β·popularity + γ·transitions``
    (on ties the smaller ``γ``, then the smaller ``β``); returns ``(β, γ, {"β,γ": mrr})``."""
    if not grid or 0.0 not in grid:
        raise ValueError(f"the grid must contain 0.0 (the model without prior), got {tuple(grid)}")
    table: dict[str, float] = {}
    best, best_key = (0.0, 0.0), None
    for g in sorted(grid):
        shifted = scores + g * transitions if g else scores
        for b in sorted(grid):
            mrr = mrr_at_k(shifted + b * popularity[None, :], targets, k)
            table[f"{b},{g}"] = mrr
            key = (mrr, -g, -b)
            if best_key is None or key > best_key:
                best, best_key = (b, g), key
    return best[0], best[1], table


def add_transition_bonus(scores: np.ndarray, successors: Sequence[Successors | None], item_row: dict[str, int],
                         gamma: float) -> None:
    """``scores [B, n] += γ·log(1 + w)`` at each row's successors, in place (serving: one
    fancy-indexed add for the batch; a row's successors are distinct items)."""
    n = scores.shape[1]
    get = item_row.get
    rows: list[int] = []
    cols: list[int] = []
    weights: list[float] = []
    for b, succ in enumerate(successors):
        if not succ:
            continue
        for item, w in succ:
            r = get(item)
            if r is not None and r < n:
                cols.append(r)
                weights.append(w)
        rows.extend([b] * (len(cols) - len(rows)))
    if cols:
        bonus = np.log1p(np.array(weights, dtype=np.float32))
        bonus *= np.float32(gamma)
        scores[np.array(rows, dtype=np.intp), np.array(cols, dtype=np.intp)] += bonus
