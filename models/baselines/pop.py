"""``pop``: recommend the most clicked training items to everyone (the floor every model must beat).

Session datasets: popularity = training clicks per item; ties by lower item id. Gowalla (LightGCN
protocol): popularity = training users per item, each user's training items excluded by
:func:`models.data.gowalla.evaluate_full_ranking`, reporting ``recall@20``/``ndcg@20``/``hr@20``.
"""
from __future__ import annotations

import time

import numpy as np

from models.baselines.common import (SESSION_DATASETS, check_dataset, evaluate_scorer, item_popularity,
                                     load_session_split, tie_breaker)
from models.report import EvalReport

NAME = "pop"
DATASETS = (*SESSION_DATASETS, "gowalla")


def evaluate(dataset: str, *, seed: int = 0) -> EvalReport:
    check_dataset(NAME, dataset, DATASETS)
    if dataset == "gowalla":
        return _evaluate_gowalla(seed)
    split = load_session_split(dataset)
    start = time.perf_counter()
    scores = item_popularity(split) + tie_breaker(item_popularity(split))
    fit_seconds = time.perf_counter() - start
    return evaluate_scorer(NAME, split, lambda prefixes: np.repeat(scores[None, :], len(prefixes), axis=0),
                           fit_seconds=fit_seconds, seed=seed)


def _evaluate_gowalla(seed: int) -> EvalReport:
    from models.data.gowalla import evaluate_full_ranking, load_gowalla

    split = load_gowalla()
    start = time.perf_counter()
    popularity = split.item_popularity()
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    metrics = evaluate_full_ranking(split, lambda users: popularity.expand(users.numel(), -1))
    return EvalReport(model=NAME, dataset="gowalla", metrics=metrics, train_seconds=fit_seconds, epochs=0, params=0,
                      device="cpu", kind="baseline",
                      extra={"seed": seed, "metric_scale": "fraction", "eval_seconds": time.perf_counter() - start,
                             "protocol": "LightGCN full ranking, training items excluded"})
