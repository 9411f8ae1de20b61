"""The pure ingest step: replays skipped, bad records dead-lettered with a reason, offsets advanced."""
from __future__ import annotations

from stream.events.badinput import malformed_samples
from stream.events import Follow, Interaction, ValidationLimits, encode
from stream.kafka.topics import TopicSettings
import hashlib

from stream.events import decode_dead_letter
from workers.runtime.decode import DEAD_LETTER_MAX_KEY, DEAD_LETTER_MAX_VALUE, IngestCore, minimal_dead_letter
from stream.kafka.batch_consumer import RawRecord

NOW = 1_700_000_000_000
TOPICS = TopicSettings()


def _rec(offset: int, value: bytes | None, topic: str = "interactions", partition: int = 0) -> RawRecord:
    return RawRecord(topic, partition, offset, b"k", value, NOW)


def _core(**limits) -> IngestCore:
    return IngestCore(TOPICS, ValidationLimits(**limits), "test")


def test_good_records_decode_in_order_and_offsets_advance():
    evs = [Interaction("u1", f"i{k}", "s1", NOW - 10 + k, "click") for k in range(5)]
    follow = Follow("u1", "u2", NOW, "follow")
    records = [_rec(k, encode(e)) for k, e in enumerate(evs)] + [_rec(0, encode(follow), "follows", 2)]
    batch = _core().prepare(records, committed={}, now_ms=NOW)
    assert batch.events == evs + [follow]
    assert batch.offsets == {("interactions", 0): 5, ("follows", 2): 1}
    assert batch.dead == [] and batch.skipped == 0
    assert batch.consumed == {"interactions": 5, "follows": 1}


def test_replays_below_the_stored_offset_are_skipped():
    evs = [Interaction("u1", f"i{k}", "s1", NOW, "click") for k in range(6)]
    records = [_rec(k, encode(e)) for k, e in enumerate(evs)]
    batch = _core().prepare(records, committed={("interactions", 0): 4}, now_ms=NOW)
    assert batch.events == evs[4:]
    assert batch.skipped == 4
    assert batch.offsets == {("interactions", 0): 6}


def test_every_kind_of_bad_record_becomes_a_dead_letter_with_its_bytes_and_reason():
    samples = malformed_samples(NOW)
    records = [_rec(k, raw) for k, (_, raw) in enumerate(samples)]
    batch = _core().prepare(records, committed={}, now_ms=NOW)
    assert batch.events == []
    assert [d.reason for d in batch.dead] == [reason for reason, _ in samples]
    for k, (d, (_, raw)) in enumerate(zip(batch.dead, samples)):
        assert (d.source_topic, d.partition, d.offset, d.worker) == ("interactions", 0, k, "test")
        assert d.value == raw[:DEAD_LETTER_MAX_VALUE] and d.detail
    # Bad records still move the offset: they are handled, not retried forever.
    assert batch.offsets == {("interactions", 0): len(samples)}


def test_null_payload_and_unknown_topic_are_dead_lettered():
    batch = _core().prepare([_rec(0, None), _rec(0, b"{}", topic="elsewhere")], committed={}, now_ms=NOW)
    assert [d.reason for d in batch.dead] == ["malformed_json", "unknown_topic"]


def test_huge_payload_is_truncated_in_the_dead_letter_with_its_digest():
    raw = b"x" * (DEAD_LETTER_MAX_VALUE * 3)
    batch = _core().prepare([_rec(0, raw)], committed={}, now_ms=NOW)
    (d,) = batch.dead
    assert d.reason == "oversized" and len(d.value) == DEAD_LETTER_MAX_VALUE
    assert f"of {len(raw)} bytes" in d.detail and "sha256" in d.detail


def test_a_huge_key_is_bounded_like_the_value_and_the_whole_dead_letter_stays_under_a_megabyte():
    """A 700 KB key with a 1 MB payload: once as the Kafka key and once inside the JSON, the
    key alone used to exceed the producer's 1 MB request limit."""
    key, raw = b"k" * 700_000, b"\xff" * 1_000_000
    (d,) = _core().prepare([RawRecord("interactions", 3, 9, key, raw, NOW)], committed={}, now_ms=NOW).dead
    assert d.key == key[:DEAD_LETTER_MAX_KEY] and d.value == raw[:DEAD_LETTER_MAX_VALUE]
    assert f"key truncated to {DEAD_LETTER_MAX_KEY} of {len(key)} bytes; sha256 {hashlib.sha256(key).hexdigest()}" \
        in d.detail
    assert f"sha256 {hashlib.sha256(raw).hexdigest()}" in d.detail
    wire = encode(d)
    assert len(wire) + len(d.key) < 400_000
    back = decode_dead_letter(wire)
    assert (back.key, back.value, back.offset, back.partition) == (d.key, d.value, 9, 3)


def test_a_short_key_and_a_null_key_pass_unchanged():
    ok_key = b"u" * DEAD_LETTER_MAX_KEY
    a, b = _core().prepare([RawRecord("interactions", 0, 0, ok_key, b"{", NOW),
                            RawRecord("interactions", 0, 1, None, b"{", NOW)], committed={}, now_ms=NOW).dead
    assert a.key == ok_key and "truncated" not in a.detail
    assert b.key is None and "truncated" not in b.detail


def test_the_minimal_dead_letter_keeps_reason_position_and_sizes_and_drops_the_bytes():
    (d,) = _core().prepare([RawRecord("interactions", 1, 5, b"k" * 3000, b"x" * 5000, NOW)],
                           committed={}, now_ms=NOW).dead
    small = minimal_dead_letter(d, "RecordTooLargeError: " + "e" * 10_000)
    assert (small.reason, small.source_topic, small.partition, small.offset) == (d.reason, "interactions", 1, 5)
    assert small.key is None and small.value == b""
    assert f"key {DEAD_LETTER_MAX_KEY} bytes, payload 5000 bytes" in small.detail
    assert len(encode(small)) < 3000
