"""A worker's own replica of the graph, built from the log (the refresh and train workers).

Like the score worker, the refresh and train workers do not read the ingest worker's RocksDB
store (one writer per path, and a secondary would give them no dirty marks of their own): each
consumes ``interactions`` and ``follows`` into its own store, in its own consumer group.
:class:`ReplicaFeed` is that consumption, split in two steps so that a caller can hold batches
back while something else reads the store (the trainer does, during a training run):

* :meth:`ReplicaFeed.fetch` takes one batch from Kafka and decodes it;
* :meth:`ReplicaFeed.apply` applies a decoded batch with its offsets in one store commit.

Positions come from the store, as in the ingest worker: on every assignment the consumer seeks
to the stored offsets (plus those of batches fetched but not yet applied), and records below
them are dropped, so each event reaches the replica exactly once. Bad records are counted and
skipped: the ingest worker is the one that dead-letters them.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

from graph_store import GraphStore
from workers.runtime import metrics as m
from workers.runtime.decode import IngestCore, PreparedBatch, store_trusts_decoder
from workers.runtime.health import Check, consumer_checks
from stream.kafka.batch_consumer import TP, BatchConsumer
from workers.runtime.settings import ReplicaSettings

log = logging.getLogger(__name__)


class ReplicaFeed:
    """Kafka interactions/follows → this worker's graph store, exactly once per event."""

    def __init__(self, settings: ReplicaSettings, store: GraphStore, *, worker: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.worker = worker
        self.clock = clock
        topics = settings.topics()
        self.core = IngestCore.for_worker(settings, worker)
        self.committed: dict[TP, int] = dict(store.committed_offsets())  # what the store holds
        self.seen: dict[TP, int] = dict(self.committed)  # committed + fetched batches not yet applied
        self.consumer = BatchConsumer(
            settings.require_bootstrap(), [topics.interactions, topics.follows], group_id=settings.group_id,
            stored_offsets=lambda: self.seen, max_records=settings.batch_max,
            timeout_ms=settings.batch_timeout_ms, client_id=f"gnnrec-{worker}",
            on_ready=lambda: print(f"gnnrec-{worker} ready", flush=True), security=settings.kafka_security())
        self.applied = 0
        self._last_gauges = 0.0

    def idle_wait(self, until_next_s: float | None) -> float:
        """Seconds to wait once caught up: ``idle_poll_s``, never past the caller's next scheduled
        read of the store (``until_next_s``; None when nothing is scheduled yet).

        While nobody polls, aiokafka holds one fetched chunk per partition and does not fetch
        again, so the broker serves a few large fetches instead of one per produced batch (on
        Tansu each fetch costs in proportion to the batches stored in the partition).
        """
        wait = self.settings.idle_poll_s
        return wait if until_next_s is None else max(0.0, min(wait, until_next_s))

    @property
    def consumed_total(self) -> int:
        """Records the store has consumed over its lifetime (sum of its stored offsets)."""
        return sum(self.committed.values())

    def readiness(self) -> dict[str, Check]:
        """/readyz: partitions assigned, and the replica within ``ready_max_lag`` records of them."""
        return consumer_checks(self.consumer, self.settings.ready_max_lag)

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def fetch(self) -> PreparedBatch | None:
        """One batch from Kafka, decoded; None on an idle poll or when every record was a replay."""
        parts = await self.consumer.get_partitions()
        if not parts:
            return None
        batch = self.core.prepare_partitions(parts, self.seen, int(self.clock() * 1000))
        for topic, n in batch.consumed.items():
            m.EVENTS_CONSUMED.labels(self.worker, topic).inc(n)
        if batch.skipped:
            m.EVENTS_SKIPPED.labels(self.worker).inc(batch.skipped)
        for reason, n in batch.reasons.items():
            m.REJECTED.labels(self.worker, reason).inc(n)
        if not batch.offsets:
            return None
        self.seen.update(batch.offsets)
        return batch

    def apply(self, batch: PreparedBatch) -> int:
        """Apply a fetched batch and its offsets in one commit; returns the events applied."""
        now_ms = int(self.clock() * 1000)
        trusted = store_trusts_decoder(self.store.settings, self.core.limits, now_ms)
        stats = self.store.apply_many(batch.events, batch.offsets, trusted=trusted)
        self.committed.update(batch.offsets)
        m.EVENTS_APPLIED.labels(self.worker, "interaction").inc(stats.interactions)
        m.EVENTS_APPLIED.labels(self.worker, "follow").inc(stats.follows)
        n = stats.interactions + stats.follows
        self.applied += n
        return n

    async def run_once(self) -> int:
        """Fetch and apply one batch; returns the events applied (0 on an idle poll)."""
        batch = await self.fetch()
        n = 0 if batch is None else self.apply(batch)
        self.export_gauges(force=False)
        return n

    def export_gauges(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_gauges < 1.0:
            return
        self._last_gauges = now
        m.export_consumer_gauges(self.worker, self.store.counts(), self.consumer.lag(), self.committed)
