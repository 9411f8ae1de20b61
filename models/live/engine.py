"""The live system in one process, with no broker: store → train → refresh → score.

The workers split this across processes (ingest/refresh/score/train, Kafka and RocksDB in
between); :class:`LiveEngine` runs the same pieces in order inside one loop, with event time
driving every schedule. ``gnnrec eval --stream`` replays datasets through it, the tests check
the pieces against oracles with it, and it documents the data flow in ~150 lines.

Schedules run on event time (``now_ms`` passed in): a refresh every ``refresh_every_ms``, a
retraining every ``retrain_every_ms`` (0 = never); ``static`` is ``refresh=False,
retrain=False`` after :meth:`train_now`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from graph_store import GraphStore
from models.live.bundle import ModelBundle
from models.live.refresher import Refresher, RefreshResult
from models.live.scorer import GnnScorer, ScorerSettings, social_inputs
from models.live.transition_prior import session_successors
from models.live.train import LiveTrainConfig, train_bundle


@dataclass(frozen=True)
class LiveSettings:
    train: LiveTrainConfig = field(default_factory=LiveTrainConfig)
    scorer: ScorerSettings = field(default_factory=ScorerSettings)
    refresh_every_ms: int = 60_000
    retrain_every_ms: int = 0
    dense_above: float = 0.5

    def __post_init__(self) -> None:
        if self.refresh_every_ms < 0 or self.retrain_every_ms < 0:
            raise ValueError("refresh_every_ms and retrain_every_ms must be >= 0 (0 = every call / never)")


@dataclass
class EngineStats:
    refreshes: int = 0
    recomputed_rows: int = 0
    refresh_seconds: float = 0.0
    trainings: int = 0
    train_seconds: float = 0.0
    gnn_recommendations: int = 0
    fallback_recommendations: int = 0
    staleness_ms: list[int] = field(default_factory=list)
    # per training: the next-item model's fitted prior weights (popularity β, transitions γ)
    next_item_priors: list[tuple[float, float]] = field(default_factory=list)
    # per training: the models whose answers leave out the session's own items (repeats.py)
    exclude_seen: list[list[str]] = field(default_factory=list)


class LiveEngine:
    """Graph store + trained bundle + local refresh + GNN scorer, driven by event time."""

    def __init__(self, settings: LiveSettings, store: GraphStore, *, refresh: bool = True,
                 retrain: bool = True) -> None:
        self.settings = settings
        self.store = store
        self.refresh_enabled, self.retrain_enabled = refresh, retrain
        self.refresher: Refresher | None = None
        self.scorer: GnnScorer | None = None
        self.last_refresh_ms: int | None = None
        self.last_train_ms: int | None = None
        self.stats = EngineStats()

    @property
    def bundle(self) -> ModelBundle | None:
        return None if self.refresher is None else self.refresher.bundle

    # ---- learning ------------------------------------------------------------------------------
    def observe(self, events: Sequence[Any], now_ms: int) -> None:
        """Apply events (already validated) to the store."""
        if events:
            self.store.apply_many(list(events))

    def train_now(self, now_ms: int) -> ModelBundle:
        bundle = train_bundle(self.store, now_ms, self.settings.train)
        self.install(bundle, now_ms)
        self.stats.trainings += 1
        self.stats.next_item_priors.append((bundle.prior_weight("next_item"), bundle.transition_weight()))
        self.stats.exclude_seen.append([kind for kind in ("next_item", "social") if bundle.exclude_seen(kind)])
        self.stats.train_seconds += float(bundle.info.get("train_seconds", 0.0))
        self.last_train_ms = now_ms
        return bundle

    def install(self, bundle: ModelBundle, now_ms: int) -> RefreshResult:
        """Hot swap: rebuild every embedding with the new weights, then serve them."""
        if self.refresher is None:
            self.refresher = Refresher(bundle, dense_above=self.settings.dense_above)
            result = self.refresher.rebuild(self.store, now_ms)
        else:
            result = self.refresher.swap(bundle, self.store, now_ms)
        if self.scorer is None:
            self.scorer = GnnScorer(bundle, self.settings.scorer)
        else:
            self.scorer.swap(bundle)
        self._publish(result)
        self.last_refresh_ms = now_ms
        return result

    def maybe_refresh(self, now_ms: int) -> RefreshResult | None:
        if not self.refresh_enabled or self.refresher is None:
            return None
        if self.last_refresh_ms is not None and now_ms - self.last_refresh_ms < self.settings.refresh_every_ms:
            return None
        result = self.refresher.refresh(self.store, now_ms)
        self._publish(result)
        self.last_refresh_ms = now_ms
        self.stats.refreshes += 1
        self.stats.recomputed_rows += result.recomputed
        self.stats.refresh_seconds += result.seconds
        return result

    def maybe_retrain(self, now_ms: int) -> bool:
        every = self.settings.retrain_every_ms
        if not self.retrain_enabled or not every or self.last_train_ms is None or now_ms - self.last_train_ms < every:
            return False
        self.train_now(now_ms)
        return True

    def _publish(self, result: RefreshResult) -> None:
        assert self.scorer is not None
        for node_type, (ids, vectors) in result.rows.items():
            self.scorer.update(node_type, ids, vectors)
        if result.recomputed or result.full:
            self.scorer.set_version(result.embedding_version, result.watermark_ms)
        self.scorer.refresh_prior(self.store, result.watermark_ms)

    # ---- serving -------------------------------------------------------------------------------
    def _trending(self, now_ms: int, k: int) -> list[tuple[str, float]]:
        self.stats.fallback_recommendations += 1
        return [(n.node_id, n.weight) for n in self.store.item_popularity(now_ms, k)]

    def _served(self, recs: list[tuple[str, float]] | None, now_ms: int, k: int) -> list[tuple[str, float]]:
        if recs is None:
            return self._trending(now_ms, k)
        self.stats.gnn_recommendations += 1
        if self.scorer is not None and self.scorer.watermark_ms is not None:
            self.stats.staleness_ms.append(max(0, now_ms - self.scorer.watermark_ms))
        return recs

    def recommend_next(self, session_id: str, user_id: str | None, now_ms: int, k: int) -> list[tuple[str, float]]:
        recs = None
        if self.scorer is not None:
            items, m = self.store.session_items(session_id), self.scorer.transition_successors
            successors = session_successors(self.store, items, now_ms, m) if m else None
            recs = self.scorer.recommend_next(items, k, successors)
        return self._served(recs, now_ms, k)

    def recommend_social(self, user_id: str, now_ms: int, k: int,
                         session_id: str | None = None) -> list[tuple[str, float]]:
        recs = None
        if self.scorer is not None:
            followees, items = social_inputs(self.store, user_id, session_id, now_ms, max_followees=None,
                                             profile_items=self.settings.scorer.profile_items)
            recs = self.scorer.recommend_social(user_id, followees, items, k)
        return self._served(recs, now_ms, k)
