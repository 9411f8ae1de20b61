"""The ``gnnrec`` command line: one module per command group. Every worker flag has an
environment-variable twin.

    gnnrec worker ingest|score|refresh|train  long-running workers          (workers.cli.worker)
    gnnrec produce | consume | topics | broker  Kafka: replay, tail, create, embedded broker
                                                                            (workers.cli.stream)
    gnnrec demo [--events N] [--json]         the whole pipeline             (workers.cli.demo)
    gnnrec bench ingest|latency|refresh       benchmarks printing JSON       (workers.cli.bench)
    gnnrec train | eval | results             offline models and the prequential replay
                                                                            (workers.cli.models)
"""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    # Imported here, not at module level: ``python -m workers.cli.models`` runs this package's
    # import first and must not need the streaming stack (a GPU box with torch alone runs it).
    from workers.cli import bench, demo, models, stream, worker
    parser = argparse.ArgumentParser(prog="gnnrec", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (worker, stream, demo, bench, models):
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from workers.runtime.settings import SettingsError  # loaded with the parsers already
    try:
        return args.handler(args)
    except SettingsError as exc:
        command = " ".join(filter(None, (args.command, getattr(args, "worker", None))))
        print(f"gnnrec {command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
