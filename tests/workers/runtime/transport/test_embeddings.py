"""Embeddings over a topic (workers/runtime/transport/embeddings.py) against an oracle: the
refresh worker's own RocksDB embedding store, row by row.

A writer store takes commits as the refresh worker makes them (a few rows, new nodes, full
rebuilds, bursts of commits between two publications); the publisher sends them to an in-memory
topic (chunked: snapshots span many records). After every publication, (a) a mirror that has
followed from the start and (b) a mirror started on an empty directory, reading the topic as it
is and as a compacting broker may have left it, hold exactly the writer's rows and version.
No broker: the Kafka sink and tail run in tests/integration/test_topic_transport.py.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

import graph_store.embeddings.codec as codec
from graph_store.embeddings import MemoryEmbeddingStore, RocksDBEmbeddingStore
from stream.kafka.blob_topic import BlobPublishError, MemoryTopic
from stream.kafka.blobs import BlobAssembler
from workers.runtime.transport.embedding_log import BlobMeta
from workers.runtime.transport.embeddings import EmbeddingMirror, EmbeddingPublisher

DIM = 4
TYPES = ("user", "item")


def _rows(store) -> dict:
    return {t: store.read_all(t) for t in TYPES}


def assert_same_rows(mirror, writer) -> None:
    for node_type in TYPES:
        version, ids, matrix = mirror.read_all(node_type)
        w_version, w_ids, w_matrix = writer.read_all(node_type)
        assert (version, ids) == (w_version, w_ids), node_type
        assert np.array_equal(matrix, w_matrix), node_type


class Writes:
    """Commits as the refresh worker makes them, on a seeded generator."""

    def __init__(self, store, seed: int = 0) -> None:
        self.store, self.rng, self.n = store, np.random.default_rng(seed), 0
        self.users, self.items = 30, 50

    def commit(self, *, full: bool = False, grow: int = 0) -> None:
        self.n += 1
        self.users += grow
        self.items += grow
        groups = {}
        for node_type, total in (("user", self.users), ("item", self.items)):
            picked = np.arange(total) if full else self.rng.choice(total, size=min(total, 5), replace=False)
            ids = [f"{node_type[0]}{i}" for i in picked]
            groups[node_type] = (ids, self.rng.standard_normal((len(ids), DIM)).astype(np.float32))
        self.store.put_groups(groups, f"m1/r{self.n}/w{1000 * self.n}")


async def _catch_up(mirror: EmbeddingMirror) -> None:
    for _ in range(10_000):
        if await mirror.step() > 0:  # it waits only once caught up
            return
    raise AssertionError("mirror never caught up")


def _fresh_mirror(topic: MemoryTopic, path: Path) -> EmbeddingMirror:
    mirror = EmbeddingMirror(topic.tail(max_records=7), path, topic="emb", poll_s=1.0, worker="test")
    asyncio.run(mirror.start())
    asyncio.run(_catch_up(mirror))
    return mirror


def _publisher(store, topic, tmp_path: Path, **kw) -> EmbeddingPublisher:
    return EmbeddingPublisher(store, topic, tmp_path / "state.json", topic="emb", worker="test",
                              snapshot_every=kw.pop("snapshot_every", 3), **kw)


def _kinds(topic: MemoryTopic) -> list[tuple[str, int]]:
    out, assembler = [], BlobAssembler()
    for r in topic.records:
        for blob in assembler.on_record(r.offset, r.key, r.value):
            if hasattr(blob, "meta"):
                meta = BlobMeta.parse(blob.meta)
                out.append((meta.kind, meta.seq))
    return out


def test_mirrors_live_and_bootstrapped_equal_the_writer_after_every_publication(tmp_path: Path) -> None:
    writer = RocksDBEmbeddingStore(tmp_path / "writer")
    writes = Writes(writer)
    topic = MemoryTopic(chunk_bytes=1024)
    publisher = _publisher(writer, topic, tmp_path)
    live = EmbeddingMirror(topic.tail(max_records=5), tmp_path / "live", topic="emb", worker="test")
    asyncio.run(live.start())
    plan = [dict(full=True)] + [dict()] * 4 + [dict(grow=3)] + [dict()] * 3 + [dict(full=True)] + [dict()] * 9
    try:
        for step, kw in enumerate(plan):
            for _ in range(1 + step % 3):  # sometimes several commits between two publications
                writes.commit(**kw)
            assert asyncio.run(publisher.publish_once())
            asyncio.run(_catch_up(live))
            assert_same_rows(live.store, writer)
            for name, source in (("as-is", topic), ("compacted", topic.compacted())):
                fresh = _fresh_mirror(source, tmp_path / f"fresh-{step}-{name}")
                try:
                    assert_same_rows(fresh.store, writer)
                finally:
                    fresh.close()
        kinds = _kinds(topic)
        assert kinds[0] == ("snapshot", 1)
        assert ("delta", 2) in kinds and sum(k == "snapshot" for k, _ in kinds) >= 5
        assert len(topic.compacted().records) < len(topic.records)
        assert live.check()[0] and live.applied_version == writer.version()
    finally:
        live.close()
        writer.close()


def test_more_commits_than_the_change_log_keeps_and_too_large_commits_go_as_snapshots(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = RocksDBEmbeddingStore(tmp_path / "writer")
    writes = Writes(writer)
    topic = MemoryTopic(chunk_bytes=512)
    publisher = _publisher(writer, topic, tmp_path, snapshot_every=100)
    writes.commit(full=True)
    asyncio.run(publisher.publish_once())
    for _ in range(codec.LOG_KEEP + 2):  # the publisher fell behind the kept change log
        writes.commit()
    assert asyncio.run(publisher.publish_once()) == ["snapshot"]
    monkeypatch.setattr(codec, "LOG_MAX_IDS", 20)  # a commit too large to list
    writes.commit(full=True)
    assert asyncio.run(publisher.publish_once()) == ["snapshot"]
    monkeypatch.undo()
    writes.commit()
    assert asyncio.run(publisher.publish_once()) == ["delta"]
    assert asyncio.run(publisher.publish_once()) == []  # nothing new
    mirror = _fresh_mirror(topic.compacted(), tmp_path / "mirror")
    assert_same_rows(mirror.store, writer)
    mirror.close()
    writer.close()


class FailingSink:
    """A sink that refuses the publications named in ``fail_at`` (1-based) after the first
    record of each, as a broker connection lost mid-blob would."""

    def __init__(self, topic: MemoryTopic, fail_at: set[int]) -> None:
        self.topic, self.fail_at, self.calls = topic, fail_at, 0

    async def publish(self, index_key, blob_id, data, meta):
        self.calls += 1
        if self.calls in self.fail_at:
            self.topic.append(f"{index_key}/0".encode(), b"C\x00\x01x\x00\x00\x00\x00partial")
            raise BlobPublishError("broker gone")
        return await self.topic.publish(index_key, blob_id, data, meta)


def test_a_failed_publication_is_followed_by_a_snapshot_and_mirrors_converge(tmp_path: Path) -> None:
    writer = RocksDBEmbeddingStore(tmp_path / "writer")
    writes = Writes(writer, seed=4)
    topic = MemoryTopic(chunk_bytes=1024)
    publisher = EmbeddingPublisher(writer, FailingSink(topic, {3}), tmp_path / "state.json", topic="emb",
                                   snapshot_every=50, worker="test")
    live = EmbeddingMirror(topic.tail(max_records=4), tmp_path / "live", topic="emb", worker="test")
    asyncio.run(live.start())
    outcomes = []
    for _ in range(5):
        writes.commit()
        outcomes.append(asyncio.run(publisher.publish_once()))
        asyncio.run(_catch_up(live))
    assert outcomes == [["snapshot"], ["delta"], [], ["snapshot"], ["delta"]]
    assert publisher.last_error is None and publisher.check()[0]
    assert_same_rows(live.store, writer)
    fresh = _fresh_mirror(topic, tmp_path / "fresh")
    assert_same_rows(fresh.store, writer)
    for store in (fresh, live):
        store.close()
    writer.close()


def test_a_restarted_publisher_starts_a_new_chain_in_the_other_snapshot_slot(tmp_path: Path) -> None:
    writer = RocksDBEmbeddingStore(tmp_path / "writer")
    writes = Writes(writer, seed=2)
    topic = MemoryTopic(chunk_bytes=1024)
    live = EmbeddingMirror(topic.tail(), tmp_path / "live", topic="emb", worker="test")
    asyncio.run(live.start())
    last_slot = None
    for run in range(3):  # three processes, one after the other, on the same store and state file
        publisher = _publisher(writer, topic, tmp_path)
        assert publisher.snapshot_slot == last_slot
        for n in range(4):
            writes.commit()
            asyncio.run(publisher.publish_once())
            if n == 0:  # a new chain opens with a snapshot, never in the slot of the newest one
                assert publisher.snapshot_slot != last_slot
        last_slot = publisher.snapshot_slot
        asyncio.run(_catch_up(live))
        assert_same_rows(live.store, writer)
        assert live.log.position.chain == publisher.chain
    fresh = _fresh_mirror(topic.compacted(), tmp_path / "fresh")
    assert_same_rows(fresh.store, writer)
    fresh.close()
    live.close()
    writer.close()


class CommitsDuringRead(MemoryEmbeddingStore):
    """A writer that commits while the publisher reads its first table: a snapshot read then
    spans two commits and must be read again."""

    def __init__(self) -> None:
        super().__init__()
        self.interrupt = 0

    def _read_all(self, node_type):
        if self.interrupt:
            self.interrupt -= 1
            self._put_groups({"item": ([("i0", np.full(DIM, 9, np.float32))], DIM)}, "m1/r99/w99")
        return super()._read_all(node_type)


def test_a_snapshot_is_one_commit_of_the_writer(tmp_path: Path) -> None:
    writer = CommitsDuringRead()
    Writes(writer).commit(full=True)
    topic = MemoryTopic()
    publisher = _publisher(writer, topic, tmp_path)
    writer.interrupt = 1
    assert asyncio.run(publisher.publish_once()) == ["snapshot"]
    mirror = _fresh_mirror(topic, tmp_path / "mirror")
    assert_same_rows(mirror.store, writer)
    assert mirror.store.version() == "m1/r99/w99"
    mirror.close()


def test_a_mirror_that_cannot_write_says_how_to_recover(tmp_path: Path) -> None:
    writer = RocksDBEmbeddingStore(tmp_path / "writer")
    Writes(writer).commit(full=True)
    topic = MemoryTopic()
    asyncio.run(_publisher(writer, topic, tmp_path).publish_once())
    with RocksDBEmbeddingStore(tmp_path / "mirror") as other:  # rows of a model of another size
        other.put_many("user", ["u0"], np.zeros((1, DIM + 1), np.float32), "old/r1/w1")
    mirror = _fresh_mirror(topic, tmp_path / "mirror")
    ok, detail = mirror.check()
    assert not ok and "move" in detail and str(tmp_path / "mirror") in detail
    mirror.close()
    writer.close()
