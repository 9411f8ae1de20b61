"""`gnnrec train`, `gnnrec eval` and `gnnrec results`: the offline model harness on the CLI."""
from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path


def add_parsers(sub) -> None:
    from models.registry import BASELINES, DATASETS, MODELS
    p = sub.add_parser("train", help="train a model on a benchmark dataset and save a checkpoint")
    p.add_argument("--model", required=True, choices=sorted(MODELS))
    p.add_argument("--dataset", required=True, choices=DATASETS)
    _common(p)
    p.add_argument("--out", type=Path, default=Path(os.environ.get("GNNREC_CHECKPOINTS", "checkpoints")),
                   help="checkpoint directory (env GNNREC_CHECKPOINTS)")
    p.set_defaults(handler=run_train)

    p = sub.add_parser("eval", help="evaluate a model or baseline; prints one JSON object with --json")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--model", choices=sorted(MODELS))
    who.add_argument("--baseline", choices=sorted(BASELINES))
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--checkpoint", type=Path, default=None, help="evaluate this checkpoint (default: train first)")
    _common(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--record", type=Path, default=None,
                   help="also save the report with this command line (e.g. docs/results) for RESULTS.md")
    p.set_defaults(handler=run_eval)

    p = sub.add_parser("results", help="regenerate docs/RESULTS.md from saved reports")
    p.add_argument("--reports", type=Path, default=Path("docs/results"))
    p.add_argument("--out", type=Path, default=Path("docs/RESULTS.md"))
    p.set_defaults(handler=run_results)


def _common(p) -> None:
    p.add_argument("--device", default=os.environ.get("GNNREC_DEVICE", "cpu"), choices=("cpu", "cuda"),
                   help="env GNNREC_DEVICE")
    p.add_argument("--epochs", type=int, default=None, help="default: the model's full schedule")
    p.add_argument("--seed", type=int, default=int(os.environ.get("GNNREC_SEED", 2020)))
    p.add_argument("--no-progress", action="store_true")


def _command_line() -> str:
    return "gnnrec " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def run_train(args) -> int:
    from models.registry import check_dataset, model_module
    module = model_module(args.model)
    check_dataset(module, args.model, args.dataset)
    path, report = module.train(args.dataset, epochs=args.epochs, device=args.device, out=args.out,
                                seed=args.seed, progress=not args.no_progress)
    print(json.dumps({"checkpoint": str(path), **report.to_dict()}))
    return 0


def run_eval(args) -> int:
    from models.registry import baseline_module, check_dataset, model_module
    if args.baseline:
        module = baseline_module(args.baseline)
        check_dataset(module, args.baseline, args.dataset)
        report = module.evaluate(args.dataset, seed=args.seed)
    else:
        module = model_module(args.model)
        check_dataset(module, args.model, args.dataset)
        report = module.evaluate(args.dataset, checkpoint=args.checkpoint, device=args.device,
                                 epochs=args.epochs, seed=args.seed, progress=not args.no_progress)
    if args.record is not None:
        report.save(args.record, _command_line())
    print(report.to_json() if args.json else json.dumps(report.to_dict(), indent=2))
    return 0


def run_results(args) -> int:
    from models.results import write_results
    write_results(args.reports, args.out)
    print(f"wrote {args.out}")
    return 0
