"""`gnnrec worker ingest`: Kafka interactions/follows → the RocksDB graph store.

The worker is a faust application. faust owns the process: lifecycle, signals, logging, and a
service that runs next to the app. Faust's per-event stream machinery costs ~200 µs per event
here (../shared/DEPENDENCIES.md), so the hot path does not iterate events through a faust
agent: the :class:`IngestLoop` pulls whole batches with ``getmany``, decodes them in one
pass, dead-letters bad records, and applies the rest to the store in ONE WriteBatch that also
holds the consumed offsets. On restart it seeks to those offsets and skips replays, which makes
the store's effect exactly-once without Kafka transactions (Tansu has none).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import CorruptRecordException, MessageSizeTooLargeError, RecordTooLargeError

from graph_store import GraphStore
from graph_store.batch import MAX_ID_CHARS
from stream.events import INTERACTION_KINDS, SCHEMA_VERSION, DeadLetter, encode
from workers.runtime import metrics as m
from workers.runtime.decode import IngestCore, PreparedBatch, minimal_dead_letter, store_trusts_decoder
from workers.runtime.health import Check, consumer_checks
from stream.kafka.batch_consumer import TP, BatchConsumer
from stream.kafka.producer import start_producer
from workers.runtime.process_tuning import HeapFreezer
from workers.runtime.settings import IngestSettings

log = logging.getLogger(__name__)

# Errors that concern one produced record (too large for the client or the topic, refused as
# invalid), not the connection: retrying cannot help, so the record is not allowed to stop
# the partition.
RECORD_ERRORS = (MessageSizeTooLargeError, RecordTooLargeError, CorruptRecordException)


class IngestLoop:
    """Consume → prepare → dead-letter → commit, batch after batch. Owns its store."""

    def __init__(self, settings: IngestSettings, store: GraphStore, *, worker: str = "ingest",
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.worker = worker
        self.clock = clock
        topics = settings.topics()
        self.topics = topics
        self.core = IngestCore.for_worker(settings, worker)
        # A store that decodes raw payloads (graph_store.rocksdb.native) gets each fetch staged there.
        self.stage = store if hasattr(store, "stage_raw") else None
        if self.stage is not None:
            limits = self.core.limits
            self.stage.configure_wire(sorted(INTERACTION_KINDS), min(limits.max_id_len, MAX_ID_CHARS),
                                      limits.max_bytes, SCHEMA_VERSION)
        self.committed: dict[TP, int] = dict(store.committed_offsets())
        bootstrap = settings.require_bootstrap()
        security = settings.kafka_security()
        self.consumer = BatchConsumer(
            bootstrap, [topics.interactions, topics.follows], group_id=settings.group_id,
            stored_offsets=lambda: self.committed, max_records=settings.batch_max,
            timeout_ms=settings.batch_timeout_ms, client_id=f"gnnrec-{worker}",
            on_ready=lambda: print(f"gnnrec-{worker} ready", flush=True),
            chunks=self.stage is not None and settings.fetch_chunks == "on", security=security)
        m.INGEST_PATH.labels(worker, type(store).__name__, "chunks" if self.consumer.chunks else "records").set(1)
        # Dead letters are the only record of a bad input: acks=all keeps one through the loss of
        # a partition leader; idempotence (where the broker has it) keeps a retried one single.
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all",
                                         enable_idempotence=settings.idempotent_producers,
                                         **security.aiokafka_options())
        # The loop keeps almost nothing (the native store's state is not Python objects), but
        # every fetch allocates thousands of records, and each automatic full collection walked
        # the whole import-time heap: with it frozen the fetch stage costs ~1.1-1.4 µs per event
        # against ~2.2 with the collector walking it.
        self.freezer = HeapFreezer(settings.gc_freeze_interval_s)
        self.applied = 0
        self.dead_lettered = 0
        # A store without a WAL keeps its last commits only in memory: flushed on a schedule,
        # a crash re-reads at most ~checkpoint_events (or checkpoint_s worth) from Kafka.
        self._checkpoints = bool(getattr(store, "needs_checkpoints", False))
        self._unflushed = 0
        self._last_flush = time.monotonic()
        self._last_kafka_commit = 0.0
        self._last_gauges = 0.0
        # Seconds spent per stage over batches that brought records (the ingest bench reports
        # them per event): fetching (aiokafka's getmany), decoding, applying to the store.
        self.stage_seconds = {"fetch": 0.0, "decode": 0.0, "apply": 0.0}
        self.batches = 0  # fetches that brought records

    async def start(self) -> None:
        await start_producer(self.producer, self.settings.require_bootstrap(),
                             idempotent=self.settings.idempotent_producers)
        await self.consumer.start()
        self.freezer.maybe_freeze(True)

    async def stop(self) -> None:
        self.freezer.close()
        await self.consumer.stop()
        await self.producer.stop()

    def close(self) -> None:
        self._maybe_export_gauges(force=True)
        self.store.close()

    def readiness(self) -> dict[str, Check]:
        """/readyz: partitions assigned, and the store within ``ready_max_lag`` records of them."""
        return consumer_checks(self.consumer, self.settings.ready_max_lag)

    async def run_once(self) -> int:
        """One batch; returns the number of records consumed (0 on an idle poll)."""
        fetch_started = time.perf_counter()
        parts = await self.consumer.get_partitions()
        if not parts:
            self._maybe_checkpoint()
            self._maybe_export_gauges(force=False)
            return 0
        await self.consumer.prefetch()  # the broker serves the next batch while this one is applied
        self.batches += 1
        self.freezer.maybe_freeze(True)  # re-freezes after a full collection; cheap otherwise
        started = time.perf_counter()
        stages = self.stage_seconds
        stages["fetch"] += started - fetch_started
        now_ms = int(self.clock() * 1000)
        batch = self.core.prepare_partitions(parts, self.committed, now_ms, self.stage)
        stages["decode"] += time.perf_counter() - started
        n_records = sum(batch.consumed.values()) + batch.skipped  # not len(parts): a chunk is one entry
        if batch.dead:
            await self._send_dead_letters(batch)
        applying = time.perf_counter()
        if batch.offsets:
            # The decoders already checked every event by the store's rules: skip re-validation.
            if self.stage is not None:
                stats = self.stage.apply_staged(batch.offsets)
            else:
                trusted = store_trusts_decoder(self.store.settings, self.core.limits, now_ms)
                stats = self.store.apply_many(batch.events, batch.offsets, trusted=trusted)
            self.committed.update(batch.offsets)
            m.EVENTS_APPLIED.labels(self.worker, "interaction").inc(stats.interactions)
            m.EVENTS_APPLIED.labels(self.worker, "follow").inc(stats.follows)
            self.applied += stats.interactions + stats.follows
            self._unflushed += n_records
        stages["apply"] += time.perf_counter() - applying
        m.BATCH_APPLY_SECONDS.labels(self.worker).observe(time.perf_counter() - started)
        m.BATCH_SIZE.labels(self.worker).observe(n_records)
        for topic, n in batch.consumed.items():
            m.EVENTS_CONSUMED.labels(self.worker, topic).inc(n)
        if batch.skipped:
            m.EVENTS_SKIPPED.labels(self.worker).inc(batch.skipped)
        self._maybe_checkpoint()
        await self._maybe_commit_to_kafka()
        self._maybe_export_gauges(force=False)
        return n_records

    def _maybe_checkpoint(self) -> None:
        if not self._checkpoints or not self._unflushed:
            return
        now = time.monotonic()
        if self._unflushed >= self.settings.checkpoint_events or now - self._last_flush >= self.settings.checkpoint_s:
            # Not waited for: RocksDB writes the frozen memtable in its background thread while
            # the loop goes on; the offsets in it are durable once that file is written.
            self.store.flush(wait=False)
            self._unflushed, self._last_flush = 0, now
            m.STORE_CHECKPOINTS.labels(self.worker).inc()

    async def _send_dead_letters(self, batch: PreparedBatch) -> None:
        # Await delivery before the store commit: if we crash in between, the record is
        # dead-lettered again on replay (at-least-once), never lost.
        results = await self._deliver(batch.dead)
        # A broker refuses a whole produce batch for one record in it: retry the refused ones
        # alone, then without key and payload, and only then give up on the record.
        for dl, error in zip(batch.dead, results):
            if error is not None:
                await self._dead_letter_alone(dl, error)
        for reason, n in batch.reasons.items():
            m.DEAD_LETTERS.labels(self.worker, reason).inc(n)
        self.dead_lettered += len(batch.dead)

    async def _deliver(self, dead: list[DeadLetter]) -> list[BaseException | None]:
        """Send and await ``dead``; per record, None or the record-specific error that refused it.
        Any other error (the broker is down, the topic does not exist) propagates: the batch is
        not committed and the worker retries it, as for a failed store write."""
        futures: list = []
        for dl in dead:
            try:
                futures.append(await self.producer.send(self.topics.dead_letters, encode(dl), key=dl.key))
            except RECORD_ERRORS as exc:  # refused by the client before sending (size)
                futures.append(exc)
        results: list[BaseException | None] = []
        for fut in futures:
            if isinstance(fut, BaseException):
                results.append(fut)
                continue
            try:
                await fut
                results.append(None)
            except RECORD_ERRORS as exc:
                results.append(exc)
        return results

    async def _dead_letter_alone(self, dl: DeadLetter, error: BaseException) -> None:
        for attempt in (dl, minimal_dead_letter(dl, f"{type(error).__name__}: {error}")):
            (error,) = await self._deliver([attempt])
            if error is None:
                return
        m.DEAD_LETTER_FAILURES.labels(self.worker, type(error).__name__).inc()
        log.error("could not dead-letter %s[%d]@%d (%s): %s: %s; the record is skipped",
                  dl.source_topic, dl.partition, dl.offset, dl.reason, type(error).__name__, error)

    async def _maybe_commit_to_kafka(self) -> None:
        now = time.monotonic()
        if now - self._last_kafka_commit >= 1.0:
            self._last_kafka_commit = now
            await self.consumer.commit(self.committed)

    def _maybe_export_gauges(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_gauges < 1.0:
            return
        self._last_gauges = now
        m.export_consumer_gauges(self.worker, self.store.counts(), self.consumer.lag(), self.committed)
