"""``gnnrec demo``: the whole pipeline on the embedded broker (or ``KAFKA_BOOTSTRAP_SERVERS``)."""
from __future__ import annotations

import os
from pathlib import Path


def add_parsers(sub) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on the embedded broker (the simulator, or --file)")
    p.add_argument("--file", type=Path, default=None,
                   help="replay your own file instead of the simulator (formats: yoochoose, diginetica, movielens, "
                        "ciao, lastfm); its events keep their own timestamps")
    p.add_argument("--format", default=os.environ.get("GNNREC_FORMAT"),
                   help="format of --file (env GNNREC_FORMAT; default: detected from the file)")
    p.add_argument("--time-step-ms", type=int, default=int(os.environ.get("GNNREC_TIME_STEP_MS", 0)) or None,
                   help="--file whose time column holds coarse steps: event time of step k is k × this many ms "
                        "(env GNNREC_TIME_STEP_MS)")
    p.add_argument("--events", type=int, default=int(os.environ.get("GNNREC_DEMO_EVENTS", 0)) or None,
                   help="stop after N events (env GNNREC_DEMO_EVENTS; default: until Ctrl-C)")
    p.add_argument("--rate", type=float, default=float(os.environ.get("GNNREC_DEMO_RATE", 1000)),
                   help="events/s produced (env GNNREC_DEMO_RATE; default 1000)")
    p.add_argument("--bad-every", type=int, default=_env_int("GNNREC_DEMO_BAD_EVERY"),
                   help="inject one malformed event every N events, 0 = none (env GNNREC_DEMO_BAD_EVERY; "
                        "default 500 with the simulator, 0 with --file)")
    p.add_argument("--seed", type=int, default=int(os.environ.get("GNNREC_SEED", 7)))
    p.add_argument("--warmup-events", type=int, default=int(os.environ.get("GNNREC_DEMO_WARMUP_EVENTS", 3000)),
                   help="after this many events, pause until the first trained model serves (at most "
                        "--warmup-timeout-s), so the rest of the run shows GNN recommendations; 0 = no pause")
    p.add_argument("--warmup-timeout-s", type=float,
                   default=float(os.environ.get("GNNREC_DEMO_WARMUP_TIMEOUT_S", 120)))
    p.add_argument("--data-dir", type=Path, default=None, help="where worker stores and logs go (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="print only the summary, as one JSON object")
    p.set_defaults(handler=run)


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def run(args) -> int:
    from workers import demo
    return demo.run(args)
