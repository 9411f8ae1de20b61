"""The prequential (test-then-train) replay: ask every system, score, then let it learn.

For each event in time order:

1. if it is a *scored* event, every system is asked for ``k`` items with a :class:`Query`
   (who, which session, when — never the item), and the answer is scored against the item
   the user actually interacted with;
2. the event joins the pending micro-batch; every ``learn_every`` events the batch is handed
   to every system's ``learn`` (so with ``learn_every=1`` a system has seen every earlier
   event, and never the current one, when it answers).

An event is scored when it is an :class:`~stream.events.Interaction`, lies after the warm-up
prefix, and its session already held at least one item (the harness counts this itself, so
every system is scored on exactly the same events). The warm-up prefix — the first
``warmup_fraction`` of the events — is learned by every system but scored for none; at its
end each system's ``end_warmup`` is called (a ``static`` model trains then, once).

Metrics, with ``rank`` the 1-based position of the target in a system's answer (first
occurrence; answers longer than ``k`` are cut to ``k``):

    HR@k  = (1/N) Σ [rank ≤ k]          MRR@k = (1/N) Σ [rank ≤ k] / rank

over the N scored events.
"""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from stream.events import Follow, Interaction

Event = Interaction | Follow


@dataclass(frozen=True, slots=True)
class Query:
    """What a system is told when asked for a recommendation. It carries no item: the item
    of the event being predicted is the answer, and the system learns it only afterwards."""

    user_id: str
    session_id: str
    ts: int


class System(Protocol):
    """A recommender under prequential evaluation.

    ``recommend`` is called before the event it is scored on has been learned; ``learn``
    gets events in time order (a micro-batch), ``now_ms`` being the last one's ts;
    ``end_warmup`` is called once, after the warm-up prefix has been learned.
    """

    name: str

    def recommend(self, query: Query, now_ms: int, k: int) -> list[str]: ...

    def learn(self, events: Sequence[Event], now_ms: int) -> None: ...

    def end_warmup(self, now_ms: int) -> None: ...


@dataclass(frozen=True)
class PrequentialSettings:
    """Args:
        k: length of the recommendation lists that are scored (HR@k, MRR@k).
        warmup_fraction: share of the events (by count, from the start) learned but not
            scored; in [0, 1).
        learn_every: micro-batch size: events are handed to ``learn`` in groups of this
            many. 1 is exact prequential order; larger batches are faster for systems whose
            ``learn`` has a per-call cost, but then a system answers without the latest
            ``learn_every - 1`` events — for next-item that can be the session's own last click.
    """

    k: int = 20
    warmup_fraction: float = 0.5
    learn_every: int = 1

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"PrequentialSettings.k must be >= 1, got {self.k}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"PrequentialSettings.warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.learn_every < 1:
            raise ValueError(f"PrequentialSettings.learn_every must be >= 1, got {self.learn_every}")


def rank_of(target: str, items: Sequence[str], k: int) -> int | None:
    """1-based rank of ``target`` among the first ``k`` of ``items``; None when absent."""
    for pos, item in enumerate(items[:k], 1):
        if item == target:
            return pos
    return None


@dataclass
class Tally:
    """Running HR@k / MRR@k of one system, and the seconds spent inside it."""

    scored: int = 0
    hits: int = 0
    reciprocal_sum: float = 0.0
    seconds: float = 0.0

    def add(self, rank: int | None) -> None:
        self.scored += 1
        if rank is not None:
            self.hits += 1
            self.reciprocal_sum += 1.0 / rank

    @property
    def hit_rate(self) -> float:
        return self.hits / self.scored if self.scored else 0.0

    @property
    def mrr(self) -> float:
        return self.reciprocal_sum / self.scored if self.scored else 0.0

    def to_dict(self, k: int) -> dict[str, float | int]:
        return {f"hr@{k}": round(self.hit_rate, 4), f"mrr@{k}": round(self.mrr, 4),
                "scored": self.scored, "seconds": round(self.seconds, 2)}


@dataclass
class PrequentialResult:
    events: int
    warmup_events: int
    scored: int
    k: int
    tallies: dict[str, Tally] = field(default_factory=dict)

    def systems_dict(self) -> dict[str, dict[str, float | int]]:
        return {name: t.to_dict(self.k) for name, t in self.tallies.items()}


def run_prequential(events: Sequence[Event], systems: Sequence[System], settings: PrequentialSettings,
                    *, timer: Callable[[], float] = time.perf_counter) -> PrequentialResult:
    """Replay ``events`` (non-decreasing ts) through ``systems``; see the module docstring.

    ``timer`` measures the seconds each system spends (it plays no part in the replay).
    """
    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise ValueError(f"system names must be unique, got {names}")
    split = int(len(events) * settings.warmup_fraction)
    result = PrequentialResult(len(events), split, 0, settings.k, {n: Tally() for n in names})
    tallies = [result.tallies[n] for n in names]
    session_len: dict[str, int] = defaultdict(int)
    pending: list[Event] = []
    last_ts: int | None = None

    def flush(now_ms: int) -> None:
        batch = tuple(pending)
        pending.clear()
        for system, tally in zip(systems, tallies):
            t0 = timer()
            system.learn(batch, now_ms)
            tally.seconds += timer() - t0

    for i, event in enumerate(events):
        if last_ts is not None and event.ts < last_ts:
            raise ValueError(f"events must be in non-decreasing ts order; event {i} has ts {event.ts} < {last_ts}")
        if i == split:
            if pending:
                flush(pending[-1].ts)
            now = last_ts if last_ts is not None else event.ts
            for system, tally in zip(systems, tallies):
                t0 = timer()
                system.end_warmup(now)
                tally.seconds += timer() - t0
        if isinstance(event, Interaction):
            if i >= split and session_len[event.session_id] >= 1:
                result.scored += 1
                query = Query(event.user_id, event.session_id, event.ts)
                for system, tally in zip(systems, tallies):
                    t0 = timer()
                    items = system.recommend(query, event.ts, settings.k)
                    tally.seconds += timer() - t0
                    tally.add(rank_of(event.item_id, items, settings.k))
            session_len[event.session_id] += 1
        pending.append(event)
        last_ts = event.ts
        if len(pending) >= settings.learn_every:
            flush(event.ts)
    if pending:
        flush(pending[-1].ts)
    return result
