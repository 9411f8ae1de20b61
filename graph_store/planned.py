"""Batch pipeline for key-value backends: two batched reads, pure planning, one atomic write."""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from graph_store.base import GraphStore
from graph_store.batch import (
    BatchContext,
    BatchDelta,
    BatchPlan,
    StoredWeights,
    aggregate,
    collect_node_ids,
    resolve,
)
from graph_store.schema import ApplyStats, TopicPartition

__all__ = ["PlannedGraphStore"]


class PlannedGraphStore(GraphStore):
    """A store whose backend reads and writes in bulk (RocksDB).

    ``_apply_many`` reads the batch's node ids and sessions (``_read_context``), aggregates
    the batch in plain dicts (:func:`graph_store.batch.aggregate`), reads the stored values of
    the touched keys (``_read_weights``), merges (:func:`graph_store.batch.resolve`) and
    writes everything in one commit (``_commit``).
    """

    def _apply_many(self, events: Sequence[Any], offsets: dict[TopicPartition, int]) -> ApplyStats:
        order = collect_node_ids(events)
        ctx = self._read_context(order)
        delta = aggregate(events, self.settings, ctx, order)
        plan = resolve(delta, self._read_weights(delta), self.settings.half_life_ms)
        self._commit(plan, offsets)
        return plan.stats

    @abstractmethod
    def _read_context(self, order: dict[str, list[str]]) -> BatchContext:
        """Indices of the known ids in ``order`` (plus the last items of the stored sessions,
        which start the batch's first transitions), node counts, stored states of its sessions."""

    @abstractmethod
    def _read_weights(self, delta: BatchDelta) -> StoredWeights:
        """Stored values of the keys ``delta`` touches (ui, ii, pop, and uu of its follow ops)."""

    @abstractmethod
    def _commit(self, plan: BatchPlan, offsets: dict[TopicPartition, int]) -> None:
        """Write the plan, offsets, watermark, dirty marks and counters atomically."""
