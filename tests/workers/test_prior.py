"""The popularity prior: its metric, its fitted weight, and how the scorer ranks with it."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from graph_store import MemoryGraphStore, StoreSettings
from stream.events import Interaction
from workers.live.prior import PRIOR_GRID, fit_prior_weight, item_log_popularity, mrr_at_k
from workers.live.train import _without_pairs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_mrr_counts_ties_against_the_target_and_drops_ranks_past_k():
    scores = torch.tensor([[0.9, 0.5, 0.5, 0.1],   # target 1 ties with item 2: rank 3
                           [0.1, 0.2, 0.3, 0.4],   # target 3 first: rank 1
                           [0.4, 0.3, 0.2, 0.1]])  # target 3 last: rank 4
    targets = torch.tensor([1, 3, 3])
    assert mrr_at_k(scores, targets, k=20) == pytest.approx((1 / 3 + 1 + 1 / 4) / 3)
    assert mrr_at_k(scores, targets, k=3) == pytest.approx((1 / 3 + 1) / 3)


def test_fit_keeps_no_prior_when_the_model_already_ranks_the_targets_first():
    gen = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 50, (200,), generator=gen)
    scores = torch.rand(200, 50, generator=gen)
    scores[torch.arange(200), targets] = 2.0  # every target on top
    prior = torch.rand(50, generator=gen) * 5
    beta, table = fit_prior_weight(scores, prior, targets)
    assert beta == 0.0
    assert table["0.0"] == pytest.approx(1.0)
    assert set(table) == {str(b) for b in PRIOR_GRID}


def test_fit_picks_a_large_weight_when_only_popularity_predicts():
    gen = torch.Generator().manual_seed(1)
    popularity = torch.linspace(10.0, 0.0, 40)
    # targets drawn from the popularity, model scores pure noise
    targets = torch.multinomial(torch.softmax(popularity, 0), 300, replacement=True, generator=gen)
    scores = torch.rand(300, 40, generator=gen) * 0.01
    beta, table = fit_prior_weight(scores, torch.log1p(popularity), targets)
    assert beta > 0
    assert table[str(beta)] > table["0.0"]


def test_fit_needs_zero_in_the_grid():
    with pytest.raises(ValueError, match="0.0"):
        fit_prior_weight(torch.zeros(1, 2), torch.zeros(2), torch.tensor([0]), grid=(1.0, 3.0))


def test_item_log_popularity_follows_the_stores_decayed_counts():
    hl = 3_600_000
    store = MemoryGraphStore(StoreSettings(half_life_ms=hl))
    t0 = 1_700_000_000_000
    store.apply_many([Interaction("u1", "a", "s1", t0, "click"), Interaction("u2", "a", "s2", t0, "click"),
                      Interaction("u1", "b", "s1", t0 + hl, "click")])
    now = t0 + hl
    prior = item_log_popularity(store, ["b", "zzz", "a"], now)
    w = store.settings.kind_weights["click"]
    assert prior.dtype == np.float32
    np.testing.assert_allclose(prior, [math.log1p(w), 0.0, math.log1p(2 * w * 0.5)], rtol=1e-6)


def test_held_out_pairs_leave_the_training_graph_and_nothing_else_does():
    edge_index = torch.tensor([[0, 0, 1, 2], [1, 3, 1, 0]])
    weight = torch.tensor([1.0, 2.0, 3.0, 4.0])
    edges, w = _without_pairs(edge_index, weight, [(0, 3), (2, 0)], n_items=4)
    assert edges.tolist() == [[0, 1], [1, 1]]
    assert w.tolist() == [1.0, 3.0]
    same, w_same = _without_pairs(edge_index, weight, [], n_items=4)
    assert same is edge_index and w_same is weight
