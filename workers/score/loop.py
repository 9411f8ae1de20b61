"""`gnnrec worker score`: each interaction → a next-item and a social recommendation.

The scorer keeps its own graph store, built from the same log as the ingest worker's (as a
Kafka Streams task keeps local state): applying an event and scoring it happen in one place,
so a recommendation never waits for another process's commit, and each event is applied before
it is scored — never after later events of the same batch (that would leak the future).

Its default store is in memory (per-event reads are ~5x faster than RocksDB prefix scans). On
start it rebuilds that state by replaying the log from the beginning, and emits nothing for
records below the offsets it had already scored (kept in ``scored-offsets.json``), so a restart
neither loses state nor re-sends old recommendations. With ``--store rocksdb`` each per-event
commit carries that event's offset and the restart resumes from the store instead.

Two recommenders: ``transitions`` (the baselines of :mod:`models.live.baselines`) and ``gnn``
(:mod:`workers.score.gnn`: the trained bundle over the refresh worker's embeddings, polled
every ``--embeddings-poll-s``), which falls back to the baselines per request when it cannot
answer (no bundle or embeddings yet, no known item in the session). Each recommendation says
which model and embedding version produced it, and next-item lists are scored prequentially
against the session's next click (:class:`models.live.quality.OnlineQuality`).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator

from aiokafka import AIOKafkaProducer

from graph_store import GraphStore, Neighbour
from stream.events import Follow, Interaction, Invalid, encode_recommendation_items
from workers.runtime import metrics as m
from workers.runtime.decode import IngestCore, store_trusts_decoder
from workers.runtime.health import Check, consumer_checks
from stream.kafka.batch_consumer import TP, BatchConsumer, RawRecord
from stream.kafka.producer import start_producer
from models.live.quality import OnlineQuality
from workers.runtime.process_tuning import HeapFreezer
from models.live.baselines import next_item_transitions, social_followees
from workers.score.coalesce import superseded
from workers.score.parts import Pending, Scored, make_follower, trending_from
from workers.score.offsets import load_offsets, save_offsets
from workers.score.transactional import answered_offsets, commit_batch, start_transactional, transactional_id
from workers.runtime.settings import ScoreSettings

log = logging.getLogger(__name__)


class ScoreLoop:
    def __init__(self, settings: ScoreSettings, store: GraphStore, *, worker: str = "score",
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.worker = worker
        self.clock = clock
        self.topics = settings.topics()
        self.decoder = IngestCore.for_worker(settings, worker)
        self.committed: dict[TP, int] = dict(store.committed_offsets())
        self.scored_path = settings.data_dir / "scored-offsets.json"
        self.scored: dict[TP, int] = load_offsets(self.scored_path)
        self._acked: dict[TP, int] = dict(self.scored)  # what scored-offsets.json may say
        self._saved: dict[TP, int] = dict(self.scored)  # what it says
        self._in_flight: tuple[list, dict[TP, int]] = ([], self._acked)  # last batch's sends, its offsets
        self._last_scored_save = 0.0
        bootstrap = settings.require_bootstrap()
        security = settings.kafka_security()
        self.consumer = BatchConsumer(
            bootstrap, [self.topics.interactions, self.topics.follows], group_id=settings.group_id,
            stored_offsets=lambda: self.committed, max_records=settings.batch_max,
            timeout_ms=settings.batch_timeout_ms, client_id=f"gnnrec-{worker}",
            on_ready=lambda: print(f"gnnrec-{worker} ready", flush=True),
            # A fetch returns as soon as any record is there; waiting less keeps latency low.
            fetch_max_wait_ms=10, security=security)
        # One fetch's recommendations (~1 KB each) fit one batch per partition: with aiokafka's
        # 16 KB default a burst of a few hundred events queued behind dozens of round trips.
        # 512 KB stays under Apache Kafka's default 1 MB message.max.bytes. acks=all: the offsets
        # of a batch are saved once its answers are acknowledged, and with acks=1 a leader lost
        # before its followers copied them would drop answers whose events are never read again
        # (on one broker it costs nothing more). Idempotence, where the broker has it, keeps a
        # send retried across a leader change from answering an event twice.
        self._bootstrap, self._security = bootstrap, security
        txn = {"enable_idempotence": settings.idempotent_producers} if settings.exactly_once == "off" else {
            "transactional_id": transactional_id(settings.group_id, settings.data_dir, settings.transactional_id),
            "enable_idempotence": True}
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks="all",
                                         max_batch_size=512 * 1024, **txn, **security.aiokafka_options())
        self.freezer = HeapFreezer(settings.gc_freeze_interval_s)
        self._trending = trending_from(store, 4 * settings.k + 8)  # read 4k, plus a margin for rounding
        self.emitted = {"next_item": 0, "social": 0}
        self._last_gauges = 0.0
        self.gnn = make_follower(settings)
        self._last_poll = float("-inf")
        self._serving: tuple[str | None, str | None] = (None, None)
        self.quality = OnlineQuality(k=settings.k, max_sessions=settings.quality_sessions)
        self._children: dict[tuple, object] = {}
        self._trusted = False  # set per batch by run_once
        m.set_model_version(worker, settings.model_version, 0)

    def _child(self, metric, *labels: str):
        """``metric.labels(*labels)``, kept: a lookup costs ~0.9 µs, and an event makes ~13."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    async def start(self) -> None:
        if self.settings.exactly_once == "on":
            await start_transactional(self.producer, self._bootstrap)
            # The committed transactions, not scored-offsets.json, say what was answered.
            self.scored = await answered_offsets(self._bootstrap, self.settings.group_id, self._security,
                                                 (self.topics.interactions, self.topics.follows))
        else:
            await start_producer(self.producer, self.settings.require_bootstrap(),
                                 idempotent=self.settings.idempotent_producers)
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()
        try:
            await self._confirm_delivery()
        finally:
            await self.producer.stop()
        self._maybe_save_scored(force=True)
        if self.gnn is not None:
            self.gnn.close()

    def close(self) -> None:
        self.freezer.close()
        self.store.close()

    def readiness(self) -> dict[str, Check]:
        """/readyz: partitions assigned, caught up within ``ready_max_lag``, in GNN mode a model serving."""
        checks = consumer_checks(self.consumer, self.settings.ready_max_lag)
        if self.gnn is not None:
            checks["model"] = self.gnn.model_check()
        return checks

    def maybe_poll_embeddings(self, *, force: bool = False) -> None:
        """Catch up with the embedding store / model dir every ``embeddings_poll_s``."""
        now = time.monotonic()
        if self.gnn is None or (not force and now - self._last_poll < self.settings.embeddings_poll_s):
            return
        self._last_poll = now
        if not self.gnn.poll():
            return
        watermark = self.gnn.watermark_ms
        self.gnn.refresh_prior(self.store, watermark if watermark is not None else self.store.watermark_ms())
        serving = (self.gnn.model_version, self.gnn.embedding_version)
        old_model, old_emb = self._serving
        if old_model != serving[0] and self.gnn.scorer is not None:
            m.set_model_version(self.worker, self.gnn.scorer.model_version, self.gnn.scorer.bundle.trained_at_ms)
        if old_emb is not None:
            m.EMBEDDING_VERSION_INFO.remove(self.worker, old_emb)
        m.EMBEDDING_VERSION_INFO.labels(self.worker, serving[1]).set(1)
        self._serving = serving

    def trending(self, now_ms: int) -> list[Neighbour]:
        """The fallback list: the catalogue's most popular items at the event's time, exact
        after every applied event (models/live/trending.py), so an answer depends only on the
        stream up to its event, never on when or how often the list is read."""
        return self._trending.top(now_ms, 4 * self.settings.k)

    def _lazy_trending(self, now_ms: int) -> Iterator[Neighbour]:
        """:meth:`trending`, computed only if a baseline has too few candidates and reads it."""
        yield from self.trending(now_ms)

    def recommend(self, event) -> list[Scored]:
        """What to emit for one already-applied event. Pure of I/O."""
        if isinstance(event, Interaction):
            return [self._next_item(event.user_id, event.session_id, event.ts),
                    self._social(event.user_id, event.session_id, event.ts)]
        return [self._social(event.src_user, None, event.ts)]

    def _gnn_scored(self, user: str, session: str | None, kind: str, items, now_ms: int) -> Scored:
        scorer = self.gnn.scorer if self.gnn is not None else None
        assert scorer is not None
        if scorer.watermark_ms is not None:
            self._child(m.EMBEDDING_STALENESS, self.worker).observe(max(0.0, (now_ms - scorer.watermark_ms) / 1000.0))
        return Scored(user, session, kind, items, "gnn", scorer.model_version, scorer.embedding_version)

    def _next_item(self, user: str, session: str, now_ms: int, *, gnn: bool = True) -> Scored:
        s = self.settings
        if gnn and self.gnn is not None:
            items = self.gnn.recommend_next(self.store, session, now_ms, s.k)
            if items is not None:
                return self._gnn_scored(user, session, "next_item", items, now_ms)
        items = next_item_transitions(self.store, session, now_ms, k=s.k, context=s.session_context,
                                      trending=self._lazy_trending(now_ms))
        return Scored(user, session, "next_item", items, "transitions", s.model_version)

    def _social(self, user: str, session: str | None, now_ms: int, *, gnn: bool = True) -> Scored:
        s = self.settings
        if gnn and self.gnn is not None:
            items = self.gnn.recommend_social(self.store, user, session, now_ms, k=s.k, max_followees=s.max_followees)
            if items is not None:
                return self._gnn_scored(user, session, "social", items, now_ms)
        items = social_followees(self.store, user, now_ms, k=s.k, max_followees=s.max_followees,
                                 trending=self._lazy_trending(now_ms))
        return Scored(user, session, "social", items, "transitions", s.model_version)

    def _score_quality(self, event: Interaction) -> None:
        """Prequential: judge the session's previous next-item list by this click."""
        outcome = self.quality.observe(event.session_id, event.item_id)
        if outcome is None:
            return
        label = (self.worker, outcome.recommender)
        stats = self.quality.stats[outcome.recommender]
        self._child(m.ONLINE_SCORED, *label).inc()
        if outcome.rank is not None:
            self._child(m.ONLINE_HITS, *label).inc()
            self._child(m.ONLINE_RECIPROCAL_RANK, *label).inc(outcome.reciprocal_rank)
        self._child(m.ONLINE_HIT_RATE, *label).set(stats.hit_rate)
        self._child(m.ONLINE_MRR, *label).set(stats.mrr)

    async def run_once(self) -> int:
        self.maybe_poll_embeddings()
        records = await self.consumer.get_batch()
        # A fetch short of batch_max means the log is (nearly) caught up: the start-up replay
        # built the long-lived state, which the freezer then takes out of the GC's walks.
        self.freezer.maybe_freeze(len(records) < self.settings.batch_max)
        if not records:
            await self._confirm_delivery()
            self._maybe_save_scored(force=False)
            self._maybe_export_gauges()
            return 0
        # The decoder checks events by the store's rules; then the store need not check again.
        self._trusted = store_trusts_decoder(self.store.settings, self.decoder.limits, int(self.clock() * 1000))
        pending = self._apply_batch(records)
        self._answer_gnn(pending)
        if self.settings.exactly_once == "on":
            async def send_all() -> None:
                for p in pending:
                    await self._send(p)
            await commit_batch(self.producer, send_all, dict(self.scored), self.settings.group_id)
            self._maybe_export_gauges()
            return len(records)
        # The previous batch's delivery is confirmed (and its scored offsets saved) only now,
        # before this batch is sent: the broker acknowledged it while this one was fetched and
        # scored, and at any moment at most one sent batch is not yet covered by the saved
        # offsets, so a crash answers at most one batch twice.
        await self._confirm_delivery()
        self._maybe_save_scored(force=True)
        futures = []
        for p in pending:
            futures.extend(await self._send(p))
        self._in_flight = (futures, dict(self.scored))
        self._maybe_export_gauges()
        return len(records)

    async def _confirm_delivery(self) -> None:
        """Await the previous batch's acks; a failed send raises here, before its offsets are saved."""
        futures, scored = self._in_flight
        if futures:
            await asyncio.gather(*futures)
        self._acked = scored
        self._in_flight = ([], scored)

    def _maybe_save_scored(self, *, force: bool) -> None:
        now = time.monotonic()
        if (force or now - self._last_scored_save >= 1.0) and self._acked != self._saved:
            self._last_scored_save = now
            save_offsets(self.scored_path, self._acked)
            self._saved = dict(self._acked)

    def apply_event(self, event: Interaction | Follow, offsets: dict[TP, int] | None = None) -> None:
        """Apply one event to the store (with the offsets it moves) and to the trending list."""
        self.store.apply_many([event], offsets, trusted=self._trusted)
        if type(event) is Interaction:
            ((weight, t_ref),) = self.store.item_popularity_state((event.item_id,))
            self._trending.update(event.item_id, weight, t_ref)

    def _apply_batch(self, records: list[RawRecord]) -> list[Pending]:
        """Apply each record in order, collecting what it is to be answered with; a batch of
        more than ``coalesce_above`` records answers only the latest event of each session
        (next-item) and of each user (social): workers/score/coalesce.py."""
        if self.settings.coalesce == "off" or len(records) <= self.settings.coalesce_above:
            return [p for rec in records if (p := self._apply(rec)) is not None]
        now_ms = int(self.clock() * 1000)
        events = [self.decoder.decode(rec, now_ms) for rec in records]
        skip_next, skip_social = superseded(events)
        pending = [p for i, (rec, ev) in enumerate(zip(records, events))
                   if (p := self._apply(rec, ev, i not in skip_next, i not in skip_social)) is not None]
        return pending

    def _apply(self, rec: RawRecord, event=None, answer_next: bool = True,
               answer_social: bool = True) -> Pending | None:
        """Apply one record and decide what it gets, reading the store *now*, before any later
        event of the batch is applied. GNN answers are only collected here (their inputs
        snapshotted) and computed for the whole batch at once by :meth:`_answer_gnn`."""
        tp = (rec.topic, rec.partition)
        if rec.offset < self.committed.get(tp, 0):
            self._child(m.EVENTS_SKIPPED, self.worker).inc()
            return None
        self._child(m.EVENTS_CONSUMED, self.worker, rec.topic).inc()
        if event is None:
            event = self.decoder.decode(rec, int(self.clock() * 1000))
        offsets = {tp: rec.offset + 1}
        if isinstance(event, Invalid):
            self._child(m.REJECTED, self.worker, event.reason).inc()
            self.store.apply_many([], offsets)
            self.committed[tp] = rec.offset + 1
            return None
        self.apply_event(event, offsets)
        self.committed[tp] = rec.offset + 1
        self._child(m.EVENTS_APPLIED, self.worker, "interaction" if isinstance(event, Interaction) else "follow").inc()
        if rec.offset < self.scored.get(tp, 0):
            return None  # rebuilding state after a restart: this one was scored before
        self.scored[tp] = rec.offset + 1
        is_interaction = isinstance(event, Interaction)
        if is_interaction:
            self._score_quality(event)
            if not answer_next:
                self._child(m.COALESCED, self.worker, "next_item").inc()
        if not answer_social:
            self._child(m.COALESCED, self.worker, "social").inc()
        if not (answer_social or answer_next and is_interaction):
            return None
        pending = Pending(rec, event)
        scorer = None if self.gnn is None else self.gnn.scorer
        if is_interaction and answer_next:
            items = self.store.session_items(event.session_id)
            if scorer is not None and scorer.can_answer_next(items):
                pending.next_request = items
                pending.next_successors = self.gnn.successors(self.store, items, event.ts)
            else:  # the GNN cannot answer: straight to the baseline
                pending.outs.append(self._next_item(event.user_id, event.session_id, event.ts,
                                                    gnn=False))
        user, session = (event.user_id, event.session_id) if is_interaction else (event.src_user, None)
        if not answer_social:
            return pending
        if scorer is not None and scorer.bundle.social is not None:
            followees, items = self.gnn.social_inputs(self.store, user, session, event.ts,
                                                      max_followees=self.settings.max_followees)
            if scorer.can_answer_social(user, items):
                pending.social_request = (user, followees, items)
        if pending.social_request is None:
            pending.outs.append(self._social(user, session, event.ts, gnn=False))
        return pending

    def _answer_gnn(self, pending: list[Pending]) -> None:
        """One SR-GNN call and one social-model call for the whole batch."""
        if self.gnn is None or self.gnn.scorer is None:
            return
        scorer, k = self.gnn.scorer, self.settings.k
        nxt = [p for p in pending if p.next_request is not None]
        if nxt:
            successors = None if scorer.transition_successors == 0 else [p.next_successors or [] for p in nxt]
            for p, items in zip(nxt, scorer.recommend_next_many([p.next_request for p in nxt], k, successors)):
                ev = p.event
                p.outs.insert(0, self._gnn_scored(ev.user_id, ev.session_id, "next_item", items, ev.ts)
                              if items is not None else self._next_item(ev.user_id, ev.session_id, ev.ts, gnn=False))
        soc = [p for p in pending if p.social_request is not None]
        if soc:
            for p, items in zip(soc, scorer.recommend_social_many([p.social_request for p in soc], k)):
                ev = p.event
                user, session = (ev.user_id, ev.session_id) if isinstance(ev, Interaction) else (ev.src_user, None)
                p.outs.append(self._gnn_scored(user, session, "social", items, ev.ts)
                              if items is not None else self._social(user, session, ev.ts, gnn=False))

    async def _send(self, p: Pending) -> list:
        futures = []
        event, rec = p.event, p.rec
        for out in p.outs:
            emitted_ms = int(self.clock() * 1000)
            payload = encode_recommendation_items(
                user_id=out.user_id, session_id=out.session_id, kind=out.kind, items=out.items,
                model_version=out.model_version, event_ts=event.ts, emitted_ts=emitted_ms,
                embedding_version=out.embedding_version, source=(rec.topic, rec.partition, rec.offset))
            topic = self.topics.next_item if out.kind == "next_item" else self.topics.social
            futures.append(await self.producer.send(topic, payload, key=out.user_id.encode()))
            if out.kind == "next_item" and out.session_id is not None:
                self.quality.record(out.session_id, out.recommender, [i for i, _ in out.items])
            self.emitted[out.kind] += 1
            self._child(m.RECOMMENDATIONS, self.worker, out.kind).inc()
            self._child(m.LATENCY, self.worker, out.kind).observe(max(0.0, (emitted_ms - rec.timestamp_ms) / 1000.0))
        return futures

    def _maybe_export_gauges(self) -> None:
        now = time.monotonic()
        if now - self._last_gauges < 1.0:
            return
        self._last_gauges = now
        m.export_consumer_gauges(self.worker, self.store.counts(), self.consumer.lag(), self.committed)
