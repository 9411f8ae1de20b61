"""Chunked fetch: the kernel's Kafka record-batch reader against aiokafka's own, the fetcher
hook, and the ingest step fed chunks against the same step fed records.

Record batches are built with aiokafka's own builder (which computes the CRC-32C), so the
reference for every field is aiokafka's parser over the same bytes.
"""
from __future__ import annotations

import random
import struct

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from graph_store import StoreSettings
from graph_store.rocksdb.native import NativeRocksDBGraphStore, kafka_records
from stream.events.badinput import malformed_samples
from stream.events import INTERACTION_KINDS, SCHEMA_VERSION, Follow, Interaction, ValidationLimits, encode
from stream.kafka.topics import TopicSettings
from tests.graph_store.conftest import require_native
from stream.kafka import chunks as kafka_chunks
from workers.runtime.decode import IngestCore, chunk_records
from stream.kafka.chunks import RAW_CHUNKS, Chunk
from stream.kafka.batch_consumer import RawRecord

pytestmark = pytest.mark.usefixtures("native_built")

NOW = 1_700_000_000_000
LIMITS = ValidationLimits(max_bytes=2_048, max_future_skew_ms=60_000, max_id_len=40)
TOPICS = TopicSettings()
GZIP = 1  # the record batch attributes codec


@pytest.fixture
def native_built():
    require_native()


def batch(base_offset: int, records: list[tuple[int, int | None, bytes | None, bytes | None]],
          compression: int = 0, headers: bool = False) -> bytes:
    """One v2 record batch: ``records`` as ``(offset delta, timestamp, key, value)``."""
    b = DefaultRecordBatchBuilder(magic=2, compression_type=compression, is_transactional=0, producer_id=-1,
                                  producer_epoch=-1, base_sequence=-1, batch_size=1 << 30)
    for delta, ts, key, value in records:
        b.append(delta, timestamp=ts, key=key, value=value, headers=[("h", b"x")] if headers else [])
    raw = bytearray(b.build())
    struct.pack_into(">q", raw, 0, base_offset)  # the broker's part, outside the CRC
    return bytes(raw)


def aiokafka_records(buf: bytes, fetch_offset: int) -> list[tuple[int, int, bytes | None, bytes | None]]:
    out, mr = [], MemoryRecords(buf)
    while mr.has_next():
        for r in mr.next_batch():
            if r.offset >= fetch_offset:
                out.append((r.offset, r.timestamp, r.key, r.value))
    return out


blobs = st.one_of(st.none(), st.binary(max_size=40))
batches = st.lists(st.lists(st.tuples(st.integers(0, 2**41), blobs, blobs), min_size=1, max_size=6),
                   min_size=1, max_size=5)


@settings(max_examples=200, deadline=None)
@given(spec=batches, cut=st.integers(0, 80), skip=st.integers(0, 8), headers=st.booleans())
def test_the_kernel_reads_every_record_as_aiokafka_does(spec, cut, skip, headers):
    parts, offset = [], 100
    for recs in spec:
        parts.append(batch(offset, [(k, NOW + ts, key, value) for k, (ts, key, value) in enumerate(recs)],
                           headers=headers))
        offset += len(recs)
    buf = b"".join(parts)
    buf = buf[:len(buf) - cut] if cut else buf  # a fetch may end inside a batch: that one is left out
    fetch_offset = 100 + skip
    assert kafka_records(buf, fetch_offset) == aiokafka_records(buf, fetch_offset)


def test_a_corrupt_batch_is_refused_and_a_compressed_one_is_left_to_aiokafka():
    good = batch(0, [(0, NOW, b"k", b"v")])
    flipped = bytearray(good)
    flipped[good.rindex(b"v")] ^= 1  # b"v" -> b"w"
    with pytest.raises(ValueError, match="CRC-32C"):
        kafka_records(bytes(flipped), 0)
    assert kafka_records(bytes(flipped), 0, check_crc=False) == [(0, NOW, b"k", b"w")]
    gz = batch(0, [(0, NOW, b"k", b"v" * 50)], compression=GZIP)
    with pytest.raises(ValueError, match="compressed"):
        kafka_records(gz, 0)
    assert kafka_chunks._scan(good + gz, 0, False) is None  # the whole fetch goes through aiokafka
    assert kafka_chunks._scan(good + good[:30], 0, False) == 1  # the cut batch comes next time


def _store(tmp_path) -> NativeRocksDBGraphStore:
    store = NativeRocksDBGraphStore(tmp_path / f"g{random.random()}", StoreSettings())
    store.configure_wire(sorted(INTERACTION_KINDS), LIMITS.max_id_len, LIMITS.max_bytes, SCHEMA_VERSION)
    return store


def _payloads() -> list[bytes | None]:
    good = [encode(Interaction(f"u{k % 3}", f"i{k}", f"s{k % 2}", NOW + k, "click")) for k in range(12)]
    bad = [raw for _reason, raw in malformed_samples(now_ms=NOW, limits=LIMITS)][:6]
    out: list[bytes | None] = good[:4] + bad[:3] + good[4:8] + [None] + bad[3:] + good[8:]
    return out


def test_staging_a_chunk_stages_what_staging_its_payloads_does(tmp_path):
    values = _payloads()
    buf = batch(40, [(k, NOW, b"key", v) for k, v in enumerate(values[:10])]) + \
        batch(50, [(k, NOW, b"key", v) for k, v in enumerate(values[10:])])
    by_payload, by_chunk = _store(tmp_path), _store(tmp_path)
    try:
        kept = values[3:]  # offsets 40..42 are below the stored offset 43: replays
        expected = by_payload.stage_raw(kept, NOW + 60_000)
        deferred, n_kept, skipped, last = by_chunk.stage_kafka(buf, 41, 43, NOW + 60_000)
        assert (n_kept, skipped, last) == (len(kept), 2, 40 + len(values) - 1)  # offset 40 is below the fetch
        assert [(off - 43, pos) for off, _ts, _key, _value, pos in deferred] == expected
        assert [value for *_, value, _pos in deferred] == [kept[i] for i, _ in expected]
        assert by_chunk._kernel.staged_events() == by_payload._kernel.staged_events()
    finally:
        by_payload.close()
        by_chunk.close()


def _prepare(tmp_path, parts, committed):
    store = _store(tmp_path)
    try:
        core = IngestCore(TOPICS, LIMITS, "test")
        prepared = core.prepare_partitions(parts, committed, NOW, stage=store)
        return prepared, store._kernel.staged_events()
    finally:
        store.discard_staged()
        store.close()


def test_the_ingest_step_fed_chunks_equals_the_step_fed_records(tmp_path):
    values = _payloads()
    follows = [encode(Follow("u1", "u2", NOW, "follow")), b"{bad", encode(Follow("u2", "u1", NOW + 1, "unfollow"))]
    inter = batch(0, [(k, NOW + k, f"u{k}".encode(), v) for k, v in enumerate(values)])
    fol = batch(7, [(k, NOW, b"u1", v) for k, v in enumerate(follows)])
    chunked = {("interactions", 0): [Chunk(inter, 0, len(values), True)],
               ("follows", 1): [Chunk(fol, 7, 10, True)]}
    plain = {tp: chunk_records(tp, chunks[0]) for tp, chunks in chunked.items()}
    assert [r.offset for r in plain[("follows", 1)]] == [7, 8, 9]
    committed = {("interactions", 0): 2}
    a, staged_a = _prepare(tmp_path, chunked, committed)
    b, staged_b = _prepare(tmp_path, plain, committed)
    assert staged_a == staged_b and len(staged_a) == len(values) - 2 + 2  # two replays, two follows; dead slots stay
    assert (a.offsets, a.skipped, a.consumed, a.staged) == (b.offsets, b.skipped, b.consumed, b.staged)
    assert a.offsets == {("interactions", 0): len(values), ("follows", 1): 10}
    assert [(d.source_topic, d.offset, d.reason, d.value, d.key) for d in a.dead] == \
        [(d.source_topic, d.offset, d.reason, d.value, d.key) for d in b.dead]
    assert len(a.dead) == 7 + 1  # six malformed samples and a null payload, and the bad follow


def _partition_records(buf: bytes, fetch_offset: int, deserializer):
    from aiokafka.consumer import fetcher
    records = fetcher.MemoryRecords(buf)
    return fetcher.PartitionRecords(TopicPartition("interactions", 0), records, None, fetch_offset,
                                    deserializer, None, True, 0)


def test_the_fetcher_hook_hands_a_chunk_consumer_its_fetch_whole():
    assert kafka_chunks.install()
    buf = batch(10, [(k, NOW, b"k", b"v%d" % k) for k in range(5)]) + batch(15, [(0, NOW, None, b"x")])
    pr = _partition_records(buf, 12, RAW_CHUNKS)
    (chunk,) = list(pr)
    assert type(chunk) is Chunk and (chunk.fetch_offset, chunk.next_offset) == (12, 16)
    assert pr.next_fetch_offset == 16  # where aiokafka's own reader would have left it
    assert kafka_records(chunk.buf, chunk.fetch_offset) == aiokafka_records(buf, 12)
    # Any other consumer still gets aiokafka's records, and so does a chunk consumer's compressed fetch.
    plain = _partition_records(buf, 12, None)
    assert [(r.offset, r.key, r.value) for r in plain] == [(o, k, v) for o, _t, k, v in aiokafka_records(buf, 12)]
    gz = batch(0, [(0, NOW, b"k", b"v" * 50)], compression=GZIP)
    assert [(r.offset, r.value) for r in _partition_records(gz, 0, RAW_CHUNKS)] == [(0, b"v" * 50)]


def test_a_chunk_record_is_a_raw_record():
    buf = batch(3, [(0, NOW, b"k", b"v")])
    assert chunk_records(("t", 2), Chunk(buf, 3, 4, True)) == [RawRecord("t", 2, 3, b"k", b"v", NOW)]
