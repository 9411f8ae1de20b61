"""Topic layout, partitioning keys and the consumer timeouts every worker shares.

Partitioning: interactions are keyed by ``user_id`` and follows by ``src_user`` (UTF-8), so
all events of one user, hence of one session, land in one partition in order (the default
murmur2 partitioner of aiokafka and the Java client agree). Recommendations are keyed by
``user_id`` as well.

The ``models`` and ``embeddings`` topics carry the trained bundles and the embedding change log
between machines (:mod:`stream.kafka.blobs`; what each holds: ``docs/architecture.md``). They
have one partition, since a reader relies on their order, and are created with
``cleanup.policy=compact``: their publishers reuse a few keys (slots), so a compacting broker
keeps the newest blob of each slot and drops what it superseded. ``segment.ms`` is an hour so
that compaction, which never touches the open segment, can act within hours instead of the
default week. Tansu accepts the configs and ignores them: there both topics keep every record.
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
COMPACTED: Final[Mapping[str, str]] = MappingProxyType({"cleanup.policy": "compact", "segment.ms": "3600000"})
_ALREADY_EXISTS = 36


class TopicSettings(BaseModel):
    """Topic names and layout. Frozen; embed it in a worker's pydantic-settings object."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    interactions: str = Field("interactions", pattern=_TOPIC_NAME)
    follows: str = Field("follows", pattern=_TOPIC_NAME)
    next_item: str = Field("recommendations.next-item", pattern=_TOPIC_NAME)
    social: str = Field("recommendations.social", pattern=_TOPIC_NAME)
    dead_letters: str = Field("dead-letters", pattern=_TOPIC_NAME)
    models: str = Field("models", pattern=_TOPIC_NAME)
    embeddings: str = Field("embeddings", pattern=_TOPIC_NAME)
    partitions: int = Field(4, ge=1)
    # One partition per recommendation topic by default: each scored batch then writes one batch
    # per topic, and on Tansu every stored batch costs each later fetch (docs/serving.md).
    recommendation_partitions: int = Field(1, ge=1)
    replication: int = Field(1, ge=1)

    def names(self) -> tuple[str, ...]:
        return (self.interactions, self.follows, self.next_item, self.social, self.dead_letters, self.models,
                self.embeddings)

    def partitions_of(self, topic: str) -> int:
        """Partitions a topic of these settings is created with."""
        if topic in (self.models, self.embeddings):
            return 1
        if topic in (self.next_item, self.social):
            return self.recommendation_partitions
        return self.partitions

    def configs_of(self, topic: str) -> dict[str, str]:
        """Topic configs a topic of these settings is created with (see the module docstring)."""
        if topic in (self.models, self.embeddings):
            return dict(COMPACTED)
        return {}

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
                        security: KafkaSecurity = PLAINTEXT, only: tuple[str, ...] | None = None) -> None:
    """Create the missing topics of ``settings`` (those named in ``only``, if given); existing
    ones are left as they are, configs included.

    Idempotent. Retries while the broker is still starting, then waits until every
    partition has a leader, so producers can start right away.
    """
    names = settings.names() if only is None else only
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000),
                                **security.aiokafka_options())
    last_error: BaseException | None = None
    try:
        while True:
            try:
                await admin.start()
                await _create_missing(admin, settings, names)
                if await _all_led(admin, settings, names):
                    return
                last_error = None
            except TopicSetupError:
                raise
            except (KafkaError, OSError) as exc:  # broker still starting, metadata not ready
                last_error = exc
            if loop.time() >= deadline:
                raise TopicSetupError(
                    f"topics {', '.join(names)} not ready on {bootstrap} after {timeout_s:g} s "
                    f"(last error: {last_error!r}); is the broker running and the bootstrap address right?")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def _create_missing(admin: AIOKafkaAdminClient, settings: TopicSettings, names: tuple[str, ...]) -> None:
    existing = set(await admin.list_topics())
    missing = [name for name in names if name not in existing]
    if not missing:
        return
    response = await admin.create_topics(
        [NewTopic(name, settings.partitions_of(name), settings.replication, topic_configs=settings.configs_of(name))
         for name in missing])
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


async def _all_led(admin: AIOKafkaAdminClient, settings: TopicSettings, names: tuple[str, ...]) -> bool:
    for topic in await admin.describe_topics(list(names)):
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
