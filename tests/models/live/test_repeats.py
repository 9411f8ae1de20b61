"""The fitted repeat policy: leave a session's own items out of its answers only where the
held-out clicks say so, and serve exactly the plain ranking minus those items."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from models.live.engine import LiveEngine, LiveSettings
from models.live.prior import fit_prior_weight
from models.live.refresher import Refresher
from models.live.repeats import exclude_seen_rows, fit_exclude_seen, mask_seen_
from models.live.scorer import GnnScorer, ScorerSettings
from tests.models.live.conftest import SMALL_CFG as CFG

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_mask_seen_sets_exactly_the_seen_cells_and_the_serving_mask_agrees():
    gen = torch.Generator().manual_seed(1)
    scores = torch.rand(3, 6, generator=gen)
    seen = [[0, 4], [], [5, 5, 2]]
    masked = mask_seen_(scores.clone(), seen)
    for b in range(3):
        for c in range(6):
            assert masked[b, c].item() == (float("-inf") if c in seen[b] else scores[b, c].item())
    serving = scores.numpy().copy()
    exclude_seen_rows(serving, [[f"i{c}" for c in cols] + ["unknown"] for cols in seen],
                      {f"i{c}": c for c in range(6)})
    assert np.array_equal(serving, masked.numpy())


def _holdout(repeat: bool, n: int = 300, items: int = 40):
    """Held-out clicks whose prefix items score highest; the target is one of them or not."""
    gen = torch.Generator().manual_seed(0)
    seen = [torch.randperm(items, generator=gen)[:3].tolist() for _ in range(n)]
    scores = torch.rand(n, items, generator=gen)
    for b, cols in enumerate(seen):
        scores[b, cols] += 2.0  # the model ranks the session's own items first
    targets = [cols[0] if repeat else next(c for c in range(items) if c not in cols) for cols in seen]
    for b, t in enumerate(targets):
        if not repeat:
            scores[b, t] += 1.0  # right after the session's items
    return scores, seen, torch.tensor(targets)


@pytest.mark.parametrize("repeat", [False, True])
def test_the_fit_excludes_seen_items_only_where_the_targets_are_new(repeat):
    scores, seen, targets = _holdout(repeat)
    prior = torch.rand(scores.size(1), generator=torch.Generator().manual_seed(2))
    beta, table = fit_prior_weight(scores, prior, targets)
    excluded, mrr = fit_exclude_seen(scores.clone(), seen, targets, lambda s: s + beta * prior[None, :])
    assert excluded is (not repeat)
    assert mrr["keep"] == table[str(beta)]  # judged at the fitted weight
    if repeat:  # the target is a seen item: excluding it can only miss
        assert mrr["exclude"] == 0.0
    else:  # at β = 0 every target ranks 4th with its session's items, 1st without
        assert mrr["exclude"] > mrr["keep"]


def test_a_tie_keeps_the_repeats():
    scores = torch.rand(50, 10, generator=torch.Generator().manual_seed(3))
    seen = [[] for _ in range(50)]  # nothing to exclude: both variants score the same
    excluded, mrr = fit_exclude_seen(scores, seen, torch.zeros(50, dtype=torch.long), lambda s: s)
    assert not excluded and mrr["keep"] == mrr["exclude"]


def test_training_records_the_policy_and_both_variants_mrr(trained):
    _, _, bundle = trained
    assert set(bundle.info["exclude_seen"]) == {"next_item"}  # the slice has no follows: no social model
    fit = bundle.info["exclude_seen_fit"]["next_item"]
    assert bundle.exclude_seen("next_item") is (fit["exclude"] > fit["keep"])
    assert not bundle.exclude_seen("social")
    assert "exclude_seen" not in bundle.info["prior_fit_mrr@20"]


@pytest.mark.parametrize("ann_threshold", [10**9, 10])
def test_serving_with_exclusion_is_the_plain_ranking_without_the_sessions_items(trained, ann_threshold):
    """Oracle: the plain top-(k + |session|) list with the session's items removed, cut to k;
    batched equals single, on the exact product and on the ANN path."""
    store, now, bundle = trained
    rows = Refresher(bundle).rebuild(store, now).rows
    scorers = {}
    for exclude in (False, True):
        b = replace(bundle, info={**bundle.info, "prior_weight": {"next_item": 0.0, "social": 0.0},
                                  "transition_weight": {"next_item": 0.0},
                                  "exclude_seen": {"next_item": exclude}})
        scorer = GnnScorer(b, ScorerSettings(ann_threshold=ann_threshold))
        for node_type, (ids, vectors) in rows.items():
            scorer.update(node_type, ids, vectors)
        scorers[exclude] = scorer
    sessions = [store.session_items(sid) for sid in store.node_ids("session")[:80]]
    batched = scorers[True].recommend_next_many(sessions, 20)
    overlapped = 0
    for items, many in zip(sessions, batched):
        single = scorers[True].recommend_next(items, 20)
        plain = scorers[False].recommend_next(items, 20 + len(set(items)))
        expected = [i for i, _ in plain if i not in items][:20]
        assert [i for i, _ in single] == expected
        assert [i for i, _ in many] == expected
        overlapped += any(i in items for i, _ in plain[:20])
    assert overlapped > 0  # the plain answers did hold session items, so the exclusion was exercised


def test_the_engine_reports_each_trainings_policy(trained):
    store, now, _ = trained
    engine = LiveEngine(LiveSettings(train=CFG), store)
    bundle = engine.train_now(now)
    assert engine.stats.exclude_seen == [[k for k in ("next_item", "social") if bundle.exclude_seen(k)]]
