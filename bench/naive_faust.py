"""The naive baseline of `gnnrec bench ingest`: a faust agent applying one event per iteration.

Each event is decoded, applied to the RocksDB store and committed with its offset on its own —
what a straightforward faust port of the ingest path would do. Prints ``{"eps": ...}``.
"""
from __future__ import annotations

import argparse
import os
import json
import time
from pathlib import Path

from faust.worker import Worker

from graph_store import RocksDBGraphStore, StoreSettings
from stream.events import Invalid, decode_interaction
from stream.kafka.faust_app import make_faust_app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--data-dir", type=Path, required=True)
    args = ap.parse_args()
    app = make_faust_app(f"bench-naive-{time.time_ns()}", args.bootstrap, args.data_dir / "faust")
    topic = app.topic(args.topic, value_serializer="raw", key_serializer="raw")
    store = RocksDBGraphStore(args.data_dir / "graph", StoreSettings())
    state = {"n": 0, "first": None}

    @app.agent(topic)
    async def apply_each(stream):
        async for event in stream.events():
            if state["first"] is None:
                state["first"] = time.perf_counter()
            msg = event.message
            # Bench events carry old timestamps; push "now" out so none counts as far-future.
            value = decode_interaction(event.value, now_ms=int(time.time() * 1000) + 10**12)
            offsets = {(msg.topic, msg.partition): msg.offset + 1}
            if isinstance(value, Invalid):
                store.apply_many([], offsets)
            else:
                store.apply_one(value, offsets)
            state["n"] += 1
            if state["n"] >= args.events:
                elapsed = time.perf_counter() - state["first"]
                print(json.dumps({"eps": args.events / elapsed}), flush=True)
                store.close()
                # app.stop() from inside an agent waits for this very event to be acked, forever:
                # the measurement is done and the store closed, so leave at once.
                os._exit(0)

    Worker(app, loglevel=os.environ.get("GNNREC_LOG_LEVEL", "ERROR"), quiet=True, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
