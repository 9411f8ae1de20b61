"""The rows codec that carries embeddings outside the store (graph_store/embeddings/codec.py)."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from graph_store.embeddings.codec import decode_rows, encode_rows

_IDS = st.lists(st.text(min_size=1, max_size=8), max_size=6, unique=True)


@st.composite
def _groups(draw):
    out = {}
    for node_type in draw(st.lists(st.sampled_from(["user", "item", "session"]), unique=True)):
        ids, dim = draw(_IDS), draw(st.integers(1, 5))
        out[node_type] = (ids, draw(arrays(np.float32, (len(ids), dim), elements=st.floats(-1e6, 1e6, width=32))))
    return out


@settings(max_examples=80, deadline=None)
@given(groups=_groups())
def test_rows_round_trip_bit_for_bit(groups) -> None:
    back = decode_rows(encode_rows(groups))
    assert list(back) == list(groups)
    for node_type, (ids, vectors) in groups.items():
        assert back[node_type][0] == ids
        assert back[node_type][1].dtype == np.float32 and np.array_equal(back[node_type][1], vectors)


@pytest.mark.parametrize("cut", [1, 3, 10])
def test_a_buffer_cut_short_or_padded_is_refused(cut: int) -> None:
    raw = encode_rows({"item": (["a", "b"], np.ones((2, 3), np.float32))})
    with pytest.raises(ValueError):
        decode_rows(raw[:-cut])
    with pytest.raises(ValueError):
        decode_rows(raw + b"\x00" * cut)
    with pytest.raises(ValueError):
        decode_rows(struct.pack(">I", 12) + b'[["z",[],1]]')  # an unknown node type
