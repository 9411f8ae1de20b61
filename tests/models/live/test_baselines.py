"""The live baselines, checked against scores computed by hand on a small store."""
from __future__ import annotations

import math

import pytest

from graph_store import MemoryGraphStore, Neighbour, StoreSettings
from stream.events import Follow, Interaction
from models.live.baselines import next_item_transitions, social_followees

HOUR = 3_600_000


@pytest.fixture
def store() -> MemoryGraphStore:
    s = MemoryGraphStore(StoreSettings(half_life_ms=HOUR))
    t = 0
    events = [
        # session A: a -> b -> c ; session B: a -> c ; session C: b -> d (one hour later)
        Interaction("u1", "a", "A", t, "click"), Interaction("u1", "b", "A", t + 1, "click"),
        Interaction("u1", "c", "A", t + 2, "click"),
        Interaction("u2", "a", "B", t, "click"), Interaction("u2", "c", "B", t + 1, "click"),
        Interaction("u3", "b", "C", t + HOUR, "click"), Interaction("u3", "d", "C", t + HOUR + 1, "click"),
        Follow("u4", "u1", t, "follow"), Follow("u4", "u3", t, "follow"),
        Interaction("u4", "x", "D", t + HOUR + 2, "click"),
    ]
    s.apply_many(events)
    return s


def _decay(dt_ms: float) -> float:
    return 2 ** (-dt_ms / HOUR)


def test_next_item_scores_transitions_from_recent_items_by_position(store):
    now = HOUR + 2
    got = dict(next_item_transitions(store, "A", now, k=5, context=2))
    # Session A holds a, b, c (all excluded). Last item c has no out-transitions; b (age 1,
    # weight 0.5) -> c (excluded) and -> d with weight decayed from t=HOUR+1.
    assert set(got) == {"d"}
    assert math.isclose(got["d"], 0.5 * _decay(now - (HOUR + 1)), rel_tol=1e-9)


def test_next_item_backfills_with_trending_below_graph_scores(store):
    trending = [Neighbour("x", 9.0), Neighbour("d", 5.0), Neighbour("z", 1.0)]
    got = next_item_transitions(store, "A", HOUR + 2, k=3, context=2, trending=trending)
    assert [i for i, _ in got] == ["d", "x", "z"]
    assert got[0][1] > got[1][1] > got[2][1] > 0


def test_social_scores_followee_items_by_decayed_weights(store):
    now = HOUR + 2
    got = dict(social_followees(store, "u4", now, k=10, max_followees=10))
    w_u1, w_u3 = _decay(now), _decay(now)  # follows at t=0
    expected = {
        "a": w_u1 * _decay(now - 0), "b": w_u1 * _decay(now - 1) + w_u3 * _decay(now - HOUR),
        "c": w_u1 * _decay(now - 2), "d": w_u3 * _decay(now - HOUR - 1),
    }
    assert got.keys() == expected.keys()  # "x" is excluded: u4 already interacted with it
    for item, score in expected.items():
        assert math.isclose(got[item], score, rel_tol=1e-9), item


def test_unfollow_removes_the_followee_from_social_scores(store):
    store.apply_one(Follow("u4", "u3", HOUR + 3, "unfollow"))
    got = dict(social_followees(store, "u4", HOUR + 3, k=10, max_followees=10))
    assert "d" not in got and set(got) == {"a", "b", "c"}
