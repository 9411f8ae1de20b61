"""``transitions``: first-order Markov baseline — score item j by how often j followed the
prefix's last item in training sessions (``count(last → j)``), back-filled by popularity.

This is the "S-POP/AR"-family floor for next-item prediction: if a GNN cannot beat it, the
graph part is not doing anything.
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from models.baselines.common import (SESSION_DATASETS, check_dataset, evaluate_scorer, item_popularity,
                                     load_session_split, tie_breaker)
from models.data.sessions import SessionSplit
from models.report import EvalReport

NAME = "transitions"
DATASETS = SESSION_DATASETS


def transition_counts(sessions: Sequence[Sequence[int]], n_items: int) -> sp.csr_matrix:
    """``[n_items + 1, n_items + 1]``: entry (a, b) = number of consecutive clicks a → b."""
    src = np.fromiter((a for s in sessions for a in s[:-1]), dtype=np.int64)
    dst = np.fromiter((b for s in sessions for b in s[1:]), dtype=np.int64, count=src.size)
    size = n_items + 1
    return sp.csr_matrix((np.ones(src.size), (src, dst)), shape=(size, size))  # duplicates summed


class TransitionScorer:
    def __init__(self, split: SessionSplit) -> None:
        self.counts = transition_counts(split.train_sessions, split.n_items)
        self.offsets = tie_breaker(item_popularity(split))

    def __call__(self, prefixes: Sequence[Sequence[int]]) -> np.ndarray:
        last = np.fromiter((p[-1] for p in prefixes), dtype=np.int64, count=len(prefixes))
        return self.counts[last].toarray() + self.offsets


def evaluate(dataset: str, *, seed: int = 0) -> EvalReport:
    check_dataset(NAME, dataset, DATASETS)
    split = load_session_split(dataset)
    start = time.perf_counter()
    scorer = TransitionScorer(split)
    return evaluate_scorer(NAME, split, scorer, fit_seconds=time.perf_counter() - start, seed=seed)
