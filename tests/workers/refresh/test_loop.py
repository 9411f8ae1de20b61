"""The refresh worker's core with no broker: model dir + replica store → embedding store.

Checks the published rows against a full recomputation of the same snapshot, the hot swap to a
newly published bundle, and that a refresh failing inside the write leaves the previous version
readable and complete (the next refresh then rebuilds everything).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from graph_store import MemoryGraphStore, StoreSettings
from graph_store.embeddings import EmbeddingStore, RocksDBEmbeddingStore
from stream.simulator import BadRecord, Simulator, SimulatorSettings
from workers.runtime import metrics as m
from models.live.bundle import LATEST, publish
from models.live.refresher import Refresher
from models.live.train import LiveTrainConfig, train_bundle
from workers.refresh.loop import RefreshCore

torch.set_num_threads(1)

START_MS = 1_700_000_000_000
CFG = LiveTrainConfig(dim=8, num_layers=2, lightgcn_epochs=3, srgnn_epochs=1, social_epochs=1)


def _events(n: int, seed: int = 3, start_ms: int = START_MS) -> list:
    sim = Simulator(SimulatorSettings(n_users=120, n_items=240, n_categories=8, seed=seed))
    return [e for e in sim.events(start_ms=start_ms, n=n, step_ms=1000) if not isinstance(e, BadRecord)]


class FailingWrites(RocksDBEmbeddingStore):
    """A writer that dies inside the commit while ``fail`` is set (before the WriteBatch lands)."""

    fail = False

    def _put_groups(self, groups, version):  # type: ignore[override]
        if self.fail:
            raise OSError("simulated crash inside the embedding write")
        return super()._put_groups(groups, version)


def assert_matches_full(emb: EmbeddingStore, store: MemoryGraphStore, refresher: Refresher, atol: float = 1e-5) -> None:
    """Every user/item of the store has a row, equal to a full propagation over the same snapshot."""
    oracle = refresher.full_oracle().numpy()
    for node_type in ("user", "item"):
        version, ids, matrix = emb.read_all(node_type)
        assert sorted(ids) == sorted(store.node_ids(node_type))
        rows = [refresher.live.index(node_type, i) for i in ids]
        np.testing.assert_allclose(matrix, oracle[rows], atol=atol, rtol=0)


def fresh_oracle(emb: EmbeddingStore, store: MemoryGraphStore, bundle, now_ms: int, atol: float = 1e-5) -> None:
    """With no decay the local snapshot equals a from-scratch rebuild over the store."""
    other = Refresher(bundle)
    result = other.rebuild(store, now_ms)
    for node_type, (ids, vectors) in result.rows.items():
        got, found = emb.get_many(node_type, ids)
        assert found.all()
        np.testing.assert_allclose(got, vectors, atol=atol, rtol=0)


@pytest.fixture
def store() -> MemoryGraphStore:
    return MemoryGraphStore(StoreSettings(half_life_ms=float("inf")))


def test_waits_for_a_model_then_rebuilds_then_refreshes_locally(tmp_path: Path, store: MemoryGraphStore) -> None:
    emb = RocksDBEmbeddingStore(tmp_path / "emb")
    core = RefreshCore(tmp_path / "models", emb)
    assert core.tick(store).kind == "waiting"  # no events, no model
    store.apply_many(_events(1500))
    assert core.tick(store).kind == "waiting"  # no model yet
    bundle = train_bundle(store, store.watermark_ms(), CFG)
    publish(bundle, tmp_path / "models")

    first = core.tick(store)
    assert first.kind == "rebuild"
    assert first.version == f"{bundle.version}/r1/w{store.watermark_ms()}"
    assert emb.version() == first.version
    assert_matches_full(emb, store, core.refresher)

    assert core.tick(store).kind == "idle"  # nothing changed: nothing written
    assert emb.version() == first.version

    store.apply_many(_events(300, seed=9, start_ms=START_MS + 2_000_000))
    second = core.tick(store)
    assert second.kind == "local" and second.result.dirty > 0
    assert second.version == f"{bundle.version}/r2/w{store.watermark_ms()}"
    assert emb.version() == second.version
    assert second.result.recomputed < store.counts().users + store.counts().items
    assert_matches_full(emb, store, core.refresher)
    fresh_oracle(emb, store, bundle, store.watermark_ms())


def test_new_bundle_is_swapped_in_without_a_new_core(tmp_path: Path, store: MemoryGraphStore) -> None:
    emb = RocksDBEmbeddingStore(tmp_path / "emb")
    core = RefreshCore(tmp_path / "models", emb)
    store.apply_many(_events(1200))
    old = train_bundle(store, store.watermark_ms(), CFG)
    publish(old, tmp_path / "models")
    assert core.tick(store).kind == "rebuild"

    store.apply_many(_events(300, seed=11, start_ms=START_MS + 2_000_000))
    new = train_bundle(store, store.watermark_ms(), LiveTrainConfig(**{**CFG.__dict__, "seed": 1}))
    assert new.version != old.version
    publish(new, tmp_path / "models")
    before = m.REFRESH_RUNS.labels("refresh", "swap")._value.get()
    out = core.tick(store)
    assert out.kind == "swap" and out.version.startswith(new.version + "/")
    assert core.refresher.model_version == new.version
    assert m.REFRESH_RUNS.labels("refresh", "swap")._value.get() == before + 1
    assert m.MODEL_VERSION.labels("refresh", new.version)._value.get() == 1
    assert_matches_full(emb, store, core.refresher)


def test_failed_write_keeps_previous_version_complete_then_rebuilds(tmp_path: Path, store: MemoryGraphStore) -> None:
    emb = FailingWrites(tmp_path / "emb")
    reader = RocksDBEmbeddingStore.open_secondary(tmp_path / "emb", tmp_path / "reader")
    core = RefreshCore(tmp_path / "models", emb)
    store.apply_many(_events(1200))
    bundle = train_bundle(store, store.watermark_ms(), CFG)
    publish(bundle, tmp_path / "models")
    good = core.tick(store)
    reader.catch_up()
    before = {t: reader.read_all(t) for t in ("user", "item")}
    assert before["user"][0] == good.version

    store.apply_many(_events(400, seed=5, start_ms=START_MS + 2_000_000))  # new users and items too
    emb.fail = True
    errors = m.REFRESH_ERRORS.labels("refresh", "refresh")._value.get()
    assert core.tick(store).kind == "error"
    assert m.REFRESH_ERRORS.labels("refresh", "refresh")._value.get() == errors + 1
    reader.catch_up()
    for node_type in ("user", "item"):
        version, ids, matrix = reader.read_all(node_type)
        assert version == good.version
        assert ids == before[node_type][1]
        np.testing.assert_array_equal(matrix, before[node_type][2])

    emb.fail = False
    healed = core.tick(store)
    assert healed.kind == "rebuild"  # the failed local refresh consumed dirty marks: republish all
    reader.catch_up()
    assert reader.version() == healed.version
    assert_matches_full(reader, store, core.refresher)
    fresh_oracle(reader, store, bundle, store.watermark_ms())


def test_unreadable_bundle_is_counted_and_the_current_one_kept(tmp_path: Path, store: MemoryGraphStore) -> None:
    emb = RocksDBEmbeddingStore(tmp_path / "emb")
    models = tmp_path / "models"
    core = RefreshCore(models, emb)
    store.apply_many(_events(1200))
    bundle = train_bundle(store, store.watermark_ms(), CFG)
    publish(bundle, models)
    served = core.tick(store).version
    (models / "live-9-broken.pt").write_bytes(b"not a bundle")
    (models / LATEST).write_text("live-9-broken.pt\n")
    errors = m.REFRESH_ERRORS.labels("refresh", "bundle")._value.get()
    assert core.tick(store).kind == "idle"
    assert core.tick(store).kind == "idle"  # not retried (nor logged) until LATEST moves
    assert m.REFRESH_ERRORS.labels("refresh", "bundle")._value.get() == errors + 1
    assert core.refresher.model_version == bundle.version and emb.version() == served
