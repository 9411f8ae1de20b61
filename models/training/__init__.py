"""Model-agnostic training utilities: seeding, thread limits, mini-batch index streams,
progress bars, wall-clock timing and parameter counts.

These live at the edge of the models (experiment scripts call them); model code itself never
reads the clock or global settings.
"""
from __future__ import annotations

import os
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from models import metrics

T = TypeVar("T")


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch; returns a fresh NumPy generator for data order."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def limit_threads(num_threads: int | None) -> int:
    """Cap torch's intra-op threads (``None``: ``$GNNREC_THREADS`` or leave as is); returns the cap."""
    if num_threads is None:
        env = os.environ.get("GNNREC_THREADS")
        if env is None:
            return torch.get_num_threads()
        num_threads = int(env)
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    torch.set_num_threads(num_threads)
    return num_threads


def minibatch_indices(n: int, batch_size: int, *, rng: np.random.Generator | None = None,
                      drop_last: bool = False) -> Iterator[np.ndarray]:
    """Yield index arrays covering ``range(n)`` in batches; shuffled when ``rng`` is given."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = rng.permutation(n) if rng is not None else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


def num_batches(n: int, batch_size: int, *, drop_last: bool = False) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


def progress(iterable: Iterable[T], *, enabled: bool, total: int | None = None, desc: str = "") -> Iterable[T]:
    """A tqdm bar on stderr when ``enabled`` (and the bar refreshes at most twice a second)."""
    if not enabled:
        return iterable
    return tqdm(iterable, total=total, desc=desc, mininterval=0.5, leave=False, dynamic_ncols=True)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass
class Stopwatch:
    """Accumulates wall-clock seconds per named phase (``with watch.time("epoch"): ...``)."""

    totals: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def time(self, phase: str) -> _Phase:
        return _Phase(self, phase)

    def add(self, phase: str, seconds: float) -> None:
        self.totals[phase] = self.totals.get(phase, 0.0) + seconds
        self.counts[phase] = self.counts.get(phase, 0) + 1

    def mean(self, phase: str) -> float:
        count = self.counts.get(phase, 0)
        return self.totals.get(phase, 0.0) / count if count else 0.0


class _Phase:
    def __init__(self, watch: Stopwatch, phase: str) -> None:
        self.watch, self.phase, self.start = watch, phase, 0.0

    def __enter__(self) -> _Phase:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.watch.add(self.phase, time.perf_counter() - self.start)


@dataclass
class RunningMean:
    """Mean of a stream of (value, weight) pairs, e.g. per-batch losses weighted by batch size."""

    total: float = 0.0
    weight: float = 0.0

    def update(self, value: float, weight: float = 1.0) -> None:
        self.total += value * weight
        self.weight += weight

    @property
    def value(self) -> float:
        return self.total / self.weight if self.weight else float("nan")


class TopKAccumulator:
    """Running means of single-target ranking metrics over batches of full score rows.

    Keys are ``hr@K``, ``mrr@K`` and ``ndcg@K``, as **fractions** in [0, 1] (SR-GNN's P@20 of
    50.73 % is 0.5073 here). Uses :mod:`models.metrics`, so ties are ranked exactly as there.
    """

    def __init__(self, k: int = 20) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.count = 0
        self._sums = {f"hr@{k}": 0.0, f"mrr@{k}": 0.0, f"ndcg@{k}": 0.0}

    def update(self, scores: torch.Tensor, targets: torch.Tensor) -> None:
        k = self.k
        self._sums[f"hr@{k}"] += float(metrics.hit_rate_at_k(scores, targets, k).sum())
        self._sums[f"mrr@{k}"] += float(metrics.mrr_at_k(scores, targets, k).sum())
        self._sums[f"ndcg@{k}"] += float(metrics.ndcg_at_k_single(scores, targets, k).sum())
        self.count += int(targets.numel())

    def result(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError("no queries were scored; check that the test set is not empty")
        return {name: total / self.count for name, total in self._sums.items()}
