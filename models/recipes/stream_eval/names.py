"""The dataset and system names of the replay, importable without the readers or torch
(the CLI lists them in ``--help``)."""
from __future__ import annotations

DATASETS: tuple[str, ...] = ("yoochoose-100k", "diginetica-sample", "movielens-small", "ciao", "sim-drift")
BASELINES: tuple[str, ...] = ("transitions", "transitions_no_decay", "followee", "popularity",
                               "popularity_no_decay")
GNN_SYSTEMS: tuple[str, ...] = ("live", "static", "live_no_decay")
ALL_SYSTEMS: tuple[str, ...] = (*BASELINES, *GNN_SYSTEMS)
