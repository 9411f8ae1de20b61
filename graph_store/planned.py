"""Batch pipeline for key-value backends: committed state as dicts, pure planning, one atomic write."""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from graph_store.base import GraphStore
from graph_store.batch import BatchPlan, BatchView, aggregate, validate_offsets
from graph_store.errors import InvalidEventError
from graph_store.schema import ApplyStats, TopicPartition

__all__ = ["PlannedGraphStore"]


class PlannedGraphStore(GraphStore):
    """A store whose backend reads and writes in bulk (RocksDB).

    ``_apply_many`` gets the committed values of everything the batch touches as dicts
    (``_batch_view``: the backend's write-back caches, completed by bulk reads of what they
    miss), folds the batch into a plan (:func:`graph_store.batch.aggregate`) and writes it in
    one commit (``_commit``). If planning or the commit fails, the ids the plan added to the
    view are taken back (``_forget_nodes``), so the caches keep mirroring committed state.
    """

    def apply_many(
        self,
        events: Sequence[Any],
        offsets: Mapping[TopicPartition, int] | None = None,
        *,
        trusted: bool = False,
    ) -> ApplyStats:
        """:meth:`GraphStore.apply_many`; ``trusted=True`` skips the per-event validation.

        Pass ``trusted=True`` only for events that were already checked by the same rules
        (ids: ``str`` of 1..256 characters; ``ts``: ``int`` in ``[0, 2**63)``; ``kind`` a key
        of ``settings.kind_weights``; ``weight`` ``None`` or a finite number ``>= 0``; follow
        ``op`` in follow/unfollow). The ingest worker does so for the output of the
        :mod:`stream.events` decoders (see :func:`workers.runtime.decode.store_trusts_decoder`).
        A malformed event applied this way may raise mid-plan (nothing is written) or store
        garbage. Offsets are always validated.
        """
        if not trusted:
            return super().apply_many(events, offsets)
        self._check_writable()
        if isinstance(events, (str, bytes)) or not isinstance(events, Sequence):
            raise InvalidEventError(f"events must be a sequence (list/tuple) of events, got {type(events)}")
        return self._apply_many(events, validate_offsets(offsets))

    def _apply_many(self, events: Sequence[Any], offsets: dict[TopicPartition, int]) -> ApplyStats:
        view = self._batch_view(events)
        try:
            plan = aggregate(events, self.settings, view)
            self._commit(plan, offsets)
        except BaseException:
            self._forget_nodes(view.added)
            raise
        return plan.stats

    @abstractmethod
    def _batch_view(self, events: Sequence[Any]) -> BatchView:
        """Committed state holding every stored id, session and edge value ``events`` touch
        (ids, sessions and the last items of stored sessions, which start the batch's first
        transitions; ui, ii, pop and uu values), with fresh empty ``added`` lists."""

    @abstractmethod
    def _forget_nodes(self, added: dict[str, list[str]]) -> None:
        """Remove ids a failed batch added to the view's node dicts."""

    @abstractmethod
    def _commit(self, plan: BatchPlan, offsets: dict[TopicPartition, int]) -> None:
        """Write the plan, offsets, watermark, dirty marks and counters atomically."""
