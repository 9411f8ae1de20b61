"""`gnnrec bench ingest --json`: our ingest path against its limit and against naive faust.

All three consumers read the same pre-filled topic on one embedded Tansu broker, in one run:

* ``raw_consume_eps`` — a bare aiokafka ``getmany`` loop that only counts records (the limit);
* ``ingest_eps`` — :class:`workers.ingest.loop.IngestLoop`: decode, validate, apply to the RocksDB
  store and commit data + offsets in one WriteBatch per batch (the production hot path: the
  native store of :mod:`graph_store.rocksdb.native` when it is built, as ``open_store`` picks it, fed
  whole fetched record batches by :mod:`stream.kafka.chunks`; ``GNNREC_FETCH_CHUNKS=off``
  measures it on aiokafka's records instead);
* ``naive_faust_eps`` — a faust agent applying one event per iteration, one commit per event.

Each rate is timed from the end of its first batch to the last record, so group-join time is
out. The raw loop and the ingest loop both freeze the heap they start with out of the cyclic GC
(:class:`workers.runtime.process_tuning.HeapFreezer`), so neither pays for walking the other's objects.
"""
from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from bench.raw_consume import fill_topic, raw_consume_eps


async def ingest_eps(bootstrap: str, topic: str, n: int, partitions: int, data_dir: Path,
                     batch_max: int) -> tuple[float, dict[str, float], str]:
    """Events/s of the ingest loop, and its µs per event by stage (``fetch``, ``decode``,
    ``apply``; ``rocksdb_write`` is the part of ``apply`` spent in RocksDB's write call)."""
    from workers.ingest.loop import IngestLoop
    from workers.runtime.settings import IngestSettings
    from workers.runtime.stores import open_store
    settings = IngestSettings(bootstrap_servers=bootstrap, interactions_topic=topic, follows_topic=topic + "-follows",
                              data_dir=data_dir, group_id=f"bench-ingest-{time.time_ns()}", partitions=partitions,
                              batch_max=batch_max, max_future_skew_ms=10**13)
    loop = IngestLoop(settings, open_store(settings), worker="bench-ingest")
    await loop.start()
    try:
        first = None
        while loop.applied < n:
            got = await loop.run_once()
            if got and first is None:  # the clock starts after the first batch, as in raw_consume_eps
                first, counted = time.perf_counter(), loop.applied
                stages0 = dict(loop.stage_seconds)
                write0, keys0 = loop.store.write_seconds, loop.store.keys_written
                batches0 = loop.batches
        elapsed = time.perf_counter() - first
        counts = loop.store.counts()
        if counts.interactions != n:
            raise RuntimeError(f"bench: store holds {counts.interactions} interactions, expected {n}")
        timed = n - counted
        per_event = {k: (v - stages0[k]) / timed * 1e6 for k, v in loop.stage_seconds.items()}
        per_event["rocksdb_write"] = (loop.store.write_seconds - write0) / timed * 1e6
        per_event["rocksdb_keys"] = (loop.store.keys_written - keys0) / timed  # a count, not µs
        per_event["batch_records"] = timed / max(1, loop.batches - batches0)  # a count, not µs
        return timed / elapsed, per_event, type(loop.store).__name__
    finally:
        await loop.stop()
        loop.store.close()
        gc.unfreeze()


def naive_faust_eps(bootstrap: str, topic: str, n: int, data_dir: Path) -> float:
    out = subprocess.run([sys.executable, "-m", "bench.naive_faust", "--bootstrap", bootstrap, "--topic", topic,
                          "--events", str(n), "--data-dir", str(data_dir)],
                         capture_output=True, text=True, timeout=900)
    for line in out.stdout.splitlines():
        if '{"eps"' in line:  # faust may prefix terminal control codes
            return float(json.loads(line[line.index('{"eps"'):])["eps"])
    raise RuntimeError(f"naive faust bench failed (exit {out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")


def add_arguments(b) -> None:
    b.add_argument("--events", type=int, default=int(os.environ.get("GNNREC_BENCH_EVENTS", 200_000)))
    b.add_argument("--naive-events", type=int, default=int(os.environ.get("GNNREC_BENCH_NAIVE_EVENTS", 20_000)),
                   help="events the (slow) naive faust agent processes")
    b.add_argument("--partitions", type=int, default=4)
    b.add_argument("--batch-max", type=int, default=5000)
    b.add_argument("--json", action="store_true")


def run(args) -> int:
    from stream.brokers import start_tansu
    from stream.kafka.topics import TopicSettings, ensure_topics
    tmp = Path(tempfile.mkdtemp(prefix="gnnrec-bench-"))
    handle = start_tansu(log_path=tmp / "tansu.log")
    try:
        topic = "bench-interactions"
        topics = TopicSettings(interactions=topic, follows=topic + "-follows", next_item="bench-next",
                               social="bench-social", dead_letters="bench-dead", partitions=args.partitions)
        asyncio.run(ensure_topics(handle.bootstrap, topics))
        fill_s = asyncio.run(fill_topic(handle.bootstrap, topic, args.events))
        raw = asyncio.run(raw_consume_eps(handle.bootstrap, topic, args.events, args.partitions))
        ours, stage_us, store_class = asyncio.run(ingest_eps(handle.bootstrap, topic, args.events, args.partitions,
                                                tmp / "ingest", args.batch_max))
        naive = naive_faust_eps(handle.bootstrap, topic, min(args.naive_events, args.events), tmp / "naive")
    finally:
        handle.stop()
    result = {
        "events": args.events, "naive_events": min(args.naive_events, args.events), "partitions": args.partitions,
        "broker": "tansu (embedded)", "store": store_class, "fill_eps": round(args.events / fill_s),
        "raw_consume_eps": round(raw), "ingest_eps": round(ours), "naive_faust_eps": round(naive),
        "ratio_to_raw": round(ours / raw, 3), "ratio_to_naive": round(ours / naive, 2),
        "goal": {"ratio_to_raw": 0.5, "ratio_to_naive": 20},
        "ingest_us_per_event": {k: round(v, 2) for k, v in stage_us.items()
                                if k not in ("rocksdb_keys", "batch_records")},
        "rocksdb_keys_per_event": round(stage_us["rocksdb_keys"], 2),
        # Records per timed batch: with chunked fetch (stream/kafka/chunks.py) a batch is one
        # fetch, sized by bytes (--batch-max × 200 per partition), not capped at --batch-max.
        "ingest_batch_records": round(stage_us["batch_records"]),
        # If decoding and planning cost nothing, the loop would still fetch and write to RocksDB
        # (which holds the GIL): the best ratio_to_raw this single-process design can reach on
        # this run's figures (above 1 since the ingest fetch builds no record objects).
        "ratio_to_raw_bound": round(1e6 / raw / (stage_us["fetch"] + stage_us["rocksdb_write"]), 3),
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0
