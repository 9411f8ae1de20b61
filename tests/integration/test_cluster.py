"""The pipeline on a 3-broker Apache Kafka cluster, a partition leader SIGKILLed mid-stream and restarted.

Topics have 3 replicas with ``min.insync.replicas=2``; the test producer and both workers send
with ``acks=all`` and idempotence. While simulator events stream in, the broker leading the first
interactions partition is crashed, producing goes on, and the broker is started again on its
data. Afterwards: the interactions and follows topics hold every produced event once and in
order; the ingest store equals a batch-built oracle; and every interaction got a next-item
answer from the score worker, each answer naming its event's topic, partition and offset.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from graph_store import MemoryGraphStore, RocksDBGraphStore, StoreSettings
from stream.brokers import BrokerUnavailable, ClusterHandle, start_apache_cluster
from stream.events import Follow, Interaction, Invalid, decode_follow, decode_interaction, decode_recommendation
from stream.kafka.producer import EventProducer
from stream.kafka.topics import TopicSettings, ensure_topics
from stream.simulator import Simulator, SimulatorSettings
from tests.integration.conftest import unavailable
from tests.integration.pipeline_support import (assert_stores_equal, committed_total, read_topic_sync, wait_for,
                                                worker_env)
from workers.runtime.launch import WorkerProcess

N_EVENTS = 3_000
RATE = 600  # events/s: the stream lasts ~5 s, across the crash and the restart
PARTITIONS = 4
REPLICAS = 3


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    try:
        cluster = start_apache_cluster(REPLICAS, log_dir=tmp_path_factory.mktemp("cluster-logs"))
    except BrokerUnavailable as exc:
        unavailable(f"3-node Apache Kafka cluster unavailable: {exc}")
    yield cluster
    cluster.stop()


class _Producing(threading.Thread):
    """Sends ``events`` at ``RATE`` with acks=all and idempotence; ``sent`` counts queued records."""

    def __init__(self, bootstrap: str, topics: TopicSettings, events: list) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topics, self.events = bootstrap, topics, events
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._produce())
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test thread
            self.error = exc

    async def _produce(self) -> None:
        async with EventProducer(self.bootstrap, self.topics, idempotent=True, linger_ms=5) as producer:
            for k, event in enumerate(self.events):
                await producer.send_event(event)
                self.sent = k + 1
                if k % 30 == 29:
                    await asyncio.sleep(30 / RATE)


async def _partitions(bootstrap: str, topics: TopicSettings) -> dict[tuple[str, int], dict]:
    """(topic, partition) → its metadata (``leader``, ``replicas``, ``isr``: node ids)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics.names()))
    finally:
        await admin.close()
    return {(t["topic"], p["partition"]): p for t in described for p in t["partitions"]}


def _log_of(bootstrap: str, topic: str, decode, expect: int) -> dict[tuple[int, int], object]:
    """(partition, offset) → the event stored there, read back from ``topic``."""
    out = {}
    for rec in read_topic_sync(bootstrap, topic, PARTITIONS, expect, timeout_s=60):
        event = decode(rec.value, now_ms=2 * int(time.time() * 1000))
        assert not isinstance(event, Invalid), f"{topic} {rec.partition}/{rec.offset} holds a bad record: {event}"
        out[(rec.partition, rec.offset)] = event
    return out


def test_pipeline_on_a_replicated_cluster_loses_nothing_when_a_broker_crashes_mid_stream(
        kafka_cluster: ClusterHandle, unique_topics, tmp_path) -> None:
    bootstrap = kafka_cluster.bootstrap
    topics = TopicSettings(interactions=unique_topics("interactions"), follows=unique_topics("follows"),
                           next_item=unique_topics("next-item"), social=unique_topics("social"),
                           dead_letters=unique_topics("dead-letters"), partitions=PARTITIONS,
                           recommendation_partitions=PARTITIONS, replication=REPLICAS)
    asyncio.run(ensure_topics(bootstrap, topics, timeout_s=60))
    layout = asyncio.run(_partitions(bootstrap, topics))
    assert {len(p["replicas"]) for p in layout.values()} == {REPLICAS}
    # The broker crashed is the leader of an interactions partition: its producers and
    # consumers must move to a new leader, not just lose a follower.
    crashed = layout[(topics.interactions, 0)]["leader"] - 1  # node ids are 1-based

    cluster_env = {"GNNREC_REPLICATION_FACTOR": str(REPLICAS), "GNNREC_IDEMPOTENT_PRODUCERS": "true",
                   "GNNREC_PARTITIONS": str(PARTITIONS), "GNNREC_RECOMMENDATION_PARTITIONS": str(PARTITIONS)}
    ingest = WorkerProcess("ingest", [], log_path=tmp_path / "ingest.log", env={
        **worker_env(bootstrap, unique_topics, unique_topics("ingest"), tmp_path / "ingest"), **cluster_env})
    # One answer per event: without coalescing a burst is never answered only in part.
    score = WorkerProcess("score", [], log_path=tmp_path / "score.log", env={
        **worker_env(bootstrap, unique_topics, unique_topics("score"), tmp_path / "score"), **cluster_env,
        "GNNREC_COALESCE": "off"})
    events = list(Simulator(SimulatorSettings(seed=5)).events(
        start_ms=int(time.time() * 1000) - 600_000, n=N_EVENTS, step_ms=100))
    interactions = [e for e in events if isinstance(e, Interaction)]
    follows = [e for e in events if isinstance(e, Follow)]
    producing = _Producing(bootstrap, topics, events)
    try:
        for worker in (ingest.start(), score.start()):
            worker.wait_ready(120)
        producing.start()
        wait_for(lambda: producing.sent >= N_EVENTS // 3 or producing.error, 60, "a third of the stream sent",
                 poll_s=0.02)
        stored_at_crash = committed_total(ingest, topics.interactions)
        kafka_cluster.stop_node(crashed, kill=True)
        wait_for(lambda: producing.sent >= 2 * N_EVENTS // 3 or producing.error or not producing.is_alive(), 60,
                 "two thirds of the stream sent with a broker down", poll_s=0.02)
        sent_while_down = producing.sent - N_EVENTS // 3
        kafka_cluster.start_node(crashed)
        producing.join(120)
        if producing.error is not None:
            raise producing.error
        assert 0 < stored_at_crash < len(interactions), f"the crash was not mid-stream ({stored_at_crash} stored)"
        assert sent_while_down > 0, "nothing was produced while the broker was down"

        # The log holds each produced event once, in order per partition (acks=all, idempotence).
        log = _log_of(bootstrap, topics.interactions, decode_interaction, len(interactions))
        assert len(log) == len(interactions)
        assert sorted(log.values(), key=lambda e: e.ts) == sorted(interactions, key=lambda e: e.ts)
        for partition in range(PARTITIONS):
            in_log = [log[k] for k in sorted(log) if k[0] == partition]
            assert [e.ts for e in in_log] == sorted(e.ts for e in in_log), "partition order"
        follow_log = _log_of(bootstrap, topics.follows, decode_follow, len(follows))
        assert sorted(follow_log.values(), key=lambda e: e.ts) == sorted(follows, key=lambda e: e.ts)

        wait_for(lambda: committed_total(ingest, topics.interactions) == len(interactions)
                 and committed_total(ingest, topics.follows) == len(follows), 120, "ingest to store every event")
        recs = [decode_recommendation(r.value) for r in read_topic_sync(
            bootstrap, topics.next_item, PARTITIONS, len(interactions), timeout_s=120)]
    finally:
        ingest.stop()
        score.stop()

    # Every interaction answered at least once, by an answer naming its own event.
    assert all(r.source is not None and r.source.topic == topics.interactions for r in recs)
    answered = {(r.source.partition, r.source.offset): r for r in recs}
    missing = set(log) - set(answered)
    assert not missing, f"{len(missing)} of {len(log)} interactions got no next-item answer"
    assert set(answered) == set(log), "an answer names an offset that holds no interaction"
    for key, r in answered.items():
        assert (r.user_id, r.session_id, r.event_ts) == (log[key].user_id, log[key].session_id, log[key].ts)

    # The ingest store equals the same events applied in one batch.
    oracle = MemoryGraphStore(StoreSettings())
    oracle.apply_many(events)
    with RocksDBGraphStore(tmp_path / "ingest" / "graph", StoreSettings()) as store:
        assert_stores_equal(store, oracle, now_ms=events[-1].ts)
