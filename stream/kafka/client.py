"""A synchronous client for the services around gnnrec: publish clicks and follows, read the
latest recommendations per user. Built on kafka-python (no event loop), for web back ends.

    from stream.kafka.client import EventPublisher, RecommendationReader

    with EventPublisher("localhost:9092") as events:
        events.click("u1", "i42", session_id="u1@web-7")   # keyed by user, schema-checked
        events.follow("u1", "u2")
    with RecommendationReader("localhost:9092") as reader:
        reader.poll(timeout_s=1.0)                          # take in what arrived
        rec = reader.latest("u1")                           # the newest next-item list, or None

:class:`EventPublisher` encodes with :func:`stream.events.encode`, so an invalid event (an empty
id, a negative time, an unknown kind) raises :class:`stream.events.EventValidationError` here,
in the caller, instead of becoming a dead letter later; each event is keyed by its user, so a
user's events stay in order in one partition. :class:`RecommendationReader` reads every
partition of the two recommendation topics (no consumer group: every reader sees everything)
and keeps the newest recommendation of each kind per user, at most ``max_users`` users (the
least recently updated are forgotten first). Both take ``security=`` (a
:class:`stream.kafka.security.KafkaSecurity`) for brokers that need TLS or SASL.
``deploy/examples/sync_client.py`` runs both.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Literal

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from stream.events import Follow, Interaction, Recommendation, decode_recommendation, encode
from stream.kafka.security import PLAINTEXT, KafkaSecurity
from stream.kafka.topics import TopicSettings

Kind = Literal["next_item", "social"]


class EventPublisher:
    """Clicks and follows to the ``interactions`` and ``follows`` topics, synchronously."""

    def __init__(self, bootstrap_servers: str, topics: TopicSettings = TopicSettings(), *,
                 linger_ms: int = 5, security: KafkaSecurity = PLAINTEXT, **kafka_options) -> None:
        self.topics = topics
        # acks=all and idempotence: a retried send is never stored twice.
        self._producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True,
                                       linger_ms=linger_ms, **security.kafka_python_options(), **kafka_options)

    def click(self, user_id: str, item_id: str, *, session_id: str | None = None, ts: int | None = None,
              kind: str = "click", weight: float | None = None) -> None:
        """An interaction (``kind``: view, click, cart or purchase) now, or at ``ts`` ms; the
        session defaults to the user's current UTC day, as the file readers make it."""
        ts = int(time.time() * 1000) if ts is None else ts
        if session_id is None:
            session_id = f"{user_id}@{time.strftime('%Y-%m-%d', time.gmtime(ts / 1000))}"
        self.send(Interaction(user_id, item_id, session_id, ts, kind, weight))

    def follow(self, src_user: str, dst_user: str, *, ts: int | None = None, op: str = "follow") -> None:
        """``src_user`` follows (``op="unfollow"``: stops following) ``dst_user``."""
        self.send(Follow(src_user, dst_user, int(time.time() * 1000) if ts is None else ts, op))

    def send(self, event: Interaction | Follow) -> None:
        payload = encode(event)  # raises EventValidationError on an invalid event
        if isinstance(event, Interaction):
            self._producer.send(self.topics.interactions, payload, key=event.user_id.encode())
        else:
            self._producer.send(self.topics.follows, payload, key=event.src_user.encode())

    def flush(self, timeout_s: float | None = None) -> None:
        """Block until every event sent so far is acknowledged by the broker."""
        self._producer.flush(timeout=timeout_s)

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecommendationReader:
    """The newest next-item and social recommendation of each user, read from both topics."""

    def __init__(self, bootstrap_servers: str, topics: TopicSettings = TopicSettings(), *,
                 from_beginning: bool = False, max_users: int = 1_000_000, security: KafkaSecurity = PLAINTEXT,
                 **kafka_options) -> None:
        self.topics = topics
        self.max_users = max_users
        self._latest: OrderedDict[str, dict[str, Recommendation]] = OrderedDict()
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                                       group_id=None, **security.kafka_python_options(), **kafka_options)
        names = (topics.next_item, topics.social)
        parts = [TopicPartition(t, p) for t in names for p in sorted(self._partitions(t))]
        self._consumer.assign(parts)
        if from_beginning:
            self._consumer.seek_to_beginning(*parts)
        else:
            self._consumer.seek_to_end(*parts)
            for tp in parts:  # resolve the end positions now, not at the first poll
                self._consumer.position(tp)

    def _partitions(self, topic: str, timeout_s: float = 10.0) -> set[int]:
        deadline = time.monotonic() + timeout_s
        while True:
            found = self._consumer.partitions_for_topic(topic)
            if found:
                return found
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic!r} does not exist on the broker; create the topics with "
                                   "`gnnrec topics` (or start the workers) first")
            time.sleep(0.2)

    def poll(self, timeout_s: float = 0.0) -> int:
        """Take in what has arrived (waiting up to ``timeout_s`` for the first records); returns
        how many recommendations were read."""
        batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000))
        n = 0
        for records in batches.values():
            for record in records:
                rec = decode_recommendation(record.value)
                if not isinstance(rec, Recommendation):
                    continue  # not a v1 recommendation: nothing to serve
                kinds = self._latest.pop(rec.user_id, {})
                kinds[rec.kind] = rec
                self._latest[rec.user_id] = kinds
                n += 1
        while len(self._latest) > self.max_users:
            self._latest.popitem(last=False)
        return n

    def latest(self, user_id: str, kind: Kind = "next_item") -> Recommendation | None:
        """The newest recommendation of ``kind`` read for ``user_id`` (None if none yet)."""
        return self._latest.get(user_id, {}).get(kind)

    def wait_for(self, user_id: str, kind: Kind = "next_item", *, timeout_s: float = 10.0,
                 newer_than_ts: int | None = None) -> Recommendation | None:
        """Poll until a recommendation of ``kind`` for ``user_id`` answers an event at or after
        ``newer_than_ts`` (any, when None); None after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            rec = self.latest(user_id, kind)
            if rec is not None and (newer_than_ts is None or rec.event_ts >= newer_than_ts):
                return rec
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.poll(timeout_s=min(0.5, left))

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> RecommendationReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
