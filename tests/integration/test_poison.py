"""Poison pills on real brokers: records a producer can send that must not stop a partition.

Huge keys with invalid values (460 KB and 700 KB: once as the Kafka key and once inside the
JSON, the key alone used to push a dead letter over the 1 MB request limit, and the worker
crash-looped on it) sit between valid events in one partition. The ingest worker must
dead-letter each once, with its key and payload bounded and described by size and sha256,
apply every valid event (its store equals a batch-built oracle), survive a SIGKILL and
restart without sending the dead letters again, and, where the dead-letter topic refuses even
a minimal dead letter, count the failure and move on.
"""
from __future__ import annotations

import asyncio
import hashlib

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from graph_store import MemoryGraphStore, RocksDBGraphStore, StoreSettings
from stream.events import Interaction, encode
from stream.kafka.topics import TopicSettings, ensure_topics
from tests.integration.pipeline_support import (assert_stores_equal, committed_total, read_topic_sync, start_worker,
                                                wait_for, worker_env)
from workers.runtime.decode import DEAD_LETTER_MAX_KEY, DEAD_LETTER_MAX_VALUE
from workers.runtime.launch import metric_sum

T0 = 1_700_000_000_000
PILLS = [(b"K" * 460_000, b"\xfe" * 400_000), (b"Q" * 700_000, b'{"not": "an event"')]


def _events(n: int) -> list[Interaction]:
    return [Interaction(user_id=f"u{k % 17}", item_id=f"i{(k * 7) % 41}", session_id=f"s{k % 17}",
                        ts=T0 + 1000 * k, kind="click") for k in range(n)]


def _topics(unique_topics) -> TopicSettings:
    return TopicSettings(interactions=unique_topics("interactions"), follows=unique_topics("follows"),
                         next_item=unique_topics("next-item"), social=unique_topics("social"),
                         dead_letters=unique_topics("dead-letters"), partitions=2)


async def _produce(bootstrap: str, topic: str, events: list[Interaction], pills) -> None:
    """Everything into partition 0, the pills in the middle of the valid events."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2_000_000)
    await producer.start()
    try:
        half = len(events) // 2
        for ev in events[:half]:
            await producer.send(topic, encode(ev), key=ev.user_id.encode(), partition=0)
        for key, value in pills:
            await producer.send_and_wait(topic, value, key=key, partition=0)
        for ev in events[half:]:
            await producer.send(topic, encode(ev), key=ev.user_id.encode(), partition=0)
        await producer.flush()
    finally:
        await producer.stop()


def _durable(path, topic: str) -> int:
    """The offsets a crash now would restart from: what is in RocksDB's files, read beside the writer."""
    store = RocksDBGraphStore.open_read_only(path, StoreSettings())
    try:
        return sum(o for (t, _), o in store.committed_offsets().items() if t == topic)
    finally:
        store.close()


def _oracle(events) -> MemoryGraphStore:
    oracle = MemoryGraphStore(StoreSettings())
    oracle.apply_many(events)
    return oracle


def test_huge_keys_are_dead_lettered_once_and_the_partition_goes_on(kafka_broker, unique_topics, tmp_path):
    events = _events(400)
    topics = _topics(unique_topics)
    bootstrap = kafka_broker.bootstrap
    asyncio.run(ensure_topics(bootstrap, topics))
    env = {**worker_env(bootstrap, unique_topics, unique_topics("ingest"), tmp_path / "ingest"),
           "GNNREC_CHECKPOINT_S": "0.5"}
    ingest = start_worker("ingest", env, tmp_path)
    total = len(events) + len(PILLS)
    try:
        asyncio.run(_produce(bootstrap, topics.interactions, events, PILLS))
        wait_for(lambda: committed_total(ingest, topics.interactions) == total, 120,
                 "ingest to get past the poison pills")
        samples = ingest.scrape()
        assert ingest.alive
        # A crash once the commit is on disk (a store without a WAL is flushed on a schedule),
        # then a restart: the pills are not read, nor dead-lettered, again.
        wait_for(lambda: _durable(tmp_path / "ingest" / "graph", topics.interactions) == total, 30,
                 "the scheduled flush to make the commit durable")
        ingest.kill()
        ingest = start_worker("ingest", env, tmp_path)
        wait_for(lambda: committed_total(ingest, topics.interactions) == total, 60, "the restarted worker to resume")
        after_restart = ingest.scrape()
    finally:
        ingest.stop()
    dead = read_topic_sync(bootstrap, topics.dead_letters, topics.partitions, len(PILLS), timeout_s=30)
    assert len(dead) == len(PILLS)
    assert metric_sum(samples, "gnnrec_dead_letters_total") == len(PILLS)
    assert metric_sum(samples, "gnnrec_dead_letter_failures_total") == 0
    assert metric_sum(samples, "gnnrec_events_applied_total") == len(events)
    assert metric_sum(after_restart, "gnnrec_dead_letters_total") == 0
    for record, (key, value) in zip(sorted(dead, key=lambda r: orjson.loads(r.value)["offset"]), PILLS):
        letter = orjson.loads(record.value)
        assert len(record.value) + len(record.key or b"") < 1_000_000
        assert record.key == key[:DEAD_LETTER_MAX_KEY]
        assert f"of {len(key)} bytes; sha256 {hashlib.sha256(key).hexdigest()}" in letter["detail"]
        if len(value) > DEAD_LETTER_MAX_VALUE:
            assert f"sha256 {hashlib.sha256(value).hexdigest()}" in letter["detail"]
        assert letter["source_topic"] == topics.interactions and letter["partition"] == 0
    with RocksDBGraphStore(tmp_path / "ingest" / "graph", StoreSettings()) as store:
        assert_stores_equal(store, _oracle(events), now_ms=events[-1].ts)


async def _make_small_dead_letter_topic(bootstrap: str, topic: str, max_bytes: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                            topic_configs={"max.message.bytes": str(max_bytes)})])
    finally:
        await admin.close()


# Apache Kafka only: Tansu does not enforce per-topic configs.
@pytest.mark.parametrize("kafka_broker", ["apache"], indirect=True)
@pytest.mark.parametrize("max_bytes, landed", [(1_500, "minimal"), (80, "none")])
def test_a_dead_letter_the_topic_refuses_is_shrunk_or_counted_and_skipped(
        kafka_broker, unique_topics, tmp_path, max_bytes: int, landed: str):
    """A dead-letter topic with a tiny ``max.message.bytes`` (Apache Kafka enforces topic
    configs): a bad record whose dead letter is too large lands without key and payload; where
    even that is refused, the worker logs and counts it, and goes on with the valid events."""
    events = _events(100)
    topics = _topics(unique_topics)
    bootstrap = kafka_broker.bootstrap
    asyncio.run(_make_small_dead_letter_topic(bootstrap, topics.dead_letters, max_bytes))
    asyncio.run(ensure_topics(bootstrap, topics))
    pills = [(b"k" * 3000, b"\xff" * 5000)]
    ingest = start_worker("ingest", worker_env(bootstrap, unique_topics, unique_topics("ingest"), tmp_path / "ingest"),
                          tmp_path)
    try:
        asyncio.run(_produce(bootstrap, topics.interactions, events, pills))
        wait_for(lambda: committed_total(ingest, topics.interactions) == len(events) + 1, 120,
                 "ingest to get past the refused dead letter")
        samples = ingest.scrape()
        assert ingest.alive
    finally:
        ingest.stop()
    assert metric_sum(samples, "gnnrec_events_applied_total") == len(events)
    assert metric_sum(samples, "gnnrec_dead_letters_total") == 1
    failures = metric_sum(samples, "gnnrec_dead_letter_failures_total")
    if landed == "minimal":
        (record,) = read_topic_sync(bootstrap, topics.dead_letters, 1, 1, timeout_s=30)
        letter = orjson.loads(record.value)
        assert letter["value_b64"] == "" and letter["key_b64"] is None and failures == 0
        assert "key and payload dropped" in letter["detail"] and letter["offset"] == len(events) // 2
    else:
        assert failures == 1
        assert "could not dead-letter" in ingest.log_path.read_text(errors="replace")
