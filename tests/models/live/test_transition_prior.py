"""The transition prior: the held-out share it subtracts, its fitted weight, and how the scorer
ranks with it (exact product, ANN candidates, batched and single)."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from graph_store import MemoryGraphStore, StoreSettings
from stream.events import Interaction
from models.live.engine import LiveEngine, LiveSettings
from models.live.refresher import Refresher
from models.live.scorer import GnnScorer, ScorerSettings
from models.live.train import train_bundle
from models.live.transition_prior import (
    fit_joint_prior_weights, held_out_transitions, session_successors, transition_prior_rows,
)
from tests.models.live.conftest import SMALL_CFG as CFG

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HL = 3_600_000


def test_the_held_out_share_is_exactly_what_the_last_clicks_added():
    """Oracle: an edge's weight minus the held-out sessions' shares equals its weight in a store
    that never received those sessions' last clicks."""
    sessions = {"s1": ["a", "b", "c"], "s2": ["x", "b", "c"], "s3": ["a", "b"], "s4": ["c", "c"]}
    events, t = [], 0
    for sid, items in sessions.items():
        for item in items:
            t += 600_000
            events.append(Interaction(f"u-{sid}", item, sid, t, "click"))
    full, partial = MemoryGraphStore(StoreSettings(half_life_ms=HL)), MemoryGraphStore(StoreSettings(half_life_ms=HL))
    full.apply_many(events)
    held = ["s2", "s3", "s4"]
    last_of = {sid: max(i for i, e in enumerate(events) if e.session_id == sid) for sid in held}
    partial.apply_many([e for i, e in enumerate(events) if i not in last_of.values()])
    now = t + 1_000_000
    shares = held_out_transitions(full, held, now)
    assert set(shares) == {("b", "c"), ("a", "b")}  # s4's last two items repeat: no transition
    for (prev, item), share in shares.items():
        assert full.edge_weight("ii", prev, item, now) - share == pytest.approx(
            partial.edge_weight("ii", prev, item, now), abs=1e-12)
    rows = transition_prior_rows([session_successors(full, ["b"], now, 10)], {"c": 0, "a": 1}, 2, shares, ["b"])
    assert rows[0, 0].item() == pytest.approx(torch.log1p(torch.tensor(partial.edge_weight("ii", "b", "c", now))).item())
    assert rows[0, 1].item() == 0.0


def test_joint_fit_keeps_the_plain_model_or_lifts_what_predicts():
    gen = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 30, (200,), generator=gen)
    noise = torch.rand(200, 30, generator=gen) * 0.01
    transitions = torch.zeros(200, 30)
    transitions[torch.arange(200), targets] = 1.0  # the transition prior points at the target
    beta, gamma, table = fit_joint_prior_weights(noise, torch.zeros(30), transitions, targets)
    assert gamma > 0 and table[f"{beta},{gamma}"] > table["0.0,0.0"]
    perfect = noise.clone()
    perfect[torch.arange(200), targets] = 2.0
    assert fit_joint_prior_weights(perfect, torch.rand(30, generator=gen), torch.rand(200, 30, generator=gen),
                                   targets)[:2] == (0.0, 0.0)
    with pytest.raises(ValueError, match="0.0"):
        fit_joint_prior_weights(noise, torch.zeros(30), transitions, targets, grid=(1.0,))


def test_training_records_the_fitted_weight_and_how_many_successors_it_read(trained):
    store, now, bundle = trained
    assert bundle.info["transition_successors"] == CFG.transition_successors
    assert set(bundle.info["prior_fit_mrr@20"]["next_item"]) == {f"{b},{g}" for b in (0.0, 0.1, 0.3, 1.0, 3.0, 10.0)
                                                                 for g in (0.0, 0.1, 0.3, 1.0, 3.0, 10.0)}
    off = train_bundle(store, now, replace(CFG, transition_successors=0))
    assert off.transition_weight() == 0.0 and off.transition_successors == 0
    assert set(off.info["prior_fit_mrr@20"]["next_item"]) == {str(b) for b in (0.0, 0.1, 0.3, 1.0, 3.0, 10.0)}


@pytest.mark.parametrize("ann_threshold", [10**9, 10])
def test_ranking_adds_the_transition_prior_of_the_last_items_successors(trained, ann_threshold):
    """Scores are ``q·e + γ·log(1 + w(last → i))``: an item in both lists moved by exactly that,
    successors absent from the plain list can enter it, and the batched call equals the single."""
    store, now, bundle = trained
    rows = Refresher(bundle).rebuild(store, now).rows
    scorers = {}
    for gamma in (0.0, 1.0):
        b = replace(bundle, info={**bundle.info, "prior_weight": {"next_item": 0.0, "social": 0.0},
                                  "transition_weight": {"next_item": gamma}, "transition_successors": 50})
        scorer = GnnScorer(b, ScorerSettings(ann_threshold=ann_threshold))
        for node_type, (ids, vectors) in rows.items():
            scorer.update(node_type, ids, vectors)
        scorers[gamma] = scorer
    assert scorers[0.0].transition_successors == 0 and scorers[1.0].transition_successors == 50
    sessions = [store.session_items(sid) for sid in store.node_ids("session")[:80]]
    successors = [session_successors(store, items, now, 50) for items in sessions]
    batched = scorers[1.0].recommend_next_many(sessions, 20, successors)
    changed = 0
    for items, succ, many in zip(sessions, successors, batched):
        plain, lifted = scorers[0.0].recommend_next(items, 20), scorers[1.0].recommend_next(items, 20, succ)
        assert [i for i, _ in many] == [i for i, _ in lifted]
        bonus = {i: float(torch.log1p(torch.tensor(w))) for i, w in succ}
        plain_score = dict(plain)
        for item, score in lifted:
            if item in plain_score:
                assert score == pytest.approx(plain_score[item] + bonus.get(item, 0.0), abs=1e-4)
        assert [s for _, s in lifted] == sorted((s for _, s in lifted), reverse=True)
        changed += [i for i, _ in plain] != [i for i, _ in lifted]
    assert changed > 0


def test_the_engine_reads_the_successors_only_when_the_bundle_has_a_transition_prior(trained):
    store, now, bundle = trained
    engine = LiveEngine(LiveSettings(train=CFG), store)
    b = replace(bundle, info={**bundle.info, "transition_weight": {"next_item": 3.0}, "transition_successors": 50})
    engine.install(b, now)
    sid = next(s for s in store.node_ids("session") if store.neighbours("item", store.session_items(s)[-1], "ii", now))
    items = store.session_items(sid)
    assert engine.recommend_next(sid, store.session_user(sid), now, 20) == engine.scorer.recommend_next(
        items, 20, session_successors(store, items, now, 50))
