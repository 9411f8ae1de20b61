"""The embeddings topic's replay rule (workers/runtime/transport/embedding_log.py), blob by blob."""
from __future__ import annotations

import numpy as np
import pytest

from graph_store.embeddings.codec import encode_rows
from workers.runtime.transport.embedding_log import BlobMeta, EmbeddingLog, Position


def _rows(**rows: float) -> bytes:
    ids = sorted(rows)
    return encode_rows({"item": (ids, np.array([[rows[i], rows[i]] for i in ids], np.float32))})


def snap(chain: str, seq: int, **rows: float) -> tuple[BlobMeta, bytes]:
    return BlobMeta("snapshot", chain, seq, f"v{chain}{seq}"), _rows(**rows)


def delta(chain: str, seq: int, **rows: float) -> tuple[BlobMeta, bytes]:
    return BlobMeta("delta", chain, seq, f"v{chain}{seq}"), _rows(**rows)


def _items(update) -> dict[str, float]:
    ids, vectors = update.groups["item"]
    return {i: float(v[0]) for i, v in zip(ids, vectors)}


def test_a_snapshot_then_its_deltas_merge_into_one_update_of_the_newest_values() -> None:
    log = EmbeddingLog()
    assert log.on_blob(*delta("a", 1, x=1)) == "waiting"  # nothing to build on yet
    assert [log.on_blob(*b) for b in (snap("a", 2, x=1, y=1), delta("a", 3, y=2), delta("a", 4, z=3))] == ["staged"] * 3
    update = log.take()
    assert _items(update) == {"x": 1, "y": 2, "z": 3} and update.version == "va4" and update.full
    assert update.position == Position("a", 4) and update.blobs == 3 and log.take() is None


def test_duplicates_are_ignored_and_a_live_reader_skips_the_snapshot_of_a_seq_it_has() -> None:
    log = EmbeddingLog()
    log.on_blob(*snap("a", 1, x=1))
    log.on_blob(*delta("a", 2, x=2))
    log.take()
    assert log.on_blob(*delta("a", 2, x=7)) == "duplicate"
    assert log.on_blob(*snap("a", 2, x=2)) == "duplicate"  # sent beside delta 2: nothing new
    assert log.take() is None


def test_a_gap_stops_staging_until_the_next_snapshot() -> None:
    log = EmbeddingLog()
    log.on_blob(*snap("a", 1, x=1))
    assert log.on_blob(*delta("a", 3, x=3)) == "gap"
    assert log.on_blob(*delta("a", 4, x=4)) == "waiting"
    assert _items(log.take()) == {"x": 1}
    assert log.on_blob(*snap("a", 5, x=5, y=5)) == "staged"
    assert log.on_blob(*delta("a", 6, y=6)) == "staged"
    assert _items(log.take()) == {"x": 5, "y": 6}


def test_a_new_chain_needs_its_snapshot_and_then_replaces_the_old_one() -> None:
    log = EmbeddingLog()
    log.on_blob(*snap("a", 1, x=1))
    log.on_blob(*delta("a", 2, x=2))
    assert log.on_blob(*delta("b", 2, x=9)) == "gap"  # the new chain's snapshot was lost
    assert log.on_blob(*snap("b", 3, x=3)) == "staged"
    assert log.superseded == 2  # a1 and a2, never taken: replaced by b3
    update = log.take()
    assert _items(update) == {"x": 3} and update.position == Position("b", 3) and update.blobs == 1


def test_rows_that_do_not_decode_raise_and_wait_for_a_snapshot() -> None:
    log = EmbeddingLog()
    log.on_blob(BlobMeta("snapshot", "a", 1, "v"), b"\x00\x00\x00\x05[]")
    with pytest.raises(ValueError):
        log.take()
    assert log.on_blob(*delta("a", 2, x=2)) == "waiting"
    assert log.on_blob(*snap("a", 3, x=3)) == "staged"


@pytest.mark.parametrize("meta", [{}, {"kind": "full", "chain": "a", "seq": 1, "version": "v"},
                                  {"kind": "delta", "chain": "a", "seq": 0, "version": "v"},
                                  {"kind": "delta", "chain": "", "seq": 1, "version": "v"},
                                  {"kind": "delta", "chain": "a", "seq": True, "version": "v"}])
def test_meta_that_is_not_the_publishers_is_refused(meta: dict) -> None:
    with pytest.raises(ValueError):
        BlobMeta.parse(meta)
