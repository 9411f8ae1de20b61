"""``sknn``: session-based k-nearest neighbours (Jannach & Ludewig, RecSys 2017; Ludewig &
Jannach, UMUAI 2018), vectorised with SciPy sparse matrices.

For a prefix ``s`` (as a set of items, vector ``w``):

1. candidates = training sessions sharing at least one item with ``s``; keep the
   ``sample_size`` most recent (training sessions are stored in time order, so the largest
   indices);
2. similarity ``sim(s, n) = w·b_n / (‖w‖ · √|n|)`` (cosine with the neighbour's binary vector);
3. keep the ``k`` most similar (ties: the more recent session);
4. ``score(i) = Σ_{n ∈ kNN(s), i ∈ n} sim(s, n)``, back-filled by popularity
   (:func:`models.baselines.common.tie_breaker`).

SKNN uses ``w = 1`` on every item of ``s``; V-SKNN (:mod:`models.baselines.vsknn`) weights the
item at position ``p`` of ``L`` by ``p / L``. Hyperparameters are fixed (``k = 100``,
``sample_size = 500``, values Ludewig & Jannach report as good on these datasets), never
tuned on the test set.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import numpy as np
import scipy.sparse as sp

from models.baselines.common import (SESSION_DATASETS, check_dataset, evaluate_scorer, item_popularity,
                                     load_session_split, session_item_matrix, tie_breaker)
from models.data.sessions import SessionSplit
from models.report import EvalReport

NAME = "sknn"
DATASETS = SESSION_DATASETS
Weighting = Literal["binary", "linear"]


def position_weights(prefix: Sequence[int], weighting: Weighting) -> list[float]:
    """Weight of each click: 1 (``binary``) or ``p / L`` for position p = 1..L (``linear``)."""
    n = len(prefix)
    return [1.0] * n if weighting == "binary" else [(p + 1) / n for p in range(n)]


def _keep_last_per_row(m: sp.csr_matrix, keep: int) -> sp.csr_matrix:
    """Per row, the ``keep`` entries with the largest column index (the most recent sessions)."""
    m.sort_indices()
    lengths = np.diff(m.indptr)
    from_end = np.repeat(m.indptr[1:], lengths) - np.arange(m.nnz)  # 1 for each row's last entry
    mask = from_end <= keep
    rows = np.repeat(np.arange(m.shape[0]), lengths)[mask]
    return sp.csr_matrix((m.data[mask], (rows, m.indices[mask])), shape=m.shape)


def _keep_topk_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Per row, the ``k`` largest entries (ties: larger column index first)."""
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    order = np.lexsort((-m.indices, -m.data, rows))
    rows_sorted = rows[order]
    starts = np.searchsorted(rows_sorted, rows_sorted, side="left")
    mask = np.arange(order.size) - starts < k
    chosen = order[mask]
    return sp.csr_matrix((m.data[chosen], (rows[chosen], m.indices[chosen])), shape=m.shape)


class SessionKNN:
    """Scores all items for a batch of prefixes; see the module docstring for the maths."""

    def __init__(self, split: SessionSplit, *, k: int = 100, sample_size: int = 500,
                 weighting: Weighting = "binary") -> None:
        if k < 1 or sample_size < k:
            raise ValueError(f"need 1 <= k <= sample_size, got k={k}, sample_size={sample_size}")
        if weighting not in ("binary", "linear"):
            raise ValueError(f"weighting must be 'binary' or 'linear', got {weighting!r}")
        self.k, self.sample_size, self.weighting, self.n_items = k, sample_size, weighting, split.n_items
        self.sessions = session_item_matrix(split.train_sessions, split.n_items)  # [S, N+1] binary
        self.sessions_t = self.sessions.T.tocsr()  # item -> sessions
        self.session_norm = np.sqrt(np.asarray(self.sessions.sum(axis=1)).ravel())
        self.offsets = tie_breaker(item_popularity(split))

    def neighbours(self, prefixes: Sequence[Sequence[int]]) -> sp.csr_matrix:
        """``[B, S]`` similarities to the k nearest sampled training sessions of each prefix."""
        weights = [position_weights(p, self.weighting) for p in prefixes]
        query = session_item_matrix(prefixes, self.n_items, weights)  # [B, N+1]
        overlap = _keep_last_per_row((query @ self.sessions_t).tocsr(), self.sample_size)  # w · b_n
        query_norm = np.sqrt(np.asarray(query.multiply(query).sum(axis=1)).ravel())
        rows = np.repeat(np.arange(overlap.shape[0]), np.diff(overlap.indptr))
        overlap.data = overlap.data / (query_norm[rows] * self.session_norm[overlap.indices])
        return _keep_topk_per_row(overlap, self.k)

    def __call__(self, prefixes: Sequence[Sequence[int]]) -> np.ndarray:
        return (self.neighbours(prefixes) @ self.sessions).toarray() + self.offsets


def evaluate_knn(name: str, dataset: str, *, seed: int, weighting: Weighting, k: int = 100,
                 sample_size: int = 500) -> EvalReport:
    split = load_session_split(dataset)
    start = time.perf_counter()
    scorer = SessionKNN(split, k=k, sample_size=sample_size, weighting=weighting)
    return evaluate_scorer(name, split, scorer, fit_seconds=time.perf_counter() - start, seed=seed,
                           extra={"hyperparameters": {"k": k, "sample_size": sample_size, "weighting": weighting,
                                                      "similarity": "cosine", "sampling": "recent"}})


def evaluate(dataset: str, *, seed: int = 0) -> EvalReport:
    check_dataset(NAME, dataset, DATASETS)
    return evaluate_knn(NAME, dataset, seed=seed, weighting="binary")
