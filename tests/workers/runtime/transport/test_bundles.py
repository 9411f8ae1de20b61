"""Bundles over a topic (workers/runtime/transport/bundles.py): the train worker's model directory
→ an in-memory topic → another worker's own model directory, byte for byte and loadable."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

from graph_store import MemoryGraphStore, StoreSettings
from models.live.bundle import bundle_path, install_bundle, latest_version, load_bundle, publish
from models.live.train import LiveTrainConfig, train_bundle
from stream.kafka.blob_topic import MemoryTopic, TopicRecord
from stream.simulator import BadRecord, Simulator, SimulatorSettings
from workers.runtime.transport.bundles import BundleMirror, BundlePublisher

pytestmark = pytest.mark.usefixtures("one_torch_thread")
T0 = 1_700_000_000_000


async def _catch_up(mirror: BundleMirror) -> None:
    while await mirror.step() == 0:
        pass


def _mirror(topic: MemoryTopic, model_dir: Path) -> BundleMirror:
    mirror = BundleMirror(topic.tail(max_records=3), model_dir, topic="models", worker="test")
    asyncio.run(_catch_up(mirror))
    return mirror


def test_a_trained_bundle_arrives_whole_in_chunks_and_loads(tmp_path: Path) -> None:
    store = MemoryGraphStore(StoreSettings())
    sim = Simulator(SimulatorSettings(seed=1, n_users=40, n_items=80))
    store.apply_many([e for e in sim.events(start_ms=T0, n=600, step_ms=1000) if not isinstance(e, BadRecord)])
    bundle = train_bundle(store, store.watermark_ms(), LiveTrainConfig(dim=8, lightgcn_epochs=1, srgnn_epochs=1,
                                                                       social_epochs=1))
    publish(bundle, tmp_path / "train")
    topic = MemoryTopic(chunk_bytes=4096)
    publisher = BundlePublisher(tmp_path / "train", topic, tmp_path / "state.json", topic="models", worker="test")
    assert asyncio.run(publisher.publish_once()) == bundle.version
    assert asyncio.run(publisher.publish_once()) is None  # sent once
    assert len(topic.records) > 3  # chunked
    mirror = _mirror(topic, tmp_path / "score")
    assert latest_version(tmp_path / "score") == bundle.version and mirror.check()[0]
    assert bundle_path(tmp_path / "score", bundle.version).read_bytes() == \
        bundle_path(tmp_path / "train", bundle.version).read_bytes()
    loaded = load_bundle(tmp_path / "score")
    assert loaded.version == bundle.version and torch.equal(loaded.ego, bundle.ego)


def _fake(model_dir: Path, version: str, size: int = 10_000) -> bytes:
    data = (version.encode() * size)[:size]
    install_bundle(version, data, model_dir)
    return data


def test_slots_alternate_across_restarts_and_a_compacted_topic_keeps_the_newest_two(tmp_path: Path) -> None:
    topic = MemoryTopic(chunk_bytes=1000)
    versions = ["live-1-a", "live-2-b", "live-3-c", "live-4-d"]
    for version in versions:  # a new publisher each time: the state file carries the slot over
        _fake(tmp_path / "train", version)
        publisher = BundlePublisher(tmp_path / "train", topic, tmp_path / "state.json", topic="models", worker="t")
        asyncio.run(publisher.publish_once())
    assert [r.key for r in topic.records if r.key in (b"bundle/0", b"bundle/1")] == [b"bundle/0", b"bundle/1"] * 2
    assert asyncio.run(BundlePublisher(tmp_path / "train", topic, tmp_path / "state.json", topic="models",
                                       worker="t").publish_once()) is None  # a restart does not resend
    for source, name in ((topic, "as-is"), (topic.compacted(), "compacted")):
        _mirror(source, tmp_path / name)
        assert sorted(p.stem for p in (tmp_path / name).glob("*.pt")) == versions[-2:]  # newest two
        assert latest_version(tmp_path / name) == versions[-1]


def test_a_corrupt_bundle_is_not_installed_and_is_counted(tmp_path: Path) -> None:
    topic = MemoryTopic(chunk_bytes=1000)
    good = _fake(tmp_path / "train", "live-1-a")
    asyncio.run(BundlePublisher(tmp_path / "train", topic, tmp_path / "s.json", topic="models",
                                worker="t").publish_once())
    _fake(tmp_path / "train", "live-2-b")
    asyncio.run(BundlePublisher(tmp_path / "train", topic, tmp_path / "s.json", topic="models",
                                worker="t").publish_once())
    r = topic.records[-3]  # a chunk of the second bundle
    topic.records[-3] = TopicRecord(r.offset, r.key, r.value[:-1] + b"?")
    _mirror(topic, tmp_path / "score")
    assert latest_version(tmp_path / "score") == "live-1-a"
    assert bundle_path(tmp_path / "score", "live-1-a").read_bytes() == good
    assert not bundle_path(tmp_path / "score", "live-2-b").exists()


def test_a_version_that_is_not_a_file_name_is_refused(tmp_path: Path) -> None:
    topic = MemoryTopic()
    asyncio.run(topic.publish("bundle/0", "../../etc/x", b"data", {"version": "../../etc/x"}))
    mirror = _mirror(topic, tmp_path / "score")
    assert latest_version(tmp_path / "score") is None and mirror.installed is None
