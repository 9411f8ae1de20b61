"""GNN mode of the score worker over a real RocksDB embedding store written from a Refresher.

The refresh side (its own graph store, a :class:`Refresher`, a RocksDB embedding-store writer)
and the score side (:class:`ScoreLoop` with its replica store, following the embedding store
as a RocksDB secondary) see the same simulator stream, as the two workers do. No broker: the
loop's ``recommend`` is pure of I/O, and the Kafka path is exercised by the demo and bench.
"""
from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from graph_store import MemoryGraphStore, StoreSettings
from graph_store.embeddings import RocksDBEmbeddingStore
from stream.events import Follow, Interaction, encode
from stream.kafka.batch_consumer import RawRecord
from stream.simulator import Simulator, SimulatorSettings
from workers.score.gnn import EmbeddingVersion
from models.live.bundle import publish
from models.live.refresher import Refresher, RefreshResult
from models.live.train import LiveTrainConfig, train_bundle
from workers.score.loop import ScoreLoop
from workers.runtime.settings import ScoreSettings

CFG = LiveTrainConfig(dim=16, num_layers=2, lightgcn_epochs=3, srgnn_epochs=1, social_epochs=1)
T0 = 1_700_000_000_000


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _events(n: int) -> list:
    sim = Simulator(SimulatorSettings(seed=3, n_users=300, n_items=800))
    return list(sim.events(start_ms=T0, n=n, step_ms=50))


class RefreshSide:
    """What `gnnrec worker refresh` does, in-process: its store, its Refresher, its writer."""

    def __init__(self, path: Path) -> None:
        self.store = MemoryGraphStore(StoreSettings())
        self.writer = RocksDBEmbeddingStore(path)
        self.refresher: Refresher | None = None

    @classmethod
    def published(cls, tmp_path: Path, warm: list) -> "RefreshSide":
        """A side that trained and published a bundle on ``warm`` and wrote its full rebuild."""
        side = cls(tmp_path / "embeddings")
        side.store.apply_many(warm)
        bundle = train_bundle(side.store, warm[-1].ts, CFG)
        publish(bundle, tmp_path / "models")
        side.refresher = Refresher(bundle)
        side.write(side.refresher.rebuild(side.store, warm[-1].ts))
        return side

    def write(self, result: RefreshResult, only: tuple[str, ...] = ("user", "item")) -> str:
        version = f"{result.embedding_version}/w{result.watermark_ms}"
        for node_type in only:
            ids, vectors = result.rows.get(node_type, ([], None))
            if ids:
                self.writer.put_many(node_type, ids, vectors, version)
        return version


def _score_loop(tmp_path: Path, **kw) -> ScoreLoop:
    settings = ScoreSettings(bootstrap_servers="127.0.0.1:1", data_dir=tmp_path / "score", k=10,
                             model_dir=tmp_path / "models", embeddings_dir=tmp_path / "embeddings", **kw)
    from workers.runtime.stores import open_store
    return ScoreLoop(settings, open_store(settings))


def test_gnn_recs_carry_versions_and_a_hot_swap_loses_no_recommendation(tmp_path: Path):
    events = _events(4000)
    warm, live = events[:2000], events[2000:]
    side = RefreshSide.published(tmp_path, warm)
    first = side.refresher.bundle
    swap_at = 900
    served: list[tuple[int, object]] = []

    async def body() -> ScoreLoop:
        loop = _score_loop(tmp_path)
        loop.store.apply_many(warm)
        loop.maybe_poll_embeddings(force=True)
        assert loop.gnn is not None and loop.gnn.model_version == first.version
        for i, ev in enumerate(live):
            side.store.apply_one(ev)
            loop.store.apply_one(ev)
            if i == swap_at:  # the trainer publishes; the refresher rebuilds under the new model
                second = train_bundle(side.store, ev.ts, dataclasses.replace(CFG, seed=1))
                publish(second, tmp_path / "models")
                side.write(side.refresher.swap(second, side.store, ev.ts))
            elif i % 200 == 199:
                side.write(side.refresher.refresh(side.store, ev.ts))
            if i % 100 == 50:
                loop.maybe_poll_embeddings(force=True)
            served.extend((i, out) for out in loop.recommend(ev))
        loop.gnn.close()
        return loop

    loop = asyncio.run(body())
    second_version = side.refresher.bundle.version
    assert second_version != first.version

    # Exactly one recommendation per kind per input event, before, during and after the swap.
    for i, ev in enumerate(live):
        kinds = sorted(out.kind for j, out in served if j == i)
        assert kinds == (["next_item", "social"] if isinstance(ev, Interaction) else ["social"]), (i, kinds)
    assert len(served) == sum(2 if isinstance(ev, Interaction) else 1 for ev in live)

    gnn = [(i, out) for i, out in served if out.recommender == "gnn"]
    nxt = [out for _, out in served if out.kind == "next_item"]
    assert sum(out.recommender == "gnn" for out in nxt) > 0.9 * len(nxt)
    assert any(out.kind == "social" for _, out in gnn)
    for i, out in gnn:
        version = EmbeddingVersion.parse(out.embedding_version)
        assert version.model_version == out.model_version  # never one model's rows with another's weights
        assert version.watermark_ms is not None and version.watermark_ms <= live[i].ts
        assert len(out.items) == 10 and len({it for it, _ in out.items}) == 10
    for _, out in served:
        if out.recommender == "transitions":
            assert out.model_version == "baseline-v1" and out.embedding_version is None
    models_in_order = [out.model_version for _, out in gnn]
    assert models_in_order[0] == first.version and models_in_order[-1] == second_version
    switch = models_in_order.index(second_version)
    assert set(models_in_order[switch:]) == {second_version}  # no flapping back after the swap
    assert loop.gnn.stats.swaps == 2 and loop.gnn.stats.errors == 0


def test_split_commit_of_one_version_is_picked_up_on_the_next_poll(tmp_path: Path):
    """A writer that commits users and items separately under one version: a poll between the
    two commits serves new users + old items; the next poll re-reads and gets the items."""
    events = _events(2000)
    side = RefreshSide.published(tmp_path, events[:1500])
    side.store.apply_many(events[1500:])
    result = side.refresher.refresh(side.store, events[-1].ts)
    new_items = [i for i in result.rows["item"][0]]

    async def body() -> None:
        loop = _score_loop(tmp_path)
        loop.maybe_poll_embeddings(force=True)
        version = side.write(result, only=("user",))
        loop.maybe_poll_embeddings(force=True)
        assert loop.gnn.embedding_version == version
        side.write(result, only=("item",))
        loop.maybe_poll_embeddings(force=True)
        items = loop.gnn.scorer.items
        for item, vec in zip(new_items, result.rows["item"][1]):
            assert items.matrix[items.row[item]] == pytest.approx(vec)
        assert loop.maybe_poll_embeddings(force=True) is None and loop.gnn.stats.reloads == 3
        loop.gnn.close()

    asyncio.run(body())


def test_follower_reads_only_changed_rows_and_holds_what_a_full_read_holds(tmp_path: Path):
    """Oracle: after many refreshes, polled now and then, the scorer's user and item tables equal
    a full read of the embedding store, although only the first poll read every row."""
    events = _events(3000)
    side = RefreshSide.published(tmp_path, events[:1500])

    async def body() -> None:
        loop = _score_loop(tmp_path)
        loop.maybe_poll_embeddings(force=True)
        for k, start in enumerate(range(1500, 3000, 100)):
            side.store.apply_many(events[start:start + 100])
            side.write(side.refresher.refresh(side.store, events[start + 99].ts))
            if k % 3 == 2:
                loop.maybe_poll_embeddings(force=True)
        loop.maybe_poll_embeddings(force=True)
        scorer, stats = loop.gnn.scorer, loop.gnn.stats
        assert stats.full_reads == 1 and stats.reloads > 3 and stats.errors == 0
        assert scorer.embedding_version == side.writer.version()
        for node_type, table in (("user", scorer.users), ("item", scorer.items)):
            _, ids, matrix = side.writer.read_all(node_type)
            assert sorted(table.ids) == ids
            rows = [table.row[i] for i in ids]
            assert (table.matrix[rows] == matrix).all()
        loop.gnn.close()

    asyncio.run(body())


def test_no_bundle_or_embeddings_yet_serves_the_baselines(tmp_path: Path):
    """GNN mode before the trainer and refresher have written anything, then embeddings of a
    model whose bundle file is missing: baselines keep answering, nothing raises."""
    events = _events(600)
    side = RefreshSide(tmp_path / "embeddings")
    side.store.apply_many(events)
    bundle = train_bundle(side.store, events[-1].ts, CFG)  # trained but never published
    side.refresher = Refresher(bundle)

    async def body() -> list:
        loop = _score_loop(tmp_path)
        out = []
        loop.maybe_poll_embeddings(force=True)  # no store dir yet
        loop.store.apply_many(events[:300])
        out += [o for ev in events[:300] for o in loop.recommend(ev)]
        side.write(side.refresher.rebuild(side.store, events[-1].ts))
        loop.maybe_poll_embeddings(force=True)  # embeddings of an unpublished model
        loop.store.apply_many(events[300:])
        out += [o for ev in events[300:] for o in loop.recommend(ev)]
        assert loop.gnn.scorer is None
        loop.gnn.close()
        return out

    out = asyncio.run(body())
    assert out and all(o.recommender == "transitions" and o.embedding_version is None for o in out)
    assert sum(o.kind == "social" for o in out) == len(
        [e for e in events if isinstance(e, (Interaction, Follow))])


def test_batched_answers_equal_per_event_answers(tmp_path: Path):
    """The worker's batch path (apply each record, snapshot inputs, one GNN call per batch)
    gives every event the same lists as applying and recommending event by event: no later
    event of the batch leaks into an earlier event's answer."""
    from stream.events import encode
    from stream.kafka.batch_consumer import RawRecord

    events = _events(3000)
    warm, live = events[:2000], events[2000:2600]
    RefreshSide.published(tmp_path, warm)

    async def body() -> tuple[list, list]:
        batched, single = _score_loop(tmp_path / "a"), _score_loop(tmp_path / "b")
        for loop in (batched, single):
            loop.gnn.model_dir, loop.gnn.embeddings_dir = tmp_path / "models", tmp_path / "embeddings"
            loop.store.apply_many(warm)
            loop.maybe_poll_embeddings(force=True)
            assert loop.gnn.scorer is not None
        topics = batched.topics
        records = [RawRecord(topics.interactions if isinstance(ev, Interaction) else topics.follows, 0, i,
                             b"k", encode(ev), ev.ts) for i, ev in enumerate(live)]
        pending = [p for rec in records if (p := batched._apply(rec)) is not None]
        batched._answer_gnn(pending)
        got = [[(o.kind, o.recommender, o.model_version, o.embedding_version, o.items) for o in p.outs]
               for p in pending]
        want = []
        for ev in live:
            single.apply_event(ev)
            want.append([(o.kind, o.recommender, o.model_version, o.embedding_version, o.items)
                         for o in single.recommend(ev)])
        for loop in (batched, single):
            loop.gnn.close()
        return got, want

    got, want = asyncio.run(body())
    assert len(got) == len(want) == len(live)
    gnn = 0
    for g, w in zip(got, want):
        assert [x[:4] for x in g] == [x[:4] for x in w]
        for (_, rec, _, _, gi), (_, _, _, _, wi) in zip(g, w):
            gnn += rec == "gnn"
            assert [s for _, s in gi] == pytest.approx([s for _, s in wi], abs=1e-4)
            assert len({i for i, _ in gi} ^ {i for i, _ in wi}) <= 2  # ties at the cut-off may swap
    assert gnn > len(live)  # most answers came from the GNN, not the fallbacks


def test_trending_fallback_equals_the_store_popularity_at_every_event(tmp_path: Path):
    """After every applied event the fallback list is the store's popularity ranking at that
    event's time, weights included: a function of the stream up to the event, however often
    it is read. A loop started on a store that already holds events starts from them."""
    events = [e for e in _events(3000) if isinstance(e, Interaction)]

    async def body() -> None:
        loop = _score_loop(tmp_path, recommender="transitions")
        loop.store.apply_many(events[:1000])
        restarted = ScoreLoop(loop.settings, loop.store)  # built on a store that holds events
        assert restarted.trending(events[999].ts) == loop.store.item_popularity(events[999].ts, k=40)
        topic = loop.topics.interactions
        for i, ev in enumerate(events[1000:], start=1000):
            restarted._apply(RawRecord(topic, 0, i, b"k", encode(ev), ev.ts))
            assert restarted.trending(ev.ts) == loop.store.item_popularity(ev.ts, k=40)

    asyncio.run(body())
