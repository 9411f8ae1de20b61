"""Producing events to Kafka: an async event producer and a (paced) replay loop.

:class:`EventProducer` does not wait for each record's delivery: aiokafka's ``send`` returns a
delivery future, which is kept and checked later, in bulk (when too many are outstanding, and
on :meth:`EventProducer.flush`). A failed delivery therefore surfaces as :class:`ProduceError`
on a later call, not on the ``send`` that caused it.
"""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError
from tqdm import tqdm

from stream.events import DeadLetter, Follow, Interaction, Recommendation, encode
from stream.kafka.security import PLAINTEXT, KafkaSecurity
from stream.kafka.topics import TopicSettings, key_for

log = logging.getLogger(__name__)

Event = Interaction | Follow | Recommendation | DeadLetter


class RawRecord(NamedTuple):
    """Bytes to send as they are (e.g. a sample from ``stream.events.badinput``) in a replay."""

    topic: str
    key: bytes | None
    value: bytes


class ProduceError(RuntimeError):
    """Records were not delivered to the broker."""


# On the embedded Tansu broker every produce request, and every record batch it stores, costs
# broker CPU (each later fetch pays for the batches already stored), so the producer batches for
# 20 ms: in `gnnrec bench latency` that costs the broker ~235 µs per event against ~320 µs at
# 5 ms, with a lower p99 (docs/serving.md gives the runs).
DEFAULT_LINGER_MS = 20


async def start_producer(producer: AIOKafkaProducer, bootstrap: str, *, idempotent: bool) -> None:
    """``producer.start()``, where an idempotent producer that the broker grants no producer id
    raises :class:`ProduceError` saying so (aiokafka raises a bare ``UnknownError``)."""
    try:
        await producer.start()
    except KafkaConnectionError:
        raise
    except KafkaError as exc:
        if not idempotent:
            raise
        await producer.stop()
        raise ProduceError(f"Kafka at {bootstrap} granted no producer id to an idempotent producer ({exc!r}); "
                           "the broker may not support idempotence (the embedded Tansu does not): use Apache "
                           "Kafka, or turn idempotence off (GNNREC_IDEMPOTENT_PRODUCERS=false)") from exc


class EventProducer:
    """Async producer of event records, routed by :class:`TopicSettings` and keyed by :func:`key_for`.

    Args:
        bootstrap: ``host:port[,host:port]`` of the brokers.
        settings: topic names.
        acks: 0, 1 (leader only; the default without ``idempotent``) or ``"all"`` (every in-sync
            replica; the default and the only choice with ``idempotent``).
        idempotent: the broker deduplicates and orders retried sends, so a retry after a leader
            change stores a record once; needs producer ids from the broker (Apache Kafka grants
            them, the embedded Tansu does not).
        linger_ms: how long a batch waits for more records before it is sent (see
            ``DEFAULT_LINGER_MS`` for why 20 ms).
        max_batch_size: bytes per partition batch.
        max_pending: outstanding delivery futures before the oldest half is awaited.
        start_timeout_s: how long :meth:`start` retries while the broker is still starting.
        security: TLS and SASL of the connections (default plaintext).
    """

    def __init__(self, bootstrap: str, settings: TopicSettings | None = None, *, acks: int | str | None = None,
                 idempotent: bool = False, linger_ms: int = DEFAULT_LINGER_MS, max_batch_size: int = 65_536,
                 max_pending: int = 20_000, compression_type: str | None = None, client_id: str = "gnnrec-producer",
                 start_timeout_s: float = 30.0, security: KafkaSecurity = PLAINTEXT) -> None:
        if acks is None:
            acks = "all" if idempotent else 1
        if acks not in (0, 1, "all"):
            raise ValueError(f"acks must be 0, 1 or 'all', got {acks!r}")
        if idempotent and acks != "all":
            raise ValueError(f"an idempotent producer needs acks='all', got acks={acks!r}; "
                             "drop acks or set idempotent=False")
        if max_pending < 2:
            raise ValueError(f"max_pending must be >= 2, got {max_pending}")
        self.bootstrap = bootstrap
        self.settings = settings or TopicSettings()
        self._max_pending = max_pending
        self._start_timeout_s = start_timeout_s
        self._idempotent = idempotent
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks=acks, enable_idempotence=idempotent, linger_ms=linger_ms,
            max_batch_size=max_batch_size,
            compression_type=compression_type, client_id=client_id, **security.aiokafka_options())
        self._pending: deque[asyncio.Future] = deque()
        self.sent = 0  # records handed to the client (delivered once flush() returns)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._start_timeout_s
        while True:
            try:
                await start_producer(self._producer, self.bootstrap, idempotent=self._idempotent)
                return
            except KafkaConnectionError as exc:
                if loop.time() >= deadline:
                    await self._producer.stop()
                    raise ProduceError(f"cannot reach Kafka at {self.bootstrap} after {self._start_timeout_s:g} s "
                                       f"({exc}); is the broker running and the bootstrap address right?") from exc
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        """Deliver what is outstanding, then close."""
        try:
            await self.flush()
        finally:
            await self._producer.stop()

    async def __aenter__(self) -> EventProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def send_event(self, event: Event, *, topic: str | None = None) -> None:
        """Encode ``event`` and send it to ``topic`` (default: its topic in ``settings``)."""
        key = event.key if isinstance(event, DeadLetter) else key_for(event)
        await self.send_raw(topic or self.settings.topic_for(event), key, encode(event))

    async def send_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Send bytes as they are; returns once the record is queued in the client."""
        self._pending.append(await self._producer.send(topic, value, key=key))
        self.sent += 1
        if len(self._pending) >= self._max_pending:
            await self._settle(len(self._pending) // 2)

    async def flush(self) -> None:
        """Wait until every record sent so far is delivered; raise :class:`ProduceError` if any was not."""
        await self._producer.flush()
        await self._settle(len(self._pending))

    async def _settle(self, n: int) -> None:
        """Await the ``n`` oldest delivery futures (mostly done already) and report failures."""
        failures: list[BaseException] = []
        for _ in range(n):
            fut = self._pending.popleft()
            try:
                await fut
            except Exception as exc:  # noqa: BLE001 - collected and re-raised below
                failures.append(exc)
        if failures:
            raise ProduceError(f"{len(failures)} of the last {n} records were not delivered to "
                               f"{self.bootstrap}; first error: {failures[0]!r}") from failures[0]


class TokenBucket:
    """Pacing for ``rate`` events/s with bursts of up to ``burst`` events. Pure: time is passed in.

    :meth:`reserve` takes one token and returns how long to wait before acting on it. The
    balance may go negative (a debt paid by waiting), so over any span of ``n`` reservations
    the waits add up to at least ``(n - burst) / rate`` seconds minus the elapsed time.
    """

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0 events/s, got {rate}")
        if not burst >= 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.rate, self.burst = rate, burst
        self._tokens, self._last = burst, now

    def reserve(self, now: float) -> float:
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate) - 1.0
        self._last = now
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


@dataclasses.dataclass(frozen=True, slots=True)
class ReplayStats:
    produced: int
    seconds: float
    by_topic: Mapping[str, int]

    @property
    def rate_eps(self) -> float:
        return self.produced / self.seconds if self.seconds > 0 else float("inf")


_RECORD_TYPES = (Interaction, Follow, Recommendation, DeadLetter)


def _raw_parts(record: object, settings: TopicSettings) -> tuple[str, bytes | None, bytes]:
    """Topic, key and value of a record that is sent as bytes, unchanged."""
    if isinstance(record, RawRecord):
        return record
    # stream.simulator.BadRecord (duck-typed so producing does not import the simulator):
    # malformed bytes meant for the topic of ``event``, sent without a key.
    event, value = getattr(record, "event", None), getattr(record, "value", None)
    if event in ("interaction", "follow") and isinstance(value, bytes):
        return (settings.interactions if event == "interaction" else settings.follows), None, value
    raise TypeError(f"replay() cannot send a {type(record).__name__}; expected records from stream.events, "
                    "RawRecord or stream.simulator.BadRecord")


_MIN_SLEEP_S = 0.002  # shorter waits are accumulated as debt: asyncio cannot sleep that finely
_PROGRESS_EVERY = 1_000


async def replay(events: Iterable[Event | RawRecord | Any], producer: EventProducer, *, rate_eps: float | None = None,
                 limit: int | None = None, live_timestamps: bool = False, progress: bool = False,
                 clock: Callable[[], float] = time.time) -> ReplayStats:
    """Send ``events`` in order through ``producer`` and wait until all are delivered.

    ``events`` holds records of :mod:`stream.events`, :class:`RawRecord` and
    ``stream.simulator.BadRecord`` (malformed bytes, sent as they are).

    Args:
        rate_eps: target events per second (token bucket, bursts of 50 ms worth);
            ``None`` sends as fast as possible.
        limit: stop after this many records.
        live_timestamps: rewrite each Interaction's / Follow's ``ts`` to the send time
            (``clock()``, ms), so end-to-end latency can be measured downstream.
        progress: show a tqdm progress bar.
        clock: seconds since the epoch; used for pacing, live timestamps and ``seconds``.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    started = clock()
    bucket = None if rate_eps is None else TokenBucket(rate_eps, max(1.0, rate_eps * 0.05), started)
    total = len(events) if hasattr(events, "__len__") else None
    total = limit if total is None or (limit is not None and limit < total) else total
    by_topic: dict[str, int] = {}
    produced = 0
    bar = tqdm(total=total, unit="ev", disable=not progress, smoothing=0.1)
    try:
        for event in (events if limit is None else itertools.islice(events, limit)):
            if bucket is not None:
                wait = bucket.reserve(clock())
                if wait >= _MIN_SLEEP_S:
                    await asyncio.sleep(wait)
            if isinstance(event, _RECORD_TYPES):
                if live_timestamps and isinstance(event, (Interaction, Follow)):
                    event = dataclasses.replace(event, ts=int(clock() * 1000))
                topic = producer.settings.topic_for(event)
                await producer.send_event(event, topic=topic)
            else:
                topic, key, value = _raw_parts(event, producer.settings)
                await producer.send_raw(topic, key, value)
            by_topic[topic] = by_topic.get(topic, 0) + 1
            produced += 1
            if produced % _PROGRESS_EVERY == 0:
                bar.update(_PROGRESS_EVERY)
        await producer.flush()
        bar.update(produced % _PROGRESS_EVERY)
    finally:
        bar.close()
    stats = ReplayStats(produced, clock() - started, by_topic)
    log.info("replayed %d records in %.2f s (%.0f events/s)", produced, stats.seconds, stats.rate_eps)
    return stats
