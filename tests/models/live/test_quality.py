"""Prequential online quality: each recommendation scored once, against the next click only."""
from __future__ import annotations

import pytest

from models.live.quality import OnlineQuality


def test_hit_rate_and_mrr_follow_the_definition():
    q = OnlineQuality(k=3)
    q.record("s1", "gnn", ["a", "b", "c", "d"])
    assert q.observe("s1", "b").rank == 2          # hit at rank 2
    q.record("s1", "gnn", ["x", "y", "z", "d"])
    assert q.observe("s1", "d").rank is None       # rank 4 is beyond k=3: a miss
    q.record("s2", "transitions", ["d"])
    assert q.observe("s2", "d").rank == 1
    gnn, base = q.stats["gnn"], q.stats["transitions"]
    assert (gnn.scored, gnn.hits) == (2, 1)
    assert gnn.hit_rate == pytest.approx(0.5)
    assert gnn.mrr == pytest.approx((1 / 2 + 0) / 2)
    assert (base.scored, base.hits, base.mrr) == (1, 1, 1.0)


def test_each_recommendation_is_scored_once_and_only_against_its_session():
    q = OnlineQuality(k=20)
    assert q.observe("s1", "a") is None            # nothing sent yet: nothing to score
    q.record("s1", "gnn", ["a"])
    assert q.observe("s2", "a") is None            # another session's click does not count
    assert q.observe("s1", "a").rank == 1
    assert q.observe("s1", "a") is None            # already scored
    assert q.stats["gnn"].scored == 1


def test_the_newest_recommendation_replaces_the_previous_one():
    q = OnlineQuality(k=20)
    q.record("s1", "transitions", ["a"])
    q.record("s1", "gnn", ["b"])
    out = q.observe("s1", "a")
    assert (out.recommender, out.rank) == ("gnn", None)
    assert "transitions" not in q.stats


def test_lru_forgets_the_least_recently_recommended_session():
    q = OnlineQuality(k=20, max_sessions=2)
    q.record("s1", "gnn", ["a"])
    q.record("s2", "gnn", ["a"])
    q.record("s1", "gnn", ["a"])                   # s1 is now the most recent
    q.record("s3", "gnn", ["a"])                   # evicts s2
    assert len(q) == 2
    assert q.observe("s2", "a") is None
    assert q.observe("s1", "a").rank == 1
    assert q.observe("s3", "a").rank == 1


def test_invalid_sizes_are_rejected():
    with pytest.raises(ValueError):
        OnlineQuality(k=0)
    with pytest.raises(ValueError):
        OnlineQuality(max_sessions=0)
