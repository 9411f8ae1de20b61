"""`gnnrec bench score-path --json`: the score worker's CPU per event, coalescing on and off.

The score loop's own work on a replayed file, in this process and without a broker: each
fetched batch (``--batch`` records) is decoded, applied to the worker's replica and answered
(baselines: the transition and followee recommenders with the trending fallback), and the
recommendations are encoded and handed to a producer that only counts them. That isolates
what the worker spends per event from the broker and the network, which
``gnnrec bench latency`` measures. Both runs replay the same records in one process, one
after the other, so their ratio is a like-for-like figure.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import tempfile
import time
from pathlib import Path

from stream.events import Interaction, encode


def add_arguments(b) -> None:
    b.add_argument("--file", type=Path, default=None,
                   help="a file in a supported format (default: the simulator)")
    b.add_argument("--format", default=None)
    b.add_argument("--events", type=int, default=100_000)
    b.add_argument("--batch", type=int, default=5000, help="records per fetched batch (the worker's --batch-max)")
    b.add_argument("--json", action="store_true")


class _CountingProducer:
    """Stands in for the Kafka producer: the bench measures the worker, not the broker."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, topic, value, key=None):
        self.sent += 1
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def _records(args) -> list:
    from stream.kafka.batch_consumer import RawRecord
    if args.file is None:
        from stream.simulator import Simulator, SimulatorSettings
        events = list(Simulator(SimulatorSettings(seed=1)).events(1_700_000_000_000, args.events, 20))
    else:
        from stream.formats import read_events
        events = list(itertools.islice(iter(read_events(args.file, fmt=args.format)), args.events))
    out = []
    for k, ev in enumerate(events):
        user = ev.user_id if isinstance(ev, Interaction) else ev.src_user
        topic = "interactions" if isinstance(ev, Interaction) else "follows"
        out.append(RawRecord(topic, hash(user) % 4, k, user.encode(), encode(ev), ev.ts))
    return out


async def _run(records: list, batch: int, coalesce: str, data_dir: Path) -> dict:
    from workers.runtime.settings import ScoreSettings
    from workers.runtime.stores import open_store
    from workers.score.loop import ScoreLoop
    settings = ScoreSettings(bootstrap_servers="127.0.0.1:1", data_dir=data_dir, store="memory",
                             recommender="transitions", coalesce=coalesce)
    last_ts = records[-1].timestamp_ms
    loop = ScoreLoop(settings, open_store(settings), clock=lambda: last_ts / 1000 + 1)
    producer = loop.producer = _CountingProducer()
    started = time.perf_counter()
    for i in range(0, len(records), batch):
        pending = loop._apply_batch(records[i:i + batch])
        loop._answer_gnn(pending)
        for p in pending:
            await loop._send(p)
    seconds = time.perf_counter() - started
    loop.store.close()
    return {"us_per_event": round(1e6 * seconds / len(records), 1), "recommendations": producer.sent,
            "events_per_s": round(len(records) / seconds)}


def run(args) -> int:
    records = _records(args)
    with tempfile.TemporaryDirectory(prefix="gnnrec-bench-score-") as tmp:
        on = asyncio.run(_run(records, args.batch, "on", Path(tmp) / "on"))
        off = asyncio.run(_run(records, args.batch, "off", Path(tmp) / "off"))
    out = {"events": len(records), "batch": args.batch, "source": str(args.file or "simulator"),
           "coalesce_on": on, "coalesce_off": off,
           "speedup": round(off["us_per_event"] / on["us_per_event"], 2),
           "answered_share": round(on["recommendations"] / max(1, off["recommendations"]), 3)}
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0
