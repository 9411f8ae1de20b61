"""The live system with the fitted new-node encoder vs the plain mean, side by side in one
prequential replay (same events, same schedule as `gnnrec eval --stream`).

    python -m bench.inductive_ab DATASET LIMIT     # e.g. yoochoose-100k 30000; prints one JSON object
"""
from __future__ import annotations

import json
import sys
import time

import torch

from models.live.engine import LiveSettings
from models.live.train import LiveTrainConfig
from models.recipes.stream_eval.datasets import load_dataset
from models.recipes.stream_eval.gnn_systems import build_gnn_system
from models.recipes.stream_eval.prequential import PrequentialSettings, run_prequential
from models.recipes.stream_eval.run import gnn_schedule
from models.recipes.stream_eval.systems import BaselineSettings


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    name, limit = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)
    dataset = load_dataset(name, limit=limit)
    settings = PrequentialSettings()
    schedule = gnn_schedule(dataset.events, settings.warmup_fraction)
    half_life = BaselineSettings().half_life_ms
    fitted = build_gnn_system("live", dataset.task, half_life_ms=half_life, overrides=schedule)
    mean = build_gnn_system("live", dataset.task, half_life_ms=half_life, overrides=schedule,
                            settings=LiveSettings(train=LiveTrainConfig(inductive_steps=0)))
    mean.name = "live_plain_mean"
    started = time.time()
    result = run_prequential(dataset.events, [fitted, mean], settings)
    systems = result.systems_dict()
    for system in (fitted, mean):
        systems[system.name]["engine"] = system.stats()
    print(json.dumps({"dataset": name, "limit": limit, "events": result.events, "scored": result.scored,
                      "schedule": schedule, "seconds": round(time.time() - started), "systems": systems}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
