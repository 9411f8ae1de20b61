"""Publishing blobs to a topic and reading a topic from its beginning: Kafka and in-memory.

Two small interfaces, each with a Kafka and an in-memory implementation (the in-memory ones are
checked in ``tests/stream/kafka/test_blobs.py``, the Kafka ones on both brokers in
``tests/integration/test_topic_transport.py``):

* a **sink** (:class:`KafkaBlobSink`, :class:`MemoryTopic`): ``publish(index_key, blob_id, data,
  meta)`` sends a blob as :mod:`stream.kafka.blobs` lays it out, chunks first, every chunk
  acknowledged before the index is sent, all to partition 0 (one partition keeps the order the
  reader relies on, whatever the topic was created with);
* a **tail** (:class:`KafkaTopicTail`, :class:`MemoryTail`): ``fetch()`` hands out the records
  of partition 0 from offset 0 on, and ``caught_up`` says whether the last fetch reached the
  high watermark (taken from fetch responses: Tansu's ListOffsets is wrong when producers
  batch). Between fetches the Kafka tail pauses its partition, so an idle reader costs the broker
  one fetch per call instead of a fetch loop running in the background.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, NamedTuple, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError

from stream.kafka.blobs import encode_blob
from stream.kafka.security import PLAINTEXT, KafkaSecurity

log = logging.getLogger(__name__)

#: Under Apache Kafka's default 1 MB ``max.message.bytes`` with room for the record's framing.
DEFAULT_CHUNK_BYTES = 512 * 1024
_FRAMING_BYTES = 64 * 1024


class TopicRecord(NamedTuple):
    offset: int
    key: bytes | None
    value: bytes | None


class BlobPublishError(RuntimeError):
    """A blob was not (wholly) delivered; readers ignore the part that was."""


class BlobSink(Protocol):
    async def publish(self, index_key: str, blob_id: str, data: bytes, meta: dict[str, Any]) -> int:
        """Send one blob; returns its index record's offset once every record is acknowledged."""
        ...


class RecordTail(Protocol):
    caught_up: bool

    async def fetch(self, timeout_s: float) -> list[TopicRecord]:
        """The next records in offset order ([] when there are none within ``timeout_s``)."""
        ...


async def _start_with_retry(client, what: str, bootstrap: str, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            await client.start()
            return
        except KafkaConnectionError as exc:
            if loop.time() >= deadline:
                raise BlobPublishError(f"cannot reach Kafka at {bootstrap} for {what} after {timeout_s:g} s ({exc}); "
                                       "is the broker running and KAFKA_BOOTSTRAP_SERVERS right?") from exc
            await asyncio.sleep(0.2)


class KafkaBlobSink:
    """:class:`BlobSink` on a Kafka topic (aiokafka, acks from every in-sync replica)."""

    def __init__(self, bootstrap: str, topic: str, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 client_id: str = "gnnrec-blobs", security: KafkaSecurity = PLAINTEXT,
                 start_timeout_s: float = 30.0) -> None:
        if chunk_bytes < 1024:
            raise ValueError(f"chunk_bytes must be >= 1024, got {chunk_bytes}")
        self.bootstrap, self.topic, self.chunk_bytes = bootstrap, topic, chunk_bytes
        self._start_timeout_s = start_timeout_s
        # No idempotence (Tansu answers InitProducerId with an error): ordering comes from
        # awaiting the chunks before the index is sent instead.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", client_id=client_id, linger_ms=5,
            max_request_size=max(1024 * 1024, chunk_bytes + _FRAMING_BYTES), max_batch_size=chunk_bytes + _FRAMING_BYTES,
            **security.aiokafka_options())

    async def start(self) -> None:
        await _start_with_retry(self._producer, f"publishing to {self.topic}", self.bootstrap, self._start_timeout_s)

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, index_key: str, blob_id: str, data: bytes, meta: dict[str, Any]) -> int:
        chunks, (key, value) = encode_blob(index_key, blob_id, data, meta, self.chunk_bytes)
        try:
            sent = [await self._producer.send(self.topic, v, key=k, partition=0) for k, v in chunks]
            await asyncio.gather(*sent)  # every chunk stored before the index names them
            stored = await (await self._producer.send(self.topic, value, key=key, partition=0))
        except KafkaError as exc:
            raise BlobPublishError(
                f"publishing {index_key} (blob {blob_id!r}, {len(data)} bytes in {len(chunks) or 1} records) to topic "
                f"{self.topic} on {self.bootstrap} failed: {exc!r}; it is sent again as a whole later") from exc
        return stored.offset


class KafkaTopicTail:
    """:class:`RecordTail` over partition 0 of a Kafka topic, from its first offset (no consumer group)."""

    def __init__(self, bootstrap: str, topic: str, *, client_id: str = "gnnrec-tail",
                 security: KafkaSecurity = PLAINTEXT, max_fetch_bytes: int = 4 * 1024 * 1024,
                 start_timeout_s: float = 30.0) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.caught_up = False
        self._tp = TopicPartition(topic, 0)
        self._start_timeout_s = start_timeout_s
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
            client_id=client_id, fetch_max_wait_ms=200, max_partition_fetch_bytes=max_fetch_bytes,
            fetch_max_bytes=max_fetch_bytes, **security.aiokafka_options())

    async def start(self) -> None:
        await _start_with_retry(self._consumer, f"reading {self.topic}", self.bootstrap, self._start_timeout_s)
        self._consumer.assign([self._tp])
        await self._consumer.seek_to_beginning(self._tp)

    async def stop(self) -> None:
        await self._consumer.stop()

    async def fetch(self, timeout_s: float) -> list[TopicRecord]:
        self._consumer.resume(self._tp)
        try:
            batch = await self._consumer.getmany(self._tp, timeout_ms=int(timeout_s * 1000))
        finally:
            self._consumer.pause(self._tp)
        out = [TopicRecord(m.offset, m.key, m.value) for m in batch.get(self._tp, [])]
        highwater = self._consumer.highwater(self._tp)
        position = await self._consumer.position(self._tp)
        self.caught_up = highwater is not None and position >= highwater
        return out


class MemoryTopic:
    """One in-memory partition: a :class:`BlobSink` whose records :meth:`tail` reads back."""

    def __init__(self, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        self.chunk_bytes = chunk_bytes
        self.records: list[TopicRecord] = []
        self._next = 0

    def append(self, key: bytes | None, value: bytes | None) -> int:
        self.records.append(TopicRecord(self._next, key, value))
        self._next += 1
        return self._next - 1

    async def publish(self, index_key: str, blob_id: str, data: bytes, meta: dict[str, Any]) -> int:
        chunks, (key, value) = encode_blob(index_key, blob_id, data, meta, self.chunk_bytes)
        for k, v in chunks:
            self.append(k, v)
        return self.append(key, value)

    def compacted(self) -> MemoryTopic:
        """What a compacting broker may leave: the newest record of each key, offsets kept."""
        newest = {r.key: r.offset for r in self.records}
        out = MemoryTopic(self.chunk_bytes)
        out.records = [r for r in self.records if newest[r.key] == r.offset]
        out._next = self._next
        return out

    def tail(self, max_records: int = 1000) -> MemoryTail:
        return MemoryTail(self, max_records)


class MemoryTail:
    """:class:`RecordTail` of a :class:`MemoryTopic`, at most ``max_records`` per fetch."""

    def __init__(self, topic: MemoryTopic, max_records: int) -> None:
        self.topic, self.max_records = topic, max_records
        self.caught_up = False
        self._index = 0

    async def fetch(self, timeout_s: float = 0.0) -> list[TopicRecord]:
        out = self.topic.records[self._index:self._index + self.max_records]
        self._index += len(out)
        self.caught_up = self._index >= len(self.topic.records)
        return out
