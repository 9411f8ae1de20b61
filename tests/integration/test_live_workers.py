"""The train and refresh workers' loops on the embedded Tansu broker, in process.

Simulator events go to real topics; the train loop consumes them into its replica and
publishes a bundle; the refresh loop consumes the same topics into its own replica and writes
embeddings to a RocksDB store that a secondary reader (as the scorer does) follows. Checked:
every user and item of the replica has a row under the published version; the rows equal a
full recomputation of the same snapshot; a bundle published mid-stream is swapped in by the
running loop; a refresh that dies inside the write leaves the previous version complete.
The wall clock of the refresh schedule is injected, so the test decides when a refresh runs.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import torch

from graph_store.embeddings import RocksDBEmbeddingStore
from stream.brokers import BrokerHandle, BrokerUnavailable
from stream.producer import EventProducer
from stream.simulator import BadRecord, Simulator, SimulatorSettings
from stream.topics import TopicSettings, ensure_topics
from tests.integration.conftest import BrokerPool, unavailable
from tests.workers.test_refresh_worker import FailingWrites, assert_matches_full, fresh_oracle
from workers.live.bundle import latest_version
from workers.live.train import LiveTrainConfig
from workers.refresh_worker import RefreshLoop
from workers.settings import RefreshSettings, TrainSettings
from workers.stores import open_store
from workers.train_worker import TrainLoop, train_and_publish

pytestmark = pytest.mark.timeout(120)
torch.set_num_threads(1)

PARTITIONS = 2
SMALL = {"dim": 8, "num_layers": 2, "lightgcn_epochs": 3, "srgnn_epochs": 1, "social_epochs": 1}


@pytest.fixture
def tansu(broker_pool: BrokerPool) -> BrokerHandle:
    try:
        return broker_pool.get("tansu")
    except BrokerUnavailable as exc:
        unavailable(f"tansu broker unavailable: {exc}")


class Wall:
    """The refresh schedule's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _events(n: int, seed: int, start_ms: int) -> list:
    sim = Simulator(SimulatorSettings(n_users=120, n_items=240, n_categories=8, seed=seed))
    return [e for e in sim.events(start_ms=start_ms, n=n, step_ms=1000) if not isinstance(e, BadRecord)]


async def _produce(bootstrap: str, topics: TopicSettings, events: list) -> int:
    async with EventProducer(bootstrap, topics) as producer:
        for ev in events:
            await producer.send_event(ev)
        await producer.flush()
    return len(events)


async def _run_until(loop, done, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await loop.run_once()


def test_train_then_refresh_swap_and_failed_write(tansu: BrokerHandle, unique_topics, tmp_path: Path) -> None:
    asyncio.run(_scenario(tansu.bootstrap, unique_topics, tmp_path))


async def _scenario(bootstrap: str, unique_topics, tmp_path: Path) -> None:
    topics = TopicSettings(interactions=unique_topics("interactions"), follows=unique_topics("follows"),
                           next_item=unique_topics("next-item"), social=unique_topics("social"),
                           dead_letters=unique_topics("dead-letters"), partitions=PARTITIONS)
    await ensure_topics(bootstrap, topics)
    common = dict(bootstrap_servers=bootstrap, interactions_topic=topics.interactions,
                  follows_topic=topics.follows, dead_letters_topic=topics.dead_letters, partitions=PARTITIONS,
                  store="memory", half_life_hours=float("inf"), model_dir=tmp_path / "models", batch_timeout_ms=50)
    start_ms = int(time.time() * 1000) - 86_400_000
    produced = await _produce(bootstrap, topics, _events(1500, 3, start_ms))

    # --- train: consume everything, train once, publish ------------------------------------------
    train_settings = TrainSettings(**common, group_id=unique_topics("train"), data_dir=tmp_path / "train",
                                   min_events=produced, train_interval_s=3600, **SMALL)
    trainer = TrainLoop(train_settings, open_store(train_settings))
    await trainer.start()
    try:
        await _run_until(trainer, lambda: trainer.published >= 1, "the first training run")
    finally:
        await trainer.stop()
    first_model = trainer.last_published.version
    assert latest_version(tmp_path / "models") == first_model
    assert trainer.feed.consumed_total == produced

    # --- refresh: rebuild with the published model ------------------------------------------------
    wall = Wall()
    settings = RefreshSettings(**common, group_id=unique_topics("refresh"), data_dir=tmp_path / "refresh",
                               embeddings_dir=tmp_path / "emb", refresh_interval_s=10)
    emb = FailingWrites(settings.embeddings_dir)
    reader = RocksDBEmbeddingStore.open_secondary(settings.embeddings_dir, tmp_path / "reader")
    loop = RefreshLoop(settings, open_store(settings), emb, wall=wall)
    store = loop.store
    await loop.start()
    try:
        async def refresh_after(total: int) -> str:
            await _run_until(loop.feed, lambda: loop.feed.consumed_total >= total, f"{total} records")
            wall.now += settings.refresh_interval_s
            await loop.run_once()
            return loop.core.last.kind

        assert await refresh_after(produced) == "rebuild"
        reader.catch_up()
        v1 = reader.version()
        assert v1 == f"{first_model}/r1/w{store.watermark_ms()}"
        assert_matches_full(reader, store, loop.core.refresher)

        # --- more events: a local refresh, new version --------------------------------------------
        produced += await _produce(bootstrap, topics, _events(300, 9, start_ms + 2_000_000))
        assert await refresh_after(produced) == "local"
        reader.catch_up()
        v2 = reader.version()
        assert v2 == f"{first_model}/r2/w{store.watermark_ms()}" and v2 != v1
        assert loop.core.last.result.recomputed < store.counts().users + store.counts().items
        assert_matches_full(reader, store, loop.core.refresher)
        fresh_oracle(reader, store, trainer.last_published, store.watermark_ms())

        # --- a new bundle mid-stream: the running loop swaps it in --------------------------------
        produced += await _produce(bootstrap, topics, _events(300, 10, start_ms + 4_000_000))
        await _run_until(loop.feed, lambda: loop.feed.consumed_total >= produced, "the third batch")
        new = train_and_publish(store, settings.model_dir, LiveTrainConfig(**SMALL, seed=1))
        assert new is not None and new.version != first_model
        assert await refresh_after(produced) == "swap"
        reader.catch_up()
        assert reader.version() == f"{new.version}/r3/w{store.watermark_ms()}"
        assert_matches_full(reader, store, loop.core.refresher)
        fresh_oracle(reader, store, new, store.watermark_ms())

        # --- a refresh dying inside the write: previous version stays, complete -------------------
        before = {t: reader.read_all(t) for t in ("user", "item")}
        produced += await _produce(bootstrap, topics, _events(300, 11, start_ms + 6_000_000))
        emb.fail = True
        assert await refresh_after(produced) == "error"
        reader.catch_up()
        for node_type in ("user", "item"):
            version, ids, matrix = reader.read_all(node_type)
            assert version == before[node_type][0]
            assert ids == before[node_type][1]
            assert (matrix == before[node_type][2]).all()
        emb.fail = False
        assert await refresh_after(produced) == "rebuild"
        reader.catch_up()
        assert reader.version() == f"{new.version}/r5/w{store.watermark_ms()}"
        assert_matches_full(reader, store, loop.core.refresher)
        fresh_oracle(reader, store, new, store.watermark_ms())
    finally:
        await loop.stop()
        reader.close()
        emb.close()
