"""Topic layout, partitioning keys and the consumer timeouts every worker shares.

Partitioning: interactions are keyed by ``user_id`` and follows by ``src_user`` (UTF-8), so
all events of one user, hence of one session, land in one partition in order (the default
murmur2 partitioner of aiokafka and the Java client agree). Recommendations are keyed by
``user_id`` as well.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, for_code
from pydantic import BaseModel, ConfigDict, Field

from stream.events import DeadLetter, Follow, Interaction, Recommendation
from stream.kafka.security import PLAINTEXT, KafkaSecurity

log = logging.getLogger(__name__)

#: aiokafka consumer timeouts for every worker. Tansu holds a JoinGroup for half the session
#: timeout, so the client default (45 s) makes a group join look dead for ~23 s; with these a
#: join takes ~3 s (see /work/shared/DEPENDENCIES.md). Use as ``AIOKafkaConsumer(**CONSUMER_DEFAULTS)``.
CONSUMER_DEFAULTS: Final[Mapping[str, int]] = MappingProxyType(
    {"session_timeout_ms": 6_000, "heartbeat_interval_ms": 2_000})
#: The same timeouts as faust ``App`` settings (seconds).
FAUST_CONSUMER_DEFAULTS: Final[Mapping[str, float]] = MappingProxyType(
    {"broker_session_timeout": 6.0, "broker_heartbeat_interval": 2.0})

_TOPIC_NAME = r"^[A-Za-z0-9._-]{1,249}$"
_ALREADY_EXISTS = 36


class TopicSettings(BaseModel):
    """Topic names and layout. Frozen; embed it in a worker's pydantic-settings object."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    interactions: str = Field("interactions", pattern=_TOPIC_NAME)
    follows: str = Field("follows", pattern=_TOPIC_NAME)
    next_item: str = Field("recommendations.next-item", pattern=_TOPIC_NAME)
    social: str = Field("recommendations.social", pattern=_TOPIC_NAME)
    dead_letters: str = Field("dead-letters", pattern=_TOPIC_NAME)
    partitions: int = Field(4, ge=1)
    # One partition per recommendation topic by default: each scored batch then writes one batch
    # per topic, and on Tansu every stored batch costs each later fetch (docs/serving.md).
    recommendation_partitions: int = Field(1, ge=1)
    replication: int = Field(1, ge=1)

    def names(self) -> tuple[str, ...]:
        return (self.interactions, self.follows, self.next_item, self.social, self.dead_letters)

    def partitions_of(self, topic: str) -> int:
        """Partitions a topic of these settings is created with."""
        if topic in (self.next_item, self.social):
            return self.recommendation_partitions
        return self.partitions

    def topic_for(self, event: Interaction | Follow | Recommendation | DeadLetter) -> str:
        """The topic an event belongs on (recommendations by their ``kind``)."""
        if isinstance(event, Interaction):
            return self.interactions
        if isinstance(event, Follow):
            return self.follows
        if isinstance(event, Recommendation):
            return self.next_item if event.kind == "next_item" else self.social
        if isinstance(event, DeadLetter):
            return self.dead_letters
        raise TypeError(f"no topic for {type(event).__name__}; expected an event record from stream.events")


def key_for(event: Interaction | Follow | Recommendation) -> bytes:
    """Partitioning key: the acting user's id, UTF-8."""
    if isinstance(event, (Interaction, Recommendation)):
        return event.user_id.encode()
    if isinstance(event, Follow):
        return event.src_user.encode()
    raise TypeError(f"no partitioning key for {type(event).__name__}; "
                    "expected Interaction, Follow or Recommendation")


class TopicSetupError(RuntimeError):
    """The broker could not be reached or refused to create a topic."""


async def ensure_topics(bootstrap: str, settings: TopicSettings, timeout_s: float = 30, *,
                        security: KafkaSecurity = PLAINTEXT) -> None:
    """Create the missing topics of ``settings``; existing ones are left as they are.

    Idempotent. Retries while the broker is still starting, then waits until every
    partition has a leader, so producers can start right away.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000),
                                **security.aiokafka_options())
    last_error: BaseException | None = None
    try:
        while True:
            try:
                await admin.start()
                await _create_missing(admin, settings)
                if await _all_led(admin, settings):
                    return
                last_error = None
            except TopicSetupError:
                raise
            except (KafkaError, OSError) as exc:  # broker still starting, metadata not ready
                last_error = exc
            if loop.time() >= deadline:
                raise TopicSetupError(
                    f"topics {', '.join(settings.names())} not ready on {bootstrap} after {timeout_s:g} s "
                    f"(last error: {last_error!r}); is the broker running and the bootstrap address right?")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def _create_missing(admin: AIOKafkaAdminClient, settings: TopicSettings) -> None:
    existing = set(await admin.list_topics())
    missing = [name for name in settings.names() if name not in existing]
    if not missing:
        return
    response = await admin.create_topics(
        [NewTopic(name, settings.partitions_of(name), settings.replication) for name in missing])
    for topic, code, message in response.topic_errors:
        if code in (0, _ALREADY_EXISTS):
            continue
        error = for_code(code)
        if error.retriable:
            raise error(f"creating {topic}: {message}")
        raise TopicSetupError(f"broker refused to create topic {topic!r}: {error.__name__} ({message}); "
                              f"check partitions ({settings.partitions_of(topic)}) and replication "
                              f"({settings.replication}: GNNREC_REPLICATION_FACTOR, at most the number of "
                              "brokers) against the broker")
    log.info("created topics %s", ", ".join(missing))


async def _all_led(admin: AIOKafkaAdminClient, settings: TopicSettings) -> bool:
    for topic in await admin.describe_topics(list(settings.names())):
        partitions = topic.get("partitions") or []
        if topic["error_code"] != 0 or not partitions or any(p["leader"] < 0 for p in partitions):
            return False
        want = settings.partitions_of(topic["topic"])
        if len(partitions) < want:
            log.warning("topic %s has %d partitions, fewer than the %d configured; per-user ordering "
                        "still holds", topic["topic"], len(partitions), want)
        replicas = min(len(p.get("replicas") or ()) for p in partitions)
        if replicas < settings.replication:
            log.warning("topic %s has %d replicas, fewer than the %d configured (existing topics are left "
                        "as they are): it survives fewer broker failures", topic["topic"], replicas,
                        settings.replication)
    return True
