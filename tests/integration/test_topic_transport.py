"""Nothing shared but Kafka, on each real broker (Tansu: no compaction; Apache Kafka: compacted topics).

First the Kafka blob sink and tail (stream/kafka/blob_topic.py) run the contract the in-memory
ones run in tests/stream/kafka/test_blobs.py: blobs read back whole from the beginning, a blob
larger than the broker's message limit chunked under it. Then `gnnrec worker train`, `refresh`
and `score --recommender gnn` run as processes, each on its own data dir and with nothing in
common but the bootstrap servers and topic names (no --model-dir, no --embeddings-dir): the score
worker serves GNN recommendations with the model version the train worker published and the
embedding versions the refresh worker published; then a second score worker, started on a fresh
data dir, bootstraps the bundle and the embeddings from the topics alone, holds exactly the refresh
worker's rows, and serves GNN answers.
"""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import numpy as np
import pytest

from graph_store.embeddings import RocksDBEmbeddingStore
from stream.brokers import BrokerHandle
from stream.kafka.blob_topic import KafkaBlobSink, KafkaTopicTail
from stream.kafka.blobs import BlobAssembler
from stream.kafka.topics import TopicSettings, ensure_topics
from tests.integration.pipeline_support import wait_for, worker_env
from tests.integration.test_gnn_score_worker import _expected, _read
from tests.integration.test_live_workers import PARTITIONS, SMALL, _events, _produce
from workers.runtime.launch import WorkerProcess, metric_sum

pytestmark = pytest.mark.timeout(180)


async def _read_blobs(bootstrap: str, topic: str) -> tuple[list, int]:
    tail = KafkaTopicTail(bootstrap, topic)
    await tail.start()
    assembler, out, fetches = BlobAssembler(), [], 0
    try:
        while True:
            records = await tail.fetch(1.0)
            fetches += 1
            out += [b for r in records for b in assembler.on_record(r.offset, r.key, r.value)]
            if tail.caught_up:
                return out, fetches
    finally:
        await tail.stop()


def test_kafka_sink_and_tail_carry_blobs_larger_than_the_message_limit(kafka_broker: BrokerHandle,
                                                                      unique_topics) -> None:
    bootstrap = kafka_broker.bootstrap
    topics = TopicSettings(models=unique_topics("models"), embeddings=unique_topics("embeddings"))

    async def scenario() -> tuple[list, list, int]:
        await ensure_topics(bootstrap, topics, only=(topics.models, topics.embeddings))
        empty, _ = await _read_blobs(bootstrap, topics.models)  # an empty topic is caught up at once
        sink = KafkaBlobSink(bootstrap, topics.models)
        await sink.start()
        try:
            big = os.urandom(3 * 1024 * 1024)  # three times Apache Kafka's default max.message.bytes
            await sink.publish("bundle/0", "live-1-a", big, {"version": "live-1-a"})
            await sink.publish("bundle/1", "live-2-b", b"small", {"version": "live-2-b"})
        finally:
            await sink.stop()
        blobs, fetches = await _read_blobs(bootstrap, topics.models)
        return empty, [(b.key, b.id, b.data == big or b.data, b.meta) for b in blobs], fetches

    empty, blobs, fetches = asyncio.run(scenario())
    assert empty == []
    assert blobs == [("bundle/0", "live-1-a", True, {"version": "live-1-a"}),
                     ("bundle/1", "live-2-b", b"small", {"version": "live-2-b"})]
    assert fetches >= 1


def _served(worker: WorkerProcess) -> str | None:
    """The embedding version a score worker reports serving, if any."""
    for key, value in worker.scrape().items():
        if key.startswith("gnnrec_embedding_version_info{") and value == 1:
            return key.split('embedding_version="', 1)[1].split('"', 1)[0]
    return None


def _published(worker: WorkerProcess, topic: str) -> float:
    return metric_sum(worker.scrape(), "gnnrec_topic_blobs_total", topic=topic, outcome="published")


def _same_rows(a: Path, b: Path, scratch: Path) -> bool:
    """Whether two live embedding stores hold the same version and rows (read as secondaries)."""
    readers = [RocksDBEmbeddingStore.open_secondary(p, scratch / f"reader-{i}-{time.monotonic_ns()}")
               for i, p in enumerate((a, b))]
    try:
        for node_type in ("user", "item"):
            (va, ia, ma), (vb, ib, mb) = (r.read_all(node_type) for r in readers)
            if va != vb or ia != ib or not np.array_equal(ma, mb):
                return False
        return True
    finally:
        for reader in readers:
            reader.close()


def test_workers_on_separate_data_dirs_share_only_topics(kafka_broker: BrokerHandle, unique_topics,
                                                         tmp_path: Path) -> None:
    bootstrap = kafka_broker.bootstrap
    topics = TopicSettings(interactions=unique_topics("interactions"), follows=unique_topics("follows"),
                           next_item=unique_topics("next-item"), social=unique_topics("social"),
                           dead_letters=unique_topics("dead-letters"), models=unique_topics("models"),
                           embeddings=unique_topics("embeddings"), partitions=PARTITIONS)
    asyncio.run(ensure_topics(bootstrap, topics))
    start_ms = int(time.time() * 1000) - 86_400_000
    history = _events(1500, 3, start_ms)
    asyncio.run(_produce(bootstrap, topics, history))
    # What every worker has in common: the broker and the topic names. Chunks of 4 KiB: bundles
    # and snapshots both span many records.
    common = {"GNNREC_MODELS_TOPIC": topics.models, "GNNREC_EMBEDDINGS_TOPIC": topics.embeddings,
              "GNNREC_STORE": "memory", "GNNREC_PARTITIONS": str(PARTITIONS), "GNNREC_TOPIC_POLL_S": "0.2",
              "GNNREC_TOPIC_CHUNK_BYTES": "4096", "GNNREC_BATCH_TIMEOUT_MS": "50"}
    for var in ("GNNREC_MODEL_DIR", "GNNREC_EMBEDDINGS_DIR", "GNNREC_TRANSPORT"):
        assert var not in os.environ

    def env(role: str, **extra: str) -> dict[str, str]:
        return {**worker_env(bootstrap, unique_topics, unique_topics(role), tmp_path / role), **common, **extra}

    score_env = {"GNNREC_RECOMMENDER": "gnn", "GNNREC_COALESCE": "off", "GNNREC_EMBEDDINGS_POLL_S": "0.2"}
    logs = tmp_path / "logs"
    train = WorkerProcess("train", [], log_path=logs / "train.log", env=env(
        "train", GNNREC_MIN_EVENTS=str(len(history)), GNNREC_TRAIN_INTERVAL_S="3600",
        **{f"GNNREC_{k.upper()}": str(v) for k, v in SMALL.items()})).start()
    refresh = WorkerProcess("refresh", [], log_path=logs / "refresh.log", env=env(
        "refresh", GNNREC_REFRESH_INTERVAL_S="0.3", GNNREC_EMBEDDINGS_SNAPSHOT_EVERY="3")).start()
    score = WorkerProcess("score", [], log_path=logs / "score.log", env=env("score", **score_env)).start()
    fresh = None
    try:
        for worker in (train, refresh, score):
            worker.wait_ready(120)
        wait_for(lambda: _published(train, "models") >= 1, 90, "the train worker publishing a bundle")
        # The run's child publishes; the worker sets its version gauge once it reads the child's report.
        model = wait_for(lambda: next((k.split('version="', 1)[1].split('"', 1)[0] for k, v in train.scrape().items()
                                       if k.startswith("gnnrec_model_version_info{") and v == 1), None),
                         30, "the train worker's model version gauge")
        wait_for(lambda: _published(refresh, "embeddings") >= 1, 60, "the refresh worker publishing embeddings")
        first = wait_for(lambda: (v := _served(score)) and v.startswith(model + "/") and v, 60,
                         "the score worker serving the published model's embeddings")

        live = _events(200, 5, start_ms + 2_000_000)
        asyncio.run(_produce(bootstrap, topics, live))
        got = asyncio.run(_read(bootstrap, topics, sum(_expected(live).values()), live[0].ts, 60))
        gnn = [r for r in got if r.get("embedding_version") is not None]
        assert len(gnn) >= 0.5 * len(got), f"only {len(gnn)} of {len(got)} answered by the GNN"
        assert {r["model_version"] for r in gnn} == {model}
        assert all(r["embedding_version"].startswith(model + "/") for r in gnn) and first

        # The refresh worker's embeddings of the live events reach the running score worker.
        latest = wait_for(lambda: (v := _served(score)) and v != first and v, 30, "a newer embedding version served")
        # A second score worker on a fresh data dir: the topics alone bring it the bundle and rows.
        # (its answers go to topics of their own: it answers the whole history it replays, too)
        fresh_out = topics.model_copy(update={"next_item": unique_topics("next-item-2"),
                                             "social": unique_topics("social-2")})
        fresh_topics = {"GNNREC_NEXT_ITEM_TOPIC": fresh_out.next_item, "GNNREC_SOCIAL_TOPIC": fresh_out.social}
        asyncio.run(ensure_topics(bootstrap, fresh_out))
        fresh = WorkerProcess("score", [], log_path=logs / "score-fresh.log",
                              env={**env("score-fresh", **score_env), **fresh_topics}).start()
        fresh.wait_ready(120)
        wait_for(lambda: _served(fresh) == latest, 60, f"the fresh score worker serving {latest}")
        assert (tmp_path / "score-fresh" / "models" / f"{model}.pt").exists()
        assert _same_rows(tmp_path / "refresh" / "embeddings", tmp_path / "score-fresh" / "embeddings", tmp_path)
        samples = fresh.scrape()
        assert metric_sum(samples, "gnnrec_topic_errors_total") == 0
        assert metric_sum(samples, "gnnrec_topic_blobs_total", topic="embeddings", outcome="applied") >= 1

        more = _events(100, 7, start_ms + 4_000_000)
        asyncio.run(_produce(bootstrap, topics, more))
        got = asyncio.run(_read(bootstrap, fresh_out, sum(_expected(more).values()), more[0].ts, 60))
        gnn = [r for r in got if r.get("embedding_version") is not None]
        assert len(gnn) >= 0.5 * len(got) and {r["model_version"] for r in gnn} == {model}
        for worker in (train, refresh, score):
            assert metric_sum(worker.scrape(), "gnnrec_topic_errors_total") == 0
    finally:
        for worker in (fresh, score, refresh, train):
            if worker is not None:
                worker.stop()
