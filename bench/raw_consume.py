"""Raw aiokafka consume rate: the ceiling any ingest worker built on aiokafka can reach.

Pre-fills a topic with ``n`` JSON records of ~100 bytes, then times a bare
``AIOKafkaConsumer.getmany`` loop (manual assignment, no consumer group, so the group join that
takes ~3 s on Tansu is not counted) until all ``n`` are read. Records are counted, not
compared with ListOffsets, which Tansu gets wrong for batched produces.

    python bench/raw_consume.py [--n 200000] [--partitions 4]   # embedded Tansu, prints JSON

``KAFKA_BOOTSTRAP_SERVERS`` selects an external broker instead of Tansu.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
import uuid

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.brokers import broker_from_env_or_embedded


def make_record(i: int) -> bytes:
    """A ~100-byte JSON interaction event (the size of gnnrec's ingest events)."""
    return orjson.dumps(
        {"user": f"u{i % 50_000:06d}", "item": f"i{(i * 7919) % 200_000:07d}", "kind": "click",
         "ts": 1_700_000_000_000 + i, "weight": 1.0, "seq": i}
    )


async def fill_topic(bootstrap: str, topic: str, n: int, partitions: int) -> float:
    """Create ``topic`` and produce ``n`` records round-robin over its partitions; returns seconds."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024, acks=1)
    await producer.start()
    t0 = time.perf_counter()
    try:
        pending = []
        for i in range(n):
            pending.append(await producer.send(topic, make_record(i), partition=i % partitions))
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - t0


async def measure_raw_consume(
    bootstrap: str, topic: str, n: int, partitions: int, *, prefill: bool = True, timeout_s: float = 300
) -> float:
    """Events per second for one consumer reading ``n`` records of ``topic`` from the start.

    With ``prefill`` the topic is created and filled first (not timed); without it the topic
    must already hold at least ``n`` records in ``partitions`` partitions.
    """
    if prefill:
        await fill_topic(bootstrap, topic, n, partitions)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        t0 = time.perf_counter()
        deadline = t0 + timeout_s
        while seen < n:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            seen += sum(len(records) for records in batches.values())
            if time.perf_counter() > deadline:
                raise TimeoutError(f"read {seen} of {n} records of {topic} in {timeout_s} s")
        return seen / (time.perf_counter() - t0)
    finally:
        await consumer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=int(os.environ.get("GNNREC_BENCH_N", 200_000)))
    parser.add_argument("--partitions", type=int, default=int(os.environ.get("GNNREC_BENCH_PARTITIONS", 4)))
    parser.add_argument("--repeats", type=int, default=1, help="consume the same topic again this many times")
    args = parser.parse_args(argv)
    topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    with broker_from_env_or_embedded() as broker:
        fill_s = asyncio.run(fill_topic(broker.bootstrap, topic, args.n, args.partitions))
        rates = [
            asyncio.run(measure_raw_consume(broker.bootstrap, topic, args.n, args.partitions, prefill=False))
            for _ in range(args.repeats)
        ]
    print(json.dumps({
        "bench": "raw_consume", "broker": broker.name, "n": args.n, "partitions": args.partitions,
        "record_bytes": len(make_record(args.n // 2)), "produce_events_per_s": round(args.n / fill_s),
        "consume_events_per_s": [round(r) for r in rates], "python": platform.python_version(),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
