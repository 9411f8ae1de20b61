"""The trending list: the most popular items by decayed popularity, kept exact per event.

Popularity decays exponentially in event time, so the order of two items does not change as
time passes: item i's decayed weight at ``now`` is ``w_i · 2^((t_i - now) / half_life)``, whose
logarithm ``log2(w_i) + t_i / half_life - now / half_life`` differs from every other item's by a
term in which ``now`` cancels. ``key_i = log2(w_i) + t_i / half_life`` ranks the catalogue at any
``now`` past the items' updates, and an interaction only raises its item's key. So the top of
the catalogue is maintained with a few heap operations per event instead of a pass over every
item: a member whose key rises stays; a non-member that rises above the worst member takes
its place.

The members are the top ``capacity`` by (key descending, id ascending), the store's tie rule.
A read decays them exactly as the store decays (:func:`graph_store.base.top_decayed`), so the
list equals ``store.item_popularity(now, k)`` for ``k`` up to ``capacity`` minus a margin kept
for rounding: keys only reorder items whose weights agree to ~1e-15. It is a pure function of
the events applied, never of when it is read, so an answer that uses it depends only on the
stream up to its event. Reads at one ``now`` with no update in between share one list.
"""
from __future__ import annotations

import heapq
import math
from collections.abc import Iterable

from graph_store import Neighbour
from graph_store.base import top_decayed


class _Desc(str):
    """An id that sorts in reverse, so that a min-heap of ``(key, _Desc(id))`` pops the worst
    member first: the smallest key and, among equal keys, the largest id."""

    __slots__ = ()

    def __lt__(self, other: str) -> bool:  # type: ignore[override]
        return str.__gt__(self, other)


class TrendingTop:
    """The ``capacity`` items of largest decayed popularity, from ``(item, weight, t_ref)`` updates."""

    def __init__(self, half_life_ms: float, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.half_life_ms = half_life_ms
        self.capacity = capacity
        self._members: dict[str, tuple[float, tuple[float, int]]] = {}  # item -> (key, (weight, t_ref))
        self._heap: list[tuple[float, _Desc]] = []  # (key, id) per member; stale entries skipped
        self._version = 0
        self._cached: tuple[int, int, int, list[Neighbour]] | None = None  # (version, now, k, list)

    def _key(self, weight: float, t_ref: int) -> float:
        if weight <= 0.0:
            return -math.inf
        if self.half_life_ms == math.inf:
            return math.log2(weight)
        return math.log2(weight) + t_ref / self.half_life_ms

    def _worst(self) -> tuple[float, _Desc]:
        heap, members = self._heap, self._members
        while True:  # drop entries of evicted members or of keys that have since risen
            key, item = heap[0]
            current = members.get(item)
            if current is not None and current[0] == key:
                return key, item
            heapq.heappop(heap)

    def update(self, item: str, weight: float, t_ref: int) -> None:
        """Item ``item`` now has stored popularity ``weight`` as of ``t_ref`` (only ever rises)."""
        key = self._key(weight, t_ref)
        members = self._members
        if item not in members and len(members) >= self.capacity:
            worst_key, worst = self._worst()
            if key < worst_key or key == worst_key and str.__gt__(item, worst):
                return
            heapq.heappop(self._heap)
            del members[worst]
        members[item] = (key, (weight, t_ref))
        heapq.heappush(self._heap, (key, _Desc(item)))
        self._version += 1
        if len(self._heap) > 4 * self.capacity:  # bound the stale entries
            self._heap = [(k, _Desc(i)) for i, (k, _) in members.items()]
            heapq.heapify(self._heap)

    def update_many(self, rows: Iterable[tuple[str, float, int]]) -> None:
        for item, weight, t_ref in rows:
            self.update(item, weight, t_ref)

    def top(self, now_ms: int, k: int) -> list[Neighbour]:
        """The ``k`` most popular items at ``now_ms``, weights decayed as the store decays them."""
        cached = self._cached
        if cached is not None and cached[:3] == (self._version, now_ms, k):
            return cached[3]
        rows = ((item, state) for item, (_, state) in self._members.items())
        out = top_decayed(rows, now_ms, self.half_life_ms, k)
        self._cached = (self._version, now_ms, k, out)
        return out

    def __len__(self) -> int:
        return len(self._members)
