"""Prequential (test-then-train) online quality of next-item recommendations.

The question, per recommender: *was the item the user clicked next in the last recommendation
sent to that session?* :class:`OnlineQuality` keeps the last next-item list sent to each
session (a bounded LRU: sessions end without telling us), and when the session's next
interaction arrives it scores that list against the clicked item before anything else sees
the event — so every recommendation is judged on data it could not have used.

HR@k = hits / scored and MRR@k = Σ 1/rank / scored, where a miss contributes 0 to both.
Counted per recommender label (``gnn``, ``transitions``), so the GNN and the baselines it
falls back to are compared on the traffic each actually served. Pure: no I/O, no clock.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class QualityStats:
    """Running totals of one recommender."""

    scored: int = 0
    hits: int = 0
    reciprocal_rank_sum: float = 0.0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.scored if self.scored else 0.0

    @property
    def mrr(self) -> float:
        return self.reciprocal_rank_sum / self.scored if self.scored else 0.0


@dataclass(frozen=True)
class Outcome:
    """How one remembered recommendation fared: ``rank`` is 1-based, None on a miss."""

    recommender: str
    rank: int | None

    @property
    def reciprocal_rank(self) -> float:
        return 0.0 if self.rank is None else 1.0 / self.rank


class OnlineQuality:
    """Last next-item list per session (LRU of ``max_sessions``) and HR/MRR@``k`` per recommender."""

    def __init__(self, k: int = 20, max_sessions: int = 100_000) -> None:
        if k < 1 or max_sessions < 1:
            raise ValueError(f"k and max_sessions must be >= 1, got k={k}, max_sessions={max_sessions}")
        self.k = k
        self.max_sessions = max_sessions
        self._last: OrderedDict[str, tuple[str, dict[str, int]]] = OrderedDict()
        self.stats: dict[str, QualityStats] = {}

    def __len__(self) -> int:
        return len(self._last)

    def observe(self, session_id: str, item_id: str) -> Outcome | None:
        """Score the session's last recommendation against the clicked ``item_id``.

        Each recommendation is scored once (it is forgotten here); None if the session had none.
        """
        entry = self._last.pop(session_id, None)
        if entry is None:
            return None
        recommender, ranks = entry
        outcome = Outcome(recommender, ranks.get(item_id))
        stats = self.stats.setdefault(recommender, QualityStats())
        stats.scored += 1
        if outcome.rank is not None:
            stats.hits += 1
            stats.reciprocal_rank_sum += outcome.reciprocal_rank
        return outcome

    def record(self, session_id: str, recommender: str, items: Sequence[str]) -> None:
        """Remember the list just sent to the session (its first ``k`` items count)."""
        ranks: dict[str, int] = {}
        for rank, item in enumerate(items[:self.k], start=1):
            ranks.setdefault(item, rank)  # a duplicate keeps its best rank
        self._last[session_id] = (recommender, ranks)
        self._last.move_to_end(session_id)
        while len(self._last) > self.max_sessions:
            self._last.popitem(last=False)
