"""One prequential run end to end: dataset name + system names → the JSON report."""
from __future__ import annotations

import time
from dataclasses import replace
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from models.recipes.stream_eval.datasets import StreamDataset, load_dataset
from models.recipes.stream_eval.gnn_systems import build_gnn_system
from models.recipes.stream_eval.names import ALL_SYSTEMS, GNN_SYSTEMS
from models.recipes.stream_eval.prequential import PrequentialSettings, System, run_prequential
from models.recipes.stream_eval.systems import BaselineSettings, build_baseline


def default_systems(dataset: StreamDataset) -> list[str]:
    """The issue's comparison: the three GNN systems and the baselines that apply."""
    names = ["live", "static", "live_no_decay", "transitions", "popularity"]
    return names + ["followee"] if dataset.has_follows else names


def gnn_schedule(events: Sequence[Any], warmup_fraction: float) -> dict[str, int]:
    """Default refresh/retrain periods of the GNN systems, in event time, from the scored span:
    ~250 refreshes and 5 retrainings over it (the trainer worker retrains periodically too, so
    ``live`` without retraining would not be this system). Measured on sim-drift 30k: retraining
    is what puts ``live`` ahead of ``static``; refreshing alone did not."""
    if not events:
        return {"refresh_every_ms": 0, "retrain_every_ms": 0}
    start = events[min(int(len(events) * warmup_fraction), len(events) - 1)].ts
    span = max(1, events[-1].ts - start)
    return {"refresh_every_ms": max(1, span // 250), "retrain_every_ms": max(1, span // 5)}


def build_systems(names: Sequence[str], dataset: StreamDataset, baseline: BaselineSettings,
                  gnn_overrides: Mapping[str, int] | None = None, *, train_seed: int | None = None) -> list[System]:
    unknown = [n for n in names if n not in ALL_SYSTEMS]
    if unknown:
        raise ValueError(f"unknown system(s) {unknown}; choose from {', '.join(ALL_SYSTEMS)}")
    if "followee" in names and not dataset.has_follows:
        raise ValueError(f"'followee' needs follow events; {dataset.name} has none")
    return [build_gnn_system(n, dataset.task, half_life_ms=baseline.half_life_ms, overrides=gnn_overrides,
                             train_seed=train_seed)
            if n in GNN_SYSTEMS
            else build_baseline(n, baseline) for n in names]


def evaluate_stream(name: str | StreamDataset, *, systems: Sequence[str] | None = None, limit: int | None = None,
                    data_dir: Path | None = None, settings: PrequentialSettings = PrequentialSettings(),
                    baseline: BaselineSettings = BaselineSettings(),
                    gnn_overrides: Mapping[str, int] | None = None, train_seed: int | None = None,
                    timer: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Load ``name`` (or take a loaded dataset, e.g. a user's file from
    :func:`~models.recipes.stream_eval.datasets.load_file`), replay it through ``systems``
    (default :func:`default_systems`), report.

    ``gnn_overrides`` replace ``LiveSettings`` fields of the GNN systems (e.g.
    ``{"retrain_every_ms": 86_400_000}``). The report: ``dataset``, ``task``, ``events``, ``warmup_events``, ``scored``, ``k``,
    ``learn_every`` and ``systems`` (per system ``hr@k``, ``mrr@k``, ``scored``, ``seconds``).
    ``train_seed`` seeds the GNN systems' training (default: ``LiveTrainConfig``'s), so a gap
    between systems can be told from the luck of one initialisation.
    """
    if isinstance(name, StreamDataset):
        dataset = name if limit is None else replace(name, events=name.events[:limit])
    else:
        dataset = load_dataset(name, data_dir=data_dir, limit=limit)
    names = list(systems) if systems else default_systems(dataset)
    schedule = {**gnn_schedule(dataset.events, settings.warmup_fraction), **dict(gnn_overrides or {})}
    built = build_systems(names, dataset, baseline, schedule, train_seed=train_seed)
    result = run_prequential(dataset.events, built, settings, timer=timer)
    systems_out = result.systems_dict()
    for system in built:
        stats = getattr(system, "stats", None)
        if callable(stats):  # the GNN systems explain their scores (fallbacks, refreshes)
            systems_out[system.name]["engine"] = stats()
    return {"dataset": dataset.name, "task": dataset.task, "session_key": dataset.session_key,
            "events": result.events, "warmup_events": result.warmup_events, "scored": result.scored,
            "k": settings.k, "learn_every": settings.learn_every, "half_life_ms": baseline.half_life_ms,
            **({"gnn_schedule": schedule} if any(n in GNN_SYSTEMS for n in names) else {}),
            "systems": systems_out}
