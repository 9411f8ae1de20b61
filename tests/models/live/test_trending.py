"""The incrementally kept trending list equals the store's popularity ranking after every event."""
from __future__ import annotations

import math
import random

import pytest

from graph_store import MemoryGraphStore, StoreSettings
from models.live.trending import TrendingTop
from stream.events import Interaction

T0 = 1_700_000_000_000


@pytest.mark.parametrize("half_life_ms", [36_000.0, 3_600_000.0, math.inf])
def test_equals_the_store_ranking_after_every_event(half_life_ms: float):
    """Zipf-skewed clicks over 400 items, times drifting forward with some late events and
    many equal weights (ties broken by id, as the store does)."""
    rng = random.Random(7)
    store = MemoryGraphStore(StoreSettings(half_life_ms=half_life_ms))
    top = TrendingTop(store.settings.half_life_ms, capacity=40)
    ts = T0
    for n in range(3000):
        ts += rng.choice((0, 0, 10, 1000, 60_000))
        item = f"i{min(int(rng.paretovariate(1.2)), 400)}"
        at = ts - rng.choice((0, 0, 0, 5_000))  # a late event now and then
        store.apply_one(Interaction(f"u{n % 50}", item, f"s{n % 50}", at, "click"))
        ((w, t),) = store.item_popularity_state([item])
        top.update(item, w, t)
        if n % 7 == 0:
            assert top.top(ts, 20) == store.item_popularity(ts, k=20)
    assert len(top) == 40


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="capacity"):
        TrendingTop(1000.0, 0)


def test_equal_keys_keep_the_smallest_ids_as_the_store_does():
    """Ratings of one day, all with weight 5: the store ranks them by id; so must the members."""
    store = MemoryGraphStore(StoreSettings())
    top = TrendingTop(store.settings.half_life_ms, capacity=10)
    for n in [17, 3, 25, 8, 1, 30, 12, 5, 21, 9, 14, 2, 27, 6, 11]:
        item = f"i{n:02d}"
        store.apply_one(Interaction("u", item, "s", T0, "click", weight=5.0))
        ((w, t),) = store.item_popularity_state([item])
        top.update(item, w, t)
    assert top.top(T0, 10) == store.item_popularity(T0, k=10)
