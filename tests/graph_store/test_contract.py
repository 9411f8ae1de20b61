"""The GraphStore contract, run over every implementation (memory, RocksDB)."""
from __future__ import annotations

import math

import pytest

from graph_store import (
    ApplyStats,
    InvalidEventError,
    InvalidOffsetsError,
    Neighbour,
    StoreClosedError,
    StoreSettings,
    UnknownTypeError,
)
from tests.graph_store.conftest import Follow, Interaction

HL = 1_000.0
SETTINGS = StoreSettings(half_life_ms=HL, session_history=3)


def test_hand_computed_session(make_store):
    store = make_store(SETTINGS)
    stats = store.apply_many(
        [
            Interaction("u1", "a", "s1", 0),
            Interaction("u1", "b", "s1", 1_000),
            Interaction("u1", "a", "s1", 2_000, kind="purchase"),
        ]
    )
    assert stats == ApplyStats(interactions=3, follows=0, skipped=0, new_nodes=4, touched_edges=4)
    # ui(u1, a) = 1 * 2^-2 + 4 = 4.25 at t=2000; ui(u1, b) = 1 * 2^-1.
    assert store.neighbours("user", "u1", "ui", 2_000) == [Neighbour("a", 4.25), Neighbour("b", 0.5)]
    assert store.neighbours("item", "a", "ii", 2_000) == [Neighbour("b", 0.5)]
    assert store.neighbours("item", "a", "ii_rev", 2_000) == [Neighbour("b", 1.0)]
    assert store.neighbours("item", "a", "iu", 3_000) == [Neighbour("u1", 2.125)]
    assert store.edge_weight("ii", "b", "a", 4_000) == 0.25
    assert store.item_popularity(2_000) == [Neighbour("a", 4.25), Neighbour("b", 0.5)]
    assert store.session_items("s1") == ["a", "b", "a"] and store.session_user("s1") == "u1"
    counts = store.counts()
    assert (counts.users, counts.items, counts.sessions, counts.interactions) == (1, 2, 1, 3)
    assert counts.edges == {"ui": 2, "ii": 2, "uu": 0}
    assert store.watermark_ms() == 2_000


def test_reading_before_an_edge_was_updated_gives_its_weight_at_the_update(make_store):
    store = make_store(SETTINGS)
    store.apply_one(Interaction("u", "i", "s", 5_000, kind="cart"))
    assert store.edge_weight("ui", "u", "i", 0) == 2.0
    assert store.edge_weight("ui", "u", "i", 6_000) == 1.0


def test_explicit_weight_overrides_the_kind_weight(make_store):
    store = make_store(StoreSettings(half_life_ms=math.inf, kind_weights={"click": 3.0}))
    store.apply_many([Interaction("u", "i", "s", 0), Interaction("u", "i", "s", 1, weight=0.5)])
    assert store.edge_weight("ui", "u", "i", 10**9) == 3.5
    assert store.item_popularity(10**9) == [Neighbour("i", 3.5)]


def test_neighbours_sort_by_weight_then_id_and_keep_k(make_store):
    store = make_store(StoreSettings(half_life_ms=math.inf))
    store.apply_many([Interaction("u", i, f"s{i}", 0) for i in ("c", "a", "b")] + [Interaction("u", "z", "sz", 0, kind="cart")])
    assert [n.node_id for n in store.neighbours("user", "u", "ui", 0)] == ["z", "a", "b", "c"]
    assert [n.node_id for n in store.neighbours("user", "u", "ui", 0, k=2)] == ["z", "a"]
    assert store.neighbours("user", "u", "ui", 0, k=0) == []
    assert store.neighbours("user", "nobody", "ui", 0) == []
    assert store.degree("user", "u", "ui") == 4 and store.degree("user", "nobody", "ui") == 0
    assert store.edge_weight("ui", "u", "missing", 0) == 0.0


def test_immediate_repeats_are_not_transitions_and_history_is_bounded(make_store):
    store = make_store(SETTINGS)
    store.apply_many([Interaction("u", i, "s", t) for t, i in enumerate("aabcdd")])
    assert store.neighbours("item", "a", "ii", 10) == [Neighbour("b", pytest.approx(2.0 ** (-8 / HL)))]
    assert store.degree("item", "a", "ii") == 1 and store.degree("item", "d", "ii") == 0
    assert store.counts().edges["ii"] == 3  # a->b, b->c, c->d
    assert store.session_items("s") == ["c", "d", "d"]
    assert store.session_items("unknown") == [] and store.session_user("unknown") is None


def test_transitions_continue_across_batches(make_store):
    store = make_store(SETTINGS)
    store.apply_many([Interaction("u", "a", "s", 0)])
    store.apply_many([Interaction("u", "b", "s", 1)])
    store.apply_many([Interaction("v", "c", "s", 2)])
    assert store.edge_weight("ii", "a", "b", 1) == 1.0 and store.edge_weight("ii", "b", "c", 2) == 1.0
    assert store.session_user("s") == "v"
    assert store.session_last_ts("s") == 2 and store.session_last_ts("unknown") is None


def test_follow_rules(make_store):
    store = make_store(SETTINGS)
    stats = store.apply_many(
        [
            Follow("a", "b", 100),
            Follow("a", "b", 50),  # older than the edge: skipped
            Follow("b", "a", 10, "unfollow"),  # absent edge: skipped
            Follow("a", "c", 200),
        ]
    )
    assert (stats.follows, stats.skipped) == (2, 2)
    assert store.neighbours("user", "a", "uu", 1_100) == [Neighbour("c", 2.0 ** -0.9), Neighbour("b", 0.5)]
    assert store.neighbours("user", "b", "uu_rev", 100) == [Neighbour("a", 1.0)]
    stats = store.apply_many([Follow("a", "b", 99, "unfollow"), Follow("a", "c", 200, "unfollow")])
    assert (stats.follows, stats.skipped) == (1, 1)  # unfollow older than the follow is ignored
    assert store.neighbours("user", "c", "uu_rev", 300) == []
    store.apply_one(Follow("a", "b", 1_100))  # a re-follow resets the weight to 1 at its time
    assert store.edge_weight("uu", "a", "b", 1_100) == 1.0
    counts = store.counts()
    assert (counts.edges["uu"], counts.follows, counts.unfollows, counts.users) == (1, 3, 1, 3)


def test_follow_then_unfollow_in_one_batch(make_store):
    store = make_store(SETTINGS)
    stats = store.apply_many([Follow("a", "b", 1), Follow("a", "b", 2, "unfollow"), Follow("a", "c", 3)])
    assert (stats.follows, stats.skipped, stats.touched_edges) == (3, 0, 2)
    assert store.degree("user", "a", "uu") == 1 and store.counts().edges["uu"] == 1


def test_node_indices_are_dense_in_first_sight_order(make_store):
    store = make_store(SETTINGS)
    store.apply_many([Interaction("u2", "x", "s1", 5), Follow("u9", "u2", 1)])
    store.apply_many([Interaction("u1", "y", "s2", 3), Interaction("u2", "x", "s1", 9)])
    assert store.node_ids("user") == ["u2", "u9", "u1"]
    assert [store.node_index("user", u) for u in ("u2", "u9", "u1")] == [0, 1, 2]
    assert store.node_ids("item") == ["x", "y"] and store.node_ids("session") == ["s1", "s2"]
    assert store.node_index("item", "nope") is None
    assert store.has_node("session", "s2") and not store.has_node("user", "x")


def test_many_nodes_keep_index_order(make_store):
    store = make_store(SETTINGS)
    items = [f"i{n}" for n in range(300)]  # > 255: big-endian order must hold across bytes
    store.apply_many([Interaction("u", i, f"s{n}", n) for n, i in enumerate(items)])
    assert store.node_ids("item") == items
    assert store.degree("user", "u", "ui") == 300


def test_offsets_and_watermark_are_committed_with_the_batch(make_store):
    store = make_store(SETTINGS)
    assert store.committed_offsets() == {} and store.watermark_ms() is None
    store.apply_many([Interaction("u", "i", "s", 50)], {("clicks", 0): 10, ("clicks", 1): 3})
    store.apply_many([Interaction("u", "i", "s", 20)], {("clicks", 1): 7})
    store.apply_many([], {("follows", 0): 1})  # an empty batch still commits offsets
    assert store.committed_offsets() == {("clicks", 0): 10, ("clicks", 1): 7, ("follows", 0): 1}
    assert store.watermark_ms() == 50  # an older event does not move it back


def test_a_bad_event_rejects_the_whole_batch(make_store):
    store = make_store(SETTINGS)
    good = Interaction("u", "i", "s", 1)
    for bad, message in [
        (Interaction("u", "i", "s", -1), "ts"),
        (Interaction("u", "i", "s", 1.5), "ts"),
        (Interaction("", "i", "s", 1), "user_id"),
        (Interaction("u", 7, "s", 1), "item_id"),
        (Interaction("u", "i", "s", 1, kind="like"), "kind"),
        (Interaction("u", "i", "s", 1, kind=["click"]), "kind"),
        (Interaction("u", "i", "s", True), "ts"),
        (Interaction("u", "i", "s", 1, weight=-1.0), "weight"),
        (Follow("a", None, 1), "dst_user"),
        (Interaction("u", "i", "s", 1, weight=math.nan), "weight"),
        (Follow("a", "b", 1, op="block"), "op"),
        (object(), "missing attribute"),
    ]:
        with pytest.raises(InvalidEventError, match=message):
            store.apply_many([good, bad], {("t", 0): 2})
    with pytest.raises(InvalidOffsetsError):
        store.apply_many([good], {"t": 2})
    with pytest.raises(InvalidOffsetsError):
        store.apply_many([good], {("t", 0): -1})
    with pytest.raises(InvalidEventError):
        store.apply_many(good)
    assert store.counts().interactions == 0 and store.committed_offsets() == {}
    assert store.node_ids("user") == [] and store.dirty_nodes() == {"user": set(), "item": set(), "session": set()}


def test_str_subclasses_and_int_weights_are_accepted(make_store):
    class Id(str):
        pass

    store = make_store(SETTINGS)
    store.apply_one(Interaction(Id("u"), "i", "s", 1, weight=2))
    assert store.edge_weight("ui", "u", "i", 1) == 2.0


def test_queries_validate_types(make_store):
    store = make_store(SETTINGS)
    with pytest.raises(UnknownTypeError, match="starts at 'user'"):
        store.neighbours("item", "i", "ui", 0)
    with pytest.raises(UnknownTypeError):
        store.neighbours("user", "u", "likes", 0)
    with pytest.raises(UnknownTypeError):
        store.node_ids("shop")
    with pytest.raises(TypeError, match="now_ms"):
        store.neighbours("user", "u", "ui", 1.5)
    with pytest.raises(ValueError, match="k must be"):
        store.item_popularity(0, k=-1)


def test_dirty_nodes_are_marked_in_the_commit_and_cleared_by_id(make_store):
    store = make_store(SETTINGS)
    store.apply_many([Interaction("u", "a", "s", 0), Interaction("u", "b", "s", 1), Follow("x", "y", 0)])
    snapshot = store.dirty_nodes()
    assert snapshot == {"user": {"u", "x", "y"}, "item": {"a", "b"}, "session": {"s"}}
    store.clear_dirty(snapshot)  # take-and-clear, then recompute: later marks survive
    store.apply_many([Interaction("v", "c", "t", 2), Follow("x", "y", 5)])
    assert store.dirty_nodes() == {"user": {"v", "x", "y"}, "item": {"c"}, "session": {"t"}}
    store.clear_dirty({"user": ["v", "x"], "item": ["c"]})  # only the given ids are cleared
    assert store.dirty_nodes() == {"user": {"y"}, "item": set(), "session": {"t"}}
    store.clear_dirty(store.dirty_nodes())
    store.apply_one(Follow("y", "x", 9, "unfollow"))  # skipped: changes nothing, marks nothing
    assert store.dirty_nodes() == {"user": set(), "item": set(), "session": set()}
    with pytest.raises(UnknownTypeError):
        store.clear_dirty({"shop": ["x"]})


def test_to_pyg_matches_the_store(make_store):
    store = make_store(SETTINGS)
    store.apply_many(
        [Interaction("u1", "a", "s1", 0), Interaction("u1", "b", "s1", 1_000), Interaction("u2", "a", "s2", 500),
         Follow("u2", "u1", 0)]
    )
    data = store.to_pyg(2_000)
    assert (data["user"].num_nodes, data["item"].num_nodes, data["session"].num_nodes) == (2, 2, 2)
    ui = data["user", "ui", "item"]
    assert ui.edge_index.tolist() == [[0, 0, 1], [0, 1, 0]] and str(ui.edge_index.dtype) == "torch.int64"
    users, items = store.node_ids("user"), store.node_ids("item")
    expected = [store.edge_weight("ui", users[s], items[d], 2_000) for s, d in ui.edge_index.t().tolist()]
    assert ui.edge_weight.tolist() == pytest.approx(expected, rel=1e-6)
    assert data["item", "ii", "item"].edge_index.tolist() == [[0], [1]]
    uu = data["user", "uu", "user"]
    assert uu.edge_index.tolist() == [[1], [0]] and uu.edge_weight.tolist() == pytest.approx([0.25])
    empty = make_store(SETTINGS).to_pyg(0)
    assert tuple(empty["user", "ui", "item"].edge_index.shape) == (2, 0)


def test_apply_stats_account_for_every_event(make_store):
    store = make_store(SETTINGS)
    events = [Interaction("u", "a", "s", 0), Follow("u", "v", 5), Follow("u", "v", 1, "unfollow"), Interaction("u", "a", "s", 2)]
    stats = store.apply_many(events)
    assert stats.interactions + stats.follows + stats.skipped == len(events)
    assert stats == ApplyStats(interactions=2, follows=1, skipped=1, new_nodes=4, touched_edges=2)


def test_closed_store_refuses_calls(make_store):
    store = make_store(SETTINGS)
    with store:
        store.apply_one(Interaction("u", "i", "s", 0))
    with pytest.raises(StoreClosedError):
        store.counts()
    with pytest.raises(StoreClosedError):
        store.apply_one(Interaction("u", "i", "s", 0))
    store.close()  # closing twice is fine


@pytest.mark.parametrize("half_life", [HL, math.inf])
def test_item_popularity_of_equals_item_popularity(make_store, half_life):
    """The vectorised read the scorer's prior uses, against the per-item one, at several times
    (before, at and after the items' reference times), unknown ids giving 0."""
    store = make_store(StoreSettings(half_life_ms=half_life))
    store.apply_many([Interaction(f"u{k % 3}", f"i{k % 5}", f"s{k % 4}", 100 * k, kind=kind)
                      for k, kind in enumerate(["view", "click", "cart", "purchase"] * 4)])
    ids = [f"i{k}" for k in range(5)] + ["never-seen", "i0"]
    for now in (0, 700, 1_500, 10_000):
        expected = {n.node_id: n.weight for n in store.item_popularity(now)}
        got = store.item_popularity_of(ids, now)
        assert got.dtype.name == "float64" and got.shape == (len(ids),)
        assert got.tolist() == pytest.approx([expected.get(i, 0.0) for i in ids], rel=1e-12, abs=0)
    assert store.item_popularity_of([], 0).shape == (0,)
