"""A training run's inputs read from the store in slices: equal to the store's own snapshot,
one view per edge scan while batches are applied in between, and a bounded recent sample."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from graph_store import MemoryGraphStore, RocksDBGraphStore, StoreSettings
from models.live.budget import Deadline
from models.live.train import LiveTrainConfig, train_from_inputs
from models.live.train_inputs import read_train_inputs, train_inputs
from stream.simulator import BadRecord, Simulator, SimulatorSettings

HALF_LIFE = 3_600_000.0
CFG = LiveTrainConfig(dim=8, lightgcn_epochs=2, srgnn_epochs=1, social_epochs=1, inductive_steps=10)


def _events(n: int, seed: int = 3, start_ms: int = 1_700_000_000_000) -> list:
    sim = Simulator(SimulatorSettings(n_users=150, n_items=400, n_categories=8, seed=seed))
    return [e for e in sim.events(start_ms=start_ms, n=n, step_ms=1000) if not isinstance(e, BadRecord)]


@pytest.fixture(params=["memory", "rocksdb"])
def store(request, tmp_path: Path):
    settings = StoreSettings(half_life_ms=HALF_LIFE)
    s = MemoryGraphStore(settings) if request.param == "memory" else RocksDBGraphStore(tmp_path / "g", settings)
    s.apply_many(_events(3000))
    yield s
    s.close()


def _pairs(ids_src, ids_dst, src, dst, weight) -> dict[tuple[str, str], float]:
    return {(ids_src[a], ids_dst[b]): float(w) for a, b, w in zip(src.tolist(), dst.tolist(), weight.tolist())}


def test_the_whole_graph_equals_the_stores_snapshot(store) -> None:
    now = store.watermark_ms()
    inputs = train_inputs(store, now, CFG)
    data = store.to_pyg(now)
    ui, uu = data["user", "ui", "item"], data["user", "uu", "user"]
    assert inputs.user_ids == store.node_ids("user") and inputs.item_ids == store.node_ids("item")
    assert not inputs.sampled and inputs.now_ms == now
    keep = ui.edge_weight > 0
    np.testing.assert_array_equal(np.stack(inputs.ui[:2]), ui.edge_index[:, keep].numpy())
    np.testing.assert_allclose(inputs.ui[2], ui.edge_weight[keep].numpy(), rtol=1e-6)
    keep = uu.edge_weight > 0
    np.testing.assert_array_equal(np.stack(inputs.uu[:2]), uu.edge_index[:, keep].numpy())
    sessions = store.node_ids("session")
    assert [s.session_id for s in inputs.sessions] == [
        sid for sid in sessions if len(store.session_items(sid)) >= 2][-len(inputs.sessions):]
    for row in inputs.sessions:
        assert row.items == store.session_items(row.session_id)
        assert row.user == store.session_user(row.session_id)


def test_a_sample_keeps_the_most_recent_edges_and_only_their_nodes(store) -> None:
    now = store.watermark_ms()
    everything = train_inputs(store, now, CFG)
    src, dst, w, t = (np.asarray(a) for a in store._edge_rows("ui"))
    order = np.argsort(-t, kind="stable")
    cut = 500
    assert t[order[cut - 1]] > t[order[cut]]  # simulator events: one per second, no tie at the cut
    users, items = store.node_ids("user"), store.node_ids("item")
    expected = {(users[a], items[b]) for a, b in zip(src[order[:cut]], dst[order[:cut]])}
    sample = train_inputs(store, now, CFG, max_edges=cut)
    got = _pairs(sample.user_ids, sample.item_ids, *sample.ui)
    assert set(got) == expected and sample.sampled and sample.store_ui_edges == len(everything.ui[0])
    whole = _pairs(everything.user_ids, everything.item_ids, *everything.ui)
    assert all(math.isclose(v, whole[k], rel_tol=1e-6) for k, v in got.items())
    assert set(sample.user_ids) == {u for u, _ in expected} and set(sample.item_ids) == {i for _, i in expected}
    assert all(set(r.items) <= set(sample.item_ids) and r.user in sample.user_ids for r in sample.sessions)
    bundle = train_from_inputs(sample, CFG)
    assert bundle.item_ids == sample.item_ids and bundle.info["store_edges"] == len(everything.ui[0])


def test_batches_applied_between_slices_do_not_change_the_read(tmp_path: Path) -> None:
    """Each edge scan reads the view it started on; the edges applied meanwhile wait for the next run."""
    settings = StoreSettings(half_life_ms=HALF_LIFE)
    store = RocksDBGraphStore(tmp_path / "g", settings)
    store.apply_many(_events(3000))
    now = store.watermark_ms()
    before = len(store._edge_rows("ui")[0])
    rows = store.edge_row_chunks("ui", 100)
    first = next(rows)
    store.apply_many(_events(2000, seed=7, start_ms=now + 10_000_000))  # new users, items and edges
    rest = list(rows)
    got = sum(len(c[0]) for c in [first, *rest])
    assert got == before
    reading = read_train_inputs(store, store.watermark_ms(), CFG)
    slices = 0
    for step in reading:
        if step is None:
            slices += 1
        else:
            inputs = step
    assert slices >= 2 and len(inputs.ui[0]) == len(store._edge_rows("ui")[0])
    store.close()


def test_an_expired_budget_still_gives_a_model_trained_less(store) -> None:
    now = store.watermark_ms()
    inputs = train_inputs(store, now, CFG)
    bundle = train_from_inputs(inputs, LiveTrainConfig(**{**CFG.__dict__, "lightgcn_epochs": 5}), Deadline(0.0))
    assert bundle.info["lightgcn_epochs"] == 1  # the first epoch always runs
    assert bundle.info["prior_refit"] is False  # no time left to train again on all the data
    assert bundle.user_ids == store.node_ids("user")
