"""Blobs on a topic (stream/kafka/blobs.py, stream/kafka/blob_topic.py's in-memory side): chunking,
reassembly, checksums, and what a compacting broker may leave of a topic.

The Kafka sink and tail run the same contract on both real brokers in
tests/integration/test_topic_transport.py.
"""
from __future__ import annotations

import asyncio
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.kafka.blob_topic import MemoryTopic, TopicRecord
from stream.kafka.blobs import Blob, BlobAssembler, BlobError, encode_blob


def _replay(records: list[TopicRecord], assembler: BlobAssembler | None = None) -> list[Blob | BlobError]:
    assembler = assembler or BlobAssembler()
    return [out for r in records for out in assembler.on_record(r.offset, r.key, r.value)]


def _topic_with(*blobs: tuple[str, str, bytes], chunk_bytes: int = 10) -> MemoryTopic:
    topic = MemoryTopic(chunk_bytes)
    for key, blob_id, data in blobs:
        asyncio.run(topic.publish(key, blob_id, data, {"version": blob_id}))
    return topic


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=200), chunk_bytes=st.integers(1, 64),
       meta=st.dictionaries(st.text(max_size=5), st.integers(-2**63, 2**63 - 1)))
def test_any_blob_round_trips_through_its_records(data: bytes, chunk_bytes: int, meta: dict) -> None:
    chunks, index = encode_blob("slot/0", "v1", data, meta, chunk_bytes)
    assert all(len(v) <= chunk_bytes + 64 for _, v in chunks)  # each record near the chunk size
    assert (len(chunks) == 0) == (len(data) <= chunk_bytes)  # small blobs travel inline
    records = [TopicRecord(i, k, v) for i, (k, v) in enumerate([*chunks, index])]
    (blob,) = _replay(records)
    assert blob == Blob("slot/0", "v1", data, meta, len(chunks))


def test_chunk_keys_and_index_key_follow_the_slot() -> None:
    chunks, (key, _) = encode_blob("bundle/1", "live-1-ab", b"x" * 25, {}, 10)
    assert [k for k, _ in chunks] == [b"bundle/1/0", b"bundle/1/1", b"bundle/1/2"] and key == b"bundle/1"


def test_a_corrupt_chunk_makes_a_checksum_error_not_a_blob() -> None:
    topic = _topic_with(("bundle/0", "v1", bytes(range(35))))
    k, v = topic.records[1].key, topic.records[1].value
    topic.records[1] = TopicRecord(1, k, v[:-1] + bytes([v[-1] ^ 1]))
    (err,) = _replay(topic.records)
    assert isinstance(err, BlobError) and err.reason == "checksum" and err.id == "v1"


def test_a_missing_chunk_makes_a_missing_chunks_error() -> None:
    topic = _topic_with(("bundle/0", "v1", bytes(range(35))))
    del topic.records[2]
    (err,) = _replay(topic.records)
    assert isinstance(err, BlobError) and err.reason == "missing_chunks" and "[2]" in err.detail


def test_a_chunk_of_another_publication_in_the_same_slot_is_not_mixed_in() -> None:
    """Compaction may leave chunk 3 of an older, longer blob in the slot: it is ignored, and a
    blob whose own chunk was replaced by another publication's is refused."""
    old = _topic_with(("bundle/0", "v1", b"a" * 40))
    new = _topic_with(("bundle/0", "v2", b"b" * 25))
    mixed = [old.records[3], *new.records]  # v1's chunk 3, then v2 whole
    (blob,) = _replay([TopicRecord(i, r.key, r.value) for i, r in enumerate(mixed)])
    assert blob.id == "v2" and blob.data == b"b" * 25
    swapped = [old.records[0], new.records[1], new.records[2], new.records[3]]  # v2 without its chunk 0
    (err,) = _replay([TopicRecord(i, r.key, r.value) for i, r in enumerate(swapped)])
    assert err.reason == "missing_chunks"


@pytest.mark.parametrize("value", [b"", b"Zjunk", b"I\x00\x00\x00\x09{not json", b"C\x00"])
def test_a_malformed_record_is_an_error_value(value: bytes) -> None:
    (err,) = BlobAssembler().on_record(7, b"bundle/0", value)
    assert isinstance(err, BlobError) and err.reason == "malformed" and err.offset == 7


def test_tombstones_are_skipped_and_interleaved_blobs_both_assemble() -> None:
    a = encode_blob("delta/1", "c.1", b"A" * 30, {"n": 1}, 10)
    b = encode_blob("snapshot/0", "c.2", b"B" * 30, {"n": 2}, 10)
    order = [a[0][0], b[0][0], (b"delta/0", None), a[0][1], b[0][1], a[0][2], b[0][2], a[1], b[1]]
    out = _replay([TopicRecord(i, k, v) for i, (k, v) in enumerate(order)])
    assert [(x.key, x.data) for x in out] == [("delta/1", b"A" * 30), ("snapshot/0", b"B" * 30)]


def test_chunks_whose_index_never_comes_are_dropped_and_counted() -> None:
    assembler = BlobAssembler(max_pending=2)
    outs = []
    for n in range(4):
        chunks, _ = encode_blob(f"delta/{n}", f"c.{n}", b"x" * 20, {}, 10)
        for k, v in chunks:
            outs += assembler.on_record(n, k, v)
    assert [e.reason for e in outs] == ["incomplete", "incomplete"] and assembler.pending == 2


def test_compaction_keeps_the_newest_blob_of_each_slot() -> None:
    topic = _topic_with(("bundle/0", "v1", b"1" * 25), ("bundle/1", "v2", b"2" * 25), ("bundle/0", "v3", b"3" * 15))
    blobs = _replay(topic.compacted().records)
    assert [(b.key, b.id) for b in blobs] == [("bundle/1", "v2"), ("bundle/0", "v3")]
    # v1's third chunk survived (v3 has two): it is held, never handed out
    assert hashlib.sha256(blobs[-1].data).digest() == hashlib.sha256(b"3" * 15).digest()


def test_memory_tail_reads_in_fetches_and_says_when_it_is_caught_up() -> None:
    topic = _topic_with(("bundle/0", "v1", b"1" * 25))
    tail = topic.tail(max_records=3)
    first = asyncio.run(tail.fetch())
    assert len(first) == 3 and not tail.caught_up
    assert len(asyncio.run(tail.fetch())) == 1 and tail.caught_up
    assert asyncio.run(tail.fetch()) == [] and tail.caught_up
