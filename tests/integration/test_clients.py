"""Every mainstream Kafka client against the broker `make demo` starts, and the synchronous
client users bring (stream.kafka.client) against both brokers.

The matrix: kcat (Debian's package, librdkafka), confluent-kafka (librdkafka), kafka-python,
aiokafka and Apache Kafka's own console tools each produce keyed records to one topic, then
each of them consumes that topic from the beginning; every consumer must read every record of
every producer, key and value intact.
"""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time

import pytest

from stream.brokers import BrokerUnavailable, embedded_kind, find_java, resolve_kafka
from stream.events import Interaction, Recommendation, decode_interaction, encode, encode_recommendation_items
from stream.kafka.topics import TopicSettings, ensure_topics

from tests.integration.conftest import REPO, unavailable

N = 5  # records per producer
PRODUCERS = ("kcat", "confluent", "kafka_python", "aiokafka", "java")


def _records(producer: str) -> list[tuple[str, str]]:
    return [(f"u{i}", encode(Interaction(f"u{i}", f"{producer}-{i}", f"s{i}", 1_700_000_000_000 + i,
                                         "click")).decode()) for i in range(N)]


@pytest.fixture(scope="module")
def demo_broker(broker_pool):
    """The broker `make demo` starts (the embedded default), from the session's pool."""
    try:
        return broker_pool.get(embedded_kind())
    except BrokerUnavailable as exc:
        unavailable(f"{embedded_kind()} broker unavailable: {exc}")


def _kcat() -> str:
    path = shutil.which("kcat")
    if path is None:
        unavailable("kcat is not installed (Debian package kcat; deploy/test_prereqs.sh installs it)")
    return path


def _java_tool(main_class: str, *args: str, stdin: str | None = None, timeout: float = 90) -> str:
    lib = resolve_kafka()
    done = subprocess.run([find_java(), "-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", f"{lib}/*",
                           "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", main_class, *args],
                          input=stdin, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _produce(client: str, bootstrap: str, topic: str, records: list[tuple[str, str]]) -> None:
    if client == "kcat":
        lines = "".join(f"{k}|{v}\n" for k, v in records)
        done = subprocess.run([_kcat(), "-b", bootstrap, "-t", topic, "-P", "-K", "|"], input=lines,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    elif client == "confluent":
        import confluent_kafka
        producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        for k, v in records:
            producer.produce(topic, v.encode(), key=k.encode())
        assert producer.flush(30) == 0
    elif client == "kafka_python":
        import kafka
        producer = kafka.KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        for k, v in records:
            producer.send(topic, v.encode(), key=k.encode())
        producer.flush(30)
        producer.close()
    elif client == "aiokafka":
        from aiokafka import AIOKafkaProducer

        async def go() -> None:
            async with AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all") as producer:
                for k, v in records:
                    await producer.send_and_wait(topic, v.encode(), key=k.encode())
        asyncio.run(go())
    elif client == "java":
        _java_tool("org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server", bootstrap, "--topic", topic,
                   "--property", "parse.key=true", "--property", "key.separator=|",
                   stdin="".join(f"{k}|{v}\n" for k, v in records))
    else:
        raise ValueError(client)


def _consume(client: str, bootstrap: str, topic: str, n: int) -> list[tuple[str, str]]:
    if client == "kcat":
        done = subprocess.run([_kcat(), "-b", bootstrap, "-t", topic, "-C", "-o", "beginning", "-e", "-q",
                               "-c", str(n), "-f", "%k|%s\n"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
    elif client == "confluent":
        import confluent_kafka
        consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": f"matrix-{time.time_ns()}",
                                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe([topic])
        lines, deadline = [], time.monotonic() + 60
        while len(lines) < n and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                lines.append(f"{msg.key().decode()}|{msg.value().decode()}")
        consumer.close()
    elif client == "kafka_python":
        import kafka
        consumer = kafka.KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                       enable_auto_commit=False, group_id=None, consumer_timeout_ms=20_000)
        lines = []
        for msg in consumer:
            lines.append(f"{msg.key.decode()}|{msg.value.decode()}")
            if len(lines) >= n:
                break
        consumer.close()
    elif client == "aiokafka":
        from aiokafka import AIOKafkaConsumer

        async def go() -> list[str]:
            out: list[str] = []
            async with AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                        enable_auto_commit=False) as consumer:
                deadline = time.monotonic() + 60
                while len(out) < n and time.monotonic() < deadline:
                    for msgs in (await consumer.getmany(timeout_ms=500)).values():
                        out.extend(f"{m.key.decode()}|{m.value.decode()}" for m in msgs)
            return out
        lines = asyncio.run(go())
    elif client == "java":
        lines = _java_tool("org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server", bootstrap,
                           "--topic", topic, "--from-beginning", "--max-messages", str(n), "--timeout-ms", "30000",
                           "--property", "print.key=true", "--property", "key.separator=|").splitlines()
    else:
        raise ValueError(client)
    return [tuple(line.split("|", 1)) for line in lines if line]


def test_every_client_produces_and_consumes_on_the_demo_broker(demo_broker, unique_topics) -> None:
    topic = unique_topics("matrix")
    asyncio.run(ensure_topics(demo_broker.bootstrap, TopicSettings(
        interactions=topic, follows=unique_topics("f"), next_item=unique_topics("n"), social=unique_topics("s"),
        dead_letters=unique_topics("d"), partitions=2)))
    expected = []
    for client in PRODUCERS:
        records = _records(client)
        _produce(client, demo_broker.bootstrap, topic, records)
        expected += records
    for client in PRODUCERS:
        got = _consume(client, demo_broker.bootstrap, topic, len(expected))
        assert sorted(got) == sorted(expected), f"{client} read {len(got)} of {len(expected)} records"
    for _, value in expected:  # and every value is a valid event for the workers
        assert isinstance(decode_interaction(value.encode(), now_ms=2_000_000_000_000), Interaction)


def _topic_settings(unique_topics) -> TopicSettings:
    return TopicSettings(interactions=unique_topics("i"), follows=unique_topics("f"), next_item=unique_topics("n"),
                         social=unique_topics("s"), dead_letters=unique_topics("d"), partitions=3)


def test_sync_publisher_sends_schema_checked_events_keyed_by_user(kafka_broker, unique_topics) -> None:
    from stream.events import EventValidationError, decode_follow
    from stream.kafka.client import EventPublisher
    topics = _topic_settings(unique_topics)
    asyncio.run(ensure_topics(kafka_broker.bootstrap, topics))
    with EventPublisher(kafka_broker.bootstrap, topics) as events:
        for i in range(30):
            events.click(f"u{i % 4}", f"i{i}", ts=1_700_000_000_000 + i)
        events.follow("u1", "u2", ts=1_700_000_000_100)
        with pytest.raises(EventValidationError):
            events.click("", "i1")  # refused here, never sent
    clicks = _consume("kafka_python", kafka_broker.bootstrap, topics.interactions, 30)
    assert len(clicks) == 30
    for key, value in clicks:
        event = decode_interaction(value.encode(), now_ms=2_000_000_000_000)
        assert event.user_id == key and event.session_id == f"{key}@2023-11-14"
    by_user = {}
    for key, value in clicks:  # one user's events stay in order: one partition, produce order
        by_user.setdefault(key, []).append(json.loads(value)["ts"])
    assert all(ts == sorted(ts) for ts in by_user.values())
    (key, value), = _consume("kafka_python", kafka_broker.bootstrap, topics.follows, 1)
    assert key == "u1" and decode_follow(value.encode(), now_ms=2_000_000_000_000).dst_user == "u2"


def test_reader_keeps_the_newest_recommendation_per_user_and_kind(kafka_broker, unique_topics) -> None:
    import kafka
    from stream.kafka.client import RecommendationReader
    topics = _topic_settings(unique_topics)
    asyncio.run(ensure_topics(kafka_broker.bootstrap, topics))
    producer = kafka.KafkaProducer(bootstrap_servers=kafka_broker.bootstrap)

    def send(user: str, kind: str, item: str, ts: int) -> None:
        topic = topics.next_item if kind == "next_item" else topics.social
        producer.send(topic, encode_recommendation_items(
            user_id=user, session_id=None, kind=kind, items=[(item, 1.0)], model_version="m", event_ts=ts,
            emitted_ts=ts + 5), key=user.encode())

    send("old", "next_item", "before", 1)
    producer.flush()
    with RecommendationReader(kafka_broker.bootstrap, topics) as reader:  # from the end: "old" is not read
        for ts in range(10):
            send("u1", "next_item", f"n{ts}", ts)
            send("u1", "social", f"s{ts}", ts)
        send("u2", "next_item", "only", 3)
        producer.send(topics.next_item, b"not json", key=b"u3")
        producer.flush()
        rec = reader.wait_for("u1", "next_item", newer_than_ts=9, timeout_s=30)
        assert isinstance(rec, Recommendation) and rec.items[0].item_id == "n9"
        assert reader.wait_for("u1", "social", newer_than_ts=9, timeout_s=30).items[0].item_id == "s9"
        assert reader.wait_for("u2", timeout_s=30).items[0].item_id == "only"
        assert reader.latest("old") is None and reader.latest("u3") is None
    with RecommendationReader(kafka_broker.bootstrap, topics, from_beginning=True, max_users=2) as reader:
        deadline = time.monotonic() + 30
        while reader.latest("u2") is None and time.monotonic() < deadline:
            reader.poll(timeout_s=0.5)
        assert reader.latest("u2") is not None and reader.latest("old") is None  # the first user was forgotten
    producer.close()


def test_the_example_client_gets_recommendations_from_a_score_worker(kafka_broker, unique_topics, tmp_path) -> None:
    """deploy/examples/sync_client.py against a running score worker (the baselines)."""
    from workers.runtime.launch import WorkerProcess
    topics = _topic_settings(unique_topics)
    asyncio.run(ensure_topics(kafka_broker.bootstrap, topics))
    names = ["--interactions-topic", topics.interactions, "--follows-topic", topics.follows,
             "--next-item-topic", topics.next_item, "--social-topic", topics.social,
             "--dead-letters-topic", topics.dead_letters]
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap}
    score = WorkerProcess("score", ["--data-dir", str(tmp_path / "score"), "--metrics-port", "0",
                                    "--group-id", unique_topics("g"), *names],
                          log_path=tmp_path / "score.log", env=env).start()
    try:
        score.wait_ready(90)

        def example(user: str, items: str) -> dict:
            done = subprocess.run([sys.executable, str(REPO / "deploy" / "examples" / "sync_client.py"),
                                   "--bootstrap-servers", kafka_broker.bootstrap, "--user", user,
                                   "--items", items, *names, "--timeout-s", "60"],
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr[-3000:] + score.log_tail()
            return json.loads(done.stdout.strip().splitlines()[-1])

        bob = example("bob", "i1,i9")
        alice = example("alice", "i1")
    finally:
        score.stop()
    assert bob["answers_event_ts"] == bob["last_click_ts"]  # the answer to the last click sent
    assert (alice["user"], alice["kind"], alice["answers_event_ts"]) == ("alice", "next_item", alice["last_click_ts"])
    assert alice["items"][0] == "i9"  # bob went from i1 to i9: the transitions baseline's first answer
