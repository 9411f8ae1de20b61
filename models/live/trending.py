"""The trending list: the most popular items by decayed popularity, kept exact per event.

Popularity decays exponentially in event time, so the order of two items does not change as
time passes: item i's decayed weight at ``now`` is ``w_i · 2^((t_i - now) / half_life)``, whose
logarithm ``log2(w_i) + t_i / half_life - now / half_life`` differs from every other item's by a
term in which ``now`` cancels. ``key_i = log2(w_i) + t_i / half_life`` ranks the catalogue at any
``now`` past the items' updates, and an interaction only raises its item's key. So the top of
the catalogue is maintained with a handful of operations per event instead of a pass over
every item: a member whose key rises stays; a non-member that rises above the smallest member
key takes its place.

The ``capacity`` kept is twice what is read, so that the list read, decayed exactly as the
store decays (:func:`graph_store.base.top_decayed`), equals ``store.item_popularity(now, k)``:
rounding in the keys can only reorder items whose weights agree to ~1e-15, and those sit well
inside the kept set. It is a pure function of the events applied, never of when it is read,
so an answer that uses it depends only on the stream up to its event.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

from graph_store import Neighbour
from graph_store.base import top_decayed


class TrendingTop:
    """The ``capacity`` items of largest decayed popularity, from ``(item, weight, t_ref)`` updates."""

    def __init__(self, half_life_ms: float, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.half_life_ms = half_life_ms
        self.capacity = capacity
        self._members: dict[str, tuple[float, tuple[float, int]]] = {}  # item -> (key, (weight, t_ref))
        # The member that goes first, once full, as (-key, item): the smallest key and, among
        # equal keys, the largest id (the store ranks ties by id ascending).
        self._worst: tuple[float, str] | None = None

    def _key(self, weight: float, t_ref: int) -> float:
        if weight <= 0.0:
            return -math.inf
        if self.half_life_ms == math.inf:
            return math.log2(weight)
        return math.log2(weight) + t_ref / self.half_life_ms

    def update(self, item: str, weight: float, t_ref: int) -> None:
        """Item ``item`` now has stored popularity ``weight`` as of ``t_ref`` (only ever rises)."""
        key = self._key(weight, t_ref)
        members = self._members
        if item in members or len(members) < self.capacity:
            members[item] = (key, (weight, t_ref))
            if len(members) == self.capacity and (self._worst is None or self._worst[1] == item):
                self._worst = self._find_worst()
            return
        assert self._worst is not None  # full
        if (-key, item) >= self._worst:
            return
        del members[self._worst[1]]
        members[item] = (key, (weight, t_ref))
        self._worst = self._find_worst()

    def update_many(self, rows: Iterable[tuple[str, float, int]]) -> None:
        for item, weight, t_ref in rows:
            self.update(item, weight, t_ref)

    def _find_worst(self) -> tuple[float, str]:
        return max((-key, item) for item, (key, _) in self._members.items())

    def top(self, now_ms: int, k: int) -> list[Neighbour]:
        """The ``k`` most popular items at ``now_ms``, weights decayed as the store decays them."""
        rows = ((item, state) for item, (_, state) in self._members.items())
        return top_decayed(rows, now_ms, self.half_life_ms, k)

    def __len__(self) -> int:
        return len(self._members)
