"""Ingest throughput of the graph stores: events/s of ``apply_many`` on a synthetic stream.

Prints one JSON object per store, e.g.::

    nice -n 10 .venv/bin/python -m bench.store_apply --events 200000 --batch 2000

Workload: ``--users`` users and ``--items`` items (Zipf-like item popularity), sessions of
geometric length (mean ~5) per user, click/view/cart/purchase kinds, event time advancing
~50 ms per event; every batch commits offsets. Events are built before timing starts and
frozen out of the cyclic GC. ``eps`` is wall-clock, ``cpu_eps`` uses the process CPU time
(all threads, so RocksDB's background flushes count), steadier on a shared machine; both
include a final flush of the memtable (where a vector memtable pays its sort).
Stores: ``memory``, ``rocksdb`` (Python planner), ``native`` (the ingest worker's store) and
``native-skiplist`` (the same on RocksDB's default memtable).
Every flag has an environment twin (``GNNREC_BENCH_<FLAG>``).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import random
import tempfile
import time
from pathlib import Path

from graph_store import MemoryGraphStore, RocksDBGraphStore, RocksDBOptions, StoreSettings
from graph_store.rocksdb.native import NATIVE_OPTIONS, NativeRocksDBGraphStore
from stream.events import Interaction


def make_events(n: int, n_users: int, n_items: int, seed: int) -> list[Interaction]:
    rng = random.Random(seed)
    kinds = ["view", "click", "click", "click", "cart", "purchase"]
    item_w = [1.0 / (r + 1) ** 0.8 for r in range(n_items)]  # Zipf-like popularity
    items = rng.choices(range(n_items), weights=item_w, k=n)
    open_sessions: dict[int, str] = {}
    events, ts, next_session = [], 1_700_000_000_000, 0
    for k in range(n):
        user = rng.randrange(n_users)
        session = open_sessions.get(user)
        if session is None or rng.random() < 0.2:  # geometric session length, mean ~5
            session = open_sessions[user] = f"s{next_session}"
            next_session += 1
        ts += rng.randrange(100)
        events.append(Interaction(f"u{user}", f"i{items[k]}", session, ts, rng.choice(kinds)))
    return events


def run(store, events: list[Interaction], batch: int) -> dict:
    start, start_cpu = time.perf_counter(), time.process_time()
    for pos in range(0, len(events), batch):
        store.apply_many(events[pos : pos + batch], {("events", 0): pos + batch})
    if hasattr(store, "flush"):
        store.flush()  # the memtable's own cost (a vector memtable sorts here) is the store's too
    elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    counts = store.counts()
    return {
        "events": len(events),
        "batch": batch,
        "seconds": round(elapsed, 3),
        "eps": round(len(events) / elapsed),
        "cpu_seconds": round(cpu, 3),
        "cpu_eps": round(len(events) / cpu),
        "users": counts.users,
        "items": counts.items,
        "sessions": counts.sessions,
        "edges": counts.edges,
    }


# name -> (class, options); native-skiplist isolates the memtable's share of the native gain.
STORES = {
    "rocksdb": (RocksDBGraphStore, RocksDBOptions()),
    "native": (NativeRocksDBGraphStore, NATIVE_OPTIONS),
    "native-skiplist": (NativeRocksDBGraphStore, RocksDBOptions(memtable_bloom_ratio=0.0)),
}


def main(argv: list[str] | None = None) -> None:
    env = lambda name, default: type(default)(os.environ.get(f"GNNREC_BENCH_{name.upper()}", default))  # noqa: E731
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=env("events", 200_000))
    parser.add_argument("--batch", type=int, default=env("batch", 2_000))
    parser.add_argument("--users", type=int, default=env("users", 10_000))
    parser.add_argument("--items", type=int, default=env("items", 10_000))
    parser.add_argument("--seed", type=int, default=env("seed", 0))
    parser.add_argument("--stores", default=env("stores", "memory,rocksdb"))
    args = parser.parse_args(argv)
    events = make_events(args.events, args.users, args.items, args.seed)
    # The pre-built events are the benchmark's, not the store's: keep the cyclic GC from
    # traversing them on every full collection (a worker holds one batch at a time).
    gc.collect()
    gc.freeze()
    for name in args.stores.split(","):
        if name == "memory":
            result = run(MemoryGraphStore(StoreSettings()), events, args.batch)
        elif name in STORES:
            cls, options = STORES[name]
            with tempfile.TemporaryDirectory() as tmp, cls(Path(tmp) / "g", StoreSettings(), options) as store:
                result = run(store, events, args.batch)
        else:
            raise SystemExit(f"unknown store {name!r}; use memory and/or {', '.join(STORES)}")
        print(json.dumps({"store": name, **result}), flush=True)


if __name__ == "__main__":
    main()
