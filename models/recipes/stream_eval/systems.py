"""Baseline systems for the prequential replay, built on the score worker's own logic.

Each baseline owns a :class:`~graph_store.MemoryGraphStore`; ``learn`` applies the events to
it, ``recommend`` reads it at the query's event time. They are the same functions the score
worker serves (:mod:`models.live.baselines`), with the same trending backfill:

* ``transitions`` — decayed item→item transitions around the session's recent items;
* ``transitions_no_decay`` — the same with decay switched off (half-life ∞);
* ``followee`` — what the user's followees interacted with (datasets with follows);
* ``popularity`` — trending items (decayed popularity) not already in the session;
  ``popularity_no_decay`` counts all-time popularity instead (the drift check: under
  seasonal drift the decayed count should win).

Trending. The score worker recomputes the trending list by event time (every
``trending_refresh_s`` of it, and at least ``trending_refresh_events`` fallback answers apart);
here it is recomputed after every ``trending_refresh_events`` learned events, so a replay is
deterministic. Decay alone never reorders trending items — every weight is multiplied by the
same 2^(−Δt/half-life) — so only new events can change the list, and counting events loses
nothing but the changes of the last few events.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from graph_store import MemoryGraphStore, Neighbour, StoreSettings
from stream.events import Follow, Interaction
from models.live.baselines import next_item_transitions, social_followees
from models.recipes.stream_eval.names import BASELINES
from models.recipes.stream_eval.prequential import Query

Event = Interaction | Follow

WEEK_MS = 7 * 86_400_000


@dataclass(frozen=True)
class BaselineSettings:
    """Args:
        half_life_ms: edge and popularity half-life in event time (the score worker's
            default, 168 h); the ``*_no_decay`` systems use ∞ instead.
        session_context: recent session items the transitions baseline scores from.
        max_followees: followees the followee baseline reads per user.
        fanout: neighbours read per item or followee.
        trending_size: trending items kept for backfill, as a multiple of ``k``.
        trending_refresh_events: learned events between recomputations of trending.
    """

    half_life_ms: float = WEEK_MS
    session_context: int = 5
    max_followees: int = 50
    fanout: int = 50
    trending_size: int = 4
    trending_refresh_events: int = 200

    def store_settings(self, *, decay: bool = True) -> StoreSettings:
        return StoreSettings(half_life_ms=self.half_life_ms if decay else math.inf)


class StoreBaseline:
    """Common part: a memory store fed by ``learn`` and a deterministic trending list."""

    name: str = "store"

    def __init__(self, settings: BaselineSettings, *, decay: bool = True) -> None:
        self.settings = settings
        self.store = MemoryGraphStore(settings.store_settings(decay=decay))
        self._trending: list[Neighbour] = []
        self._since_trending = 0
        self._stale = True

    def learn(self, events: Sequence[Event], now_ms: int) -> None:
        self.store.apply_many(list(events))
        self._since_trending += len(events)
        if self._since_trending >= self.settings.trending_refresh_events:
            self._stale = True

    def end_warmup(self, now_ms: int) -> None:
        """Baselines learn continuously; nothing happens at the split."""

    def trending(self, now_ms: int, k: int) -> list[Neighbour]:
        want = self.settings.trending_size * k
        if self._stale or (len(self._trending) < want and self._since_trending > 0):
            self._trending = self.store.item_popularity(now_ms, k=want)
            self._since_trending = 0
            self._stale = False
        return self._trending

    def recommend(self, query: Query, now_ms: int, k: int) -> list[str]:
        return [item for item, _ in self._scored(query, now_ms, k)]

    def _scored(self, query: Query, now_ms: int, k: int) -> list[tuple[str, float]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, half_life_ms={self.store.settings.half_life_ms})"


class TransitionsSystem(StoreBaseline):
    """Next item from decayed transitions (:func:`models.live.baselines.next_item_transitions`)."""

    def __init__(self, settings: BaselineSettings, *, decay: bool = True) -> None:
        super().__init__(settings, decay=decay)
        self.name = "transitions" if decay else "transitions_no_decay"

    def _scored(self, query: Query, now_ms: int, k: int) -> list[tuple[str, float]]:
        s = self.settings
        return next_item_transitions(self.store, query.session_id, now_ms, k=k, context=s.session_context,
                                     trending=self.trending(now_ms, k), fanout=s.fanout)


class FolloweeSystem(StoreBaseline):
    """Items from the user's followees (:func:`models.live.baselines.social_followees`)."""

    name = "followee"

    def _scored(self, query: Query, now_ms: int, k: int) -> list[tuple[str, float]]:
        s = self.settings
        return social_followees(self.store, query.user_id, now_ms, k=k, max_followees=s.max_followees,
                                trending=self.trending(now_ms, k), fanout=s.fanout)


class PopularitySystem(StoreBaseline):
    """Trending items, minus those already in the session (the rule the other baselines
    apply to their candidates too, so the comparison isolates their graph signal)."""

    def __init__(self, settings: BaselineSettings, *, decay: bool = True) -> None:
        super().__init__(settings, decay=decay)
        self.name = "popularity" if decay else "popularity_no_decay"

    def _scored(self, query: Query, now_ms: int, k: int) -> list[tuple[str, float]]:
        seen = set(self.store.session_items(query.session_id))
        return [(nb.node_id, nb.weight) for nb in self.trending(now_ms, k) if nb.node_id not in seen][:k]




def build_baseline(name: str, settings: BaselineSettings) -> StoreBaseline:
    if name == "transitions":
        return TransitionsSystem(settings)
    if name == "transitions_no_decay":
        return TransitionsSystem(settings, decay=False)
    if name == "followee":
        return FolloweeSystem(settings)
    if name == "popularity":
        return PopularitySystem(settings)
    if name == "popularity_no_decay":
        return PopularitySystem(settings, decay=False)
    raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
