"""The pure half of the ingest path: one consumed batch → events to apply, dead letters, offsets.

No I/O and no clock: ``now_ms`` is an argument (it bounds "far-future" timestamps). The runtime
in :mod:`workers.ingest` sends the dead letters, then commits events and offsets in one store
WriteBatch, so a bad record is never lost and a good one is applied exactly once.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from stream.events import DeadLetter, Invalid, ValidationLimits, decode_follow, decode_interaction
from stream.topics import TopicSettings
from workers.kafka_io import TP, RawRecord


DEAD_LETTER_MAX_VALUE = 256 * 1024


@dataclass(frozen=True)
class PreparedBatch:
    events: list  # decoded Interaction/Follow values, in consumption order
    dead: list[DeadLetter]
    offsets: dict[TP, int]  # next offset to consume per partition once this batch is stored
    skipped: int  # replays of records the store already holds
    consumed: Counter = field(default_factory=Counter)  # records per topic

    @property
    def reasons(self) -> Counter:
        return Counter(d.reason for d in self.dead)


class IngestCore:
    """Decodes and validates records; routes bad ones to dead letters with a reason."""

    def __init__(self, topics: TopicSettings, limits: ValidationLimits, worker: str) -> None:
        self.topics = topics
        self.limits = limits
        self.worker = worker

    def decode(self, record: RawRecord, now_ms: int):
        """An Interaction/Follow, or an :class:`Invalid` saying why not."""
        if record.value is None:
            return Invalid("malformed_json", "record has no value (null payload)")
        if record.topic == self.topics.interactions:
            return decode_interaction(record.value, now_ms=now_ms, limits=self.limits)
        if record.topic == self.topics.follows:
            return decode_follow(record.value, now_ms=now_ms, limits=self.limits)
        return Invalid("unknown_topic", f"ingest does not read topic {record.topic!r}")

    def prepare(self, records: Sequence[RawRecord], committed: Mapping[TP, int], now_ms: int) -> PreparedBatch:
        events: list = []
        dead: list[DeadLetter] = []
        offsets: dict[TP, int] = {}
        consumed: Counter = Counter()
        skipped = 0
        for rec in records:
            tp = (rec.topic, rec.partition)
            if rec.offset < committed.get(tp, 0):
                skipped += 1  # already in the store: a replay after restart or rebalance
                continue
            consumed[rec.topic] += 1
            if rec.offset + 1 > offsets.get(tp, 0):
                offsets[tp] = rec.offset + 1
            value = self.decode(rec, now_ms)
            if isinstance(value, Invalid):
                dead.append(self.dead_letter(rec, value, now_ms))
            else:
                events.append(value)
        return PreparedBatch(events, dead, offsets, skipped, consumed)

    def dead_letter(self, rec: RawRecord, why: Invalid, now_ms: int) -> DeadLetter:
        value = rec.value if rec.value is not None else b""
        detail = why.detail
        if len(value) > DEAD_LETTER_MAX_VALUE:
            # base64 grows a payload by a third and brokers refuse requests over ~1 MB: keep a
            # prefix plus the size and digest of the whole, rather than fail to dead-letter at all.
            detail += (f" [payload truncated to {DEAD_LETTER_MAX_VALUE} of {len(value)} bytes; "
                       f"sha256 {hashlib.sha256(value).hexdigest()}]")
            value = value[:DEAD_LETTER_MAX_VALUE]
        return DeadLetter(reason=why.reason, detail=detail, source_topic=rec.topic,
                          partition=rec.partition, offset=rec.offset, key=rec.key,
                          value=value, worker=self.worker, ts=now_ms)
