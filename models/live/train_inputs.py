"""What one training run reads from the graph store, as plain arrays that can leave the process.

The train worker trains in a child process (:mod:`workers.train.process`), so the store is read
once, in the worker, into a :class:`TrainInputs`: the user→item and user→user edges with their
decayed weights, the id of every row, the most recent sessions, and the decayed successors the
transition prior's fit needs. :func:`read_train_inputs` is a generator that yields between
slices of the read (a few tens of thousands of rows each), so the worker's event loop consumes
and applies batches between two slices instead of stalling for the whole read; the edge scans
each read one view of the store (:meth:`graph_store.GraphStore.edge_row_chunks`), and a row
applied meanwhile is at worst one event newer than the watermark the run trains at.

**A bounded recent sample.** With ``max_edges``, only the most recent ``max_edges`` user–item
edges (by the time they were last reinforced) are kept, and with them only their users and items
(without a sample, every user and item of the store, edges or not):
on a large graph the first model trains in bounded time on the part of the graph that matters
now, and the refresh worker gives every node outside the sample its ego embedding from the
bundle's inductive encoder, as it does for nodes that appear after a training.

Time is an argument (``now_ms``); nothing here reads a clock.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from graph_store import GraphStore
from graph_store.decay import decayed_weights


class InputConfig(Protocol):
    """What the read needs of :class:`models.live.train.LiveTrainConfig` (which imports this module)."""

    max_sessions: int
    transition_successors: int
    prior_holdout: float
    prior_holdout_min: int
    prior_holdout_cells: int

Successors = list[tuple[str, float]]
SLICE = 32_768  # rows read between two yields to the event loop
MIN_PRIOR_HOLDOUT = 20  # fewer held-out sessions fit nothing worth trusting: no prior


def prior_holdout_size(n_sessions: int, cfg: InputConfig, n_items: int = 0) -> int:
    """How many of the most recent sessions are held out to fit the popularity prior's weight:
    the ``prior_holdout`` share, at least ``prior_holdout_min`` up to a fifth of them, at most
    ``prior_holdout_cells / n_items`` (the fit scores every held-out click against the whole
    catalogue, densely); 0 (no prior) when the prior is off or fewer than
    :data:`MIN_PRIOR_HOLDOUT` would be held out."""
    n_hold = max(int(n_sessions * cfg.prior_holdout), min(cfg.prior_holdout_min, n_sessions // 5))
    n_hold = min(n_hold, cfg.prior_holdout_cells // max(n_items, 1))
    return n_hold if cfg.prior_holdout and n_hold >= MIN_PRIOR_HOLDOUT else 0


@dataclass
class SessionRow:
    """One session as the session models read it: item ids oldest first, user, last event time."""

    session_id: str
    items: list[str]
    user: str
    last_ts: int


@dataclass
class TrainInputs:
    """The snapshot one training run trains on (module docstring). Edge arrays index
    ``user_ids`` / ``item_ids``; weights are decayed to ``now_ms``; ``sessions`` are the most
    recent ones, oldest first; ``successors[item]`` the decayed ``ii`` successors of each
    session's second-to-last item (the transition prior's fit)."""

    now_ms: int
    half_life_ms: float
    user_ids: list[str]
    item_ids: list[str]
    ui: tuple[np.ndarray, np.ndarray, np.ndarray]  # user row, item row, weight [E] (weight > 0)
    uu: tuple[np.ndarray, np.ndarray, np.ndarray]  # follower row, followee row, weight
    sessions: list[SessionRow]
    successors: dict[str, Successors] = field(default_factory=dict)
    store_ui_edges: int = 0  # user-item edges in the store; more than len(ui[0]) when sampled

    @property
    def sampled(self) -> bool:
        return self.store_ui_edges > len(self.ui[0])


def _read_edges(store: GraphStore, edge_type: str, now_ms: int) -> Iterator[tuple[np.ndarray, ...] | None]:
    """Yields None between slices, then ``(src, dst, decayed weight, t_ref)`` of every edge
    (each slice turns its own rows into arrays, so the last one only concatenates)."""
    parts: list[tuple[np.ndarray, ...]] = []
    for src, dst, w, t in store.edge_row_chunks(edge_type, SLICE):
        parts.append((np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64),
                      np.asarray(w, dtype=np.float64), np.asarray(t, dtype=np.int64)))
        yield None
    if not parts:
        parts.append((np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(0, np.int64)))
    src, dst, w, t = (np.concatenate(column) for column in zip(*parts))
    yield src, dst, decayed_weights(w, t, now_ms, store.settings.half_life_ms), t


def _recent(t_ref: np.ndarray, max_edges: int | None) -> np.ndarray:
    """Positions of the ``max_edges`` most recent edges (all when None or not more)."""
    if max_edges is None or len(t_ref) <= max_edges:
        return np.arange(len(t_ref))
    return np.sort(np.argpartition(-t_ref, max_edges - 1)[:max_edges])


def _compact(rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(kept store rows ascending, store row -> new row or -1 [n])``."""
    kept = np.unique(rows)
    remap = np.full(n, -1, dtype=np.int64)
    remap[kept] = np.arange(len(kept))
    return kept, remap


def read_train_inputs(store: GraphStore, now_ms: int, cfg: InputConfig, *,
                      max_edges: int | None = None) -> Iterator[TrainInputs | None]:
    """Read the inputs of a training at ``now_ms`` with ``cfg``: yields None between slices,
    then the :class:`TrainInputs` (last). ``max_edges`` bounds the user–item edges (module
    docstring); ``cfg.max_sessions`` the sessions, and the successors are read for the
    sessions :func:`prior_holdout_size` holds out."""
    max_sessions = cfg.max_sessions
    edges = None
    for edges in _read_edges(store, "ui", now_ms):
        if edges is None:
            yield None
    follows = None
    for follows in _read_edges(store, "uu", now_ms):
        if follows is None:
            yield None
    assert edges is not None and follows is not None
    src, dst, w, t = edges
    positive = w > 0
    src, dst, w, t = src[positive], dst[positive], w[positive], t[positive]
    store_edges = len(src)
    keep = _recent(t, max_edges)
    src, dst, w = src[keep], dst[keep], w[keep]
    order = np.lexsort((dst, src))  # by (user, item), as GraphStore.to_pyg: the same store trains the same
    src, dst, w = src[order], dst[order], w[order]
    all_users, all_items = store.node_ids("user"), store.node_ids("item")  # after the scans: a superset
    yield None
    if len(src) < store_edges:  # a sample: its users and items only
        users, user_map = _compact(src, len(all_users))
        items, item_map = _compact(dst, len(all_items))
    else:  # the whole graph: every node, with or without edges, as GraphStore.to_pyg numbers them
        users, user_map = _compact(np.arange(len(all_users)), len(all_users))
        items, item_map = _compact(np.arange(len(all_items)), len(all_items))
    user_ids = [all_users[i] for i in users]
    item_ids = [all_items[i] for i in items]
    f_src, f_dst, f_w, _ = follows
    f_src, f_dst = user_map[f_src], user_map[f_dst]
    kept = (f_src >= 0) & (f_dst >= 0) & (f_w > 0)
    f_src, f_dst, f_w = f_src[kept], f_dst[kept], f_w[kept]
    order = np.lexsort((f_dst, f_src))
    uu = (f_src[order], f_dst[order], f_w[order].astype(np.float32))
    ui = (user_map[src], item_map[dst], w.astype(np.float32))
    del all_users, all_items, user_map, item_map

    known_users, known_items = set(user_ids), set(item_ids)
    sessions: list[SessionRow] = []
    ids = store.node_ids("session")[-max_sessions:] if max_sessions else []
    for start in range(0, len(ids), SLICE // 8):
        yield None
        for sid in ids[start:start + SLICE // 8]:
            state = store.session_state(sid)
            if state is None or state.user_id not in known_users:
                continue
            seq = [i for i in state.items if i in known_items]
            if len(seq) >= 2:
                sessions.append(SessionRow(sid, seq, state.user_id, state.last_ts))
    successors: dict[str, Successors] = {}
    n_hold = prior_holdout_size(len(sessions), cfg, len(item_ids)) if cfg.transition_successors else 0
    if n_hold:
        successors_k = cfg.transition_successors
        prev = list(dict.fromkeys(s.items[-2] for s in sessions[len(sessions) - n_hold:]))
        for start in range(0, len(prev), SLICE // 32):
            yield None
            for item in prev[start:start + SLICE // 32]:
                successors[item] = [(n.node_id, n.weight)
                                    for n in store.neighbours("item", item, "ii", now_ms, k=successors_k)]
    yield TrainInputs(now_ms, store.settings.half_life_ms, user_ids, item_ids, ui, uu, sessions, successors,
                      store_edges)


def train_inputs(store: GraphStore, now_ms: int, cfg: InputConfig, *, max_edges: int | None = None) -> TrainInputs:
    """:func:`read_train_inputs` in one go (tests, benchmarks, offline training)."""
    inputs = None
    for inputs in read_train_inputs(store, now_ms, cfg, max_edges=max_edges):
        pass
    assert inputs is not None
    return inputs
