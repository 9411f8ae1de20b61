"""The top of a node's out-edges, cached across reads until an edge of that node changes.

Every edge weight decays at the same rate, so the order of one node's out-edges does not change
as time passes: ``key = log2(w) + t_ref / half_life`` ranks them at any ``now`` at or past their
updates (see :mod:`models.live.trending`). The scorer reads the top ``k`` neighbours of the same
popular items for event after event while their rows grow to thousands of edges; decaying and
ranking a whole row each time was most of its cost. Here the top ``k + margin`` by key are kept
per row and only they are decayed per read, exactly as :func:`graph_store.base.top_decayed`
decays a whole row, so a read returns the same list. The margin covers rounding in the keys,
which only reorders edges whose weights agree to ~1e-15.

A row's entry is dropped when the store writes one of its edges (the ``touched`` set of a
commit). Reads before the row's latest update (``now`` earlier than some ``t_ref``: weights do
not grow backwards) and small rows read the row itself.
"""
from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping

from graph_store.base import top_decayed

_MARGIN = 8
_MAX_ROWS = 200_000  # entries kept at most; beyond that the cache starts afresh
# Which cached rows a written edge (edge type, src, dst) changes: its forward and reverse rows.
_ROWS_OF = {"ui": ("ui", "iu"), "ii": ("ii", "ii_rev"), "uu": ("uu", "uu_rev")}


class RankedRows:
    def __init__(self, half_life_ms: float) -> None:
        self.half_life_ms = half_life_ms
        self._rows: dict[tuple[str, str], tuple[int, list, int]] = {}  # (edge type, node) -> (size, top, max t)

    def invalidate(self, touched: Iterable[tuple[str, str, str]]) -> None:
        rows = self._rows
        if not rows:
            return
        for edge_type, src, dst in touched:
            fwd, rev = _ROWS_OF[edge_type]
            rows.pop((fwd, src), None)
            rows.pop((rev, dst), None)

    def top(self, edge_type: str, node_id: str, row: Mapping[str, tuple[float, int]], now_ms: int,
            k: int | None) -> list:
        hl = self.half_life_ms
        if k is None or len(row) <= k + _MARGIN:
            return top_decayed(row.items(), now_ms, hl, k)
        key = (edge_type, node_id)
        entry = self._rows.get(key)
        if entry is None or entry[0] < k + _MARGIN:
            entry = self._build(row, k + _MARGIN)
            if len(self._rows) >= _MAX_ROWS:
                self._rows.clear()
            self._rows[key] = entry
        if now_ms < entry[2]:
            return top_decayed(row.items(), now_ms, hl, k)
        return top_decayed(entry[1], now_ms, hl, k)

    def _build(self, row: Mapping[str, tuple[float, int]], size: int) -> tuple[int, list, int]:
        hl, log2, inf = self.half_life_ms, math.log2, math.inf
        scale = 0.0 if hl == inf else 1.0 / hl
        ranked = heapq.nsmallest(size, ((-(log2(w) + t * scale) if w > 0 else inf, d)
                                        for d, (w, t) in row.items()))
        max_t = max(t for _, t in row.values())
        return size, [(d, row[d]) for _, d in ranked], max_t
