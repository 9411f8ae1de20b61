"""The live baselines: next-item from decayed item→item transitions, social from followees.

Pure functions of a graph store and ``now_ms``. They are the bar the GNN scorer is measured
against, so they stay available after the GNN models serve.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from graph_store import GraphStore, Neighbour


def _top_k(scores: dict[str, float], k: int, exclude: set[str], backfill: Iterable[Neighbour]) -> list[tuple[str, float]]:
    ranked = sorted(((s, i) for i, s in scores.items() if i not in exclude), key=lambda t: (-t[0], t[1]))
    out = [(i, s) for s, i in ranked[:k]]
    if len(out) < k:
        # Trending items fill the rest, scored below every graph-derived candidate.
        have = exclude | {i for i, _ in out}
        floor = min((s for _, s in out), default=1.0)
        for rank, nb in enumerate(backfill):
            if len(out) >= k:
                break
            if nb.node_id not in have:
                out.append((nb.node_id, floor * 0.5 / (rank + 1)))
                have.add(nb.node_id)
    return out


def next_item_transitions(store: GraphStore, session_id: str, now_ms: int, *, k: int, context: int,
                          trending: Iterable[Neighbour] = (), fanout: int = 50) -> list[tuple[str, float]]:
    """Score items by decayed transition weight from the session's recent items.

    score(j) = Σ_a 0.5^a · w(i_a → j), where i_0 is the last item of the session, i_1 the one
    before, … (``context`` items). Items already in the session are excluded.
    """
    items = store.session_items(session_id)
    recent = items[-context:]
    scores: dict[str, float] = defaultdict(float)
    for age, item in enumerate(reversed(recent)):
        pos_weight = 0.5 ** age
        for nb in store.neighbours("item", item, "ii", now_ms, k=fanout):
            scores[nb.node_id] += pos_weight * nb.weight
    return _top_k(scores, k, set(items), trending)


def social_followees(store: GraphStore, user_id: str, now_ms: int, *, k: int, max_followees: int,
                     trending: Iterable[Neighbour] = (), fanout: int = 50) -> list[tuple[str, float]]:
    """Score items by what the user's followees interacted with, by decayed weight.

    score(j) = Σ_f w(u → f) · w(f → j) over the user's top followees; items the user already
    interacted with are excluded.
    """
    seen = {nb.node_id for nb in store.neighbours("user", user_id, "ui", now_ms)}
    scores: dict[str, float] = defaultdict(float)
    for f in store.neighbours("user", user_id, "uu", now_ms, k=max_followees):
        for nb in store.neighbours("user", f.node_id, "ui", now_ms, k=fanout):
            scores[nb.node_id] += f.weight * nb.weight
    return _top_k(scores, k, seen, trending)
