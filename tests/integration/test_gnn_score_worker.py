"""`gnnrec worker score --recommender gnn` as a process on each real broker (Tansu, Apache Kafka).

A bundle is trained on simulator history and its embeddings written as the refresh worker
writes them; the score worker replays the history, then serves live events. Mid-stream a second
bundle and its embeddings are published; once the worker reports serving them, more events go
through. Checked from what arrives on the recommendation topics: every live event got exactly
its recommendations (2 per interaction, 1 per follow: none lost, none doubled), the GNN answered
with the version it was serving at the time, every list ranks known items in score order, and
the old version never appears after the swap was reported.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
import torch
from aiokafka import AIOKafkaConsumer, TopicPartition

from graph_store import MemoryGraphStore, StoreSettings
from graph_store.embeddings import RocksDBEmbeddingStore
from stream.events import Interaction
from stream.kafka.topics import TopicSettings, ensure_topics
from tests.integration.pipeline_support import wait_for, worker_env
from tests.integration.test_live_workers import PARTITIONS, SMALL, _events, _produce
from workers.runtime.launch import WorkerProcess, metric_sum
from models.live.bundle import ModelBundle, publish
from models.live.refresher import Refresher
from models.live.train import LiveTrainConfig, train_bundle

pytestmark = pytest.mark.timeout(180)
torch.set_num_threads(1)


def _publish_with_embeddings(store: MemoryGraphStore, models: Path, emb_dir: Path,
                             seed: int) -> tuple[ModelBundle, str]:
    """Train + publish a bundle and write its full embeddings as one version (as the refresh worker does)."""
    now = store.watermark_ms()
    bundle = train_bundle(store, now, LiveTrainConfig(**SMALL, seed=seed))
    publish(bundle, models)
    result = Refresher(bundle).rebuild(store, now)
    version = f"{result.embedding_version}/w{result.watermark_ms}"
    with RocksDBEmbeddingStore(emb_dir) as writer:
        for node_type, (ids, vectors) in result.rows.items():
            writer.put_many(node_type, ids, vectors, version)
    return bundle, version


async def _read(bootstrap: str, topics: TopicSettings, want: int, since_ms: int, timeout_s: float) -> list[dict]:
    """Every recommendation for events at or after ``since_ms`` (event time), until ``want`` arrived."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    out: list[dict] = []
    try:
        consumer.assign([TopicPartition(t, p) for t in (topics.next_item, topics.social)
                         for p in range(topics.partitions_of(t))])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=200)).values():
                out.extend(r for m in msgs if (r := orjson.loads(m.value))["event_ts"] >= since_ms)
            if len(out) >= want:
                await asyncio.sleep(1.0)  # anything beyond `want` would be a duplicate: give it time to show
                for msgs in (await consumer.getmany(timeout_ms=500)).values():
                    out.extend(r for m in msgs if (r := orjson.loads(m.value))["event_ts"] >= since_ms)
                return out
    finally:
        await consumer.stop()
    raise AssertionError(f"only {len(out)} of {want} recommendations arrived in {timeout_s:.0f}s")


def _serving(score: WorkerProcess, embedding_version: str) -> bool:
    samples = score.scrape()
    return metric_sum(samples, "gnnrec_embedding_version_info", embedding_version=embedding_version) == 1


def _expected(events: list) -> Counter:
    """(user, event_ts, kind) of every recommendation the events must produce."""
    want: Counter = Counter()
    for ev in events:
        if isinstance(ev, Interaction):
            want[(ev.user_id, ev.ts, "next_item")] += 1
            want[(ev.user_id, ev.ts, "social")] += 1
        else:
            want[(ev.src_user, ev.ts, "social")] += 1
    return want


def test_gnn_score_worker_serves_swaps_and_loses_nothing(kafka_broker, unique_topics, tmp_path: Path) -> None:
    bootstrap = kafka_broker.bootstrap
    topics = TopicSettings(interactions=unique_topics("interactions"), follows=unique_topics("follows"),
                           next_item=unique_topics("next-item"), social=unique_topics("social"),
                           dead_letters=unique_topics("dead-letters"), partitions=PARTITIONS)
    asyncio.run(ensure_topics(bootstrap, topics))
    start_ms = int(time.time() * 1000) - 86_400_000
    history = _events(1500, 3, start_ms)
    asyncio.run(_produce(bootstrap, topics, history))
    oracle = MemoryGraphStore(StoreSettings())
    oracle.apply_many(history)
    models, emb_dir = tmp_path / "models", tmp_path / "emb"
    first, first_emb = _publish_with_embeddings(oracle, models, emb_dir, seed=0)

    env = {**worker_env(bootstrap, unique_topics, unique_topics("score"), tmp_path / "score"), "GNNREC_COALESCE": "off",
           "GNNREC_RECOMMENDER": "gnn", "GNNREC_MODEL_DIR": str(models), "GNNREC_EMBEDDINGS_DIR": str(emb_dir),
           "GNNREC_EMBEDDINGS_POLL_S": "0.2", "GNNREC_STORE": "memory", "GNNREC_PARTITIONS": str(PARTITIONS),
           "GNNREC_BATCH_TIMEOUT_MS": "50"}
    score = WorkerProcess("score", [], env=env, log_path=tmp_path / "logs" / "score.log").start()
    try:
        score.wait_ready(120)
        wait_for(lambda: metric_sum(score.scrape(), "gnnrec_events_applied_total") >= len(history), 60,
                 "the score worker replaying the history")
        wait_for(lambda: _serving(score, first_emb), 30, "the score worker serving the first embeddings")

        before = _events(200, 5, start_ms + 2_000_000)
        asyncio.run(_produce(bootstrap, topics, before))
        got_before = asyncio.run(_read(bootstrap, topics, sum(_expected(before).values()), before[0].ts, 60))

        oracle.apply_many(before)
        second, second_emb = _publish_with_embeddings(oracle, models, emb_dir, seed=1)
        wait_for(lambda: _serving(score, second_emb), 30, "the score worker serving the swapped bundle's embeddings")
        after = _events(200, 7, start_ms + 4_000_000)
        asyncio.run(_produce(bootstrap, topics, after))
        got_after = asyncio.run(_read(bootstrap, topics, sum(_expected(after).values()), after[0].ts, 60))
        rejected = metric_sum(score.scrape(), "gnnrec_events_rejected_total")
    finally:
        score.stop()

    assert rejected == 0
    oracle.apply_many(after)
    items = set(oracle.node_ids("item"))  # every item any event so far named
    phases = ((got_before, before, first, first_emb), (got_after, after, second, second_emb))
    for got, events, bundle, emb in phases:
        # exactly the recommendations these events call for: none lost, none sent twice
        assert Counter((r["user_id"], r["event_ts"], r["kind"]) for r in got) == _expected(events)
        gnn = [r for r in got if r.get("embedding_version") is not None]
        assert len(gnn) >= 0.5 * len(got), f"only {len(gnn)} of {len(got)} answered by the GNN"
        assert {(r["model_version"], r["embedding_version"]) for r in gnn} == {(bundle.version, emb)}
        for r in got:
            scores = [it["score"] for it in r["items"]]
            assert 0 < len(scores) <= 20 and scores == sorted(scores, reverse=True)
            assert {it["item_id"] for it in r["items"]} <= items
