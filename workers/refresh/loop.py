"""`gnnrec worker refresh`: keep the published node embeddings in step with the live graph.

The worker consumes interactions and follows into its own replica store
(:class:`~workers.runtime.replica.ReplicaFeed`), and every ``refresh_interval_s`` seconds of wall clock:

* if ``<model_dir>/LATEST`` names a bundle it does not serve yet, loads it and runs
  :meth:`~models.live.refresher.Refresher.swap` (the hot swap: every row recomputed with the
  new weights, no restart);
* otherwise runs :meth:`~models.live.refresher.Refresher.refresh` (local recomputation around
  the store's dirty nodes);

then writes the rows of every node type and the new version in ONE embedding-store commit
(``put_groups``), so the scorer, reading the store as a RocksDB secondary, sees the previous
version or the new one, never users of one and items of the other. The version string is
``<model version>/r<refresh seq>/w<event-time watermark ms>``.

Under ``--transport kafka`` the model dir is this worker's own copy of the models topic, and
every version written is published to the embeddings topic (:mod:`workers.runtime.transport`);
this loop is the same either way.

Refresh time is event time: the store's watermark is the ``now_ms`` edge weights decay to, so
the embeddings are a function of the events applied, not of when the timer fired.

A refresh that fails (a bundle that does not load, a write error) is logged and counted and
the worker carries on; since a failed local refresh may have consumed dirty marks whose rows
never reached the store, the next refresh is a full rebuild.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from graph_store import GraphStore
from graph_store.embeddings import EmbeddingStore, RocksDBEmbeddingStore
from workers.runtime import metrics as m
from models.live.bundle import BundleError, ModelBundle, latest_version, load_bundle
from models.live.refresher import Refresher, RefreshResult
from workers.runtime.health import Check
from workers.runtime.replica import ReplicaFeed
from workers.runtime.settings import RefreshSettings
from workers.runtime.stores import open_store

log = logging.getLogger(__name__)


def embedding_version(result: RefreshResult) -> str:
    """``<model version>/r<seq>/w<watermark ms>``: which weights, which refresh, which events."""
    return f"{result.embedding_version}/w{result.watermark_ms}"


def write_result(embeddings: EmbeddingStore, result: RefreshResult) -> str | None:
    """Write a refresh's rows with their version in one commit; None when there was nothing to write."""
    groups = {t: (ids, vectors) for t, (ids, vectors) in result.rows.items() if ids}
    if not groups:
        return None
    version = embedding_version(result)
    embeddings.put_groups(groups, version)
    return version


@dataclass(frozen=True)
class RefreshOutcome:
    """What one timer tick did: ``kind`` is local, rebuild, swap, waiting (no model / no events),
    idle (nothing changed) or error."""

    kind: str
    version: str | None = None
    result: RefreshResult | None = None


class RefreshCore:
    """The refresh decision and write, free of Kafka: model dir + replica store → embedding store."""

    def __init__(self, model_dir: Path, embeddings: EmbeddingStore, *, worker: str = "refresh",
                 dense_above: float = 0.5, load: Callable[[Path, str], ModelBundle] = load_bundle) -> None:
        self.model_dir = model_dir
        self.embeddings = embeddings
        self.worker = worker
        self.dense_above = dense_above
        self.load = load
        self.refresher: Refresher | None = None
        self.rebuild_next = False  # set when a failure may have lost rows: next refresh is full
        self._unloadable: str | None = None  # a version that failed to load; retried once LATEST moves
        self.last: RefreshOutcome | None = None

    def tick(self, store: GraphStore) -> RefreshOutcome:
        """One refresh of ``store`` at its watermark. Never raises: failures become ``error`` outcomes."""
        started = time.perf_counter()
        try:
            outcome = self._tick(store)
        except Exception:  # a refresh must never take the worker down
            log.exception("refresh failed; the previous embedding version stays served")
            m.REFRESH_ERRORS.labels(self.worker, "refresh").inc()
            self.rebuild_next = True
            outcome = RefreshOutcome("error")
        if outcome.result is not None and outcome.kind in ("local", "rebuild", "swap"):
            r = outcome.result
            m.REFRESH_DIRTY.labels(self.worker).set(r.dirty)
            m.REFRESH_RECOMPUTED.labels(self.worker).inc(r.recomputed)
            m.REFRESH_SECONDS.labels(self.worker).observe(time.perf_counter() - started)
            m.REFRESH_RUNS.labels(self.worker, outcome.kind).inc()
            m.EMBEDDING_WATERMARK.labels(self.worker).set(r.watermark_ms)
        self.last = outcome
        return outcome

    def _new_bundle(self) -> ModelBundle | None:
        """The bundle LATEST names if it is not the one in use (and loads), else None."""
        version = latest_version(self.model_dir)
        current = None if self.refresher is None else self.refresher.model_version
        if version is None or version == current or version == self._unloadable:
            return None
        try:
            return self.load(self.model_dir, version)
        except BundleError:
            log.exception("model %s does not load; serving %s until the trainer publishes another", version, current)
            m.REFRESH_ERRORS.labels(self.worker, "bundle").inc()
            self._unloadable = version
            return None

    def _tick(self, store: GraphStore) -> RefreshOutcome:
        now_ms = store.watermark_ms()
        bundle = self._new_bundle()
        if now_ms is None or (bundle is None and self.refresher is None):
            return RefreshOutcome("waiting")
        if bundle is not None and self.refresher is not None:
            kind, result = "swap", self.refresher.swap(bundle, store, now_ms)
        elif bundle is not None:
            self.refresher = Refresher(bundle, dense_above=self.dense_above)
            kind, result = "rebuild", self.refresher.rebuild(store, now_ms)
        elif self.rebuild_next:
            assert self.refresher is not None
            kind, result = "rebuild", self.refresher.rebuild(store, now_ms)
        else:
            assert self.refresher is not None
            kind, result = "local", self.refresher.refresh(store, now_ms)
        version = write_result(self.embeddings, result)
        self.rebuild_next = False
        if kind != "local" or version is not None:
            bundle_now = self.refresher.bundle
            m.set_model_version(self.worker, bundle_now.version, bundle_now.trained_at_ms)
        if version is None and kind == "local":
            return RefreshOutcome("idle", None, result)
        return RefreshOutcome(kind, version, result)


class RefreshLoop:
    """Consume into the replica; on each wall-clock interval, refresh and publish."""

    def __init__(self, settings: RefreshSettings, store: GraphStore, embeddings: EmbeddingStore, *,
                 worker: str = "refresh", wall: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.store = store
        self.wall = wall
        self.feed = ReplicaFeed(settings, store, worker=worker)
        self.core = RefreshCore(settings.model_dir, embeddings, worker=worker, dense_above=settings.dense_above)
        self._last_tick: float | None = None
        # Our own thread, so that stop() can wait for a refresh still writing when the worker
        # is asked to stop (cancelling the awaiting task does not stop the thread).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"gnnrec-{worker}")

    async def start(self) -> None:
        await self.feed.start()

    async def stop(self) -> None:
        self._executor.shutdown(wait=True)
        await self.feed.stop()

    def close(self) -> None:
        self.feed.export_gauges(force=True)
        self.store.close()
        self.core.embeddings.close()

    def readiness(self) -> dict[str, Check]:
        """/readyz: the replica's checks, and a model loaded (without one nothing is refreshed)."""
        checks = self.feed.readiness()
        refresher = self.core.refresher
        if refresher is not None:
            checks["model"] = (True, f"refreshing with model {refresher.model_version}")
        else:
            checks["model"] = (False, f"no model loaded yet: one is loaded at the first refresh after the "
                                      f"train worker publishes it to {self.settings.model_dir} and events arrived")
        return checks

    async def run_once(self) -> int:
        n = await self.feed.run_once()
        await self.maybe_refresh()
        if n < self.settings.batch_max:
            await asyncio.sleep(self.idle_wait())
        return n

    def idle_wait(self) -> float:
        """Once caught up, :meth:`ReplicaFeed.idle_wait` up to the next refresh: the refresh
        reads the store only at its tick, so events need not be applied sooner."""
        if self._last_tick is None:
            return 0.0
        return self.feed.idle_wait(self.settings.refresh_interval_s - (self.wall() - self._last_tick))

    async def maybe_refresh(self) -> RefreshOutcome | None:
        now = self.wall()
        if self._last_tick is not None and now - self._last_tick < self.settings.refresh_interval_s:
            return None
        self._last_tick = now
        # In a thread, so that the event loop keeps the consumer's heartbeats going during a long
        # swap; nothing is applied to the store meanwhile (this coroutine is the only writer).
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.core.tick, self.store)


def build_refresh_loop(settings: RefreshSettings) -> RefreshLoop:
    """The loop `gnnrec worker refresh` runs (inside :class:`workers.runtime.runner.LoopService`)."""
    torch.set_num_threads(1)  # more threads spin on a shared 2-core box and run ~10x slower
    return RefreshLoop(settings, open_store(settings), RocksDBEmbeddingStore(settings.embeddings_dir))
