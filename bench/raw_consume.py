"""The raw consume limit: a bare aiokafka ``getmany`` loop that only counts records.

Any worker built on aiokafka reads at most this fast, so ``gnnrec bench ingest`` reports its
ingest rate as a ratio to it, measured in the same run on the same topic. ``fill_topic``
pre-fills that topic with simulator interactions (~110-byte v1 JSON, keyed by user).

    python -m bench.raw_consume [--events 200000] [--partitions 4]   # prints JSON

``KAFKA_BOOTSTRAP_SERVERS`` selects an external broker instead of the embedded one.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream.brokers import broker_from_env_or_embedded
from workers.runtime.process_tuning import HeapFreezer


async def fill_topic(bootstrap: str, topic: str, n: int, seed: int = 7) -> float:
    """Produce ``n`` simulator interactions to ``topic`` (keyed by user); returns the seconds taken."""
    from stream.events import Interaction, encode
    from stream.simulator import Simulator, SimulatorSettings
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10, max_batch_size=256 * 1024)
    await producer.start()
    started = time.perf_counter()
    sent, pending = 0, []
    try:
        for ev in Simulator(SimulatorSettings(seed=seed)).events(start_ms=1_700_000_000_000, n=4 * n, step_ms=10):
            if not isinstance(ev, Interaction):
                continue
            pending.append(await producer.send(topic, encode(ev), key=ev.user_id.encode()))
            sent += 1
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
            if sent >= n:
                break
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def raw_consume_eps(bootstrap: str, topic: str, n: int, partitions: int) -> float:
    """Records/s of a bare consume loop over ``n`` records of ``topic``, timed from its first batch
    (manual assignment: no group join is counted)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024)
    await consumer.start()
    # The same heap treatment as the ingest loop (workers.runtime.process_tuning.HeapFreezer): what
    # exists now is frozen out of the cyclic GC's walks, and so after every full collection.
    freezer = HeapFreezer()
    freezer.maybe_freeze(True)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        count, first, counted = 0, None, 0
        while count < n:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            got = sum(len(v) for v in batches.values())
            count += got
            freezer.maybe_freeze(True)
            if first is None and got:  # the clock starts when the first records are in hand
                first, counted = time.perf_counter(), count
        return (n - counted) / (time.perf_counter() - first)
    finally:
        freezer.close()
        gc.unfreeze()
        await consumer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=int(os.environ.get("GNNREC_BENCH_EVENTS", 200_000)))
    parser.add_argument("--partitions", type=int, default=int(os.environ.get("GNNREC_BENCH_PARTITIONS", 4)))
    parser.add_argument("--repeats", type=int, default=1, help="consume the same topic again this many times")
    args = parser.parse_args(argv)
    from stream.kafka.topics import TopicSettings, ensure_topics
    topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    with broker_from_env_or_embedded() as broker:
        topics = TopicSettings(interactions=topic, follows=topic + "-follows", next_item=topic + "-next",
                               social=topic + "-social", dead_letters=topic + "-dead", partitions=args.partitions)
        asyncio.run(ensure_topics(broker.bootstrap, topics))
        fill_s = asyncio.run(fill_topic(broker.bootstrap, topic, args.events))
        rates = [asyncio.run(raw_consume_eps(broker.bootstrap, topic, args.events, args.partitions))
                 for _ in range(args.repeats)]
    print(json.dumps({
        "bench": "raw_consume", "broker": broker.name, "events": args.events, "partitions": args.partitions,
        "produce_eps": round(args.events / fill_s), "raw_consume_eps": [round(r) for r in rates],
        "python": platform.python_version(),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
