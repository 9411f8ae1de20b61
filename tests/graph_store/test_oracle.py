"""Incremental store == closed-form batch build over the same prefix (River-style oracle tests)."""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph_store import StoreSettings
from tests.graph_store.conftest import STORE_KINDS, Follow, Interaction, open_store
from tests.conftest import shared_file
from tests.graph_store.oracle import assert_graph_equal, build_oracle, read_store

USERS = [f"u{i}" for i in range(5)]
ITEMS = [f"i{i}" for i in range(6)]
SESSIONS = [f"s{i}" for i in range(4)]
KINDS = ["view", "click", "cart", "purchase"]

interactions = st.builds(
    Interaction,
    user_id=st.sampled_from(USERS),
    item_id=st.sampled_from(ITEMS),
    session_id=st.sampled_from(SESSIONS),
    ts=st.integers(0, 100_000),
    kind=st.sampled_from(KINDS),
    weight=st.none() | st.just(0.0) | st.floats(0.01, 10),
)
follows = st.builds(
    Follow,
    src_user=st.sampled_from(USERS[:3]),  # few pairs, so ops on one edge interleave
    dst_user=st.sampled_from(USERS[:3]),
    ts=st.integers(0, 100_000),
    op=st.sampled_from(["follow", "follow", "unfollow"]),
)
streams = st.lists(st.one_of(interactions, interactions, follows), max_size=60)
half_lives = st.sampled_from([1_000.0, 25_000.0, 7 * 86_400_000.0, math.inf])


def _splits(n: int, cuts: list[int]) -> list[tuple[int, int]]:
    points = sorted({0, n, *(c % (n + 1) for c in cuts)})
    return list(zip(points, points[1:]))


def _check_stream(kind: str, events, hl: float, cuts: list[int], lag: int, tmp: Path) -> None:
    store_settings = StoreSettings(half_life_ms=hl, session_history=3)
    with open_store(kind, tmp / "graph", store_settings) as store:
        for lo, hi in _splits(len(events), cuts):
            store.apply_many(events[lo:hi])
            if hi == 0:
                continue
            now = max(e.ts for e in events[:hi]) + lag
            assert store.watermark_ms() == now - lag
            assert_graph_equal(read_store(store, now), build_oracle(events[:hi], store_settings, now))


# RocksDB examples cost ~100x more (a DB per example): fewer of them, same properties.
EXAMPLES = {"memory": 150, "rocksdb": 25, "native": 25}


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_event_by_event_equals_oracle_after_every_event(kind):
    @settings(max_examples=EXAMPLES[kind], deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(events=streams, hl=half_lives, lag=st.integers(0, 50_000))
    def check(events, hl, lag):
        with tempfile.TemporaryDirectory() as tmp:
            _check_stream(kind, events, hl, list(range(len(events))), lag, Path(tmp))

    check()


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_random_batch_splits_equal_oracle(kind):
    @settings(max_examples=EXAMPLES[kind], deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(events=streams, hl=half_lives, cuts=st.lists(st.integers(0, 60), max_size=4), lag=st.integers(0, 50_000))
    def check(events, hl, cuts, lag):
        with tempfile.TemporaryDirectory() as tmp:
            _check_stream(kind, events, hl, cuts, lag, Path(tmp))

    check()


@settings(max_examples=40, deadline=None)
@given(events=streams, hl=half_lives)
def test_popularity_is_the_sum_of_incoming_ui_weights(events, hl):
    with open_store("memory", None, StoreSettings(half_life_ms=hl)) as store:
        store.apply_many(events)
        now = store.watermark_ms() or 0
        for n in store.item_popularity(now):
            incoming = store.neighbours("item", n.node_id, "iu", now)
            assert math.isclose(n.weight, math.fsum(x.weight for x in incoming), rel_tol=1e-9)


def _yoochoose(shared_data: Path, n: int) -> list[Interaction]:
    path = shared_file(shared_data, "yoochoose/sessionrec_100k/yoochoose-clicks-100k_train_full.txt")
    events = []
    with path.open() as f:
        assert f.readline().split() == ["SessionId", "ItemId", "Time"]
        for line in f:
            session, item, t = line.split("\t")
            events.append(Interaction(session, item, session, round(float(t) * 1000)))
            if len(events) == n:
                break
    return events


@pytest.mark.data
@pytest.mark.parametrize("kind", STORE_KINDS)
def test_yoochoose_first_10k_rows_equal_oracle(kind, shared_data, tmp_path):
    events = _yoochoose(shared_data, 10_000)
    store_settings = StoreSettings(half_life_ms=86_400_000)
    now = max(e.ts for e in events)
    expected = build_oracle(events, store_settings, now)
    # Counts straight from the rows, independently of the oracle.
    sessions = {e.session_id for e in events}
    assert expected.counts[:3] == (len(sessions), len({e.item_id for e in events}), len(sessions))
    with open_store(kind, tmp_path / "graph", store_settings) as store:
        for lo in range(0, len(events), 2_000):
            stats = store.apply_many(events[lo : lo + 2_000], {("clicks", 0): lo + 2_000})
            assert stats.interactions == len(events[lo : lo + 2_000])
        assert store.committed_offsets() == {("clicks", 0): 10_000}
        assert_graph_equal(read_store(store, now), expected)
    if kind == "memory":  # one by one (cheap in memory) gives the same graph
        with open_store(kind, None, store_settings) as store:
            for e in events:
                store.apply_one(e)
            assert_graph_equal(read_store(store, now), expected)
