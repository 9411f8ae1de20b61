"""Batch (closed-form) build of the graph from a list of events, and a full read-out of a store.

The oracle never uses ``add_decayed``: every weight is Σ inc_i · 2^(-(now - t_i)/h) over the
increments of its key, counts come from set arithmetic over the events. Follow edges follow
their (order-dependent) rule, replayed in arrival order with a plain dict.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from graph_store import EDGE_TYPES, NODE_TYPES, GraphStore, StoreSettings

REL = 1e-9


@dataclass
class Graph:
    """Everything observable about a store at one ``now``."""

    edges: dict[str, dict[tuple[str, str], float]]  # all six edge types
    popularity: dict[str, float]
    sessions: dict[str, tuple[str, list[str]]]  # id -> (user, last items)
    node_ids: dict[str, list[str]]
    counts: tuple  # (users, items, sessions, ui, ii, uu, interactions, follows, unfollows)


def _w(incs: list[tuple[float, int]], now: int, hl: float) -> float:
    return math.fsum(inc * 2.0 ** (-(now - t) / hl) for inc, t in incs)


def build_oracle(events, settings: StoreSettings, now: int) -> Graph:
    hl = settings.half_life_ms
    ui: dict[tuple[str, str], list] = defaultdict(list)
    ii: dict[tuple[str, str], list] = defaultdict(list)
    pop: dict[str, list] = defaultdict(list)
    session_events: dict[str, list] = defaultdict(list)
    uu: dict[tuple[str, str], int] = {}  # pair -> t_ref of a present edge
    first_seen: dict[str, dict[str, None]] = {t: {} for t in NODE_TYPES}
    follows = unfollows = interactions = 0
    for e in events:
        if hasattr(e, "item_id"):
            interactions += 1
            inc = settings.kind_weights[e.kind] if e.weight is None else float(e.weight)
            for t, node in (("user", e.user_id), ("item", e.item_id), ("session", e.session_id)):
                first_seen[t].setdefault(node, None)
            ui[e.user_id, e.item_id].append((inc, e.ts))
            pop[e.item_id].append((inc, e.ts))
            history = session_events[e.session_id]
            if history and history[-1][1] != e.item_id:
                ii[history[-1][1], e.item_id].append((1.0, e.ts))
            history.append((e.user_id, e.item_id))
        else:
            first_seen["user"].setdefault(e.src_user, None)
            first_seen["user"].setdefault(e.dst_user, None)
            key = (e.src_user, e.dst_user)
            t_ref = uu.get(key)
            if t_ref is not None and e.ts < t_ref:
                continue
            if e.op == "follow":
                uu[key] = e.ts
                follows += 1
            elif t_ref is not None:
                del uu[key]
                unfollows += 1
    fwd = {
        "ui": {k: _w(v, now, hl) for k, v in ui.items()},
        "ii": {k: _w(v, now, hl) for k, v in ii.items()},
        "uu": {k: 2.0 ** (-(now - t) / hl) for k, t in uu.items()},
    }
    edges = {}
    for edge_type, (_, _, base) in EDGE_TYPES.items():
        edges[edge_type] = fwd[base] if edge_type == base else {(d, s): w for (s, d), w in fwd[base].items()}
    sessions = {
        s: (h[-1][0], [item for _, item in h][-settings.session_history :]) for s, h in session_events.items()
    }
    node_ids = {t: list(ids) for t, ids in first_seen.items()}
    counts = (
        len(node_ids["user"]), len(node_ids["item"]), len(node_ids["session"]),
        len(ui), len(ii), len(uu), interactions, follows, unfollows,
    )
    return Graph(edges, {i: _w(v, now, hl) for i, v in pop.items()}, sessions, node_ids, counts)


def read_store(store: GraphStore, now: int) -> Graph:
    """Everything observable through the public API (no backend internals)."""
    node_ids = {t: store.node_ids(t) for t in NODE_TYPES}
    edges = {}
    for edge_type, (src_t, _, _) in EDGE_TYPES.items():
        edges[edge_type] = {
            (src, n.node_id): n.weight
            for src in node_ids[src_t]
            for n in store.neighbours(src_t, src, edge_type, now)
        }
    sessions = {s: (store.session_user(s), store.session_items(s)) for s in node_ids["session"]}
    c = store.counts()
    counts = (
        c.users, c.items, c.sessions, c.edges["ui"], c.edges["ii"], c.edges["uu"],
        c.interactions, c.follows, c.unfollows,
    )
    popularity = {n.node_id: n.weight for n in store.item_popularity(now)}
    return Graph(edges, popularity, sessions, node_ids, counts)


def _close_maps(actual: dict, expected: dict, what: str) -> None:
    assert actual.keys() == expected.keys(), f"{what}: keys differ: {set(actual) ^ set(expected)}"
    for key, value in expected.items():
        assert math.isclose(actual[key], value, rel_tol=REL), f"{what}[{key}] = {actual[key]} != {value}"


def assert_graph_equal(actual: Graph, expected: Graph) -> None:
    for edge_type in EDGE_TYPES:
        _close_maps(actual.edges[edge_type], expected.edges[edge_type], edge_type)
    _close_maps(actual.popularity, expected.popularity, "popularity")
    assert actual.sessions == expected.sessions
    assert actual.node_ids == expected.node_ids
    assert actual.counts == expected.counts
