"""`gnnrec worker train`: retrain the live models on a schedule and publish them for hot swap.

The worker consumes interactions and follows into its own replica store
(:class:`~workers.runtime.replica.ReplicaFeed`) and never stops consuming for a training:

1. once the store has consumed ``min_events`` records, and then whenever ``train_interval_s``
   seconds have passed or the store has grown ``train_sample_growth``-fold since the last run
   started, it reads the run's inputs from the store at its event-time watermark
   (:func:`~models.live.train_inputs.read_train_inputs`), a slice of at most
   ``READ_SLICE_S`` seconds per turn of its loop, applying the batches it fetches in between;
2. it trains in a child process (:class:`~workers.train.process.TrainProcess`) within
   ``train_budget_s``, which publishes the bundle to ``model_dir``, where the refresh and score
   workers (or the models-topic publisher) pick it up; the loop polls it on each turn.

On a large graph the first run trains on the ``train_sample_edges`` most recent user–item
edges, so that a model serves within minutes of the first event; each later run may use
``train_sample_growth`` times more, until the whole graph. A failed or overdue run is logged and
counted; the previous bundle stays published.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator

import torch

from graph_store import GraphStore
from workers.runtime import metrics as m
from models.live.train import LiveTrainConfig
from models.live.train_inputs import TrainInputs, read_train_inputs
from workers.runtime.health import Check
from workers.runtime.replica import ReplicaFeed
from workers.runtime.settings import TrainSettings
from workers.runtime.stores import open_store
from workers.train.process import TrainOutcome, TrainProcess

log = logging.getLogger(__name__)

READ_SLICE_S = 0.05  # store reads per turn of the loop, at most (then the next batch is applied)


def train_config(settings: TrainSettings) -> LiveTrainConfig:
    return LiveTrainConfig(dim=settings.dim, num_layers=settings.num_layers,
                           lightgcn_epochs=settings.lightgcn_epochs, srgnn_epochs=settings.srgnn_epochs,
                           social_epochs=settings.social_epochs, seed=settings.seed,
                           threads=settings.train_threads)


Launch = Callable[[TrainInputs, LiveTrainConfig], TrainProcess]


class TrainLoop:
    """Consume into the replica; read a run's inputs in slices; train in a child process."""

    def __init__(self, settings: TrainSettings, store: GraphStore, *, worker: str = "train",
                 wall: Callable[[], float] = time.monotonic, launch: Launch | None = None) -> None:
        self.settings = settings
        self.launch: Launch = launch or (lambda inputs, cfg: TrainProcess(
            inputs, settings.model_dir, cfg, budget_s=settings.train_budget_s, work_dir=settings.data_dir / "run"))
        self.store = store
        self.worker = worker
        self.wall = wall
        self.cfg = train_config(settings)
        self.feed = ReplicaFeed(settings, store, worker=worker)
        self.reading: Iterator[TrainInputs | None] | None = None
        self.running: TrainProcess | None = None
        self.last_outcome: TrainOutcome | None = None
        self.published = 0
        self.runs = 0  # runs started
        self._last_start: float | None = None
        self._consumed_at_start = 0

    async def start(self) -> None:
        await self.feed.start()

    async def stop(self) -> None:
        if self.running is not None:  # a half-written bundle never becomes LATEST; the last one stays
            self.running.kill()
            self.running = None
        self.reading = None
        await self.feed.stop()

    def close(self) -> None:
        self.feed.export_gauges(force=True)
        self.store.close()

    def readiness(self) -> dict[str, Check]:
        """/readyz: the replica's checks (the trainer makes models; it needs none to start)."""
        return self.feed.readiness()

    @property
    def busy(self) -> bool:
        return self.reading is not None or self.running is not None

    async def run_once(self) -> int:
        """One fetch and apply, a slice of a run's input read, the schedule. Returns records fetched."""
        self.poll_run()
        batch = await self.feed.fetch()
        n = 0
        if batch is not None:
            n = len(batch.events)
            self.feed.apply(batch)
        self.feed.export_gauges(force=False)
        self.read_slice()
        self.maybe_train()
        if n < self.settings.batch_max and self.reading is None:
            await asyncio.sleep(self.idle_wait())
        return n

    def idle_wait(self) -> float:
        """Once caught up, :meth:`ReplicaFeed.idle_wait` up to the next scheduled run (a run in
        progress is polled at least every second)."""
        if self.running is not None:
            return min(1.0, self.feed.idle_wait(None))
        if self._last_start is None:
            return self.feed.idle_wait(None)
        return self.feed.idle_wait(self.settings.train_interval_s - (self.wall() - self._last_start))

    def due(self) -> bool:
        consumed = self.feed.consumed_total
        if self.busy or consumed < self.settings.min_events:
            return False
        if self._last_start is None or self.wall() - self._last_start >= self.settings.train_interval_s:
            return True
        growth = self.settings.train_sample_growth
        return growth > 1 and consumed >= growth * self._consumed_at_start

    def sample_edges(self) -> int | None:
        """User–item edges the next run trains on, at most (None: all of them)."""
        first = self.settings.train_sample_edges
        if not first:
            return None
        return int(first * max(self.settings.train_sample_growth, 1.0) ** self.runs)

    def maybe_train(self) -> bool:
        """Start reading a run's inputs when one is due."""
        if not self.due():
            return False
        now_ms = self.store.watermark_ms()
        if now_ms is None:
            return False
        self._last_start, self._consumed_at_start = self.wall(), self.feed.consumed_total
        self.reading = read_train_inputs(self.store, now_ms, self.cfg, max_edges=self.sample_edges())
        return True

    def read_slice(self) -> None:
        """Advance the input read by at most ``READ_SLICE_S``; launch the run once it is read."""
        if self.reading is None:
            return
        until = time.perf_counter() + READ_SLICE_S
        for step in self.reading:
            if step is not None:
                self.reading = None
                self.runs += 1
                log.info("training run %d: %d user-item edges of %d, %d sessions", self.runs, len(step.ui[0]),
                         step.store_ui_edges, len(step.sessions))
                self.running = self.launch(step, self.cfg)
                return
            if time.perf_counter() >= until:
                return

    def poll_run(self) -> TrainOutcome | None:
        """The outcome of the run in progress once it ended (logged, counted); None meanwhile."""
        if self.running is None:
            return None
        outcome = self.running.poll()
        if outcome is None:
            return None
        self.running, self.last_outcome = None, outcome
        m.TRAIN_RUNS.labels(self.worker, outcome.status).inc()
        if outcome.status == "published":
            self.published += 1
            m.TRAIN_SECONDS.labels(self.worker).observe(outcome.seconds)
            m.set_model_version(self.worker, outcome.version, outcome.trained_at_ms)
            log.info("published %s in %.1f s (%s)", outcome.version, outcome.seconds, outcome.info)
        elif outcome.status == "skipped":
            log.warning("training skipped: %s", outcome.reason)
        else:
            log.error("training run %s after %.1f s: %s; %s keeps its previous bundle", outcome.status,
                      outcome.seconds, outcome.reason, self.settings.model_dir)
        return outcome


def build_train_loop(settings: TrainSettings) -> TrainLoop:
    """The loop `gnnrec worker train` runs (inside :class:`workers.runtime.runner.LoopService`)."""
    torch.set_num_threads(1)
    return TrainLoop(settings, open_store(settings))
