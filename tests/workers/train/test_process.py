"""The train worker's runs: a real child process that publishes, fails, or is killed over budget;
and the schedule that starts them (first sample, growth, interval)."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

from graph_store import MemoryGraphStore, StoreSettings
from models.live.bundle import latest_version, load_bundle
from models.live.train import LiveTrainConfig
from models.live.train_inputs import TrainInputs, train_inputs
from stream.simulator import BadRecord, Simulator, SimulatorSettings
from workers.runtime.settings import TrainSettings
from workers.train.loop import TrainLoop
from workers.train.process import TrainProcess

CFG = LiveTrainConfig(dim=8, lightgcn_epochs=2, srgnn_epochs=1, social_epochs=1, inductive_steps=10)


def _store() -> MemoryGraphStore:
    sim = Simulator(SimulatorSettings(n_users=80, n_items=200, n_categories=8, seed=5))
    store = MemoryGraphStore(StoreSettings())
    store.apply_many([e for e in sim.events(start_ms=1_700_000_000_000, n=1500, step_ms=1000)
                      if not isinstance(e, BadRecord)])
    return store


def _wait(run: TrainProcess, timeout_s: float = 90.0):
    deadline = time.monotonic() + timeout_s
    while (outcome := run.poll()) is None:
        assert time.monotonic() < deadline, "the run did not end"
        time.sleep(0.05)
    return outcome


def test_a_child_publishes_the_bundle_of_its_inputs(tmp_path: Path) -> None:
    store = _store()
    inputs = train_inputs(store, store.watermark_ms(), CFG)
    outcome = _wait(TrainProcess(inputs, tmp_path / "models", CFG, budget_s=120, work_dir=tmp_path / "run"))
    assert outcome.status == "published" and outcome.trained_at_ms == store.watermark_ms()
    assert latest_version(tmp_path / "models") == outcome.version
    bundle = load_bundle(tmp_path / "models")
    assert bundle.user_ids == store.node_ids("user") and bundle.item_ids == store.node_ids("item")
    assert not (tmp_path / "run" / "inputs.pkl").exists()  # cleaned up


def test_a_failing_child_reports_and_a_stuck_one_is_killed(tmp_path: Path) -> None:
    empty = TrainInputs(0, 1.0, [], [], (np.zeros(0, np.int64),) * 2 + (np.zeros(0, np.float32),),
                        (np.zeros(0, np.int64),) * 2 + (np.zeros(0, np.float32),), [])
    skipped = _wait(TrainProcess(empty, tmp_path / "models", CFG, budget_s=60, work_dir=tmp_path / "a"))
    assert skipped.status == "skipped" and "user-item edges" in skipped.reason
    broken = TrainInputs(0, 1.0, ["u"], [], (np.array([0, 0]), np.array([0, 1]), np.ones(2, np.float32)),
                         (np.zeros(0, np.int64),) * 2 + (np.zeros(0, np.float32),), [])
    error = _wait(TrainProcess(broken, tmp_path / "models", CFG, budget_s=60, work_dir=tmp_path / "b"))
    assert error.status == "error" and error.reason
    stuck = TrainProcess(empty, tmp_path / "models", CFG, budget_s=0.5, grace_s=0.5, work_dir=tmp_path / "c",
                         hold=tmp_path / "never")
    timeout = _wait(stuck, 30)
    assert timeout.status == "timeout" and stuck.process.exitcode is not None
    assert latest_version(tmp_path / "models") is None  # nothing was published by any of them


class Wall:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_schedule_grows_the_sample_and_starts_early_when_the_graph_grew(tmp_path: Path) -> None:
    asyncio.run(_schedule(tmp_path))


async def _schedule(tmp_path: Path) -> None:
    settings = TrainSettings(bootstrap_servers="127.0.0.1:1", data_dir=tmp_path / "t", model_dir=tmp_path / "m",
                             min_events=100, train_interval_s=600, train_sample_edges=1000, train_sample_growth=4)
    wall, launched = Wall(), []
    loop = TrainLoop(settings, _store(), wall=wall, launch=lambda inputs, cfg: launched.append(inputs) or Done())

    def consumed(n: int) -> None:
        loop.feed.committed = {("interactions", 0): n}

    consumed(99)
    assert not loop.due()
    consumed(100)
    assert loop.due() and loop.sample_edges() == 1000 and loop.maybe_train()
    while loop.reading is not None:
        loop.read_slice()
    assert len(launched) == 1 and len(launched[0].ui[0]) == min(1000, launched[0].store_ui_edges)
    assert loop.busy and not loop.due()
    assert loop.poll_run().status == "published" and loop.published == 1
    consumed(399)
    assert not loop.due()  # neither the interval nor 4x the records of the last start
    consumed(400)
    assert loop.due() and loop.sample_edges() == 4000
    consumed(100)
    wall.now = 600
    assert loop.due()
    await loop.stop()
    loop.close()


class Done:
    """A run that has ended, published."""

    def poll(self):
        from workers.train.process import TrainOutcome
        return TrainOutcome("published", 1.0, "v1", 1)

    def kill(self) -> None:
        pass
