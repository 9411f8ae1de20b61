"""The kafka transport end to end in one process, on in-memory topics: the train, refresh and score
sides each with their own directories, nothing shared but the two topics; and the hosting of
transport parts beside a worker loop. The same on real brokers, as processes:
tests/integration/test_topic_transport.py."""
from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from graph_store import MemoryGraphStore, StoreSettings
from graph_store.embeddings import RocksDBEmbeddingStore
from models.live.bundle import publish
from models.live.train import LiveTrainConfig, train_bundle
from stream.kafka.blob_topic import MemoryTopic
from stream.simulator import BadRecord, Simulator, SimulatorSettings
from tests.workers.runtime.transport.test_embeddings import assert_same_rows
from workers.refresh.loop import RefreshCore
from workers.runtime.transport.bundles import BundleMirror, BundlePublisher
from workers.runtime.transport.embeddings import EmbeddingMirror, EmbeddingPublisher
from workers.runtime.transport.hosting import TransportedLoop
from workers.score.gnn import EmbeddingFollower

pytestmark = pytest.mark.usefixtures("one_torch_thread")
T0 = 1_700_000_000_000
CFG = LiveTrainConfig(dim=8, num_layers=2, lightgcn_epochs=2, srgnn_epochs=1, social_epochs=1)


def _events(n: int, seed: int, start_ms: int) -> list:
    sim = Simulator(SimulatorSettings(seed=seed, n_users=60, n_items=120))
    return [e for e in sim.events(start_ms=start_ms, n=n, step_ms=1000) if not isinstance(e, BadRecord)]


async def _until_caught_up(part) -> None:
    while await part.step() == 0:
        pass


def test_train_refresh_and_score_share_nothing_but_the_topics(tmp_path: Path) -> None:
    models, embeddings = MemoryTopic(chunk_bytes=8192), MemoryTopic(chunk_bytes=8192)
    graph = MemoryGraphStore(StoreSettings())  # each side has its own replica; one suffices here
    graph.apply_many(_events(800, 1, T0))

    # train: its own model dir → the models topic
    train_dir = tmp_path / "train" / "models"
    first = train_bundle(graph, graph.watermark_ms(), CFG)
    publish(first, train_dir)
    train_pub = BundlePublisher(train_dir, models, tmp_path / "train" / "models-topic.json", topic="models")
    assert asyncio.run(train_pub.publish_once()) == first.version

    # refresh: the models topic → its own model dir; its embedding store → the embeddings topic
    refresh_models = BundleMirror(models.tail(), tmp_path / "refresh" / "models", topic="models", worker="refresh")
    refresh_store = RocksDBEmbeddingStore(tmp_path / "refresh" / "embeddings")
    core = RefreshCore(tmp_path / "refresh" / "models", refresh_store)
    refresh_pub = EmbeddingPublisher(refresh_store, embeddings, tmp_path / "refresh" / "embeddings-topic.json",
                                     topic="embeddings", snapshot_every=2)

    def refresh() -> str:
        asyncio.run(_until_caught_up(refresh_models))
        kind = core.tick(graph).kind
        asyncio.run(refresh_pub.publish_once())
        return kind

    assert refresh() == "rebuild"
    graph.apply_many(_events(200, 2, T0 + 2_000_000))
    assert refresh() == "local"

    # score: both topics → its own model dir and embedding store, read by the usual follower
    score = tmp_path / "score"
    score_models = BundleMirror(models.tail(), score / "models", topic="models")
    score_emb = EmbeddingMirror(embeddings.tail(max_records=5), score / "embeddings", topic="embeddings")
    follower = EmbeddingFollower(score / "models", score / "embeddings", score / "embeddings-secondary")

    def follow() -> None:
        asyncio.run(_until_caught_up(score_models))
        asyncio.run(_until_caught_up(score_emb))
        assert follower.poll()

    asyncio.run(score_emb.start())
    try:
        follow()
        assert (follower.model_version, follower.embedding_version) == (first.version, refresh_store.version())
        assert_same_rows(score_emb.store, refresh_store)
        session = next(s for s in graph.node_ids("session"))
        assert follower.recommend_next(graph, session, graph.watermark_ms(), 10)

        # a new bundle: trained, published, mirrored, swapped in by refresh, served by score
        second = train_bundle(graph, graph.watermark_ms(), dataclasses.replace(CFG, seed=1))
        publish(second, train_dir)
        asyncio.run(train_pub.publish_once())
        assert refresh() == "swap"
        follow()
        assert (follower.model_version, follower.embedding_version) == (second.version, refresh_store.version())
        assert_same_rows(score_emb.store, refresh_store)
        ids, matrix = refresh_store.get_all("item")
        served = follower.scorer
        assert served is not None and served.bundle.version == second.version and len(ids) == matrix.shape[0]
    finally:
        follower.close()
        score_emb.close()
        refresh_store.close()


class FakeLoop:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    async def start(self) -> None:
        self.calls.append("loop.start")

    async def run_once(self) -> int:
        await asyncio.sleep(0.01)
        return 0

    async def stop(self) -> None:
        self.calls.append("loop.stop")

    def close(self) -> None:
        self.calls.append("loop.close")

    def readiness(self):
        return {"assigned": (True, "2 partitions")}


class FlakyPart:
    """Raises at its first step, then counts steps."""

    name = "flaky"

    def __init__(self, calls: list[str]) -> None:
        self.calls, self.steps = calls, 0

    async def start(self) -> None:
        self.calls.append("part.start")

    async def step(self) -> float:
        self.steps += 1
        if self.steps == 1:
            raise RuntimeError("topic not there yet")
        return 0.0

    async def stop(self) -> None:
        self.calls.append("part.stop")

    def close(self) -> None:
        self.calls.append("part.close")

    def check(self):
        return self.steps > 1, f"{self.steps} steps"


def test_parts_run_beside_the_loop_survive_errors_and_stop_after_it() -> None:
    calls: list[str] = []
    part = FlakyPart(calls)

    async def prepare() -> None:
        calls.append("prepare")

    loop = TransportedLoop(FakeLoop(calls), [part], worker="t", retry_s=0.0, prepare=prepare)

    async def scenario() -> dict:
        await loop.start()
        for _ in range(5):
            await loop.run_once()
        ready = dict(loop.readiness())
        await loop.stop()
        return ready

    ready = asyncio.run(scenario())
    loop.close()
    assert part.steps > 2  # the error was logged and the part driven on
    assert ready["assigned"] == (True, "2 partitions") and ready["flaky"][0]  # the loop's checks and the part's
    assert calls == ["prepare", "part.start", "loop.start", "loop.stop", "part.stop", "loop.close", "part.close"]
