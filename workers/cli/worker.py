"""``gnnrec worker ingest|score|refresh|train``: the long-running processes."""
from __future__ import annotations

from workers.runtime.settings import (IngestSettings, RefreshSettings, ScoreSettings, TrainSettings,
                                      add_settings_arguments, settings_from_args)

ROLES = {
    "ingest": (IngestSettings, "apply interactions and follows to the graph store"),
    "score": (ScoreSettings, "emit next-item and social recommendations"),
    "refresh": (RefreshSettings, "keep the published node embeddings fresh (local refresh, hot swap)"),
    "train": (TrainSettings, "retrain the live models on a schedule and publish them"),
}


def add_parsers(sub) -> None:
    worker = sub.add_parser("worker", help="run a long-lived worker")
    wsub = worker.add_subparsers(dest="worker", required=True)
    for name, (settings_cls, help_text) in ROLES.items():
        p = wsub.add_parser(name, help=help_text)
        add_settings_arguments(p, settings_cls)
        p.set_defaults(handler=run)


def run(args) -> int:
    from workers.runtime.process_tuning import limit_native_threads
    limit_native_threads()  # before anything below imports numpy or torch
    from workers.runtime.runner import LoopService, run_faust_worker
    from workers.runtime.stores import open_store
    settings = settings_from_args(ROLES[args.worker][0], args)
    if args.worker != "ingest":  # bundles and embeddings on topics under kafka transport
        from workers.runtime.transport.hosting import with_transport
    if args.worker == "ingest":
        from workers.ingest.loop import IngestLoop
        build = lambda: IngestLoop(settings, open_store(settings))  # noqa: E731
    elif args.worker == "refresh":
        from workers.refresh.loop import build_refresh_loop

        def build():
            loop = build_refresh_loop(settings)
            return with_transport("refresh", loop, settings, embeddings=loop.core.embeddings)
    elif args.worker == "train":
        from workers.train.loop import build_train_loop
        build = lambda: with_transport("train", build_train_loop(settings), settings)  # noqa: E731
    else:
        from workers.score.loop import ScoreLoop
        build = lambda: with_transport("score", ScoreLoop(settings, open_store(settings)), settings)  # noqa: E731
    run_faust_worker(args.worker, LoopService(build, max_stall_s=settings.alive_max_stall_s), settings)
    return 0
