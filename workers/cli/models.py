"""`gnnrec train`, `gnnrec eval` and `gnnrec results`: the offline model harness on the CLI."""
from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import shlex
import sys
from pathlib import Path


def add_parsers(sub) -> None:
    from models.recipes.registry import BASELINES, DATASETS, MODELS
    from models.recipes.stream_eval.names import ALL_SYSTEMS, DATASETS as STREAM_DATASETS
    p = sub.add_parser("train", help="train a model on a benchmark dataset and save a checkpoint")
    p.add_argument("--model", required=True, choices=sorted(MODELS))
    p.add_argument("--dataset", required=True, choices=DATASETS)
    _common(p)
    p.add_argument("--out", type=Path, default=Path(os.environ.get("GNNREC_CHECKPOINTS", "checkpoints")),
                   help="checkpoint directory (env GNNREC_CHECKPOINTS)")
    p.set_defaults(handler=run_train)

    p = sub.add_parser("eval", help="evaluate a model or baseline (or --stream: a prequential replay); "
                                    "prints one JSON object with --json")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--model", choices=sorted(MODELS))
    who.add_argument("--baseline", choices=sorted(BASELINES))
    who.add_argument("--stream", action="store_true",
                     help="prequential replay of a timestamped dataset (recommend, score, then learn "
                          "each event); datasets: " + ", ".join(STREAM_DATASETS))
    # Offline and stream datasets are different name sets; run_eval checks the one that applies.
    p.add_argument("--dataset", metavar="NAME",
                   help="offline: " + ", ".join(DATASETS) + "; --stream: " + ", ".join(STREAM_DATASETS)
                        + " (or --stream --file PATH)")
    p.add_argument("--checkpoint", type=Path, default=None, help="evaluate this checkpoint (default: train first)")
    _common(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--record", type=Path, default=None,
                   help="also save the report with this command line (e.g. docs/results) for RESULTS.md")
    _stream_options(p, ALL_SYSTEMS)
    p.set_defaults(handler=run_eval, eval_parser=p)

    p = sub.add_parser("results", help="regenerate docs/RESULTS.md from saved reports")
    p.add_argument("--reports", type=Path, default=Path("docs/results"))
    p.add_argument("--out", type=Path, default=Path("docs/RESULTS.md"))
    p.set_defaults(handler=run_results)


def _stream_options(p, systems: tuple[str, ...]) -> None:
    g = p.add_argument_group("--stream options")
    g.add_argument("--file", type=Path, default=None,
                   help="replay your own file instead of a --dataset (formats: yoochoose, diginetica, movielens, "
                        "ciao, lastfm; see --format)")
    g.add_argument("--format", default=os.environ.get("GNNREC_FORMAT"),
                   help="format of --file (env GNNREC_FORMAT; default: detected from the file)")
    g.add_argument("--time-step-ms", type=int, default=_env_int("GNNREC_TIME_STEP_MS"),
                   help="--file whose time column holds coarse steps (1, 2, ...): event time of step k is "
                        "k × this many ms (env GNNREC_TIME_STEP_MS); refused for files of real times")
    g.add_argument("--limit", type=int, default=_env_int("GNNREC_LIMIT"),
                   help="replay only the first N events in time order (env GNNREC_LIMIT; default: all)")
    g.add_argument("--systems", default=os.environ.get("GNNREC_SYSTEMS"),
                   help=f"comma-separated, from: {', '.join(systems)} (env GNNREC_SYSTEMS; default: "
                        "the baselines that apply to the dataset)")
    g.add_argument("--warmup", type=float, default=float(os.environ.get("GNNREC_WARMUP", 0.5)),
                   help="share of the events learned but not scored; static trains on it (env GNNREC_WARMUP)")
    g.add_argument("--learn-every", type=int, default=int(os.environ.get("GNNREC_LEARN_EVERY", 1)),
                   help="micro-batch size of learn calls (env GNNREC_LEARN_EVERY; 1 = exact prequential)")
    g.add_argument("--k", type=int, default=int(os.environ.get("GNNREC_K", 20)), help="list length scored (env GNNREC_K)")
    g.add_argument("--half-life-hours", type=float, default=_env_float("GNNREC_HALF_LIFE_HOURS"),
                   help="edge and popularity half-life of every decaying system, in event-time hours "
                        "(env GNNREC_HALF_LIFE_HOURS; default 168, the workers' default)")
    g.add_argument("--refresh-every-ms", type=int, default=_env_int("GNNREC_REFRESH_EVERY_MS"),
                   help="GNN systems: event-time ms between embedding refreshes (env GNNREC_REFRESH_EVERY_MS; "
                        "default: the live engine's)")
    g.add_argument("--retrain-every-ms", type=int, default=_env_int("GNNREC_RETRAIN_EVERY_MS"),
                   help="GNN systems: event-time ms between retrainings, 0 = never (env GNNREC_RETRAIN_EVERY_MS; "
                        "default: the live engine's)")




def _env_float(name: str) -> float | None:
    value = os.environ.get(name)
    return float(value) if value else None


def _positive(value: float, flag: str) -> float:
    if not value > 0:
        raise ValueError(f"{flag} must be > 0, got {value}")
    return value


def _budget(args, module) -> dict:
    """``budget_seconds=`` for the model modules that take one; an error for the others."""
    if args.max_train_seconds is None:
        return {}
    if "budget_seconds" not in inspect.signature(module.train).parameters:
        raise SystemExit(f"--max-train-seconds: model {args.model!r} has no training budget; "
                         "use --epochs to shorten its run")
    return {"budget_seconds": args.max_train_seconds}


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    return None if raw in (None, "") else int(raw)


def _offline_seed(args) -> int:
    return 2020 if args.seed is None else args.seed


def _common(p) -> None:
    p.add_argument("--device", default=os.environ.get("GNNREC_DEVICE", "cpu"), choices=("cpu", "cuda"),
                   help="env GNNREC_DEVICE")
    p.add_argument("--epochs", type=int, default=None, help="default: the model's full schedule")
    p.add_argument("--seed", type=int, default=_env_int("GNNREC_SEED"),
                   help="env GNNREC_SEED; default 2020 for offline training and evaluation, and for "
                        "--stream the live trainer's own default (0)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--max-train-seconds", type=float, default=_env_float("GNNREC_MAX_TRAIN_SECONDS"),
                   help="stop training after the epoch that reaches this budget; the report says how many "
                        "epochs ran (lightgcn, ngcf, srgnn; env GNNREC_MAX_TRAIN_SECONDS)")


def _command_line() -> str:
    return "gnnrec " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _log_progress() -> None:
    """Show the per-epoch lines of ``models.train`` on stderr (a long run's learning curve)."""
    log = logging.getLogger("models.train")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def run_train(args) -> int:
    _log_progress()
    from models.recipes.registry import check_dataset, model_module
    module = model_module(args.model)
    check_dataset(module, args.model, args.dataset)
    path, report = module.train(args.dataset, epochs=args.epochs, device=args.device, out=args.out,
                                seed=_offline_seed(args), progress=not args.no_progress, **_budget(args, module))
    print(json.dumps({"checkpoint": str(path), **report.to_dict()}))
    return 0


def run_eval(args) -> int:
    from models.recipes.registry import DATASETS, baseline_module, check_dataset, model_module
    if args.stream:
        return run_stream_eval(args)
    if not (args.model or args.baseline):
        args.eval_parser.error("one of --model, --baseline or --stream is required")
    if args.file is not None:
        args.eval_parser.error("--file replays your own file with --stream; offline models take a --dataset")
    if args.dataset is None:
        args.eval_parser.error(f"--dataset is required: one of {', '.join(DATASETS)}")
    if args.dataset not in DATASETS:
        args.eval_parser.error(f"--dataset {args.dataset!r}: choose one of {', '.join(DATASETS)} "
                               "(the stream datasets need --stream)")
    _log_progress()
    if args.baseline:
        module = baseline_module(args.baseline)
        check_dataset(module, args.baseline, args.dataset)
        report = module.evaluate(args.dataset, seed=_offline_seed(args))
    else:
        module = model_module(args.model)
        check_dataset(module, args.model, args.dataset)
        report = module.evaluate(args.dataset, checkpoint=args.checkpoint, device=args.device,
                                 epochs=args.epochs, seed=_offline_seed(args), progress=not args.no_progress,
                                 **_budget(args, module))
    if args.record is not None:
        report.save(args.record, _command_line())
    print(report.to_json() if args.json else json.dumps(report.to_dict(), indent=2))
    return 0


def run_stream_eval(args) -> int:
    from models.recipes.stream_eval.gnn_systems import GNNUnavailableError
    from models.recipes.stream_eval.names import DATASETS as STREAM_DATASETS
    from models.recipes.stream_eval.prequential import PrequentialSettings
    from models.recipes.stream_eval.run import evaluate_stream
    from models.recipes.stream_eval.systems import BaselineSettings
    if (args.dataset is None) == (args.file is None):
        args.eval_parser.error(f"--stream needs one of --dataset ({', '.join(STREAM_DATASETS)}) or --file PATH")
    if args.dataset is not None and args.dataset not in STREAM_DATASETS:
        args.eval_parser.error(f"--stream --dataset {args.dataset!r}: choose one of {', '.join(STREAM_DATASETS)}")
    if args.record is not None:
        # docs/results holds offline EvalReports that `gnnrec results` renders; a stream report is another shape.
        args.eval_parser.error("--record saves offline reports only; redirect the --stream JSON instead")
    systems = [n.strip() for n in args.systems.split(",") if n.strip()] if args.systems else None
    try:
        settings = PrequentialSettings(k=args.k, warmup_fraction=args.warmup, learn_every=args.learn_every)
        overrides = {name: value for name, value in (("refresh_every_ms", args.refresh_every_ms),
                                                     ("retrain_every_ms", args.retrain_every_ms)) if value is not None}
        baseline = BaselineSettings() if args.half_life_hours is None else BaselineSettings(
            half_life_ms=_positive(args.half_life_hours, "--half-life-hours") * 3_600_000)
        source = args.dataset
        if args.file is not None:
            from models.recipes.stream_eval.datasets import load_file
            from stream.formats import FormatError
            try:
                source = load_file(args.file, args.format, time_step_ms=args.time_step_ms)
            except (FormatError, FileNotFoundError) as exc:
                args.eval_parser.error(str(exc))
        report = evaluate_stream(source, systems=systems, limit=args.limit, settings=settings,
                                 baseline=baseline, gnn_overrides=overrides, train_seed=getattr(args, "seed", None))
    except (ValueError, GNNUnavailableError) as exc:
        args.eval_parser.error(str(exc))
    report["command"] = _command_line()
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0


def run_results(args) -> int:
    from models.recipes.results import write_results
    write_results(args.reports, args.out)
    print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m workers.cli.models train|eval|results ...``: the same commands as ``gnnrec``,
    importing only ``models`` (for machines that have torch but not the streaming stack)."""
    parser = argparse.ArgumentParser(prog="gnnrec")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
