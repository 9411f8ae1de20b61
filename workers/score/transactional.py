"""Exactly-once output of the score worker (``--exactly-once on``), on brokers with transactions.

Each batch's recommendations and the offsets it answered go to Kafka in one transaction: the
answered offsets are the score group's committed offsets (``send_offsets_to_transaction``),
not ``scored-offsets.json``. A crash aborts the open transaction (the restarted producer, with
the same transactional id, fences it), so a reader with ``isolation_level=read_committed`` sees
each event answered exactly once. Readers that read uncommitted also see the aborted answers.

The transactional id is stable per worker and distinct between workers: the group id plus a
digest of the worker's data dir (``--transactional-id`` overrides it). Tansu has no
transactions; the option is refused there at start, with that reason.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from stream.kafka.batch_consumer import TP
from stream.kafka.security import KafkaSecurity

log = logging.getLogger(__name__)


def transactional_id(group_id: str, data_dir, override: str | None) -> str:
    if override:
        return override
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    return f"{group_id}-{digest}"


class TransactionsUnavailable(RuntimeError):
    pass


async def start_transactional(producer: AIOKafkaProducer, bootstrap: str) -> None:
    """Start ``producer`` (which initialises its transactions), or say why the broker refused."""
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise TransactionsUnavailable(
            f"--exactly-once on: the broker at {bootstrap} did not initialise transactions "
            f"({type(exc).__name__}: {exc}); use a broker with transactions (Apache Kafka) or "
            "--exactly-once off (at most one batch answered twice per crash, deduplicate on `source`)") from exc


async def answered_offsets(bootstrap: str, group_id: str, security: KafkaSecurity,
                           topics: tuple[str, ...]) -> dict[TP, int]:
    """The offsets the group's committed transactions say were answered, per partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security.aiokafka_options())
    await admin.start()
    try:
        # A new group's coordinator is still loading (its offsets topic being created): retry.
        for attempt in range(60):
            try:
                committed = await admin.list_consumer_group_offsets(group_id)
                break
            except KafkaError as exc:
                if not exc.retriable or attempt == 59:
                    raise
                log.info("group %s offsets not readable yet (%s); retrying", group_id, exc)
                await asyncio.sleep(0.5)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in committed.items()
            if tp.topic in topics and meta.offset >= 0}


async def commit_batch(producer: AIOKafkaProducer, send_all, scored: dict[TP, int], group_id: str) -> None:
    """One transaction: whatever ``send_all()`` sends through ``producer``, and the answered offsets."""
    await producer.begin_transaction()
    try:
        await send_all()
        await producer.send_offsets_to_transaction(
            {TopicPartition(t, p): o for (t, p), o in scored.items()}, group_id)
    except BaseException:
        await producer.abort_transaction()
        raise
    await producer.commit_transaction()
