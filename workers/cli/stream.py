"""``gnnrec produce | consume | topics | broker``: replay into Kafka, tail a topic, create the
topics, run the embedded broker."""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from workers.runtime.security import verified_security
from workers.runtime.settings import WorkerSettings, add_settings_arguments, settings_from_args


def _env(name: str, default):
    return os.environ.get(name, default)


def add_parsers(sub) -> None:
    p = sub.add_parser("produce", help="replay a dataset file or the simulator into Kafka")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", type=Path, help="dataset file (formats: see --format)")
    src.add_argument("--simulate", type=int, metavar="N", help="N events from the built-in simulator")
    p.add_argument("--format", default=_env("GNNREC_FORMAT", None),
                   help="yoochoose|diginetica|movielens|ciao|lastfm (env GNNREC_FORMAT; default: detect)")
    p.add_argument("--time-step-ms", type=int, default=int(_env("GNNREC_TIME_STEP_MS", 0)) or None,
                   help="--file whose time column holds coarse steps (1, 2, ...): event time of step k is "
                        "k × this many ms (env GNNREC_TIME_STEP_MS); refused for files of real times")
    p.add_argument("--rate", type=float, default=float(_env("GNNREC_RATE", 0)) or None,
                   help="target events/s (env GNNREC_RATE; default: as fast as possible)")
    p.add_argument("--limit", type=int, default=None, help="stop after N events (env GNNREC_LIMIT)")
    p.add_argument("--live-timestamps", action="store_true",
                   default=_env("GNNREC_LIVE_TIMESTAMPS", "0") == "1",
                   help="stamp events with the send time (env GNNREC_LIVE_TIMESTAMPS=1)")
    p.add_argument("--seed", type=int, default=int(_env("GNNREC_SEED", 7)), help="simulator seed (env GNNREC_SEED)")
    p.add_argument("--linger-ms", type=int, default=int(_env("GNNREC_PRODUCER_LINGER_MS", 20)),
                   help="producer batching delay (env GNNREC_PRODUCER_LINGER_MS; 20 costs the embedded "
                        "broker far less than 5, see stream/kafka/producer.py)")
    p.add_argument("--no-progress", action="store_true")
    add_settings_arguments(p, WorkerSettings)
    p.set_defaults(handler=run_produce)

    p = sub.add_parser("consume", help="tail a topic in readable form")
    p.add_argument("topic")
    p.add_argument("--from-beginning", action="store_true", default=_env("GNNREC_FROM_BEGINNING", "0") == "1")
    p.add_argument("--limit", type=int, default=None)
    add_settings_arguments(p, WorkerSettings)
    p.set_defaults(handler=run_consume)

    p = sub.add_parser("topics", help="create the topics (idempotent)")
    add_settings_arguments(p, WorkerSettings)
    p.set_defaults(handler=run_topics)

    p = sub.add_parser("broker", help="run the embedded broker until Ctrl-C (Apache Kafka in KRaft mode; "
                                      "GNNREC_EMBEDDED_BROKER=tansu for Tansu)")
    p.add_argument("--port", type=int, default=int(_env("GNNREC_BROKER_PORT", 0)) or None)
    p.set_defaults(handler=run_broker)


async def _produce(args, settings: WorkerSettings) -> dict:
    from stream.kafka.producer import EventProducer, replay
    from stream.kafka.topics import ensure_topics
    bootstrap = settings.require_bootstrap()
    security = await verified_security(settings)
    await ensure_topics(bootstrap, settings.topics(), security=security)
    if args.file is not None:
        from stream.formats import read_events
        events = read_events(args.file, args.format, limit=args.limit, time_step_ms=args.time_step_ms)
    else:
        from stream.simulator import Simulator, SimulatorSettings
        events = Simulator(SimulatorSettings(seed=args.seed)).events(
            start_ms=int(time.time() * 1000), n=args.simulate, step_ms=1)
    producer = EventProducer(bootstrap, settings.topics(), linger_ms=args.linger_ms,
                             idempotent=settings.idempotent_producers, security=security)
    await producer.start()
    try:
        stats = await replay(events, producer, rate_eps=args.rate, limit=args.limit,
                             live_timestamps=args.live_timestamps, progress=not args.no_progress)
    finally:
        await producer.stop()
    return {"produced": stats.produced, "seconds": round(stats.seconds, 3)}


def run_produce(args) -> int:
    from stream.formats import FormatError
    try:
        print(json.dumps(asyncio.run(_produce(args, settings_from_args(WorkerSettings, args)))))
    except (FormatError, FileNotFoundError) as exc:
        print(f"gnnrec produce: {exc}", file=sys.stderr)
        return 2
    return 0


async def _consume(args, settings: WorkerSettings) -> None:
    from stream.kafka.tail import tail
    await tail(settings.require_bootstrap(), args.topic, from_beginning=args.from_beginning, limit=args.limit,
               security=await verified_security(settings))


def run_consume(args) -> int:
    settings = settings_from_args(WorkerSettings, args)
    try:
        asyncio.run(_consume(args, settings))
    except KeyboardInterrupt:
        pass
    return 0


async def _topics(settings: WorkerSettings) -> None:
    from stream.kafka.topics import ensure_topics
    await ensure_topics(settings.require_bootstrap(), settings.topics(), security=await verified_security(settings))


def run_topics(args) -> int:
    asyncio.run(_topics(settings_from_args(WorkerSettings, args)))
    return 0


def run_broker(args) -> int:
    from stream.brokers import start_embedded
    handle = start_embedded(port=args.port)
    print(f"embedded {handle.name} broker at {handle.bootstrap} (export KAFKA_BOOTSTRAP_SERVERS={handle.bootstrap}); "
          "Ctrl-C stops it", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        handle.stop()
    return 0
