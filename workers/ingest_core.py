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

from graph_store.batch import FOLLOW_OPS as STORE_FOLLOW_OPS
from graph_store.batch import MAX_ID_CHARS, MAX_TS
from graph_store.schema import StoreSettings
from stream.events import (
    FOLLOW_OPS,
    INTERACTION_KINDS,
    DeadLetter,
    Invalid,
    ValidationLimits,
    decode_follow,
    decode_interaction,
)
from stream.topics import TopicSettings
from workers.fast_decode import decode_interactions
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


def store_trusts_decoder(settings: StoreSettings, limits: ValidationLimits, now_ms: int) -> bool:
    """Whether events decoded under ``limits`` at ``now_ms`` pass the store's own validation.

    The :mod:`stream.events` decoders check ids (``str``, 1..``max_id_len`` chars), ``ts``
    (``int`` in ``[0, now_ms + max_future_skew_ms]``), kind, weight (``None`` or a finite float
    ``>= 0``) and op; the store needs ids of at most 256 chars, ``ts < 2**63`` and kinds it has
    a weight for. When this holds the worker may call ``apply_many(..., trusted=True)`` and
    skip the second, identical validation.
    """
    return (
        limits.max_id_len <= MAX_ID_CHARS
        and now_ms + limits.max_future_skew_ms <= MAX_TS
        and INTERACTION_KINDS <= settings.kind_weights.keys()
        and FOLLOW_OPS <= set(STORE_FOLLOW_OPS)
    )


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
        kept: list[RawRecord] = []
        inter = self.topics.interactions
        committed_get, offsets_get = committed.get, offsets.get
        for rec in records:
            tp = (rec.topic, rec.partition)
            nxt = rec.offset + 1
            if nxt <= committed_get(tp, 0):
                skipped += 1  # already in the store: a replay after restart or rebalance
                continue
            if nxt > offsets_get(tp, 0):
                offsets[tp] = nxt
            kept.append(rec)
        consumed.update(r.topic for r in kept)
        # Interactions (the bulk of the stream) are decoded in one batch; the rest one by one.
        decoded = iter(decode_interactions(
            [r.value for r in kept if r.topic == inter and r.value is not None], now_ms=now_ms, limits=self.limits))
        for rec in kept:
            value = next(decoded) if rec.topic == inter and rec.value is not None else self.decode(rec, now_ms)
            if type(value) is Invalid:
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
