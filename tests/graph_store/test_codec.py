"""Byte codecs: round trips (Hypothesis) and the ordering properties the store relies on."""
from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graph_store import codec
from graph_store.schema import EDGE_TYPES, NODE_TYPES, SessionState, StoreSettings

ids = st.text(min_size=1, max_size=40)
indices = st.integers(0, 2**32 - 1)
node_types = st.sampled_from(NODE_TYPES)
edge_types = st.sampled_from(list(EDGE_TYPES))


@given(node_types, ids)
def test_node_and_dirty_keys_round_trip(node_type, node_id):
    assert codec.node_key(node_type, node_id).startswith(b"N")
    assert codec.decode_dirty_key(codec.dirty_key(node_type, node_id)) == (node_type, node_id)


@given(node_types, indices, indices)
def test_index_keys_round_trip_and_sort_by_index(node_type, a, b):
    ka, kb = codec.index_key(node_type, a), codec.index_key(node_type, b)
    assert codec.decode_index_key(ka) == (node_type, a)
    assert ka.startswith(codec.index_prefix(node_type))
    assert (ka < kb) == (a < b)


@given(edge_types, indices, indices, indices)
def test_edge_keys_round_trip_and_group_out_edges_by_source(edge_type, src, dst, other):
    key = codec.edge_key(edge_type, src, dst)
    assert codec.decode_edge_key(key) == (edge_type, src, dst)
    assert key.startswith(codec.edge_prefix(edge_type, src)) and key.startswith(codec.edge_prefix(edge_type))
    assert (key < codec.edge_key(edge_type, src, other)) == (dst < other)
    assert codec.edge_prefix(edge_type, src) <= key < codec.prefix_end(codec.edge_prefix(edge_type, src))


@given(st.floats(allow_nan=False), st.integers(-(2**63), 2**63 - 1))
def test_weight_values_round_trip(weight, t_ref):
    value = codec.encode_weight(weight, t_ref)
    assert len(value) == 16 and codec.decode_weight(value) == (weight, t_ref)


weight_values = st.tuples(st.one_of(st.floats(allow_nan=False), st.integers(0, 5)), st.integers(0, 2**63 - 1))


@given(st.dictionaries(st.tuples(indices, indices), weight_values, max_size=30), edge_types, edge_types)
def test_bulk_edge_rows_equal_row_by_row_encoding_in_key_order(edges, edge_type, rev_type):
    values = {src << 32 | dst: v for (src, dst), v in edges.items()}
    heads = (codec.edge_prefix(edge_type), codec.edge_prefix(rev_type))
    (keys, vals), (rev_keys, rev_vals) = codec.encode_weight_rows(heads, values)
    expected = sorted((codec.edge_key(edge_type, s, d), codec.encode_weight(*v)) for (s, d), v in edges.items())
    assert list(zip(keys, vals)) == expected
    expected = sorted((codec.edge_key(rev_type, d, s), codec.encode_weight(*v)) for (s, d), v in edges.items())
    assert list(zip(rev_keys, rev_vals)) == expected
    assert all(type(k) is bytes for k in keys + vals + rev_keys + rev_vals)


@given(st.dictionaries(indices, weight_values, max_size=30))
def test_bulk_popularity_rows_equal_row_by_row_encoding_in_key_order(pop):
    ((keys, vals),) = codec.encode_weight_rows((codec.POP_PREFIX,), pop, width=4)
    assert list(zip(keys, vals)) == sorted((codec.popularity_key(i), codec.encode_weight(*v)) for i, v in pop.items())


@given(ids, st.lists(ids, max_size=25), st.integers(0, 2**63 - 1), st.integers(0, 2**32 - 1))
def test_session_values_round_trip(user, items, last_ts, count):
    state = SessionState(user, tuple(items), last_ts, count)
    assert codec.decode_session(codec.encode_session(state)) == state


@given(ids, st.lists(ids, min_size=1, max_size=5), st.integers(1, 10))
def test_truncated_or_padded_session_values_are_rejected(user, items, cut):
    value = codec.encode_session(SessionState(user, tuple(items), 1, 1))
    for bad in (value[:-cut], value + b"x" * cut):
        with pytest.raises((ValueError, struct.error)):
            codec.decode_session(bad)


@given(st.text(min_size=1, max_size=249), st.integers(0, 2**31 - 1))
def test_offset_keys_round_trip(topic, partition):
    key = codec.offset_key(topic, partition)
    assert key.startswith(codec.OFFSET_PREFIX)
    assert codec.decode_offset_key(key) == (topic, partition)


@given(st.lists(st.integers(0, 2**64 - 1), min_size=9, max_size=9))
def test_counters_round_trip(values):
    counters = dict(zip(codec.COUNTER_FIELDS, values))
    assert codec.decode_counters(codec.encode_counters(counters)) == counters


@pytest.mark.parametrize("half_life", [1.0, 7 * 86_400_000, math.inf])
def test_settings_round_trip(half_life):
    settings = StoreSettings(half_life_ms=half_life, kind_weights={"click": 1.5}, session_history=7)
    assert codec.decode_settings(codec.encode_settings(settings)) == (codec.FORMAT_VERSION, settings)


@given(st.binary(min_size=1, max_size=12), st.binary(max_size=6))
def test_prefix_end_bounds_every_key_with_the_prefix(prefix, suffix):
    if prefix.strip(b"\xff") == b"":
        with pytest.raises(ValueError):
            codec.prefix_end(prefix)
        return
    end = codec.prefix_end(prefix)
    assert prefix < end and prefix + suffix < end
    assert not end.startswith(prefix)


def test_namespaces_do_not_overlap():
    keys = [
        codec.META_SETTINGS, codec.offset_key("t", 0), codec.node_key("user", "u"),
        codec.index_key("user", 0), codec.edge_key("ui", 0, 0), codec.popularity_key(0),
        codec.session_key("s"), codec.dirty_key("user", "u"),
    ]
    assert len({k[:1] for k in keys}) == len(keys)
