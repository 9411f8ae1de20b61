"""``vsknn``: V-SKNN (Ludewig & Jannach, UMUAI 2018) — session kNN in which the current session's
item at position ``p`` of ``L`` weighs ``p / L`` (linear decay towards older clicks) when
computing the cosine similarity to neighbour sessions.

Everything else (recent sampling, k, scoring, popularity back-fill) is :mod:`models.baselines.sknn`.
session-rec's VMContextKNN can also weight the *neighbour's* items by their distance to the last
shared item; that later refinement is not used here.
"""
from __future__ import annotations

from models.baselines.common import SESSION_DATASETS, check_dataset
from models.baselines.sknn import evaluate_knn
from models.report import EvalReport

NAME = "vsknn"
DATASETS = SESSION_DATASETS


def evaluate(dataset: str, *, seed: int = 0) -> EvalReport:
    check_dataset(NAME, dataset, DATASETS)
    return evaluate_knn(NAME, dataset, seed=seed, weighting="linear")
