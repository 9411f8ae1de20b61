"""A training run's time budget: how much of it is left, and a share of it for one phase.

The train worker gives each run ``--train-budget-s`` seconds; the trainer splits what is left
between its phases (LightGCN, SR-GNN, the social model; the refit on all data only when the
first fit left as much time as it took) and stops a phase's epochs once its share is spent,
after at least one epoch, so a run over budget still publishes a model, trained less.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Deadline:
    """Seconds until ``at`` on ``clock`` (``math.inf``: no budget)."""

    at: float = math.inf
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    @classmethod
    def after(cls, seconds: float | None, clock: Callable[[], float] = time.monotonic) -> Deadline:
        return cls(math.inf if seconds is None else clock() + seconds, clock)

    def left(self) -> float:
        return self.at - self.clock()

    def expired(self) -> bool:
        return self.left() <= 0

    def share(self, fraction: float) -> Deadline:
        """A deadline ``fraction`` of the time left from now (itself when unbounded)."""
        left = self.left()
        return self if math.isinf(left) else Deadline(self.clock() + max(0.0, left) * fraction, self.clock)

    def seconds(self) -> float | None:
        """What is left, for an API taking seconds (None when unbounded)."""
        left = self.left()
        return None if math.isinf(left) else max(0.0, left)
