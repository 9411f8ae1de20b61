"""Pure batch logic: validate events, then fold a batch into one commit plan.

Validation and the follow rule serve every store. A key-value store
(:class:`graph_store.planned.PlannedGraphStore`) applies a batch as::

    view = BatchView(node indices, node counts, sessions, ui, ii, uu, pop)  # committed state
    plan = aggregate(events, settings, view)                             # pure (see below)
    commit(plan)                                                         # one atomic write

``view`` must hold every stored value the batch touches (the store keeps write-back caches
and reads only what they miss). Edge keys are integers ``src_index << 32 | dst_index`` and
popularity keys item indices, so the hot loop hashes ints instead of tuples of strings.
``aggregate`` adds the batch's new ids to ``view.nodes`` (recording them in ``view.added``
so that a failed commit can take them back) and does not mutate anything else in ``view``.

Increments are folded into the stored ``(w, t_ref)`` one by one with the rule of
:func:`graph_store.decay.add_decayed` (inlined: it runs once per event and edge); by its
order independence this equals any other grouping up to float rounding. Follow operations
are order dependent (last applicable op wins) and are resolved in arrival order.

Events are duck-typed: an interaction has ``user_id, item_id, session_id, ts, kind, weight``;
a follow has ``src_user, dst_user, ts, op``; they are told apart by ``hasattr(e, "item_id")``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from graph_store.errors import InvalidEventError, InvalidOffsetsError
from graph_store.schema import ApplyStats, SessionState, StoreSettings, TopicPartition

__all__ = [
    "BatchPlan",
    "BatchView",
    "aggregate",
    "edge_key",
    "follow_outcome",
    "validate_events",
    "validate_offsets",
]

MAX_ID_CHARS = 256  # keeps every encoded id under 1 KiB of UTF-8 (codec uses u16 lengths)
MAX_TS = 2**63 - 1
FOLLOW_OPS = ("follow", "unfollow")
LOW32 = 0xFFFFFFFF

Weight = tuple[float, int]  # (weight, t_ref)


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




def edge_key(src: int, dst: int) -> int:
    """Integer key of an edge between node indices (``src`` and ``dst`` are u32)."""
    return src << 32 | dst


@dataclass
class BatchView:
    """The committed state a batch reads, as dicts (the store's caches, authoritative for every
    key of the batch). ``nodes[t]`` maps id -> index; ``counts[t]`` is the next free index;
    ``ui``/``ii``/``uu`` map :func:`edge_key` -> ``(w, t_ref)``, ``pop`` item index -> ``(w, t_ref)``.
    ``added[t]`` receives the ids :func:`aggregate` adds to ``nodes[t]``."""

    nodes: dict[str, dict[str, int]]
    counts: dict[str, int]
    sessions: Mapping[str, SessionState]
    ui: Mapping[int, Weight]
    ii: Mapping[int, Weight]
    uu: Mapping[int, Weight]
    pop: Mapping[int, Weight]
    added: dict[str, list[str]]


@dataclass
class BatchPlan:
    """Everything one commit writes. Edge dicts hold final forward values; reverses mirror them.

    ``new_nodes[t]`` lists ``(id, index)`` in index order; ``uu_del`` holds removed ``uu`` keys.
    """

    new_nodes: dict[str, list[tuple[str, int]]]
    ui: dict[int, Weight]
    ii: dict[int, Weight]
    pop: dict[int, Weight]
    uu_put: dict[int, Weight]
    uu_del: list[int]
    sessions: dict[str, SessionState]
    dirty: dict[str, set[str]]
    watermark: int | None
    new_edges: dict[str, int]  # forward edge type -> change of its edge count
    follows: int
    unfollows: int
    stats: ApplyStats


def aggregate(events: Sequence[Any], settings: StoreSettings, view: BatchView) -> BatchPlan:
    """Fold a validated batch into the final values of every key it touches.

    New ids get the next free index of their type in first-sight order (interaction: user,
    item, session; follow: src, dst). For each interaction with increment ``inc`` (the event's
    ``weight``, else ``kind_weights[kind]``) at ``ts``, ``ui[user, item]`` and ``pop[item]``
    become ``add_decayed(w, t_ref, inc, ts)``; a session whose previous item differs from this
    one adds ``1.0`` to ``ii[previous, item]`` the same way.
    """
    hl = settings.half_life_ms
    kind_w = dict(settings.kind_weights)  # a dict lookup is ~2x cheaper than a mappingproxy one
    hist = settings.session_history
    users, items, sess_index = view.nodes["user"], view.nodes["item"], view.nodes["session"]
    u_get, i_get = users.get, items.get
    add_u, add_i, add_s = view.added["user"].append, view.added["item"].append, view.added["session"].append
    nu, ni, ns = view.counts["user"], view.counts["item"], view.counts["session"]
    n_users0, n_items0, n_sess0 = nu, ni, ns
    ui: dict[int, Weight] = {}
    ii: dict[int, Weight] = {}
    pop: dict[int, Weight] = {}
    ui_get, ii_get, pop_get = ui.get, ii.get, pop.get
    s_ui, s_ii, s_pop = view.ui.get, view.ii.get, view.pop.get
    fresh_ui = fresh_ii = 0
    dirty_u: set[str] = set()
    dirty_i: set[str] = set()
    du, di = dirty_u.add, dirty_i.add
    # Per touched session: its stored items followed by this batch's, untrimmed (trimmed once
    # at the end), and its latest event (user, last ts). Cheaper than a running state per event.
    seqs: dict[str, list[str]] = {}
    seqs_get = seqs.get
    last: dict[str, Any] = {}
    stored = view.sessions
    follow_ops: list[tuple[str, str, int, int, int, str]] = []
    wm = -1
    for e in events:
        ts = e.ts
        if ts > wm:
            wm = ts
        try:
            it = e.item_id  # an attribute read, not getattr(): it runs once per event
        except AttributeError:
            src, dst = e.src_user, e.dst_user
            sx = u_get(src)
            if sx is None:
                sx = users[src] = nu
                nu += 1
                add_u(src)
            dx = u_get(dst)
            if dx is None:
                dx = users[dst] = nu
                nu += 1
                add_u(dst)
            follow_ops.append((src, dst, sx, dx, ts, e.op))
            continue
        u = e.user_id
        ux = u_get(u)
        if ux is None:
            ux = users[u] = nu
            nu += 1
            add_u(u)
        ix = i_get(it)
        if ix is None:
            ix = items[it] = ni
            ni += 1
            add_i(it)
        du(u)
        di(it)
        w = e.weight
        inc = kind_w[e.kind] if w is None else float(w)
        k = ux << 32 | ix
        cur = ui_get(k) or s_ui(k)  # a stored (w, t) tuple is never falsy
        if cur is None:
            ui[k] = (inc, ts)
            fresh_ui += 1
        else:
            w0, t0 = cur
            ui[k] = (w0 * 2.0 ** ((t0 - ts) / hl) + inc, ts) if ts >= t0 else (w0 + inc * 2.0 ** ((ts - t0) / hl), t0)
        cur = pop_get(ix) or s_pop(ix)
        if cur is None:
            pop[ix] = (inc, ts)
        else:
            w0, t0 = cur
            pop[ix] = (w0 * 2.0 ** ((t0 - ts) / hl) + inc, ts) if ts >= t0 else (w0 + inc * 2.0 ** ((ts - t0) / hl), t0)
        s = e.session_id
        last[s] = e
        seq = seqs_get(s)
        if seq is None:
            if s not in sess_index:
                sess_index[s] = ns
                ns += 1
                add_s(s)
            old = stored.get(s)
            if old is None:
                seqs[s] = [it]
                continue
            seq = seqs[s] = list(old[1])
            prev = seq[-1]
            if prev != it:
                di(prev)  # an item of the batch is marked already; this one is from the store
        else:
            prev = seq[-1]
        if prev != it:  # an immediate repeat is not a transition
            k = items[prev] << 32 | ix
            cur = ii_get(k) or s_ii(k)
            if cur is None:
                ii[k] = (1.0, ts)
                fresh_ii += 1
            else:
                w0, t0 = cur
                ii[k] = (w0 * 2.0 ** ((t0 - ts) / hl) + 1.0, ts) if ts >= t0 else (w0 + 2.0 ** ((ts - t0) / hl), t0)
        seq.append(it)
    n_inter = len(events) - len(follow_ops)
    sessions: dict[str, SessionState] = {}
    for s, seq in seqs.items():
        e = last[s]
        old = stored.get(s)
        if old is None:
            sessions[s] = SessionState(e.user_id, tuple(seq[-hist:]), e.ts, len(seq))
        else:
            # Trimmed one item per append, as event by event: a history stored under a larger
            # session_history keeps its length.
            n_old = len(old[1])
            sessions[s] = SessionState(e.user_id, tuple(seq[-max(hist, n_old):]), e.ts, old[3] + len(seq) - n_old)
    uu_put, uu_del, uu_touched, uu_change, follows, unfollows, skipped = _resolve_follows(follow_ops, view.uu, dirty_u)
    new_nodes = {
        t: list(zip(view.added[t], range(view.counts[t], n))) for t, n in (("user", nu), ("item", ni), ("session", ns))
    }
    touched = len(ui) + len(ii) + uu_touched
    n_new = (nu - n_users0) + (ni - n_items0) + (ns - n_sess0)
    return BatchPlan(
        new_nodes=new_nodes,
        ui=ui,
        ii=ii,
        pop=pop,
        uu_put=uu_put,
        uu_del=uu_del,
        sessions=sessions,
        dirty={"user": dirty_u, "item": dirty_i, "session": set(seqs)},
        watermark=wm if events else None,
        new_edges={"ui": fresh_ui, "ii": fresh_ii, "uu": uu_change},
        follows=follows,
        unfollows=unfollows,
        stats=ApplyStats(n_inter, follows + unfollows, skipped, n_new, touched),
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




def _resolve_follows(ops, stored: Mapping[int, Weight], dirty_users: set[str]):
    """Replay follow ops in arrival order against the stored ``uu`` values.

    Rules (:func:`follow_outcome`): ``follow`` at ``ts`` sets ``uu`` to ``(1.0, ts)`` if the
    edge is absent or ``ts >= t_ref``; ``unfollow`` at ``ts >= t_ref`` removes it; any other op
    is skipped. Returns ``(puts, deletes, touched keys, edge count change, follows, unfollows,
    skipped)``.
    """
    overlay: dict[int, Weight | None] = {}
    follows = unfollows = skipped = 0
    for src, dst, sx, dx, ts, op in ops:
        key = sx << 32 | dx
        cur = overlay[key] if key in overlay else stored.get(key)
        outcome = follow_outcome(None if cur is None else cur[1], ts, op)
        if outcome is FOLLOW:
            overlay[key] = (1.0, ts)
            follows += 1
        elif outcome is UNFOLLOW:
            overlay[key] = None
            unfollows += 1
        else:
            skipped += 1
            continue
        dirty_users.add(src)
        dirty_users.add(dst)
    uu_put = {k: v for k, v in overlay.items() if v is not None}
    uu_del = [k for k, v in overlay.items() if v is None and k in stored]
    change = sum(k not in stored for k in uu_put) - len(uu_del)
    return uu_put, uu_del, len(overlay), change, follows, unfollows, skipped
