"""The ``gnnrec`` command line. Every worker flag has an environment-variable twin.

    gnnrec worker ingest|score|refresh|train  long-running workers (faust apps)
    gnnrec produce --file PATH | --simulate N replay a dataset file or the simulator into Kafka
    gnnrec consume TOPIC                      tail a topic in readable form
    gnnrec broker                             run the embedded Tansu broker in the foreground
    gnnrec topics                             create the topics
    gnnrec demo [--events N] [--json]         the whole pipeline on the embedded broker
    gnnrec bench ingest [--json]              ingest throughput vs raw consume vs naive faust
    gnnrec bench latency [--json]             event→recommendation latency of the GNN score worker
    gnnrec train / eval / results             offline models (see models/)
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

from workers.settings import (IngestSettings, RefreshSettings, ScoreSettings, TrainSettings, WorkerSettings,
                              add_settings_arguments, settings_from_args)


def _env(name: str, default):
    return os.environ.get(name, default)


def _add_worker_parsers(sub) -> None:
    worker = sub.add_parser("worker", help="run a long-lived worker")
    wsub = worker.add_subparsers(dest="worker", required=True)
    p = wsub.add_parser("ingest", help="apply interactions and follows to the graph store")
    add_settings_arguments(p, IngestSettings)
    p = wsub.add_parser("score", help="emit next-item and social recommendations")
    add_settings_arguments(p, ScoreSettings)
    p = wsub.add_parser("refresh", help="keep the published node embeddings fresh (local refresh, hot swap)")
    add_settings_arguments(p, RefreshSettings)
    p = wsub.add_parser("train", help="retrain the live models on a schedule and publish them")
    add_settings_arguments(p, TrainSettings)


def _add_stream_parsers(sub) -> None:
    p = sub.add_parser("produce", help="replay a dataset file or the simulator into Kafka")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", type=Path, help="dataset file (formats: see --format)")
    src.add_argument("--simulate", type=int, metavar="N", help="N events from the built-in simulator")
    p.add_argument("--format", default=_env("GNNREC_FORMAT", None),
                   help="yoochoose|diginetica|movielens|ciao|lastfm (env GNNREC_FORMAT; default: detect)")
    p.add_argument("--rate", type=float, default=float(_env("GNNREC_RATE", 0)) or None,
                   help="target events/s (env GNNREC_RATE; default: as fast as possible)")
    p.add_argument("--limit", type=int, default=None, help="stop after N events (env GNNREC_LIMIT)")
    p.add_argument("--live-timestamps", action="store_true",
                   default=_env("GNNREC_LIVE_TIMESTAMPS", "0") == "1",
                   help="stamp events with the send time (env GNNREC_LIVE_TIMESTAMPS=1)")
    p.add_argument("--seed", type=int, default=int(_env("GNNREC_SEED", 7)), help="simulator seed (env GNNREC_SEED)")
    p.add_argument("--linger-ms", type=int, default=int(_env("GNNREC_PRODUCER_LINGER_MS", 20)),
                   help="producer batching delay (env GNNREC_PRODUCER_LINGER_MS; 20 costs the embedded "
                        "broker far less than 5, see stream/producer.py)")
    p.add_argument("--no-progress", action="store_true")
    add_settings_arguments(p, WorkerSettings)

    p = sub.add_parser("consume", help="tail a topic in readable form")
    p.add_argument("topic")
    p.add_argument("--from-beginning", action="store_true", default=_env("GNNREC_FROM_BEGINNING", "0") == "1")
    p.add_argument("--limit", type=int, default=None)
    add_settings_arguments(p, WorkerSettings)

    p = sub.add_parser("topics", help="create the topics (idempotent)")
    add_settings_arguments(p, WorkerSettings)

    p = sub.add_parser("broker", help="run the embedded Tansu broker until Ctrl-C")
    p.add_argument("--port", type=int, default=int(_env("GNNREC_BROKER_PORT", 0)) or None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gnnrec", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_worker_parsers(sub)
    _add_stream_parsers(sub)
    from workers import cli_models, demo, bench
    demo.add_parser(sub)
    bench.add_parser(sub)
    from workers import bench_latency
    # `bench latency` joins the subcommands `bench.add_parser` created (argparse keeps them as
    # the bench parser's only _SubParsersAction).
    bench_sub = next(a for a in sub.choices["bench"]._actions if isinstance(a, argparse._SubParsersAction))
    bench_latency.add_parser(bench_sub)
    cli_models.add_parsers(sub)
    return parser


def _run_worker(args) -> int:
    from workers.process_tuning import limit_native_threads
    limit_native_threads()  # before anything below imports numpy or torch
    from workers.runner import LoopService, run_faust_worker
    from workers.stores import open_store
    if args.worker == "ingest":
        from workers.ingest import IngestLoop
        settings = settings_from_args(IngestSettings, args)
        build = lambda: IngestLoop(settings, open_store(settings))  # noqa: E731
    elif args.worker == "refresh":
        from workers.refresh_worker import build_refresh_loop
        settings = settings_from_args(RefreshSettings, args)
        build = lambda: build_refresh_loop(settings)  # noqa: E731
    elif args.worker == "train":
        from workers.train_worker import build_train_loop
        settings = settings_from_args(TrainSettings, args)
        build = lambda: build_train_loop(settings)  # noqa: E731
    else:
        from workers.score import ScoreLoop
        settings = settings_from_args(ScoreSettings, args)
        build = lambda: ScoreLoop(settings, open_store(settings))  # noqa: E731
    run_faust_worker(args.worker, LoopService(build), settings)
    return 0


async def _produce(args, settings: WorkerSettings) -> dict:
    from stream.producer import EventProducer, replay
    from stream.topics import ensure_topics
    bootstrap = settings.require_bootstrap()
    await ensure_topics(bootstrap, settings.topics())
    if args.file is not None:
        from stream.formats import read_events
        events = read_events(args.file, args.format, limit=args.limit)
    else:
        from stream.simulator import Simulator, SimulatorSettings
        events = Simulator(SimulatorSettings(seed=args.seed)).events(
            start_ms=int(time.time() * 1000), n=args.simulate, step_ms=1)
    producer = EventProducer(bootstrap, settings.topics(), linger_ms=args.linger_ms)
    await producer.start()
    try:
        stats = await replay(events, producer, rate_eps=args.rate, limit=args.limit,
                             live_timestamps=args.live_timestamps, progress=not args.no_progress)
    finally:
        await producer.stop()
    return {"produced": stats.produced, "seconds": round(stats.seconds, 3)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "worker":
        return _run_worker(args)
    if args.command == "produce":
        print(json.dumps(asyncio.run(_produce(args, settings_from_args(WorkerSettings, args)))))
        return 0
    if args.command == "consume":
        from stream.consumer import tail
        settings = settings_from_args(WorkerSettings, args)
        try:
            asyncio.run(tail(settings.require_bootstrap(), args.topic,
                             from_beginning=args.from_beginning, limit=args.limit))
        except KeyboardInterrupt:
            pass
        return 0
    if args.command == "topics":
        from stream.topics import ensure_topics
        settings = settings_from_args(WorkerSettings, args)
        asyncio.run(ensure_topics(settings.require_bootstrap(), settings.topics()))
        return 0
    if args.command == "broker":
        from stream.brokers import start_tansu
        handle = start_tansu(port=args.port)
        print(f"embedded Tansu broker at {handle.bootstrap} (export KAFKA_BOOTSTRAP_SERVERS={handle.bootstrap}); Ctrl-C stops it",
              flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            handle.stop()
        return 0
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
