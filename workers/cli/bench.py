"""``gnnrec bench ingest|latency|refresh|score-path|chaos``: the benchmarks of ``bench/``, each printing JSON."""
from __future__ import annotations

from bench import chaos, ingest, latency, refresh, score_path

# subcommand → (module, help); each module has add_arguments(parser) and run(args) -> exit code.
BENCHMARKS = {
    "ingest": (ingest, "ingest throughput vs raw aiokafka vs naive faust"),
    "latency": (latency, "event→recommendation latency of the GNN score worker"),
    "chaos": (chaos, "SIGKILLs, poison pills and bad input against ingest and score, checked against oracles"),
    "score-path": (score_path, "the score worker's CPU per event on a replayed file, coalescing on and off"),
    "refresh": (refresh, "local embedding refresh vs full LightGCN propagation (Gowalla)"),
}


def add_parsers(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks that print JSON")
    bsub = p.add_subparsers(dest="bench", required=True)
    for name, (module, help_text) in BENCHMARKS.items():
        b = bsub.add_parser(name, help=help_text)
        module.add_arguments(b)
        b.set_defaults(handler=module.run)
