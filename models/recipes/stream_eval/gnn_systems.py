"""The GNN systems of the replay — ``live``, ``static``, ``live_no_decay`` — over a LiveEngine.

All three wrap the live engine of :mod:`models.live.engine` (imported only when one is
built, since it pulls in torch); they differ only in what the engine may do after its first
training, which happens at the end of the warm-up prefix (``end_warmup`` → ``train_now``):

* ``live``: learns every event (``observe``), refreshes embeddings locally when due and
  retrains periodically (``maybe_refresh`` / ``maybe_retrain``, both on event time);
* ``static``: observes events too — a next-item answer needs the session's current clicks,
  which only the store knows — but never refreshes or retrains: the model trained on the
  warm-up prefix serves the whole scored part;
* ``live_no_decay``: ``live`` over a store with decay switched off (half-life ∞).

Before the warm-up ends nothing is refreshed or retrained (no model exists yet and nothing
is scored then). A scored event asks ``recommend_next`` (session, user) on next-item
datasets and ``recommend_social`` (user) on social ones.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from graph_store import GraphStore, MemoryGraphStore, StoreSettings
from stream.events import Follow, Interaction
from models.recipes.stream_eval.datasets import Task
from models.recipes.stream_eval.names import GNN_SYSTEMS
from models.recipes.stream_eval.prequential import Query

Event = Interaction | Follow



class GNNUnavailableError(RuntimeError):
    """The live engine module is not importable (not written yet, or torch is missing)."""


class Engine(Protocol):
    """The part of ``models.live.engine.LiveEngine`` the replay uses."""

    def observe(self, events: Sequence[Event], now_ms: int) -> None: ...

    def maybe_refresh(self, now_ms: int) -> object | None: ...

    def maybe_retrain(self, now_ms: int) -> bool: ...

    def train_now(self, now_ms: int) -> None: ...

    def recommend_next(self, session_id: str, user_id: str, now_ms: int, k: int) -> list[tuple[str, float]]: ...

    def recommend_social(self, user_id: str, now_ms: int, k: int) -> list[tuple[str, float]]: ...


class EngineSystem:
    """A :class:`~models.recipes.stream_eval.prequential.System` over one engine.

    ``refresh`` / ``retrain`` say whether the engine may update its model after the first
    training; ``static`` is both False.
    """

    def __init__(self, name: str, engine: Engine, task: Task, *, refresh: bool, retrain: bool) -> None:
        if task not in ("next_item", "social"):
            raise ValueError(f"task must be 'next_item' or 'social', got {task!r}")
        self.name = name
        self.engine = engine
        self.task = task
        self.refresh = refresh
        self.retrain = retrain
        self.trained = False
        self.refreshes = 0
        self.retrains = 0

    def learn(self, events: Sequence[Event], now_ms: int) -> None:
        self.engine.observe(events, now_ms)
        if not self.trained:
            return
        # Retrain first: a fresh model makes a refresh of the old one pointless.
        if self.retrain and self.engine.maybe_retrain(now_ms):
            self.retrains += 1
        if self.refresh and self.engine.maybe_refresh(now_ms) is not None:
            self.refreshes += 1

    def end_warmup(self, now_ms: int) -> None:
        self.engine.train_now(now_ms)
        self.trained = True

    def recommend(self, query: Query, now_ms: int, k: int) -> list[str]:
        if not self.trained:
            raise RuntimeError(f"{self.name}: recommend before end_warmup trained the model")
        if self.task == "social":
            scored = self.engine.recommend_social(query.user_id, now_ms, k)
        else:
            scored = self.engine.recommend_next(query.session_id, query.user_id, now_ms, k)
        return [item for item, _ in scored]

    def stats(self) -> dict[str, float | int]:
        """Counts that explain a score: refreshes and retrains done here, and what the engine
        reports of its own (GNN answers vs trending fallbacks, training and refresh time)."""
        out: dict[str, float | int] = {"refreshes": self.refreshes, "retrains": self.retrains}
        engine_stats = getattr(self.engine, "stats", None)
        for key in ("gnn_recommendations", "fallback_recommendations", "train_seconds", "refresh_seconds"):
            value = getattr(engine_stats, key, None)
            if isinstance(value, (int, float)):
                out[key] = round(value, 2)
        priors = getattr(engine_stats, "next_item_priors", None)
        if priors:  # what each training fitted: shows whether the priors were used at all
            out["next_item_priors"] = [{"popularity": b, "transitions": g} for b, g in priors]
        excluded = getattr(engine_stats, "exclude_seen", None)
        if excluded:  # per training: the models that answer without the session's own items
            out["exclude_seen"] = excluded
        return out

    def __repr__(self) -> str:
        return (f"EngineSystem(name={self.name!r}, task={self.task!r}, refresh={self.refresh}, "
                f"retrain={self.retrain}, trained={self.trained})")


def build_gnn_system(name: str, task: Task, *, half_life_ms: float, settings: Any = None,
                     overrides: Mapping[str, int] | None = None, store: GraphStore | None = None,
                     train_seed: int | None = None) -> EngineSystem:
    """``live``, ``static`` or ``live_no_decay`` over a new ``LiveEngine``.

    ``settings`` is a ``LiveSettings`` (default: its defaults), with ``overrides`` of its
    top-level fields (``refresh_every_ms``, ``retrain_every_ms``) applied; ``store`` defaults
    to a memory store with ``half_life_ms`` (∞ for ``live_no_decay``); ``train_seed`` replaces
    the training config's seed.
    """
    if name not in GNN_SYSTEMS:
        raise ValueError(f"unknown GNN system {name!r}; choose one of {', '.join(GNN_SYSTEMS)}")
    try:
        from models.live.engine import LiveEngine, LiveSettings
    except ImportError as exc:
        raise GNNUnavailableError(
            f"system {name!r} needs models.live.engine.LiveEngine, which cannot be imported ({exc}); "
            "run the baselines only (--systems transitions,popularity,followee) until it exists"
        ) from exc
    updates = name != "static"
    if store is None:
        hl = math.inf if name == "live_no_decay" else half_life_ms
        store = MemoryGraphStore(StoreSettings(half_life_ms=hl))
    settings = replace(settings if settings is not None else LiveSettings(), **dict(overrides or {}))
    if train_seed is not None:
        settings = replace(settings, train=replace(settings.train, seed=train_seed))
    engine = LiveEngine(settings, store, refresh=updates, retrain=updates)
    return EngineSystem(name, engine, task, refresh=updates, retrain=updates)
