"""A memory store's cached top neighbours equal a full decay-and-rank of the row, read after read."""
from __future__ import annotations

import math
import random

import pytest

from graph_store import MemoryGraphStore, StoreSettings
from graph_store.base import top_decayed
from stream.events import Follow, Interaction

T0 = 1_700_000_000_000


@pytest.mark.parametrize("half_life_ms", [60_000.0, 86_400_000.0, math.inf])
def test_cached_rows_equal_the_whole_row_ranked(half_life_ms: float):
    rng = random.Random(3)
    store = MemoryGraphStore(StoreSettings(half_life_ms=half_life_ms))
    ts = T0
    for n in range(6000):
        ts += rng.choice((0, 0, 50, 5_000))
        u = f"u{rng.randrange(200)}"
        item = f"i{min(int(rng.paretovariate(0.8)), 300)}"
        weight = rng.choice((None, None, 0.0, 3.0))  # zero-weight interactions give zero edges
        if n % 50 == 0:
            store.apply_one(Follow(u, f"u{rng.randrange(40)}", ts, rng.choice(("follow", "unfollow"))))
        store.apply_one(Interaction(u, item, f"s{u}-{n // 200}", ts, "click", weight=weight))
        if n % 5:
            continue
        now = ts - rng.choice((0, 0, 0, 10_000))  # now and then a read from before the latest update
        for node_type, node, edge_type in (("item", f"i{rng.randrange(3)}", "ii"), ("user", u, "ui"),
                                           ("item", f"i{rng.randrange(3)}", "iu"), ("user", u, "uu")):
            k = rng.choice((5, 20, 50))
            got = store.neighbours(node_type, node, edge_type, now, k=k)
            want = top_decayed(store._adj[edge_type].get(node, {}).items(), now, half_life_ms, k)
            assert got == want, (edge_type, node, k)
    assert max(len(r) for r in store._adj["ii"].values()) > 60  # rows large enough to be cached
    assert store._ranked._rows  # and some were
