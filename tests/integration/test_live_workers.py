"""The train and refresh workers on each real broker (Tansu, Apache Kafka): loops in process, then the CLI.

Simulator events go to real topics; the train loop consumes them into its replica and
publishes a bundle; the refresh loop consumes the same topics into its own replica and writes
embeddings to a RocksDB store that a secondary reader (as the scorer does) follows. Checked:
every user and item of the replica has a row under the published version; the rows equal a
full recomputation of the same snapshot; a bundle published mid-stream is swapped in by the
running loop; a refresh that dies inside the write leaves the previous version complete.
The wall clock of the refresh schedule is injected, so the test decides when a refresh runs.
Then `gnnrec worker train` and `gnnrec worker refresh` run as processes (metrics scraped), swap a
bundle published mid-stream, and the refresh worker is SIGKILLed: its last version stays whole.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import torch

from graph_store import MemoryGraphStore, StoreSettings
from graph_store.embeddings import RocksDBEmbeddingStore
from stream.brokers import BrokerHandle
from stream.kafka.producer import EventProducer
from stream.simulator import BadRecord, Simulator, SimulatorSettings
from stream.kafka.topics import TopicSettings, ensure_topics
from tests.integration.pipeline_support import wait_for, worker_env
from tests.workers.refresh.test_loop import FailingWrites, assert_matches_full, fresh_oracle
from workers.runtime.launch import WorkerProcess, metric_sum
from models.live.bundle import latest_version, publish
from models.live.train import LiveTrainConfig, train_bundle
from workers.refresh.loop import RefreshLoop
from workers.runtime.settings import RefreshSettings, TrainSettings
from workers.runtime.stores import open_store
from workers.train.loop import TrainLoop
from workers.train.process import TrainProcess

pytestmark = pytest.mark.timeout(120)
torch.set_num_threads(1)

PARTITIONS = 2
SMALL = {"dim": 8, "num_layers": 2, "lightgcn_epochs": 3, "srgnn_epochs": 1, "social_epochs": 1}


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


def test_train_then_refresh_swap_and_failed_write(kafka_broker: BrokerHandle, unique_topics, tmp_path: Path) -> None:
    asyncio.run(_scenario(kafka_broker.bootstrap, unique_topics, tmp_path))


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
    hold = tmp_path / "go"  # the run's child waits for this file: a training in progress while events arrive
    launched = []

    def launch(inputs, cfg):
        launched.append(inputs)
        return TrainProcess(inputs, train_settings.model_dir, cfg, budget_s=None, work_dir=tmp_path / "run",
                            hold=hold)

    trainer = TrainLoop(train_settings, open_store(train_settings), launch=launch)
    await trainer.start()
    try:
        await _run_until(trainer, lambda: trainer.running is not None, "the first training run to start")
        snapshot_ms = launched[0].now_ms
        assert snapshot_ms == trainer.store.watermark_ms() and not launched[0].sampled
        produced += await _produce(bootstrap, topics, _events(300, 9, start_ms + 2_000_000))
        # The consumer goes on while the run trains: the store's committed offsets reach the end.
        await _run_until(trainer, lambda: sum(trainer.store.committed_offsets().values()) == produced,
                         "the records produced during the run to be applied")
        assert trainer.running is not None and trainer.running.process.exitcode is None
        hold.touch()
        await _run_until(trainer, lambda: trainer.published >= 1, "the run to publish", timeout_s=90)
    finally:
        hold.touch()
        await trainer.stop()
    first_model = trainer.last_outcome.version
    assert trainer.runs == 1 and trainer.idle_wait() == train_settings.idle_poll_s  # the next is an interval away
    assert trainer.last_outcome.trained_at_ms == snapshot_ms  # trained on the inputs read at its start
    assert trainer.store.watermark_ms() > snapshot_ms
    assert latest_version(tmp_path / "models") == first_model

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
        # Caught up: it waits idle_poll_s before fetching again, never past the next refresh.
        assert loop.idle_wait() == settings.idle_poll_s
        wall.now += settings.refresh_interval_s - 0.1
        assert loop.idle_wait() == pytest.approx(0.1)
        wall.now -= settings.refresh_interval_s - 0.1
        reader.catch_up()
        v1 = reader.version()
        assert v1 == f"{first_model}/r1/w{store.watermark_ms()}"
        assert_matches_full(reader, store, loop.core.refresher)

        # --- more events: a local refresh, new version --------------------------------------------
        produced += await _produce(bootstrap, topics, _events(300, 12, start_ms + 3_000_000))
        assert await refresh_after(produced) == "local"
        reader.catch_up()
        v2 = reader.version()
        assert v2 == f"{first_model}/r2/w{store.watermark_ms()}" and v2 != v1
        assert loop.core.last.result.recomputed < store.counts().users + store.counts().items
        # Against a full propagation of the same x0 only: nodes new to the bundle got their
        # inductive ego at first sight (the previous refresh), which a from-scratch rebuild
        # would recompute from their neighbours as of now.
        assert_matches_full(reader, store, loop.core.refresher)

        # --- a new bundle mid-stream: the running loop swaps it in --------------------------------
        produced += await _produce(bootstrap, topics, _events(300, 10, start_ms + 4_000_000))
        await _run_until(loop.feed, lambda: loop.feed.consumed_total >= produced, "the third batch")
        new = train_bundle(store, store.watermark_ms(), LiveTrainConfig(**SMALL, seed=1))
        publish(new, settings.model_dir)
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
        # Caught up: it waits idle_poll_s before fetching again, never past the next refresh.
        assert loop.idle_wait() == settings.idle_poll_s
        wall.now += settings.refresh_interval_s - 0.1
        assert loop.idle_wait() == pytest.approx(0.1)
        wall.now -= settings.refresh_interval_s - 0.1
        reader.catch_up()
        assert reader.version() == f"{new.version}/r5/w{store.watermark_ms()}"
        assert_matches_full(reader, store, loop.core.refresher)
        fresh_oracle(reader, store, new, store.watermark_ms())
    finally:
        await loop.stop()
        reader.close()
        emb.close()


def _whole_version(reader: RocksDBEmbeddingStore, oracle: MemoryGraphStore) -> str | None:
    """The reader's version if it covers every user and item of ``oracle`` at its watermark, else None.

    A refresh can reach the oracle's watermark (the largest timestamp) before every event is in:
    the partitions arrive in any order. The next refresh, same watermark, then covers the rest.
    """
    reader.catch_up()
    version = reader.version()
    if version is None or not version.endswith(f"/w{oracle.watermark_ms()}"):
        return None
    for node_type in ("user", "item"):
        if reader.read_all(node_type)[1] != sorted(oracle.node_ids(node_type), key=str.encode):
            return None
    return version


def test_cli_workers_publish_swap_and_survive_sigkill(kafka_broker: BrokerHandle, unique_topics, tmp_path: Path) -> None:
    """`gnnrec worker train` and `gnnrec worker refresh` as processes; the refresh one is SIGKILLed."""
    topics = TopicSettings(interactions=unique_topics("interactions"), follows=unique_topics("follows"),
                           next_item=unique_topics("next-item"), social=unique_topics("social"),
                           dead_letters=unique_topics("dead-letters"), partitions=PARTITIONS)
    asyncio.run(ensure_topics(kafka_broker.bootstrap, topics))
    start_ms = int(time.time() * 1000) - 86_400_000
    events = _events(1500, 3, start_ms)
    asyncio.run(_produce(kafka_broker.bootstrap, topics, events))
    oracle = MemoryGraphStore(StoreSettings())
    oracle.apply_many(events)
    models, emb_dir = tmp_path / "models", tmp_path / "emb"
    shared = {"GNNREC_MODEL_DIR": str(models), "GNNREC_STORE": "memory", "GNNREC_PARTITIONS": str(PARTITIONS)}
    train_env = {**worker_env(kafka_broker.bootstrap, unique_topics, unique_topics("train"), tmp_path / "train"), **shared,
                 **{f"GNNREC_{k.upper()}": str(v) for k, v in SMALL.items()},
                 "GNNREC_MIN_EVENTS": str(len(events)), "GNNREC_TRAIN_INTERVAL_S": "3600"}
    refresh_env = {**worker_env(kafka_broker.bootstrap, unique_topics, unique_topics("refresh"), tmp_path / "refresh"),
                   **shared, "GNNREC_EMBEDDINGS_DIR": str(emb_dir), "GNNREC_REFRESH_INTERVAL_S": "0.3"}
    # Both at once: the refresh worker consumes and waits until the trainer publishes.
    train = WorkerProcess("train", [], env=train_env, log_path=tmp_path / "logs" / "train.log").start()
    refresh = WorkerProcess("refresh", [], env=refresh_env, log_path=tmp_path / "logs" / "refresh.log").start()
    try:
        train.wait_ready(120)
        refresh.wait_ready(120)
        model = wait_for(lambda: latest_version(models), 60, "the first published model")
        # The child publishes, then the worker reads its report (polled each turn) and counts it.
        wait_for(lambda: metric_sum(train.scrape(), "gnnrec_train_runs_total", outcome="published") == 1 or None,
                 30, "the run counted as published")
        assert metric_sum(train.scrape(), "gnnrec_model_version_info", version=model) == 1

        wait_for(lambda: (emb_dir / "CURRENT").exists(), 30, "the embedding store")
        reader = RocksDBEmbeddingStore.open_secondary(emb_dir, tmp_path / "reader")
        v1 = wait_for(lambda: _whole_version(reader, oracle), 30, "embeddings of every node")
        assert v1.startswith(f"{model}/r")
        samples = refresh.scrape()
        assert metric_sum(samples, "gnnrec_model_version_info", version=model) == 1
        assert metric_sum(samples, "gnnrec_embedding_version_watermark_ms") == oracle.watermark_ms()
        assert metric_sum(samples, "gnnrec_refresh_recomputed_nodes_total") >= len(oracle.node_ids("user"))
        assert metric_sum(samples, "gnnrec_refresh_duration_seconds_count") >= 1

        # A bundle published by someone else: the running worker swaps it in.
        new = train_bundle(oracle, oracle.watermark_ms(), LiveTrainConfig(**SMALL, seed=1))
        publish(new, models)
        v2 = wait_for(lambda: (v := _whole_version(reader, oracle)) and v.startswith(new.version + "/") and v,
                      30, "the swapped model's embeddings")
        # The worker counts a run after its commit returns: the reader can see the rows first.
        wait_for(lambda: metric_sum(refresh.scrape(), "gnnrec_refresh_runs_total", kind="swap") == 1, 10,
                 "the swap counted")

        more = _events(300, 9, start_ms + 2_000_000)  # then a local refresh at the new watermark
        asyncio.run(_produce(kafka_broker.bootstrap, topics, more))
        oracle.apply_many(more)
        v3 = wait_for(lambda: _whole_version(reader, oracle), 30, "embeddings of the new events")
        assert v3.startswith(new.version + "/") and v3 != v2
        wait_for(lambda: metric_sum(refresh.scrape(), "gnnrec_refresh_runs_total", kind="local") >= 1, 10,
                 "a local refresh counted")

        refresh.kill()  # SIGKILL: no shutdown code runs; the last whole version stays readable
        assert _whole_version(reader, oracle) == v3
        reader.close()
    finally:
        refresh.stop()
        train.stop()
