"""The no-social ablation of the social model on Delicious: same data, model and budget,
without follow edges or friend attention (reported as model ``social-nofriends``).

    python -m bench.social_nofriends [--device cpu|cuda] [--epochs E] [--record docs/results]
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from models.recipes.social import evaluate_without_friends


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--epochs", type=int, default=None, help="default: the full schedule (early stopping)")
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--record", type=Path, default=None, help="also save the report here (e.g. docs/results)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # per-epoch lines on stderr
    report = evaluate_without_friends("delicious", epochs=args.epochs, seed=args.seed, progress=False,
                                      device=args.device)
    if args.record is not None:
        report.save(args.record, "python " + " ".join(shlex.quote(a) for a in sys.argv))
    print(report.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
