"""End to end on real brokers (Tansu and Apache Kafka), with real worker processes.

Replays 10,000 YooChoose interactions plus one malformed record of each kind, then checks:
every interaction got a next-item recommendation; the ingest store's counts equal counts
computed directly from the file and its weights equal a batch-built oracle; every malformed
record is in the dead-letter topic with its original bytes and reason, and counted; and an
ingest worker killed mid-stream and restarted still ends equal to the oracle.
"""
from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter

import orjson
import pytest

from graph_store import MemoryGraphStore, RocksDBGraphStore, StoreSettings
from graph_store.rocksdb.native import native_available
from stream.events.badinput import malformed_samples
from stream.events import decode_recommendation
from stream.kafka.producer import EventProducer
from stream.kafka.topics import TopicSettings, ensure_topics
from tests.integration.pipeline_support import (assert_stores_equal, committed_total, read_topic_sync, start_worker,
                                                wait_for, worker_env, yoochoose_rows)
from workers.runtime.launch import metric_sum

N_EVENTS = 10_000
PARTITIONS = 4

pytestmark = [pytest.mark.data]


def _topics(unique_topics) -> TopicSettings:
    return TopicSettings(interactions=unique_topics("interactions"), follows=unique_topics("follows"),
                         next_item=unique_topics("next-item"), social=unique_topics("social"),
                         dead_letters=unique_topics("dead-letters"), partitions=PARTITIONS)


async def _produce(bootstrap: str, topics: TopicSettings, events, bad: list[tuple[str, bytes]], rate: float | None):
    producer = EventProducer(bootstrap, topics)
    await producer.start()
    try:
        for i, ev in enumerate(events):
            await producer.send_event(ev)
            if rate and i % 100 == 99:
                await asyncio.sleep(100 / rate)
            if bad and i == len(events) // 2:
                for _, raw in bad:  # malformed records in the middle of the stream
                    await producer.send_raw(topics.interactions, b"bad-key", raw)
        await producer.flush()
    finally:
        await producer.stop()


def _oracle(events) -> MemoryGraphStore:
    oracle = MemoryGraphStore(StoreSettings())
    oracle.apply_many(events)
    return oracle


def test_replay_end_to_end(kafka_broker, unique_topics, shared_data, tmp_path):
    events, expected = yoochoose_rows(shared_data, N_EVENTS)
    topics = _topics(unique_topics)
    bootstrap = kafka_broker.bootstrap
    asyncio.run(ensure_topics(bootstrap, topics))
    bad = malformed_samples(now_ms=int(time.time() * 1000))  # "far future" is relative to the workers' clock
    ingest = start_worker("ingest", worker_env(bootstrap, unique_topics, unique_topics("ingest"), tmp_path / "ingest"),
                          tmp_path)
    # One answer per event (a replay at full speed would otherwise coalesce: test_burst.py).
    score = start_worker("score", {**worker_env(bootstrap, unique_topics, unique_topics("score"), tmp_path / "score"),
                                   "GNNREC_COALESCE": "off"}, tmp_path)
    try:
        asyncio.run(_produce(bootstrap, topics, events, bad, rate=None))
        wait_for(lambda: committed_total(ingest, topics.interactions) == N_EVENTS + len(bad), 180,
                 "ingest to store every record")
        recs = read_topic_sync(bootstrap, topics.next_item, topics.partitions_of(topics.next_item), N_EVENTS,
                               timeout_s=180)
        dead = read_topic_sync(bootstrap, topics.dead_letters, PARTITIONS, len(bad), timeout_s=60)
        samples = ingest.scrape()
    finally:
        ingest.stop()
        score.stop()

    # Every interaction yields exactly one next-item recommendation, for its own session.
    decoded = [decode_recommendation(r.value) for r in recs]
    assert len(decoded) == N_EVENTS
    assert Counter(r.session_id for r in decoded) == Counter(e.session_id for e in events)
    assert all(r.kind == "next_item" and len(r.items) <= 20 for r in decoded)
    # Only the cold start can give an empty list (the catalogue holds nothing outside the session).
    by_emission = sorted(decoded, key=lambda r: r.emitted_ts)
    assert all(r.items for r in by_emission[20:])

    # Each malformed record is dead-lettered once, with its bytes, source and reason, and counted.
    letters = [orjson.loads(r.value) for r in dead]
    assert sorted(base64.b64decode(d["value_b64"]) for d in letters) == sorted(raw for _, raw in bad)
    assert Counter(d["reason"] for d in letters) == Counter(reason for reason, _ in bad)
    assert all(d["source_topic"] == topics.interactions and d["offset"] >= 0 for d in letters)
    assert metric_sum(samples, "gnnrec_dead_letters_total") == len(bad)
    assert metric_sum(samples, "gnnrec_events_applied_total") == N_EVENTS
    if native_available():  # the production hot path: record batches read by the kernel
        assert metric_sum(samples, "gnnrec_ingest_path_info", store="NativeRocksDBGraphStore", fetch="chunks") == 1

    # The store equals counts taken straight from the file, and a batch-built oracle.
    with RocksDBGraphStore(tmp_path / "ingest" / "graph", StoreSettings()) as store:
        counts = store.counts()
        assert (counts.interactions, counts.sessions, counts.items, counts.users) == (
            expected.interactions, expected.sessions, expected.items, expected.sessions)
        assert counts.edges["ui"] == expected.user_item_edges
        assert counts.edges["ii"] == expected.transition_edges
        assert_stores_equal(store, _oracle(events), now_ms=events[-1].ts)


def test_ingest_killed_mid_stream_resumes_exactly(kafka_broker, unique_topics, shared_data, tmp_path):
    events, _ = yoochoose_rows(shared_data, N_EVENTS)
    topics = _topics(unique_topics)
    bootstrap = kafka_broker.bootstrap
    asyncio.run(ensure_topics(bootstrap, topics))
    env = worker_env(bootstrap, unique_topics, unique_topics("ingest"), tmp_path / "ingest")
    ingest = start_worker("ingest", env, tmp_path)
    try:
        loop = asyncio.new_event_loop()
        producing = loop.create_task(_produce(bootstrap, topics, events, [], rate=2_000))
        # Run the producer in the background thread-free: step the loop until the store has
        # part of the stream, then crash the worker while events are still arriving.
        while committed_total(ingest, topics.interactions) < N_EVENTS // 5:
            loop.run_until_complete(asyncio.sleep(0.05))
        at_kill = committed_total(ingest, topics.interactions)
        ingest.kill()
        loop.run_until_complete(producing)
        loop.close()
        assert 0 < at_kill < N_EVENTS, f"kill was not mid-stream ({at_kill} of {N_EVENTS} stored)"
        ingest = start_worker("ingest", env, tmp_path)
        wait_for(lambda: committed_total(ingest, topics.interactions) == N_EVENTS, 180,
                 "the restarted worker to store the rest")
    finally:
        ingest.stop()
    with RocksDBGraphStore(tmp_path / "ingest" / "graph", StoreSettings()) as store:
        assert store.counts().interactions == N_EVENTS  # no loss, no double counting
        assert_stores_equal(store, _oracle(events), now_ms=events[-1].ts)
