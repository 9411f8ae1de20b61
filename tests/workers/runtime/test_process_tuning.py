"""The worker process settings: native thread defaults and the heap freezer's schedule."""
from __future__ import annotations

import gc

import pytest

from workers.runtime.process_tuning import NATIVE_THREAD_VARS, HeapFreezer, limit_native_threads


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()  # later tests get a normal collector back


def test_limit_native_threads_sets_defaults_and_keeps_explicit_values(monkeypatch):
    for name in NATIVE_THREAD_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    limit_native_threads()
    import os
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    assert os.environ["MKL_NUM_THREADS"] == "1"
    assert os.environ["OMP_NUM_THREADS"] == "3"  # the operator's value wins


def test_freezer_waits_for_catch_up_then_refreezes_on_schedule(unfrozen):
    now = [100.0]
    freezer = HeapFreezer(60.0, clock=lambda: now[0], after_full_collections=False)
    assert not freezer.maybe_freeze(caught_up=False)
    assert gc.get_freeze_count() == 0
    assert freezer.maybe_freeze(caught_up=True)
    first = gc.get_freeze_count()
    assert first > 0  # the start-up heap is out of the collector's walks
    keep = [[i] for i in range(1000)]  # new long-lived containers
    now[0] += 59.0
    assert not freezer.maybe_freeze(caught_up=True)
    assert gc.get_freeze_count() == first
    now[0] += 2.0
    assert not freezer.maybe_freeze(caught_up=False)  # due, but still replaying
    assert freezer.maybe_freeze(caught_up=True)
    assert gc.get_freeze_count() >= first + len(keep)
    assert freezer.freezes == 2


def test_freezer_rejects_a_non_positive_interval():
    with pytest.raises(ValueError, match="interval_s"):
        HeapFreezer(0)


def test_freezer_freezes_what_survived_each_full_collection(unfrozen):
    """After the first freeze, a full collection the interpreter runs marks the survivors as
    long-lived: the next call freezes them (without collecting again), so the following full
    collection does not walk them; unhooked by close()."""
    now = [0.0]
    freezer = HeapFreezer(600.0, clock=lambda: now[0])
    try:
        assert freezer.maybe_freeze(caught_up=True)
        first = gc.get_freeze_count()
        keep = [[i] for i in range(1000)]
        assert not freezer.maybe_freeze(caught_up=True)  # nothing due: no full collection yet
        gc.collect(1)
        assert not freezer.maybe_freeze(caught_up=True)  # a young collection is not enough
        gc.collect(2)
        assert not freezer.maybe_freeze(caught_up=False)  # never while replaying
        assert freezer.maybe_freeze(caught_up=True)
        assert gc.get_freeze_count() >= first + len(keep)
        assert not freezer.maybe_freeze(caught_up=True)  # once per full collection
        assert freezer.freezes == 2
    finally:
        freezer.close()
    assert freezer._on_gc not in gc.callbacks
    gc.collect(2)
    assert not freezer.maybe_freeze(caught_up=True)
