"""The popularity prior: its metric, its fitted weight, and how the scorer ranks with it."""
from __future__ import annotations

import math
import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from graph_store import MemoryGraphStore, StoreSettings
from stream.events import Follow, Interaction
from models.live.bundle import ModelBundle
from models.live.prior import PRIOR_GRID, edge_log_popularity, fit_prior_weight, item_log_popularity, mrr_at_k
from models.live.train import LiveTrainConfig, _without_pairs, prior_holdout_size, train_bundle

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


T0 = 1_700_000_000_000
N_SESSIONS, N_USERS, N_ITEMS = 200, 50, 30
SMALL = LiveTrainConfig(dim=8, num_layers=2, lightgcn_epochs=2, srgnn_epochs=1, social_epochs=1, inductive_steps=20)


def _three_click_sessions() -> tuple[list[Interaction | Follow], set[Interaction]]:
    """200 sessions of three clicks (user ``k % 50``), one after the other, plus a follow ring.
    The held-out sessions (:func:`prior_holdout_size`: the last 40) end on an item first seen
    in an earlier session, which their user clicks nowhere else, so dropping those last clicks
    drops exactly their (user, item) edges and no node. Returns the events and those last clicks."""
    rng = random.Random(0)
    n_hold = prior_holdout_size(N_SESSIONS, SMALL)
    firsts = [[2 * k % N_ITEMS, (2 * k + 1) % N_ITEMS] if k < N_ITEMS // 2 else rng.sample(range(N_ITEMS), 2)
              for k in range(N_SESSIONS)]
    clicked: dict[int, set[int]] = {u: set() for u in range(N_USERS)}
    for k, pair in enumerate(firsts):
        clicked[k % N_USERS].update(pair)
    lasts: list[int] = []
    for k in range(N_SESSIONS):
        user = k % N_USERS
        options = [i for i in range(N_ITEMS) if k < N_SESSIONS - n_hold or i not in clicked[user]]
        lasts.append(rng.choice(options))
        clicked[user].add(lasts[-1])
    events: list[Interaction | Follow] = [Follow(f"u{u}", f"u{(u + 1) % N_USERS}", T0, "follow")
                                          for u in range(N_USERS)]
    held: set[Interaction] = set()
    for k in range(N_SESSIONS):
        for j, item in enumerate([*firsts[k], lasts[k]]):
            ev = Interaction(f"u{k % N_USERS}", f"i{item}", f"s{k:03d}", T0 + 60_000 * (k + 1) + 1_000 * j, "click")
            events.append(ev)
            if j == 2 and k >= N_SESSIONS - n_hold:
                held.add(ev)
    return events, held


def _store(events) -> MemoryGraphStore:
    store = MemoryGraphStore(StoreSettings())
    store.apply_many(list(events))
    return store


@pytest.fixture(scope="module")
def sessions_and_bundles():
    """The events, the held-out last clicks, and bundles trained with and without refit and
    with no hold-out at all, over the same store and seed."""
    events, held = _three_click_sessions()
    store, now = _store(events), events[-1].ts  # train_bundle runs on cfg.threads (1)
    return events, held, {"refit": train_bundle(store, now, SMALL),
                          "held_out": train_bundle(store, now, replace(SMALL, prior_refit=False)),
                          "no_prior": train_bundle(store, now, replace(SMALL, prior_holdout=0.0))}


def _weights(bundle: ModelBundle) -> list[torch.Tensor | None]:
    """Every trained tensor of a bundle, None for a model it does not have."""
    out: list[torch.Tensor | None] = [bundle.ego]
    for model in (bundle.srgnn, bundle.social, bundle.inductive):
        out += [None] if model is None else list(model.state_dict().values())
    return out


def _same_weights(a: ModelBundle, b: ModelBundle) -> bool:
    wa, wb = _weights(a), _weights(b)
    return len(wa) == len(wb) and all(x is y is None or (x is not None and y is not None and torch.equal(x, y))
                                      for x, y in zip(wa, wb))


def test_refit_serves_the_models_trained_on_everything_with_the_held_out_weight(sessions_and_bundles):
    """Oracle: with ``prior_refit`` the served weights (LightGCN, SR-GNN, social, new-node
    encoder) are those of a training without any hold-out under the same seed, and the prior's
    weight and fit are those of the models that did not see the held-out sessions."""
    _, _, bundles = sessions_and_bundles
    refit, held_out, no_prior = bundles["refit"], bundles["held_out"], bundles["no_prior"]
    assert refit.social is not None  # the follow ring: all three models are compared
    assert _same_weights(refit, no_prior)
    assert not torch.equal(refit.ego, held_out.ego)
    assert refit.info["prior_refit"] is True and held_out.info["prior_refit"] is False
    assert no_prior.info["prior_refit"] is False
    assert refit.info["prior_weight"] == held_out.info["prior_weight"]
    assert refit.info["prior_fit_mrr@20"] == held_out.info["prior_fit_mrr@20"]
    assert refit.info["prior_fit_mrr@20"]["held_out"] == prior_holdout_size(N_SESSIONS, SMALL)
    assert set(refit.info["prior_fit_mrr@20"]) == {"held_out", "next_item", "social"}
    assert no_prior.info["prior_weight"] == {"next_item": 0.0, "social": 0.0}
    assert 0 < refit.info["prior_fit_seconds"] < refit.info["train_seconds"]


def test_without_refit_the_served_graph_never_saw_the_held_out_clicks(sessions_and_bundles):
    """Oracle: the held-out bundle's LightGCN equals one trained (no hold-out, same seed) on a
    store that never received the held-out sessions' last clicks."""
    events, held, bundles = sessions_and_bundles
    assert len(held) == prior_holdout_size(N_SESSIONS, SMALL)
    trimmed = _store(ev for ev in events if ev not in held)
    oracle = train_bundle(trimmed, events[-1].ts, replace(SMALL, prior_holdout=0.0))
    assert oracle.item_ids == bundles["held_out"].item_ids and oracle.user_ids == bundles["held_out"].user_ids
    assert torch.equal(bundles["held_out"].ego, oracle.ego)
    assert not torch.equal(bundles["refit"].ego, oracle.ego)


def test_the_fits_popularity_is_the_stores_without_the_held_out_clicks(sessions_and_bundles):
    """Oracle: the log-popularity the weight is fitted with (:func:`edge_log_popularity` over
    the training graph) equals the store's over all edges, and over the graph without the
    held-out (user, last item) edges that of a store that never received those clicks."""
    events, held, _ = sessions_and_bundles
    now = events[-1].ts
    full, trimmed = _store(events), _store(ev for ev in events if ev not in held)
    items = full.node_ids("item")
    user_row = {u: i for i, u in enumerate(full.node_ids("user"))}
    item_row = {it: i for i, it in enumerate(items)}
    ui = full.to_pyg(now)["user", "ui", "item"]
    edges, weight = _without_pairs(ui.edge_index, ui.edge_weight,
                                   [(user_row[ev.user_id], item_row[ev.item_id]) for ev in held], len(items))
    everything = edge_log_popularity(ui.edge_index[1], ui.edge_weight, len(items)).numpy()
    without_held = edge_log_popularity(edges[1], weight, len(items)).numpy()
    np.testing.assert_allclose(everything, item_log_popularity(full, items, now), rtol=1e-6)
    np.testing.assert_allclose(without_held, item_log_popularity(trimmed, items, now), rtol=1e-6)
    assert trimmed.node_ids("item") == items
    assert (without_held < everything).sum() == len({ev.item_id for ev in held})


def test_prior_refit_must_be_a_bool():
    with pytest.raises(TypeError, match="prior_refit"):
        LiveTrainConfig(prior_refit="no")  # type: ignore[arg-type]
