"""`gnnrec worker train`: retrain the live models on a schedule and publish them for hot swap.

The worker consumes interactions and follows into its own replica store
(:class:`~workers.runtime.replica.ReplicaFeed`). Once the store has consumed ``min_events`` records,
and then every ``train_interval_s`` seconds of wall clock, it runs
:func:`~models.live.train.train_bundle` on the store at its event-time watermark, in a worker
thread, and :func:`~models.live.bundle.publish`\\ es the bundle to ``model_dir``, where the
refresh and score workers pick it up (the atomic ``LATEST`` rename is the swap).

Consuming continues during a run, but the batches fetched meanwhile are held back and applied
when the run ends: the training reads the store as one snapshot (node ids, edges, sessions and
follows of the same instant), and the stores are not safe to write while another thread reads
them. At most ``max_pending_records`` records are held; beyond that the loop waits for the run.
A failed run is logged and counted; the previous bundle stays published.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch

from graph_store import GraphStore
from workers.runtime import metrics as m
from workers.runtime.decode import PreparedBatch
from models.live.bundle import ModelBundle, publish
from models.live.train import LiveTrainConfig, NotEnoughDataError, train_bundle
from workers.runtime.health import Check
from workers.runtime.replica import ReplicaFeed
from workers.runtime.settings import TrainSettings
from workers.runtime.stores import open_store

log = logging.getLogger(__name__)


def train_config(settings: TrainSettings) -> LiveTrainConfig:
    return LiveTrainConfig(dim=settings.dim, num_layers=settings.num_layers,
                           lightgcn_epochs=settings.lightgcn_epochs, srgnn_epochs=settings.srgnn_epochs,
                           social_epochs=settings.social_epochs, seed=settings.seed,
                           threads=settings.train_threads)


def train_and_publish(store: GraphStore, model_dir: Path, cfg: LiveTrainConfig, *,
                      worker: str = "train") -> ModelBundle | None:
    """Train on ``store`` at its watermark and publish; None (logged, counted) if that failed."""
    started = time.perf_counter()
    now_ms = store.watermark_ms()
    if now_ms is None:
        m.TRAIN_RUNS.labels(worker, "skipped").inc()
        return None
    try:
        bundle = train_bundle(store, now_ms, cfg)
        publish(bundle, model_dir)
    except NotEnoughDataError as exc:
        log.warning("training skipped: %s", exc)
        m.TRAIN_RUNS.labels(worker, "skipped").inc()
        return None
    except Exception:  # a failed run must not stop consumption; the last bundle stays published
        log.exception("training run failed; %s keeps its previous bundle", model_dir)
        m.TRAIN_RUNS.labels(worker, "error").inc()
        return None
    m.TRAIN_RUNS.labels(worker, "published").inc()
    m.TRAIN_SECONDS.labels(worker).observe(time.perf_counter() - started)
    m.set_model_version(worker, bundle.version, bundle.trained_at_ms)
    log.info("published %r in %.1fs", bundle, time.perf_counter() - started)
    return bundle


class TrainLoop:
    """Consume into the replica; train in a thread on schedule; hold batches back meanwhile."""

    def __init__(self, settings: TrainSettings, store: GraphStore, *, worker: str = "train",
                 wall: Callable[[], float] = time.monotonic,
                 run: Callable[[GraphStore, Path, LiveTrainConfig], ModelBundle | None] | None = None) -> None:
        self.settings = settings
        # One training run (tests pass a wrapper to hold a run open); never raises.
        self.run: Callable[[GraphStore, Path, LiveTrainConfig], ModelBundle | None] = run or (
            lambda store, model_dir, cfg: train_and_publish(store, model_dir, cfg, worker=worker))
        self.store = store
        self.worker = worker
        self.wall = wall
        self.cfg = train_config(settings)
        self.feed = ReplicaFeed(settings, store, worker=worker)
        self.pending: list[PreparedBatch] = []
        self.running: asyncio.Future[ModelBundle | None] | None = None
        self.last_published: ModelBundle | None = None
        self.published = 0
        self._last_start: float | None = None

    async def start(self) -> None:
        await self.feed.start()

    async def stop(self) -> None:
        if self.running is not None:
            await self.running  # a half-written bundle never becomes LATEST, but finish cleanly
            self._finish()
        await self.feed.stop()

    def close(self) -> None:
        self.feed.export_gauges(force=True)
        self.store.close()

    def readiness(self) -> dict[str, Check]:
        """/readyz: the replica's checks (the trainer makes models; it needs none to start)."""
        return self.feed.readiness()

    @property
    def pending_records(self) -> int:
        return sum(len(b.events) for b in self.pending)

    async def run_once(self) -> int:
        """One fetch (held back during a run), then the schedule. Returns records fetched."""
        if self.running is not None and self.running.done():
            self._finish()
        if self.running is not None and self.pending_records >= self.settings.max_pending_records:
            await asyncio.wait([self.running], timeout=0.5)  # back-pressure: let the run end first
            return 0
        batch = await self.feed.fetch()
        n = 0
        if batch is not None:
            n = len(batch.events)
            if self.running is None:
                self.feed.apply(batch)
            else:
                self.pending.append(batch)
        self.feed.export_gauges(force=False)
        self.maybe_train()
        if n < self.settings.batch_max:
            await asyncio.sleep(self.idle_wait())
        return n

    def idle_wait(self) -> float:
        """Once caught up, :meth:`ReplicaFeed.idle_wait` up to the next scheduled run; during a
        run the batches are only held back, so the full wait applies."""
        if self.running is not None or self._last_start is None:
            return self.feed.idle_wait(None)
        return self.feed.idle_wait(self.settings.train_interval_s - (self.wall() - self._last_start))

    def due(self) -> bool:
        if self.running is not None or self.feed.consumed_total < self.settings.min_events:
            return False
        return self._last_start is None or self.wall() - self._last_start >= self.settings.train_interval_s

    def maybe_train(self) -> bool:
        if not self.due():
            return False
        self._last_start = self.wall()
        self.running = asyncio.get_running_loop().run_in_executor(
            None, self.run, self.store, self.settings.model_dir, self.cfg)
        return True

    def _finish(self) -> None:
        assert self.running is not None
        bundle = self.running.result()  # train_and_publish never raises
        self.running = None
        if bundle is not None:
            self.last_published = bundle
            self.published += 1
        for batch in self.pending:
            self.feed.apply(batch)
        self.pending.clear()


def build_train_loop(settings: TrainSettings) -> TrainLoop:
    """The loop `gnnrec worker train` runs (inside :class:`workers.runtime.runner.LoopService`)."""
    torch.set_num_threads(1)  # more threads spin on a shared 2-core box and run ~10x slower
    return TrainLoop(settings, open_store(settings))
