"""Decay arithmetic: exact half-lives, order independence, no decay at an infinite half-life."""
from __future__ import annotations

import doctest
import importlib
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graph_store.decay import add_decayed, decay, decayed_at


@pytest.mark.parametrize("halvings", [0, 1, 2, 3, 10])
def test_each_half_life_halves_the_weight_exactly(halvings):
    assert decay(12.0, halvings * 3_600_000, 3_600_000) == 12.0 / 2**halvings


def test_reading_before_the_reference_time_does_not_grow_the_weight():
    assert decay(5.0, -1_000, 1_000) == 5.0
    assert decayed_at(5.0, t_ref=2_000, now_ms=1_000, half_life_ms=1_000) == 5.0


def test_infinite_half_life_never_decays():
    assert decay(3.0, 10**12, math.inf) == 3.0
    assert add_decayed(3.0, 0, 2.0, 10**12, math.inf) == (5.0, 10**12)
    assert add_decayed(3.0, 10**12, 2.0, 0, math.inf) == (5.0, 10**12)


def test_add_decayed_hand_computed():
    # 4 at t=0, then 1 at t=1000 with h=1000: 4 * 1/2 + 1 = 3, reference moves to 1000.
    assert add_decayed(4.0, 0, 1.0, 1_000, 1_000) == (3.0, 1_000)
    # An older increment is decayed to the reference instead: 3 + 4 * 1/2 = 5.
    assert add_decayed(3.0, 1_000, 4.0, 0, 1_000) == (5.0, 1_000)


increments = st.lists(
    st.tuples(st.floats(0.01, 100), st.integers(0, 10**7)), min_size=1, max_size=30
)


@given(incs=increments, hl=st.sampled_from([1e3, 1e5, 1e6, 1e7, math.inf]), seed=st.integers(0, 2**32))
def test_any_arrival_order_gives_the_closed_form(incs, hl, seed):
    now = max(t for _, t in incs) + 12_345
    expected = math.fsum(inc * 2.0 ** (-(now - t) / hl) for inc, t in incs)
    order = incs[:]
    random.Random(seed).shuffle(order)
    w, t_ref = order[0]
    for inc, ts in order[1:]:
        w, t_ref = add_decayed(w, t_ref, inc, ts, hl)
    assert t_ref == max(t for _, t in incs)
    assert math.isclose(decayed_at(w, t_ref, now, hl), expected, rel_tol=1e-12)


@given(incs=increments, cut=st.integers(0, 30), hl=st.sampled_from([1e4, 1e6, math.inf]))
def test_merging_two_aggregates_equals_one_pass(incs, cut, hl):
    def fold(xs):
        w, t = xs[0]
        for inc, ts in xs[1:]:
            w, t = add_decayed(w, t, inc, ts, hl)
        return w, t

    cut = 1 + cut % len(incs)
    if cut == len(incs):
        return
    whole = fold(incs)
    merged = add_decayed(*fold(incs[:cut]), *fold(incs[cut:]), hl)
    assert merged[1] == whole[1]
    assert math.isclose(merged[0], whole[0], rel_tol=1e-12)


@pytest.mark.parametrize("module", ["graph_store.decay", "graph_store.batch", "graph_store.offsets"])
def test_docstring_examples(module):
    # import_module: the package re-exports ``decay`` the function under the module's name.
    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0
