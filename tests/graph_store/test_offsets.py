"""Replay filtering: no loss and no double count when a consumer resumes from stored offsets."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from graph_store import filter_replays, next_offsets
from tests.graph_store.conftest import Record


def test_drops_records_below_the_committed_next_offset_of_their_partition():
    records = [Record("a", 0, 3), Record("a", 0, 4), Record("a", 1, 0), Record("b", 0, 9)]
    kept = filter_replays(records, {("a", 0): 4, ("a", 1): 1})
    assert kept == [Record("a", 0, 4), Record("b", 0, 9)]  # unknown partitions keep everything


def test_next_offsets_is_last_offset_plus_one_per_partition():
    records = [Record("a", 0, 3), Record("a", 1, 7), Record("a", 0, 5)]
    assert next_offsets(records) == {("a", 0): 6, ("a", 1): 8}
    assert next_offsets([]) == {}


@given(
    lengths=st.lists(st.integers(0, 30), min_size=1, max_size=4),
    applied=st.lists(st.integers(0, 30), min_size=4, max_size=4),
    rewind=st.lists(st.integers(0, 30), min_size=4, max_size=4),
)
def test_resuming_after_any_prefix_applies_each_record_exactly_once(lengths, applied, rewind):
    log = {("t", p): [Record("t", p, o) for o in range(n)] for p, n in enumerate(lengths)}
    done = {tp: recs[: applied[p] % (len(recs) + 1)] for p, (tp, recs) in enumerate(log.items())}
    committed = next_offsets(r for recs in done.values() for r in recs)
    # The consumer is redelivered from an earlier position than committed (a rebalance).
    redelivered = [
        r for p, (tp, recs) in enumerate(log.items())
        for r in recs[max(0, len(done[tp]) - rewind[p]) :]
    ]
    resumed = filter_replays(redelivered, committed)
    everything = [r for recs in done.values() for r in recs] + resumed
    assert sorted(everything, key=lambda r: (r.partition, r.offset)) == [r for recs in log.values() for r in recs]
