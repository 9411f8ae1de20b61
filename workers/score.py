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
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from mode import Service

from graph_store import GraphStore, Neighbour
from stream.events import Follow, Interaction, Invalid, Recommendation, ScoredItem, ValidationLimits, encode
from workers import metrics as m
from workers.ingest_core import IngestCore
from workers.kafka_io import TP, BatchConsumer, RawRecord
from workers.recommenders import next_item_transitions, social_followees
from workers.settings import ScoreSettings
from workers.stores import open_store

log = logging.getLogger(__name__)


class ScoreLoop:
    def __init__(self, settings: ScoreSettings, store: GraphStore, *, worker: str = "score",
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.worker = worker
        self.clock = clock
        self.topics = settings.topics()
        self.decoder = IngestCore(self.topics, ValidationLimits(
            max_bytes=settings.max_event_bytes, max_future_skew_ms=settings.max_future_skew_ms), worker)
        self.committed: dict[TP, int] = dict(store.committed_offsets())
        self.scored_path = settings.data_dir / "scored-offsets.json"
        self.scored: dict[TP, int] = _load_offsets(self.scored_path)
        self._last_scored_save = 0.0
        bootstrap = settings.require_bootstrap()
        self.consumer = BatchConsumer(
            bootstrap, [self.topics.interactions, self.topics.follows], group_id=settings.group_id,
            stored_offsets=lambda: self.committed, max_records=settings.batch_max,
            timeout_ms=settings.batch_timeout_ms, client_id=f"gnnrec-{worker}",
            on_ready=lambda: print(f"gnnrec-{worker} ready", flush=True),
            # A fetch returns as soon as any record is there; waiting less keeps latency low.
            fetch_max_wait_ms=10)
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks=1)
        self._trending: list[Neighbour] = []
        self._trending_at = 0.0
        self.emitted = {"next_item": 0, "social": 0}
        self._last_gauges = 0.0

    async def start(self) -> None:
        await self.producer.start()
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.producer.stop()
        self._maybe_save_scored(force=True)

    def trending(self, now_ms: int) -> list[Neighbour]:
        wall = time.monotonic()
        want = 4 * self.settings.k
        # While the catalogue is smaller than the list we keep, recompute every time (cheap on a
        # small store): otherwise the first second would serve near-empty fallbacks.
        if wall - self._trending_at >= self.settings.trending_refresh_s or len(self._trending) < want:
            self._trending = self.store.item_popularity(now_ms, k=want)
            self._trending_at = wall
        return self._trending

    def recommend(self, event) -> list[tuple[str, str | None, str, list[tuple[str, float]]]]:
        """(user, session, kind, items) to emit for one already-applied event. Pure of I/O."""
        s = self.settings
        if isinstance(event, Interaction):
            trending = self.trending(event.ts)
            nxt = next_item_transitions(self.store, event.session_id, event.ts, k=s.k,
                                        context=s.session_context, trending=trending)
            soc = social_followees(self.store, event.user_id, event.ts, k=s.k,
                                   max_followees=s.max_followees, trending=trending)
            return [(event.user_id, event.session_id, "next_item", nxt),
                    (event.user_id, event.session_id, "social", soc)]
        trending = self.trending(event.ts)
        soc = social_followees(self.store, event.src_user, event.ts, k=s.k,
                               max_followees=s.max_followees, trending=trending)
        return [(event.src_user, None, "social", soc)]

    async def run_once(self) -> int:
        records = await self.consumer.get_batch()
        if not records:
            self._maybe_export_gauges()
            return 0
        futures = []
        for rec in records:
            futures.extend(await self._handle(rec))
        if futures:
            await asyncio.gather(*futures)
        self._maybe_save_scored(force=False)
        self._maybe_export_gauges()
        return len(records)

    def _maybe_save_scored(self, *, force: bool) -> None:
        now = time.monotonic()
        if force or now - self._last_scored_save >= 1.0:
            self._last_scored_save = now
            _save_offsets(self.scored_path, self.scored)

    async def _handle(self, rec: RawRecord) -> list:
        tp = (rec.topic, rec.partition)
        if rec.offset < self.committed.get(tp, 0):
            m.EVENTS_SKIPPED.labels(self.worker).inc()
            return []
        m.EVENTS_CONSUMED.labels(self.worker, rec.topic).inc()
        event = self.decoder.decode(rec, int(self.clock() * 1000))
        offsets = {tp: rec.offset + 1}
        if isinstance(event, Invalid):
            m.REJECTED.labels(self.worker, event.reason).inc()
            self.store.apply_many([], offsets)
            self.committed[tp] = rec.offset + 1
            return []
        self.store.apply_one(event, offsets)
        self.committed[tp] = rec.offset + 1
        m.EVENTS_APPLIED.labels(self.worker, "interaction" if isinstance(event, Interaction) else "follow").inc()
        if rec.offset < self.scored.get(tp, 0):
            return []  # rebuilding state after a restart: this one was scored before
        self.scored[tp] = rec.offset + 1
        futures = []
        for user, session, kind, items in self.recommend(event):
            emitted_ms = int(self.clock() * 1000)
            reco = Recommendation(
                user_id=user, session_id=session, kind=kind,
                items=tuple(ScoredItem(i, float(sc)) for i, sc in items),
                model_version=self.settings.model_version, event_ts=event.ts, emitted_ts=emitted_ms)
            topic = self.topics.next_item if kind == "next_item" else self.topics.social
            futures.append(await self.producer.send(topic, encode(reco), key=user.encode()))
            self.emitted[kind] += 1
            m.RECOMMENDATIONS.labels(self.worker, kind).inc()
            m.LATENCY.labels(self.worker, kind).observe(max(0.0, (emitted_ms - rec.timestamp_ms) / 1000.0))
        return futures

    def _maybe_export_gauges(self) -> None:
        now = time.monotonic()
        if now - self._last_gauges < 1.0:
            return
        self._last_gauges = now
        m.export_store_counts(self.worker, self.store.counts())
        for (topic, part), lag in self.consumer.lag().items():
            m.CONSUMER_LAG.labels(self.worker, topic, str(part)).set(lag)


class ScoreService(Service):
    """Runs :class:`ScoreLoop` inside the faust worker until the worker stops."""

    def __init__(self, settings: ScoreSettings, **kwargs) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.loop_impl: ScoreLoop | None = None

    async def on_start(self) -> None:
        self.loop_impl = ScoreLoop(self.settings, open_store(self.settings))
        await self.loop_impl.start()

    @Service.task
    async def _consume(self) -> None:
        while not self.should_stop and self.loop_impl is not None:
            await self.loop_impl.run_once()

    async def on_stop(self) -> None:
        if self.loop_impl is not None:
            await self.loop_impl.stop()
            self.loop_impl.store.close()


def _load_offsets(path: Path) -> dict[TP, int]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"{path} is unreadable ({exc}); delete it to re-score the whole log") from exc
    return {(t, int(p)): int(o) for t, p, o in raw}


def _save_offsets(path: Path, offsets: dict[TP, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(sorted([t, p, o] for (t, p), o in offsets.items())))
    os.replace(tmp, path)
