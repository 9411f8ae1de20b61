"""Batched Kafka consumption whose positions come from the store, not from Kafka.

Correctness never rests on Kafka's committed offsets or ListOffsets (Tansu answers the latter
wrongly when producers batch): on every assignment the consumer seeks each partition to the
next offset stored in the graph store's last WriteBatch (0 if it stores none), and the caller
drops any record below it. Offsets are also committed to Kafka after each batch, best effort,
only so that operators' tools can show group lag.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from stream.kafka.security import PLAINTEXT, KafkaSecurity
from stream.kafka.topics import CONSUMER_DEFAULTS
from stream.kafka import chunks as kafka_chunks
from stream.kafka.chunks import Chunk

# Loop turns for aiokafka's fetch task to wake, build a request and write it (BatchConsumer.prefetch).
_PREFETCH_YIELDS = 8
# A chunked consumer's fetch size per partition, per record of max_records (v1 interactions
# are ~110 bytes on the wire): the broker returns whole stored batches, so this is approximate.
_CHUNK_BYTES_PER_RECORD = 200

log = logging.getLogger(__name__)

TP = tuple[str, int]


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One Kafka record as the pure ingest/score logic sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int  # the record's Kafka timestamp (producer send time by default)


class _SeekToStored(ConsumerRebalanceListener):
    def __init__(self, owner: "BatchConsumer") -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked) -> None:  # nothing buffered to flush
        return None

    async def on_partitions_assigned(self, assigned) -> None:
        committed = self._owner.stored_offsets()
        for tp in assigned:
            # A partition the store holds nothing of starts at 0 (the earliest record, by
            # auto_offset_reset, if retention removed it), never at the group's Kafka commit: a
            # store that lost its last commits (the native store has no WAL) is behind that.
            offset = committed.get((tp.topic, tp.partition), 0)
            self._owner.consumer.seek(tp, offset)
            # Known from here on, so that a partition that brings no records still has a lag
            # (0 once a fetch response reports its high watermark).
            self._owner._positions[tp] = offset
        log.info("assigned %s; positions from store: %s", sorted(map(tuple, assigned)), committed)
        if assigned and self._owner.on_ready is not None:
            callback, self._owner.on_ready = self._owner.on_ready, None
            callback()


class BatchConsumer:
    """A consumer-group member that hands out batches of :class:`RawRecord`."""

    def __init__(self, bootstrap: str, topics: list[str], *, group_id: str,
                 stored_offsets: Callable[[], Mapping[TP, int]], max_records: int = 5000,
                 timeout_ms: int = 100, client_id: str = "gnnrec",
                 on_ready: Callable[[], None] | None = None, fetch_max_wait_ms: int = 100,
                 chunks: bool = False, security: KafkaSecurity = PLAINTEXT) -> None:
        self.on_ready = on_ready  # called once, at the first non-empty partition assignment
        self.topics = topics
        self.stored_offsets = stored_offsets
        self.max_records = max_records
        self.timeout_ms = timeout_ms
        self._positions: dict[TopicPartition, int] = {}
        # get_partitions may then hand out a partition's fetch as one kafka_chunks.Chunk, whose
        # records are not counted against max_records: a partition's fetch size bounds it instead.
        self.chunks = chunks and kafka_chunks.install()
        partition_bytes = max(64 * 1024, max_records * _CHUNK_BYTES_PER_RECORD) if self.chunks else 16 * 1024 * 1024
        self.consumer = AIOKafkaConsumer(
            key_deserializer=kafka_chunks.RAW_CHUNKS if self.chunks else None,
            bootstrap_servers=bootstrap, group_id=group_id, client_id=client_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=max_records, fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=partition_bytes, fetch_max_wait_ms=fetch_max_wait_ms,
            **CONSUMER_DEFAULTS, **security.aiokafka_options(),
        )

    async def start(self) -> None:
        self.consumer.subscribe(self.topics, listener=_SeekToStored(self))
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def get_batch(self) -> list[RawRecord]:
        if self.chunks:
            raise RuntimeError("get_batch() reads records; a consumer made with chunks=True is read with get_partitions()")
        batches = await self.consumer.getmany(timeout_ms=self.timeout_ms, max_records=self.max_records)
        out: list[RawRecord] = []
        for tp, msgs in batches.items():
            topic, partition = tp.topic, tp.partition
            out.extend(RawRecord(topic, partition, m.offset, m.key, m.value, m.timestamp) for m in msgs)
            if msgs:
                self._positions[tp] = msgs[-1].offset + 1
        return out

    async def get_partitions(self) -> dict[TP, list]:
        """One fetch as ``{(topic, partition): records}`` (aiokafka ``ConsumerRecord``s, each list
        in offset order), without copying each record into a :class:`RawRecord`.

        The ingest hot path reads only topic, partition, offset, key and value, which both
        types carry; the copy cost about 1 µs per record, a third of the bare consume rate.
        A consumer made with ``chunks=True`` gets most partitions' fetches as one
        :class:`stream.kafka.chunks.Chunk` each (a list of one), not as records.
        """
        batches = await self.consumer.getmany(timeout_ms=self.timeout_ms, max_records=self.max_records)
        out: dict[TP, list] = {}
        for tp, msgs in batches.items():
            if msgs:
                out[(tp.topic, tp.partition)] = msgs
                last = msgs[-1]
                self._positions[tp] = last.next_offset if type(last) is Chunk else last.offset + 1
        return out

    async def prefetch(self) -> None:
        """Let aiokafka's fetch task ask for the next batch now, while the caller works on this one.

        aiokafka fetches in a background task, but only for partitions whose buffered records
        were all handed out, and only when the event loop runs it: a caller that processes a
        batch without awaiting anything starts the next fetch only at its next ``get_*`` call,
        and then waits a whole broker round trip. A few bare yields let the task wake, build
        the request and write it (on the ingest bench the fetch stage costs 1.0-1.1 µs per event
        with the yields and 1.6-1.7 without; one yield is not enough). Worth it for large batches; a latency-bound loop
        with small ones makes more, smaller fetches, which on Tansu cost broker CPU.
        """
        for _ in range(_PREFETCH_YIELDS):
            await asyncio.sleep(0)

    async def commit(self, offsets: Mapping[TP, int]) -> None:
        """Best-effort Kafka commit for lag dashboards; the store holds the real positions."""
        if not offsets:
            return
        try:
            await self.consumer.commit(
                {TopicPartition(t, p): OffsetAndMetadata(o, "") for (t, p), o in offsets.items()})
        except Exception as exc:  # a rebalance in progress is normal; the store is the truth
            log.debug("kafka commit skipped: %s", exc)

    def assignment(self) -> list[TP]:
        """The partitions this member holds now, sorted (empty before the group assigns any)."""
        return sorted((tp.topic, tp.partition) for tp in self.consumer.assignment())

    def lag(self) -> dict[TP, int]:
        """Per-partition lag from the high watermark seen in fetch responses.

        Fetch responses carry a correct high watermark even on Tansu, unlike ListOffsets.
        """
        out: dict[TP, int] = {}
        for tp in self.consumer.assignment():
            hw = self.consumer.highwater(tp)
            pos = self._positions.get(tp)
            if hw is not None and pos is not None:
                out[(tp.topic, tp.partition)] = max(0, hw - pos)
        return out
