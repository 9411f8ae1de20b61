"""The pure half of the ingest path: one consumed batch → events to apply, dead letters, offsets.

No I/O and no clock: ``now_ms`` is an argument (it bounds "far-future" timestamps). The runtime
in :mod:`workers.ingest.loop` sends the dead letters, then commits events and offsets in one store
WriteBatch, so a bad record is never lost and a good one is applied exactly once.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Protocol

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
from stream.kafka.topics import TopicSettings
from stream.events.fast_decode import decode_interactions_split
from stream.kafka.chunks import Chunk
from stream.kafka.batch_consumer import TP, RawRecord


class Record(Protocol):
    """What the core reads of a consumed record: a :class:`RawRecord` or an aiokafka ``ConsumerRecord``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def _tp(rec: Record) -> TP:
    return rec.topic, rec.partition


# A dead letter must always fit the producer's max_request_size and the broker's
# message.max.bytes (both ~1 MB by default) whatever arrived: the key, the value and the detail
# are each bounded, and what is cut is described by its size and sha256 in the detail.
# base64 grows key and value by a third: 4/3 * (256 KB + 1 KB) + 4 KB of detail + the Kafka key
# is under 350 KB.
DEAD_LETTER_MAX_VALUE = 256 * 1024
DEAD_LETTER_MAX_KEY = 1024
DEAD_LETTER_MAX_DETAIL = 4096


class Stage(Protocol):
    """Where a batch goes when the store decodes raw payloads itself
    (:class:`graph_store.rocksdb.native.NativeRocksDBGraphStore`)."""

    def stage_raw(self, values: list, max_ts: int) -> list[tuple[int, int]]: ...
    def stage_kafka(self, buf: bytes, fetch_offset: int, committed: int, max_ts: int,
                    check_crc: bool = True) -> tuple[list, int, int, int]: ...
    def stage_event(self, event, position: int | None = None) -> None: ...
    def discard_staged(self) -> None: ...
    def staged_count(self) -> int: ...


@dataclass(frozen=True)
class PreparedBatch:
    events: list  # decoded Interaction/Follow values, in consumption order ([] when staged)
    dead: list[DeadLetter]
    offsets: dict[TP, int]  # next offset to consume per partition once this batch is stored
    skipped: int  # replays of records the store already holds
    consumed: Counter = field(default_factory=Counter)  # records per topic
    staged: int = 0  # events staged in the store instead of listed in ``events``

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

    @classmethod
    def for_worker(cls, settings, worker: str) -> IngestCore:
        """The decoder of a worker's settings (topics, ``max_event_bytes``, ``max_future_skew_ms``)."""
        return cls(settings.topics(), ValidationLimits(max_bytes=settings.max_event_bytes,
                                                       max_future_skew_ms=settings.max_future_skew_ms), worker)

    def decode(self, record: Record, now_ms: int):
        """An Interaction/Follow, or an :class:`Invalid` saying why not."""
        if record.value is None:
            return Invalid("malformed_json", "record has no value (null payload)")
        if record.topic == self.topics.interactions:
            return decode_interaction(record.value, now_ms=now_ms, limits=self.limits)
        if record.topic == self.topics.follows:
            return decode_follow(record.value, now_ms=now_ms, limits=self.limits)
        return Invalid("unknown_topic", f"ingest does not read topic {record.topic!r}")

    def prepare(self, records: Sequence[RawRecord], committed: Mapping[TP, int], now_ms: int) -> PreparedBatch:
        """Decode a flat list of records in consumption order (any offsets, any interleaving)."""
        runs = [(tp, list(group)) for tp, group in groupby(records, key=_tp)]
        return self._prepare_runs(runs, committed, now_ms, ordered=False)

    def prepare_partitions(self, parts: Mapping[TP, Sequence[Record]], committed: Mapping[TP, int],
                           now_ms: int, stage: Stage | None = None) -> PreparedBatch:
        """The hot path: one fetch as ``{(topic, partition): records}``, each list in offset order.

        That is what :meth:`stream.kafka.batch_consumer.BatchConsumer.get_partitions` returns (aiokafka
        hands out a partition's records in increasing offset order), so replays are a prefix of
        each list and the next offset is that of the last record plus one: no per-record check.
        The events come out partition by partition, as with :meth:`prepare` over the same records.

        With a ``stage`` (a store that decodes raw payloads: :mod:`graph_store.rocksdb.native`) the
        events are staged there in the same order instead of listed: it decodes the
        interactions it is sure of, and this core decodes the rest, so the dead letters and
        their reasons are the same either way. Anything staged before is discarded first.
        """
        if stage is not None:
            stage.discard_staged()
            try:
                return self._prepare_runs(parts.items(), committed, now_ms, ordered=True, stage=stage)
            except BaseException:
                stage.discard_staged()
                raise
        return self._prepare_runs(parts.items(), committed, now_ms, ordered=True)

    def _prepare_runs(self, runs, committed: Mapping[TP, int], now_ms: int, *, ordered: bool,
                      stage: Stage | None = None) -> PreparedBatch:
        events: list = []
        dead: list[DeadLetter] = []
        offsets: dict[TP, int] = {}
        consumed: Counter = Counter()
        skipped = 0
        inter = self.topics.interactions
        for tp, recs in runs:
            if not recs:
                continue
            start = committed.get(tp, 0)
            if type(recs[0]) is Chunk:  # a fetch handed out whole (stream.kafka.chunks)
                if stage is not None and tp[0] == inter:
                    skipped += self._stage_chunk(tp, recs[0], start, now_ms, stage, dead, offsets, consumed)
                    continue
                recs = chunk_records(tp, recs[0])
                if not recs:
                    continue
            if not ordered or recs[0].offset < start:
                kept = [r for r in recs if r.offset >= start]  # below start: already in the store
                skipped += len(recs) - len(kept)
                if not kept:
                    continue
            else:
                kept = recs
            nxt = (kept[-1].offset if ordered else max(r.offset for r in kept)) + 1
            if nxt > offsets.get(tp, 0):
                offsets[tp] = nxt
            consumed[tp[0]] += len(kept)
            if tp[0] != inter:
                for rec in kept:
                    value = self.decode(rec, now_ms)
                    if type(value) is Invalid:
                        dead.append(self.dead_letter(rec, value, now_ms))
                    elif stage is None:
                        events.append(value)
                    else:
                        stage.stage_event(value)
                continue
            if stage is not None:
                max_ts = now_ms + self.limits.max_future_skew_ms
                for index, position in stage.stage_raw([r.value for r in kept], max_ts):
                    rec = kept[index]
                    value = self.decode(rec, now_ms)
                    if type(value) is Invalid:
                        dead.append(self.dead_letter(rec, value, now_ms))
                    else:
                        stage.stage_event(value, position)
                continue
            # Interactions (the bulk of the stream) are decoded in one call per run.
            ok, rejects = decode_interactions_split([r.value for r in kept], now_ms=now_ms, limits=self.limits)
            events += ok
            for index, why in rejects:
                rec = kept[index]
                if rec.value is None:  # the worker's own wording for a null payload
                    why = self.decode(rec, now_ms)
                dead.append(self.dead_letter(rec, why, now_ms))
        staged = 0 if stage is None else stage.staged_count()
        return PreparedBatch(events, dead, offsets, skipped, consumed, staged)

    def _stage_chunk(self, tp: TP, chunk: Chunk, start: int, now_ms: int, stage: Stage, dead: list[DeadLetter],
                     offsets: dict[TP, int], consumed: Counter) -> int:
        """Stage a chunk of interactions in the store, which reads the records itself; the ones
        it hands back are decoded here. Returns the replays skipped."""
        max_ts = now_ms + self.limits.max_future_skew_ms
        deferred, kept, skipped, last = stage.stage_kafka(chunk.buf, chunk.fetch_offset, start, max_ts,
                                                          chunk.check_crc)
        if kept:
            offsets[tp] = max(offsets.get(tp, 0), last + 1)
            consumed[tp[0]] += kept
        for offset, timestamp, key, value, position in deferred:
            rec = RawRecord(tp[0], tp[1], offset, key, value, timestamp)
            event = self.decode(rec, now_ms)
            if type(event) is Invalid:
                dead.append(self.dead_letter(rec, event, now_ms))
            else:
                stage.stage_event(event, position)
        return skipped

    def dead_letter(self, rec: Record, why: Invalid, now_ms: int) -> DeadLetter:
        value = rec.value if rec.value is not None else b""
        detail = why.detail
        if len(detail) > DEAD_LETTER_MAX_DETAIL:
            detail = detail[:DEAD_LETTER_MAX_DETAIL] + " [detail cut]"
        value, note = _bounded("payload", value, DEAD_LETTER_MAX_VALUE)
        detail += note
        key = rec.key
        if key is not None:
            key, note = _bounded("key", key, DEAD_LETTER_MAX_KEY)
            detail += note
        return DeadLetter(reason=why.reason, detail=detail, source_topic=rec.topic,
                          partition=rec.partition, offset=rec.offset, key=key,
                          value=value, worker=self.worker, ts=now_ms)


def _bounded(what: str, raw: bytes, limit: int) -> tuple[bytes, str]:
    """``raw`` cut to ``limit`` bytes, and a note naming the whole's size and sha256 ("" if uncut)."""
    if len(raw) <= limit:
        return raw, ""
    return raw[:limit], (f" [{what} truncated to {limit} of {len(raw)} bytes; "
                         f"sha256 {hashlib.sha256(raw).hexdigest()}]")


def minimal_dead_letter(dl: DeadLetter, why: str) -> DeadLetter:
    """The dead letter without key or payload bytes, for when the full one could not be
    written: the reason, the source position and the sizes still reach the topic."""
    sizes = f"key {len(dl.key) if dl.key is not None else 0} bytes, payload {len(dl.value)} bytes"
    return DeadLetter(reason=dl.reason, detail=(f"{dl.detail[:1024]} [key and payload dropped ({sizes}): "
                                                f"the full dead letter failed: {why[:512]}]"),
                      source_topic=dl.source_topic, partition=dl.partition, offset=dl.offset, key=None,
                      value=b"", worker=dl.worker, ts=dl.ts)


def chunk_records(tp: TP, chunk: Chunk) -> list[RawRecord]:
    """A chunk's records (those at or past its fetch offset), for the paths that want objects."""
    from graph_store.rocksdb.native import kafka_records
    topic, partition = tp
    return [RawRecord(topic, partition, offset, key, value, timestamp)
            for offset, timestamp, key, value in kafka_records(chunk.buf, chunk.fetch_offset, chunk.check_crc)]
