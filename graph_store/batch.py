"""Pure batch logic: validate events, aggregate a batch, merge it with stored values.

Validation and the follow rule serve every store. A key-value store
(:class:`graph_store.planned.PlannedGraphStore`) applies a batch reading its backend twice
and writing once::

    order   = collect_node_ids(events)                          # pure
    ctx     = BatchContext(known indices, node counts, sessions) # backend read 1 (ids, sessions)
    delta   = aggregate(events, settings, ctx, order)            # pure
    stored  = StoredWeights(ui, ii, pop, uu)                     # backend read 2 (touched keys)
    plan    = resolve(delta, stored, settings.half_life_ms)      # pure
    commit(plan)                                                 # backend write (one batch)

Within a batch the increments of one edge are folded into one ``(w, t_ref)`` with
:func:`graph_store.decay.add_decayed` and merged once with the stored value; by the
order independence of ``add_decayed`` this equals applying the events one by one
(up to float rounding). Follow operations are order dependent (last applicable op wins)
and are resolved in arrival order.

Events are duck-typed: an interaction has ``user_id, item_id, session_id, ts, kind, weight``;
a follow has ``src_user, dst_user, ts, op``; they are told apart by ``hasattr(e, "item_id")``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from graph_store.decay import add_decayed
from graph_store.errors import InvalidEventError, InvalidOffsetsError
from graph_store.schema import NODE_TYPES, ApplyStats, SessionState, StoreSettings, TopicPartition

__all__ = [
    "BatchContext",
    "BatchDelta",
    "BatchPlan",
    "StoredWeights",
    "aggregate",
    "collect_node_ids",
    "follow_outcome",
    "resolve",
    "validate_events",
    "validate_offsets",
]

MAX_ID_CHARS = 256  # keeps every encoded id under 1 KiB of UTF-8 (codec uses u16 lengths)
MAX_TS = 2**63 - 1
FOLLOW_OPS = ("follow", "unfollow")

Weight = tuple[float, int]  # (weight, t_ref)
Pair = tuple[str, str]


def _bad_id(x: Any) -> bool:
    return not isinstance(x, str) or not 0 < len(x) <= MAX_ID_CHARS


def _bad_ts(x: Any) -> bool:
    return not isinstance(x, int) or isinstance(x, bool) or not 0 <= x <= MAX_TS


def _fail(i: int, e: Any, what: str) -> InvalidEventError:
    return InvalidEventError(f"event {i} ({e!r}): {what}; fix or dead-letter it before apply_many")


def validate_events(events: Sequence[Any], kind_weights: Mapping[str, float]) -> None:
    """Raise :class:`InvalidEventError` naming the first malformed event (nothing is applied)."""
    m = MAX_ID_CHARS
    for i, e in enumerate(events):
        # Fast path for the common well-formed event; anything unusual gets the full check.
        if hasattr(e, "item_id"):
            try:
                u, it, s, ts, w = e.user_id, e.item_id, e.session_id, e.ts, e.weight
                ok = (
                    type(u) is str and type(it) is str and type(s) is str and type(ts) is int
                    and w is None and e.kind in kind_weights
                    and 0 < len(u) <= m and 0 < len(it) <= m and 0 < len(s) <= m and 0 <= ts <= MAX_TS
                )
            except (AttributeError, TypeError):  # TypeError: an unhashable kind
                ok = False
        else:
            try:
                a, b, ts = e.src_user, e.dst_user, e.ts
                ok = (
                    type(a) is str and type(b) is str and type(ts) is int and e.op in FOLLOW_OPS
                    and 0 < len(a) <= m and 0 < len(b) <= m and 0 <= ts <= MAX_TS
                )
            except AttributeError:
                ok = False
        if not ok:
            _check_event(i, e, kind_weights)


def _check_event(i: int, e: Any, kind_weights: Mapping[str, float]) -> None:
    """Full check of one event; raises on the first problem, returns if the event is valid."""
    try:
        if hasattr(e, "item_id"):
            ids = (("user_id", e.user_id), ("item_id", e.item_id), ("session_id", e.session_id))
            ts, kind, w = e.ts, e.kind, e.weight
            if not isinstance(kind, str) or kind not in kind_weights:
                raise _fail(i, e, f"kind {kind!r} is not one of {tuple(kind_weights)}")
            if w is not None and (
                isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0
            ):
                raise _fail(i, e, f"weight must be None or a finite number >= 0, got {w!r}")
        else:
            ids = (("src_user", e.src_user), ("dst_user", e.dst_user))
            ts, op = e.ts, e.op
            if not isinstance(op, str) or op not in FOLLOW_OPS:
                raise _fail(i, e, f"op {op!r} is not one of {FOLLOW_OPS}")
    except AttributeError as exc:
        raise _fail(
            i, e, f"missing attribute {exc.name!r}: an interaction needs user_id, item_id, "
            "session_id, ts, kind, weight; a follow needs src_user, dst_user, ts, op"
        ) from None
    for name, value in ids:
        if _bad_id(value):
            raise _fail(i, e, f"{name} must be a non-empty str of at most {MAX_ID_CHARS} chars")
    if _bad_ts(ts):
        raise _fail(i, e, f"ts must be an int of epoch ms in [0, 2**63), got {ts!r}")


def validate_offsets(offsets: Mapping[TopicPartition, int] | None) -> dict[TopicPartition, int]:
    """Check ``{(topic, partition): next offset}`` and return a plain copy."""
    if offsets is None:
        return {}
    if not isinstance(offsets, Mapping):
        raise InvalidOffsetsError(f"offsets must map (topic, partition) -> next offset, got {type(offsets)}")
    out: dict[TopicPartition, int] = {}
    for tp, off in offsets.items():
        ok_tp = (
            isinstance(tp, tuple) and len(tp) == 2 and isinstance(tp[0], str) and 0 < len(tp[0]) <= 249
            and isinstance(tp[1], int) and not isinstance(tp[1], bool) and 0 <= tp[1] < 2**31
        )
        if not ok_tp:
            raise InvalidOffsetsError(f"offset key {tp!r} must be (topic: str, partition: int >= 0)")
        if _bad_ts(off):  # same range check: a non-negative int64
            raise InvalidOffsetsError(f"offset for {tp!r} must be an int >= 0 (next offset to consume), got {off!r}")
        out[tp] = off
    return out


def collect_node_ids(events: Sequence[Any]) -> dict[str, list[str]]:
    """Ids per node type in first-sight order (interaction: user, item, session; follow: src, dst)."""
    users: dict[str, None] = {}
    items: dict[str, None] = {}
    sessions: dict[str, None] = {}
    for e in events:
        if hasattr(e, "item_id"):
            users[e.user_id] = None
            items[e.item_id] = None
            sessions[e.session_id] = None
        else:
            users[e.src_user] = None
            users[e.dst_user] = None
    return {"user": list(users), "item": list(items), "session": list(sessions)}


@dataclass
class BatchContext:
    """What a backend read before aggregation: indices of the batch's known ids (a fresh dict
    per type that aggregation completes with the new ids), node counts (= next free index per
    type) and the stored state of the batch's sessions."""

    known: dict[str, dict[str, int]]
    node_counts: dict[str, int]
    sessions: dict[str, SessionState]


@dataclass
class BatchDelta:
    """A batch aggregated on its own, before merging with stored edge values."""

    node_index: dict[str, dict[str, int]]  # every id of the batch -> index (old and new)
    new_nodes: dict[str, list[tuple[str, int]]]
    node_counts_before: dict[str, int]
    ui: dict[Pair, Weight]
    ii: dict[Pair, Weight]
    pop: dict[str, Weight]
    sessions: dict[str, SessionState]
    follow_ops: list[tuple[str, str, int, str]]
    interactions: int
    watermark: int | None


@dataclass
class StoredWeights:
    """Stored ``(w, t_ref)`` of the touched keys; absent keys are simply missing."""

    ui: dict[Pair, Weight] = field(default_factory=dict)
    ii: dict[Pair, Weight] = field(default_factory=dict)
    pop: dict[str, Weight] = field(default_factory=dict)
    uu: dict[Pair, Weight] = field(default_factory=dict)


@dataclass
class BatchPlan:
    """Everything one commit writes. Edge dicts hold final forward values; reverses mirror them."""

    node_index: dict[str, dict[str, int]]
    new_nodes: dict[str, list[tuple[str, int]]]
    ui: dict[Pair, Weight]
    ii: dict[Pair, Weight]
    pop: dict[str, Weight]
    uu_put: dict[Pair, Weight]
    uu_del: list[Pair]
    sessions: dict[str, SessionState]
    dirty: dict[str, set[str]]
    watermark: int | None
    new_edges: dict[str, int]  # forward edge type -> change of its edge count
    follows: int
    unfollows: int
    stats: ApplyStats


def _assign_indices(order: dict[str, list[str]], ctx: BatchContext):
    """Complete ``ctx.known`` (mutated: it is the batch's own dict) with first-seen ids."""
    index: dict[str, dict[str, int]] = ctx.known
    new: dict[str, list[tuple[str, int]]] = {}
    for t in NODE_TYPES:
        idx = index[t]
        added = []
        nxt = ctx.node_counts[t]
        for node_id in order[t]:
            if node_id not in idx:
                idx[node_id] = nxt
                added.append((node_id, nxt))
                nxt += 1
        new[t] = added
    return index, new


def aggregate(
    events: Sequence[Any], settings: StoreSettings, ctx: BatchContext, order: dict[str, list[str]]
) -> BatchDelta:
    """Fold a validated batch into per-key increments, final session states and follow ops."""
    hl = settings.half_life_ms
    kind_w = settings.kind_weights
    hist = settings.session_history
    ui: dict[Pair, Weight] = {}
    ii: dict[Pair, Weight] = {}
    pop: dict[str, Weight] = {}
    ui_get, ii_get, pop_get = ui.get, ii.get, pop.get
    live: dict[str, list] = {}  # session -> [user, items list, last ts, count] while aggregating
    stored = ctx.sessions
    follow_ops: list[tuple[str, str, int, str]] = []
    wm = -1
    n_inter = 0
    for e in events:
        ts = e.ts
        if ts > wm:
            wm = ts
        if not hasattr(e, "item_id"):
            follow_ops.append((e.src_user, e.dst_user, ts, e.op))
            continue
        n_inter += 1
        it, s, w = e.item_id, e.session_id, e.weight
        inc = kind_w[e.kind] if w is None else float(w)
        key = (e.user_id, it)
        cur = ui_get(key)
        ui[key] = (inc, ts) if cur is None else add_decayed(cur[0], cur[1], inc, ts, hl)
        cur = pop_get(it)
        pop[it] = (inc, ts) if cur is None else add_decayed(cur[0], cur[1], inc, ts, hl)
        st = live.get(s)
        if st is None:
            old = stored.get(s)
            if old is None:
                live[s] = [key[0], [it], ts, 1]
                continue
            st = live[s] = [old[0], list(old[1]), old[2], old[3]]
        items = st[1]
        prev = items[-1]
        if prev != it:  # an immediate repeat is not a transition
            key = (prev, it)
            cur = ii_get(key)
            ii[key] = (1.0, ts) if cur is None else add_decayed(cur[0], cur[1], 1.0, ts, hl)
        items.append(it)
        if len(items) > hist:
            del items[0]
        st[0] = e.user_id
        st[2] = ts
        st[3] += 1
    node_index, new_nodes = _assign_indices(order, ctx)
    sessions = {s: SessionState(st[0], tuple(st[1]), st[2], st[3]) for s, st in live.items()}
    return BatchDelta(
        node_index=node_index,
        new_nodes=new_nodes,
        node_counts_before=dict(ctx.node_counts),
        ui=ui,
        ii=ii,
        pop=pop,
        sessions=sessions,
        follow_ops=follow_ops,
        interactions=n_inter,
        watermark=wm if events else None,
    )


FOLLOW, UNFOLLOW, SKIP = "follow", "unfollow", "skip"


def follow_outcome(t_ref: int | None, ts: int, op: str) -> str:
    """What a follow op at ``ts`` does to a ``uu`` edge with ``t_ref`` (None: absent).

    ``follow`` sets the edge to ``(1.0, ts)`` if it is absent or ``ts >= t_ref`` (FOLLOW);
    ``unfollow`` removes a present edge if ``ts >= t_ref`` (UNFOLLOW); otherwise SKIP.

    >>> follow_outcome(None, 5, "follow"), follow_outcome(7, 5, "follow"), follow_outcome(None, 5, "unfollow")
    ('follow', 'skip', 'skip')
    """
    if t_ref is not None and ts < t_ref:
        return SKIP
    if op == "follow":
        return FOLLOW
    return SKIP if t_ref is None else UNFOLLOW


def _merge(delta: dict, stored: dict, hl: float) -> tuple[dict, int]:
    out = {}
    fresh = 0
    for key, (w, t) in delta.items():
        old = stored.get(key)
        if old is None:
            out[key] = (w, t)
            fresh += 1
        else:
            out[key] = add_decayed(old[0], old[1], w, t, hl)
    return out, fresh


def resolve(delta: BatchDelta, stored: StoredWeights, half_life_ms: float) -> BatchPlan:
    """Merge aggregated increments with stored values and replay follow ops in arrival order.

    Follow rules: ``follow`` at ``ts`` sets ``uu`` to ``(1.0, ts)`` if the edge is absent or
    ``ts >= t_ref``; ``unfollow`` at ``ts >= t_ref`` removes it; any other op is skipped.
    """
    ui, new_ui = _merge(delta.ui, stored.ui, half_life_ms)
    ii, new_ii = _merge(delta.ii, stored.ii, half_life_ms)
    pop, _ = _merge(delta.pop, stored.pop, half_life_ms)
    overlay: dict[Pair, Weight | None] = {}
    follows = unfollows = skipped = 0
    dirty_users = {u for u, _ in ui}
    for src, dst, ts, op in delta.follow_ops:
        key = (src, dst)
        cur = overlay[key] if key in overlay else stored.uu.get(key)
        outcome = follow_outcome(None if cur is None else cur[1], ts, op)
        if outcome is FOLLOW:
            overlay[key] = (1.0, ts)
            follows += 1
            dirty_users.update(key)
        elif outcome is UNFOLLOW:
            overlay[key] = None
            unfollows += 1
            dirty_users.update(key)
        else:
            skipped += 1
    uu_put = {k: v for k, v in overlay.items() if v is not None}
    uu_del = [k for k, v in overlay.items() if v is None and k in stored.uu]
    uu_change = sum(k not in stored.uu for k in uu_put) - len(uu_del)
    dirty_items = {i for _, i in ui}
    dirty_items.update(a for a, _ in ii)
    n_new = sum(len(v) for v in delta.new_nodes.values())
    touched = len(ui) + len(ii) + len(overlay)
    stats = ApplyStats(delta.interactions, follows + unfollows, skipped, n_new, touched)
    return BatchPlan(
        node_index=delta.node_index,
        new_nodes=delta.new_nodes,
        ui=ui,
        ii=ii,
        pop=pop,
        uu_put=uu_put,
        uu_del=uu_del,
        sessions=delta.sessions,
        dirty={"user": dirty_users, "item": dirty_items, "session": set(delta.sessions)},
        watermark=delta.watermark,
        new_edges={"ui": new_ui, "ii": new_ii, "uu": uu_change},
        follows=follows,
        unfollows=unfollows,
        stats=stats,
    )
