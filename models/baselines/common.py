"""Shared plumbing for the session-based baselines: dataset dispatch, sparse session matrices,
tie-free scoring and the evaluation loop that turns a scorer into an :class:`EvalReport`.

Every baseline scores all items ``0..n_items`` (column 0 is padding, always ``-inf``) for a
batch of test prefixes, and is evaluated on exactly the protocol's test examples with the same
metrics as the GNNs (``hr@20``, ``mrr@20``, ``ndcg@20``, fractions).

**Ties.** Count-based scores tie a lot (most items score 0). :mod:`models.metrics` breaks ties
by item index, which would order the items a method cannot rank by their arbitrary ids. So every
baseline adds :func:`tie_breaker`: a per-item offset smaller than any score gap, ordered by
training popularity (then by id). Items a method cannot rank are thus back-filled by popularity,
the usual practice, and no two items ever tie.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from models.data.sessions import SessionSplit
from models.report import EvalReport
from models.training import TopKAccumulator

SESSION_DATASETS = ("diginetica", "yoochoose64", "delicious")
K = 20

Scorer = Callable[[Sequence[Sequence[int]]], np.ndarray]  # prefixes [B] -> float64 scores [B, n_items + 1]


def load_session_split(dataset: str) -> SessionSplit:
    """The test split of a session dataset (imports lazily: only the named loader is loaded)."""
    if dataset == "diginetica":
        from models.data.diginetica import load_diginetica
        return load_diginetica()
    if dataset == "yoochoose64":
        from models.data.yoochoose import load_yoochoose64
        return load_yoochoose64()
    if dataset == "delicious":
        from models.data.delicious import load_delicious
        return load_delicious()
    raise ValueError(f"no session loader for dataset {dataset!r}; choose one of {', '.join(SESSION_DATASETS)}")


def item_popularity(split: SessionSplit) -> np.ndarray:
    """Training clicks per item, ``[n_items + 1]`` (index 0, padding, is 0)."""
    flat = np.fromiter((i for s in split.train_sessions for i in s), dtype=np.int64)
    return np.bincount(flat, minlength=split.n_items + 1).astype(np.float64)


def tie_breaker(popularity: np.ndarray, scale: float = 1e-6) -> np.ndarray:
    """Distinct offsets in ``[0, scale)``: more popular items (then lower ids) get larger ones.

    Index 0 (padding) gets ``-inf``. Count scores (pop, transitions) differ by at least 1, so
    nothing is reordered there; kNN similarity sums closer than ``scale`` may swap, which moves
    no metric measurably.
    """
    n = popularity.size
    order = np.lexsort((-np.arange(n), popularity))  # ascending popularity, higher id first
    offsets = np.empty(n, dtype=np.float64)
    offsets[order] = np.arange(n, dtype=np.float64) * (scale / n)
    offsets[0] = -np.inf
    return offsets


def session_item_matrix(sessions: Sequence[Sequence[int]], n_items: int,
                        weights: Sequence[Sequence[float]] | None = None) -> sp.csr_matrix:
    """``[len(sessions), n_items + 1]`` CSR matrix; entry (s, i) = 1 if item i occurs in session s
    (or the given weight of its **last** occurrence)."""
    rows = np.repeat(np.arange(len(sessions)), [len(s) for s in sessions])
    cols = np.fromiter((i for s in sessions for i in s), dtype=np.int64, count=rows.size)
    if weights is None:
        vals = np.ones(rows.size)
    else:
        vals = np.fromiter((w for ws in weights for w in ws), dtype=np.float64, count=rows.size)
    # keep the last occurrence of each (row, col): sort stably by key, take each run's last entry
    key = rows * (n_items + 1) + cols
    order = np.argsort(key, kind="stable")
    key, vals = key[order], vals[order]
    last = np.r_[key[1:] != key[:-1], True]
    return sp.csr_matrix((vals[last], (key[last] // (n_items + 1), key[last] % (n_items + 1))),
                         shape=(len(sessions), n_items + 1))


def evaluate_scorer(name: str, split: SessionSplit, scorer: Scorer, *, fit_seconds: float, seed: int,
                    batch_size: int = 256, extra: dict | None = None) -> EvalReport:
    """Score every test prefix with ``scorer`` and return the baseline's report."""
    acc = TopKAccumulator(K)
    start = time.perf_counter()
    for lo in range(0, len(split.test_targets), batch_size):
        prefixes = split.test_prefixes[lo:lo + batch_size]
        scores = scorer(prefixes)
        if scores.shape != (len(prefixes), split.n_items + 1):
            raise ValueError(f"{name} scorer returned {scores.shape}, expected ({len(prefixes)}, {split.n_items + 1})")
        acc.update(torch.from_numpy(scores), torch.as_tensor(split.test_targets[lo:lo + batch_size]))
    return EvalReport(model=name, dataset=split.name, metrics=acc.result(), train_seconds=fit_seconds, epochs=0,
                      params=0, device="cpu", kind="baseline",
                      extra={"seed": seed, "metric_scale": "fraction", "eval_seconds": time.perf_counter() - start,
                             "test_examples": len(split.test_targets)} | (extra or {}))


def check_dataset(name: str, dataset: str, supported: Sequence[str]) -> None:
    if dataset not in supported:
        raise ValueError(f"baseline {name!r} runs on {', '.join(supported)}, not {dataset!r}")
