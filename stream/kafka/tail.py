"""Reading topics for people: one readable line per record (``gnnrec consume``)."""
from __future__ import annotations

import asyncio
import sys
from typing import TextIO

import orjson
from aiokafka import AIOKafkaConsumer

from stream.events import (
    DeadLetter, Invalid, Recommendation, decode_dead_letter, decode_follow, decode_interaction,
    decode_recommendation,
)
from stream.kafka.security import PLAINTEXT, KafkaSecurity
from stream.kafka.topics import CONSUMER_DEFAULTS, TopicSettings

_SHOWN_ITEMS = 5
_PREVIEW_BYTES = 80
_NO_CLOCK_MS = 2**62  # display only: with no reader clock given, nothing counts as "future"


def _preview(raw: bytes | None) -> str:
    if raw is None:
        return "None"
    text = repr(raw[:_PREVIEW_BYTES])
    return text + (f"…(+{len(raw) - _PREVIEW_BYTES} bytes)" if len(raw) > _PREVIEW_BYTES else "")


def _invalid_line(what: str, bad: Invalid, raw: bytes | None) -> str:
    return f"<invalid {what}: {bad.reason}: {bad.detail}> raw={_preview(raw)}"


def format_recommendation(rec: Recommendation) -> str:
    """``user=u1 session=s1 kind=next_item items=[a:0.93, b:0.71, … +8] v=m1 lat=12ms``."""
    shown = ", ".join(f"{it.item_id}:{it.score:.3g}" for it in rec.items[:_SHOWN_ITEMS])
    more = len(rec.items) - _SHOWN_ITEMS
    items = f"[{shown}{', … +' + str(more) if more > 0 else ''}]"
    line = (f"user={rec.user_id} session={rec.session_id if rec.session_id is not None else '-'} "
            f"kind={rec.kind} items={items} v={rec.model_version}")
    if rec.embedding_version is not None:
        line += f" emb={rec.embedding_version}"
    return line + f" lat={rec.emitted_ts - rec.event_ts}ms"


def format_dead_letter(dl: DeadLetter) -> str:
    """``dead-letter reason=bad_id source=interactions[2]@17 worker=w1 detail=… value=b'…'``."""
    return (f"dead-letter reason={dl.reason} source={dl.source_topic}[{dl.partition}]@{dl.offset} "
            f"worker={dl.worker} detail={dl.detail!r} key={_preview(dl.key)} value={_preview(dl.value)}")


def format_record(topic: str, raw: bytes | None, *, settings: TopicSettings | None = None,
                  now_ms: int | None = None) -> str:
    """One line for one record value of ``topic``; never raises on bad bytes.

    Recommendations and dead letters are decoded and summarised; interactions and follows
    are validated (against ``now_ms`` if given) and shown as compact JSON; any other topic's
    value is shown as compact JSON when it parses, else as a bytes preview.
    """
    settings = settings or TopicSettings()
    if topic in (settings.next_item, settings.social):
        rec = decode_recommendation(raw)
        return _invalid_line("recommendation", rec, raw) if isinstance(rec, Invalid) else format_recommendation(rec)
    if topic == settings.dead_letters:
        dl = decode_dead_letter(raw)
        return _invalid_line("dead letter", dl, raw) if isinstance(dl, Invalid) else format_dead_letter(dl)
    clock = _NO_CLOCK_MS if now_ms is None else now_ms
    if topic == settings.interactions:
        event = decode_interaction(raw, now_ms=clock)
    elif topic == settings.follows:
        event = decode_follow(raw, now_ms=clock)
    else:
        event = None
    if isinstance(event, Invalid):
        return _invalid_line("event", event, raw)
    try:
        return orjson.dumps(orjson.loads(raw)).decode()
    except (orjson.JSONDecodeError, TypeError):
        return f"<not JSON> raw={_preview(raw)}"


async def tail(bootstrap: str, topic: str, *, from_beginning: bool = False, limit: int | None = None,
               out: TextIO = sys.stdout, group: str | None = None, settings: TopicSettings | None = None,
               idle_timeout_s: float | None = None, security: KafkaSecurity = PLAINTEXT) -> int:
    """Print ``[partition:offset] <format_record line>`` for each record of ``topic``.

    Stops after ``limit`` records, after ``idle_timeout_s`` without a record, or when cancelled;
    returns how many records were printed. Without ``group`` all partitions are read and no
    offsets are committed. Without ``from_beginning`` reading starts at the end offsets the
    broker reports, which Tansu under-reports after batched produces (DEPENDENCIES.md): expect
    a few older records first there.
    """
    if limit is not None and limit <= 0:
        return 0
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=group is not None,
        auto_offset_reset="earliest" if from_beginning else "latest", **CONSUMER_DEFAULTS,
        **security.aiokafka_options())
    await consumer.start()
    loop = asyncio.get_running_loop()
    printed, last_seen = 0, loop.time()
    try:
        while limit is None or printed < limit:
            batch = await consumer.getmany(timeout_ms=200)
            if not batch:
                if idle_timeout_s is not None and loop.time() - last_seen >= idle_timeout_s:
                    break
                continue
            last_seen = loop.time()
            for records in batch.values():
                for record in records:
                    if limit is not None and printed >= limit:
                        break
                    out.write(f"[{record.partition}:{record.offset}] "
                              f"{format_record(record.topic, record.value, settings=settings)}\n")
                    printed += 1
            out.flush()
    finally:
        await consumer.stop()
    return printed
