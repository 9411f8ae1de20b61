"""In-process graph store on plain dicts: the reference backend, and the fast one for tests.

Adjacency is ``{edge type: {src id: {dst id: (w, t_ref)}}}`` for all six edge types (reverse
types hold the same tuples). Events are applied one after the other with the same pure rules
the batch planner uses (:func:`graph_store.decay.add_decayed`,
:func:`graph_store.batch.follow_outcome`), so the memory store *is* the event-by-event
semantics. ``apply_many`` validates the whole batch before touching any dict, so a rejected
batch leaves the store unchanged; nothing is persisted.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from graph_store.base import _NO_POPULARITY, EdgeRows, GraphStore, _weight_arrays
from graph_store.ranked import RankedRows
from graph_store.batch import FOLLOW, UNFOLLOW, follow_outcome
from graph_store.decay import add_decayed
from graph_store.schema import (
    EDGE_TYPES,
    FORWARD_EDGE_TYPES,
    NODE_TYPES,
    ApplyStats,
    SessionState,
    StoreCounts,
    StoreSettings,
    TopicPartition,
)

__all__ = ["MemoryGraphStore"]

Adjacency = dict[str, dict[str, tuple[float, int]]]
_EMPTY: dict[str, tuple[float, int]] = {}


class MemoryGraphStore(GraphStore):
    """Graph store held in memory (lost on exit). See :class:`graph_store.base.GraphStore`."""

    def __init__(self, settings: StoreSettings | None = None) -> None:
        self.settings = StoreSettings() if settings is None else settings
        if not isinstance(self.settings, StoreSettings):
            raise TypeError(f"settings must be a StoreSettings, got {type(settings)}")
        self._index: dict[str, dict[str, int]] = {t: {} for t in NODE_TYPES}
        self._ids: dict[str, list[str]] = {t: [] for t in NODE_TYPES}
        self._adj: dict[str, Adjacency] = {e: {} for e in EDGE_TYPES}
        self._pop: dict[str, tuple[float, int]] = {}
        self._sessions: dict[str, list] = {}  # id -> [user, items list, last ts, count]
        self._offsets: dict[TopicPartition, int] = {}
        self._wm: int | None = None
        self._dirty_set: dict[str, set[str]] = {t: set() for t in NODE_TYPES}
        self._edge_counts = {e: 0 for e in FORWARD_EDGE_TYPES}
        self._ops = {"interactions": 0, "follows": 0, "unfollows": 0}
        self._ranked = RankedRows(self.settings.half_life_ms)

    def _apply_many(self, events: Sequence[Any], offsets: dict[TopicPartition, int]) -> ApplyStats:
        hl = self.settings.half_life_ms
        kind_w = self.settings.kind_weights
        hist = self.settings.session_history
        adj = self._adj
        ui, iu, ii, ii_rev = adj["ui"], adj["iu"], adj["ii"], adj["ii_rev"]
        pop, sessions = self._pop, self._sessions
        idx_u, idx_i, idx_s = self._index["user"], self._index["item"], self._index["session"]
        ids_u, ids_i, ids_s = self._ids["user"], self._ids["item"], self._ids["session"]
        dirty_u, dirty_i, dirty_s = (self._dirty_set[t] for t in NODE_TYPES)
        n_nodes = len(ids_u) + len(ids_i) + len(ids_s)
        touched: set[tuple[str, str, str]] = set()
        counts = self._edge_counts
        n_ui, n_ii = counts["ui"], counts["ii"]
        wm = -1
        n_inter = n_follow = n_unfollow = n_skip = 0
        for e in events:
            ts = e.ts
            if ts > wm:
                wm = ts
            if not hasattr(e, "item_id"):
                outcome = self._apply_follow(e.src_user, e.dst_user, ts, e.op, touched)
                if outcome is FOLLOW:
                    n_follow += 1
                elif outcome is UNFOLLOW:
                    n_unfollow += 1
                else:
                    n_skip += 1
                continue
            n_inter += 1
            u, it, s, w = e.user_id, e.item_id, e.session_id, e.weight
            inc = kind_w[e.kind] if w is None else float(w)
            if u not in idx_u:
                idx_u[u] = len(ids_u)
                ids_u.append(u)
            if it not in idx_i:
                idx_i[it] = len(ids_i)
                ids_i.append(it)
            if s not in idx_s:
                idx_s[s] = len(ids_s)
                ids_s.append(s)
            row = ui.get(u)
            if row is None:
                row = ui[u] = {}
            cur = row.get(it)
            if cur is None:
                value = row[it] = (inc, ts)
                n_ui += 1
            else:
                value = row[it] = add_decayed(cur[0], cur[1], inc, ts, hl)
            row = iu.get(it)
            if row is None:
                row = iu[it] = {}
            row[u] = value
            touched.add(("ui", u, it))
            cur = pop.get(it)
            pop[it] = (inc, ts) if cur is None else add_decayed(cur[0], cur[1], inc, ts, hl)
            dirty_u.add(u)
            dirty_i.add(it)
            dirty_s.add(s)
            st = sessions.get(s)
            if st is None:
                sessions[s] = [u, [it], ts, 1]
                continue
            items = st[1]
            prev = items[-1]
            if prev != it:  # an immediate repeat is not a transition
                row = ii.get(prev)
                if row is None:
                    row = ii[prev] = {}
                cur = row.get(it)
                if cur is None:
                    value = row[it] = (1.0, ts)
                    n_ii += 1
                else:
                    value = row[it] = add_decayed(cur[0], cur[1], 1.0, ts, hl)
                row = ii_rev.get(it)
                if row is None:
                    row = ii_rev[it] = {}
                row[prev] = value
                touched.add(("ii", prev, it))
                dirty_i.add(prev)
            items.append(it)
            if len(items) > hist:
                del items[0]
            st[0] = u
            st[2] = ts
            st[3] += 1
        counts["ui"], counts["ii"] = n_ui, n_ii
        self._ops["interactions"] += n_inter
        self._ops["follows"] += n_follow
        self._ops["unfollows"] += n_unfollow
        self._offsets.update(offsets)
        if events and (self._wm is None or wm > self._wm):
            self._wm = wm
        n_new = len(ids_u) + len(ids_i) + len(ids_s) - n_nodes
        self._ranked.invalidate(touched)
        return ApplyStats(n_inter, n_follow + n_unfollow, n_skip, n_new, len(touched))

    def _apply_follow(self, src: str, dst: str, ts: int, op: str, touched: set) -> str:
        index, ids = self._index["user"], self._ids["user"]
        for node_id in (src, dst):
            if node_id not in index:
                index[node_id] = len(ids)
                ids.append(node_id)
        fwd, rev = self._adj["uu"], self._adj["uu_rev"]
        cur = fwd.get(src, {}).get(dst)
        outcome = follow_outcome(None if cur is None else cur[1], ts, op)
        if outcome is FOLLOW:
            value = (1.0, ts)
            fwd.setdefault(src, {})[dst] = value
            rev.setdefault(dst, {})[src] = value
            self._edge_counts["uu"] += cur is None
        elif outcome is UNFOLLOW:
            _drop(fwd, src, dst)
            _drop(rev, dst, src)
            self._edge_counts["uu"] -= 1
        else:
            return outcome
        touched.add(("uu", src, dst))
        self._dirty_set["user"].update((src, dst))
        return outcome

    # ---- read primitives ------------------------------------------------------------------
    def _ranked_out_edges(self, edge_type: str, node_id: str, now_ms: int, k: int | None) -> list:
        return self._ranked.top(edge_type, node_id, self._adj[edge_type].get(node_id, _EMPTY), now_ms, k)

    def _committed_offsets(self) -> dict[TopicPartition, int]:
        return dict(self._offsets)

    def _watermark(self) -> int | None:
        return self._wm

    def _out_edges(self, edge_type: str, node_id: str) -> Iterable[tuple[str, tuple[float, int]]]:
        return self._adj[edge_type].get(node_id, _EMPTY).items()

    def _edge_value(self, edge_type: str, src_id: str, dst_id: str) -> tuple[float, int] | None:
        return self._adj[edge_type].get(src_id, {}).get(dst_id)

    def _degree(self, edge_type: str, node_id: str) -> int:
        return len(self._adj[edge_type].get(node_id, ()))

    def _counts(self) -> StoreCounts:
        return StoreCounts(
            users=len(self._ids["user"]),
            items=len(self._ids["item"]),
            sessions=len(self._ids["session"]),
            edges=dict(self._edge_counts),
            **self._ops,
        )

    def _session(self, session_id: str) -> SessionState | None:
        st = self._sessions.get(session_id)
        return None if st is None else SessionState(st[0], tuple(st[1]), st[2], st[3])

    def _popularity_rows(self) -> Iterable[tuple[str, tuple[float, int]]]:
        return self._pop.items()

    def item_popularity_state(self, item_ids: Sequence[str]) -> list[tuple[float, int]]:
        # The scorer asks for one item per event: a dict lookup, not arrays built and unpacked.
        self._check_open()
        get = self._pop.get
        return [get(i, _NO_POPULARITY) for i in item_ids]

    def _popularity_of(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        get = self._pop.get
        return _weight_arrays([get(i, _NO_POPULARITY) for i in ids])

    def _node_index(self, node_type: str, node_id: str) -> int | None:
        return self._index[node_type].get(node_id)

    def _node_ids(self, node_type: str) -> list[str]:
        return list(self._ids[node_type])

    def _dirty(self) -> dict[str, set[str]]:
        return {t: set(ids) for t, ids in self._dirty_set.items()}

    def _clear_dirty(self, nodes: dict[str, set[str]]) -> None:
        for t, ids in nodes.items():
            self._dirty_set[t] -= ids

    def _edge_rows(self, edge_type: str) -> EdgeRows:
        src_t, dst_t, _ = EDGE_TYPES[edge_type]
        si, di = self._index[src_t], self._index[dst_t]
        src, dst, w, t = [], [], [], []
        for s, row in self._adj[edge_type].items():
            for d, (weight, t_ref) in row.items():
                src.append(si[s])
                dst.append(di[d])
                w.append(weight)
                t.append(t_ref)
        return src, dst, w, t

    def _close(self) -> None:
        pass


def _drop(adj: Adjacency, src: str, dst: str) -> None:
    row = adj.get(src)
    if row is not None:
        row.pop(dst, None)
        if not row:
            del adj[src]
