"""The graph store contract: public methods validate, private primitives implement.

Every public method checks its arguments and the store's state, then calls a ``_primitive``
that a backend (:mod:`graph_store.memory`, :mod:`graph_store.rocksdb`) implements. Both
backends build on the same pure rules (:func:`graph_store.decay.add_decayed`,
:func:`graph_store.batch.follow_outcome`); key-value backends share the batch planner of
:class:`graph_store.planned.PlannedGraphStore`.
"""
from __future__ import annotations

import heapq
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from graph_store.batch import validate_events, validate_offsets
from graph_store.decay import decayed_at, decayed_weights
from graph_store.errors import InvalidEventError
from graph_store.lifecycle import StoreLifecycle
from graph_store.schema import (
    EDGE_TYPES,
    FORWARD_EDGE_TYPES,
    NODE_TYPES,
    ApplyStats,
    Neighbour,
    SessionState,
    StoreCounts,
    StoreSettings,
    TopicPartition,
    check_edge_type,
    check_node_type,
)

__all__ = [
    "ApplyStats",
    "GraphStore",
    "Neighbour",
    "StoreCounts",
    "StoreSettings",
    "TopicPartition",
]

EdgeRows = tuple[list[int], list[int], list[float], list[int]]  # src idx, dst idx, w, t_ref


def _check_time(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int of epoch ms (pass the event-time clock), got {value!r}")


def _check_k(k: Any) -> None:
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 0):
        raise ValueError(f"k must be None (all) or an int >= 0, got {k!r}")


def _check_id(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str id, got {value!r}")


def _top_decayed(rows: Iterable[tuple[str, tuple[float, int]]], now_ms: int, half_life_ms: float,
                 k: int | None) -> list[Neighbour]:
    """``(id, (weight, t_ref))`` rows decayed to ``now_ms``, by weight descending, ties by id
    ascending; the first ``k`` (all if None).

    The scorer calls this for every neighbour of every recent item (and the trending fallback
    for every item), so it decays with plain tuples, reads a memory store's dict items as they
    are, and builds :class:`Neighbour` tuples only for the ``k`` kept (``tuple.__new__``: no
    Python-level constructor call); weights are :func:`~graph_store.decay.decayed_at`'s.
    """
    if half_life_ms == math.inf:
        keyed = [(-w, d) for d, (w, _) in rows]
    else:
        c = -1.0 / half_life_ms
        keyed = [(-(w * 2.0 ** (c * (now_ms - t))) if now_ms > t else -w, d) for d, (w, t) in rows]
    if k is None or k >= len(keyed):
        keyed.sort()
    else:
        keyed = heapq.nsmallest(k, keyed)
    new = tuple.__new__
    return [new(Neighbour, (d, -nw)) for nw, d in keyed]


top_decayed = _top_decayed  # for readers that keep their own rows (models/live/trending.py)


class GraphStore(StoreLifecycle, ABC):
    """Incremental heterogeneous graph (users, items, sessions) with decayed edge weights.

    ``apply_many`` is one atomic commit of the graph changes, the consumed offsets
    (``{(topic, partition): next offset}``), the watermark (max event ts) and the dirty set.
    Reads take ``now_ms`` explicitly; weights are decayed to it (never grown: reading before
    an edge's last update returns its weight at that update).
    """

    settings: StoreSettings
    READ_ONLY_HINT = ("store was opened read-only (open_read_only) for inspection; writes need the "
                      "worker's own RocksDBGraphStore(path, settings)")

    # ---- writes -----------------------------------------------------------------------
    def apply_many(
        self, events: Sequence[Any], offsets: Mapping[TopicPartition, int] | None = None,
        *, trusted: bool = False,
    ) -> ApplyStats:
        """Apply a batch of interactions/follows and record ``offsets`` in the same commit.

        Raises :class:`InvalidEventError` / :class:`InvalidOffsetsError` before writing
        anything if an input is malformed. ``trusted=True`` skips the per-event checks for
        events already validated by the same rules (the ingest worker's decoders); offsets are
        always checked. Skipping replays is the caller's job
        (see :func:`graph_store.offsets.filter_replays`).
        """
        self._check_writable()
        if isinstance(events, (str, bytes)) or not isinstance(events, Sequence):
            raise InvalidEventError(f"events must be a sequence (list/tuple) of events, got {type(events)}")
        if not trusted:
            validate_events(events, self.settings.kind_weights)
        return self._apply_many(events, validate_offsets(offsets))

    def apply_one(self, event: Any, offsets: Mapping[TopicPartition, int] | None = None) -> ApplyStats:
        """Apply one event; same as ``apply_many([event], offsets)``."""
        return self.apply_many([event], offsets)

    def clear_dirty(self, nodes: Mapping[str, Iterable[str]]) -> None:
        """Remove the dirty marks of the given ids (other ids keep theirs).

        Marks carry no version: clear a snapshot *before* recomputing from the graph
        (``d = store.dirty_nodes(); store.clear_dirty(d); refresh(d)``), so that a change
        committed after the clear marks its nodes again.
        """
        self._check_writable()
        cleared = {}
        for node_type, ids in nodes.items():
            check_node_type(node_type)
            ids = set(ids)
            for node_id in ids:
                _check_id("node id", node_id)
            cleared[node_type] = ids
        self._clear_dirty(cleared)

    # ---- reads ------------------------------------------------------------------------
    def committed_offsets(self) -> dict[TopicPartition, int]:
        """Next offset to consume per partition, as of the last commit."""
        self._check_open()
        return self._committed_offsets()

    def watermark_ms(self) -> int | None:
        """Largest event ts applied so far (None on an empty store)."""
        self._check_open()
        return self._watermark()

    def neighbours(
        self, node_type: str, node_id: str, edge_type: str, now_ms: int, k: int | None = None
    ) -> list[Neighbour]:
        """Out-neighbours over ``edge_type`` by decayed weight at ``now_ms`` (desc, ties by id)."""
        self._check_open()
        check_edge_type(edge_type, node_type)
        _check_id("node_id", node_id)
        _check_time("now_ms", now_ms)
        _check_k(k)
        return self._ranked_out_edges(edge_type, node_id, now_ms, k)

    def _ranked_out_edges(self, edge_type: str, node_id: str, now_ms: int, k: int | None) -> list[Neighbour]:
        """:meth:`neighbours` once its arguments are checked; a backend may answer from a cache."""
        return _top_decayed(self._out_edges(edge_type, node_id), now_ms, self.settings.half_life_ms, k)

    def edge_weight(self, edge_type: str, src_id: str, dst_id: str, now_ms: int) -> float:
        """Decayed weight of one edge at ``now_ms``; 0.0 if absent."""
        self._check_open()
        check_edge_type(edge_type)
        _check_id("src_id", src_id)
        _check_id("dst_id", dst_id)
        _check_time("now_ms", now_ms)
        value = self._edge_value(edge_type, src_id, dst_id)
        return 0.0 if value is None else decayed_at(value[0], value[1], now_ms, self.settings.half_life_ms)

    def degree(self, node_type: str, node_id: str, edge_type: str) -> int:
        """Number of out-edges of ``edge_type`` at the node (0 if unknown)."""
        self._check_open()
        check_edge_type(edge_type, node_type)
        _check_id("node_id", node_id)
        return self._degree(edge_type, node_id)

    def counts(self) -> StoreCounts:
        self._check_open()
        return self._counts()

    def session_state(self, session_id: str) -> SessionState | None:
        """The session's whole state in one read (None if unknown)."""
        self._check_open()
        _check_id("session_id", session_id)
        return self._session(session_id)

    def session_items(self, session_id: str) -> list[str]:
        """The session's last ``session_history`` items, oldest first ([] if unknown)."""
        self._check_open()
        _check_id("session_id", session_id)
        state = self._session(session_id)
        return [] if state is None else list(state.items)

    def session_user(self, session_id: str) -> str | None:
        """User of the session's latest event (None if unknown)."""
        self._check_open()
        _check_id("session_id", session_id)
        state = self._session(session_id)
        return None if state is None else state.user_id

    def session_last_ts(self, session_id: str) -> int | None:
        """Time of the session's latest event (None if unknown)."""
        self._check_open()
        _check_id("session_id", session_id)
        state = self._session(session_id)
        return None if state is None else state.last_ts

    def item_popularity(self, now_ms: int, k: int | None = None) -> list[Neighbour]:
        """Items by decayed popularity at ``now_ms`` (desc, ties by id)."""
        self._check_open()
        _check_time("now_ms", now_ms)
        _check_k(k)
        return _top_decayed(self._popularity_rows(), now_ms, self.settings.half_life_ms, k)

    def item_popularity_state(self, item_ids: Sequence[str]) -> list[tuple[float, int]]:
        """The stored ``(popularity, t_ref)`` of each of ``item_ids``, undecayed (``(0.0, 0)``
        for an unknown item): what :meth:`item_popularity` decays."""
        self._check_open()
        weight, t_ref = self._popularity_of(list(item_ids))
        return list(zip(weight.tolist(), t_ref.tolist()))

    def item_popularity_of(self, item_ids: Sequence[str], now_ms: int) -> np.ndarray:
        """Decayed popularity at ``now_ms`` of each of ``item_ids`` (0 for an unknown item), float64.

        The scorer reads the whole catalogue's popularity at every refresh; this skips the sort
        and the per-item objects of :meth:`item_popularity` and decays in one vector operation
        (equal to it up to float rounding).
        """
        self._check_open()
        _check_time("now_ms", now_ms)
        ids = list(item_ids)
        weight, t_ref = self._popularity_of(ids)
        dt = now_ms - t_ref
        hl = self.settings.half_life_ms
        if hl == math.inf:
            return weight
        return np.where(dt > 0, weight * np.exp2(-np.maximum(dt, 0) / hl), weight)

    def has_node(self, node_type: str, node_id: str) -> bool:
        return self.node_index(node_type, node_id) is not None

    def node_index(self, node_type: str, node_id: str) -> int | None:
        """Dense 0-based index of the node within its type, assigned on first sight."""
        self._check_open()
        check_node_type(node_type)
        _check_id("node_id", node_id)
        return self._node_index(node_type, node_id)

    def node_ids(self, node_type: str) -> list[str]:
        """All ids of a type, ordered by index (``node_ids(t)[node_index(t, x)] == x``)."""
        self._check_open()
        check_node_type(node_type)
        return self._node_ids(node_type)

    def dirty_nodes(self) -> dict[str, set[str]]:
        """Per node type, ids whose incident edges (sessions: state) changed since cleared."""
        self._check_open()
        return self._dirty()

    def to_pyg(self, now_ms: int) -> Any:
        """Snapshot as ``torch_geometric.data.HeteroData`` with weights decayed to ``now_ms``.

        Shapes: ``data[t].num_nodes`` for t in user/item/session; for each forward edge
        ``(src, e, dst)`` in ``(user, ui, item)``, ``(item, ii, item)``, ``(user, uu, user)``:
        ``edge_index: [2, E] int64`` (node indices, sorted by (src, dst)) and
        ``edge_weight: [E] float32``.
        """
        self._check_open()
        _check_time("now_ms", now_ms)
        import numpy as np  # torch is heavy: graph_store imports it only here
        import torch
        from torch_geometric.data import HeteroData

        counts = self._counts()
        data = HeteroData()
        for node_type, n in zip(NODE_TYPES, (counts.users, counts.items, counts.sessions)):
            data[node_type].num_nodes = n
        hl = self.settings.half_life_ms
        for edge_type in FORWARD_EDGE_TYPES:
            src_t, dst_t, _ = EDGE_TYPES[edge_type]
            src, dst, w, t = self._edge_rows(edge_type)
            index = np.array([src, dst], dtype=np.int64).reshape(2, -1)
            order = np.lexsort((index[1], index[0]))
            weight = decayed_weights(w, t, now_ms, hl)
            store = data[src_t, edge_type, dst_t]
            store.edge_index = torch.from_numpy(np.ascontiguousarray(index[:, order]))
            store.edge_weight = torch.from_numpy(weight[order].astype(np.float32))
        return data

    def edge_row_chunks(self, edge_type: str, chunk: int = 65_536) -> Iterator[EdgeRows]:
        """Every edge of a forward type as parallel lists ``(src index, dst index, stored
        weight, t_ref)``, in chunks of about ``chunk`` edges, so a caller can apply batches
        between two chunks (the training input reads: :mod:`models.live.train_inputs`).

        The chunks of one call read one view of the store: RocksDB's iterator pins the
        version it started on; the memory store reads everything in its first chunk (its dicts
        must not change under an iteration).
        """
        self._check_open()
        if edge_type not in FORWARD_EDGE_TYPES:
            raise ValueError(f"edge_row_chunks reads a forward edge type {FORWARD_EDGE_TYPES}, got {edge_type!r}")
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        yield from self._edge_row_chunks(edge_type, chunk)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"{type(self).__name__}(half_life_ms={self.settings.half_life_ms}, {state})"

    # ---- primitives a backend implements ---------------------------------------------------
    @abstractmethod
    def _apply_many(self, events: Sequence[Any], offsets: dict[TopicPartition, int]) -> ApplyStats:
        """Apply validated events and offsets atomically (see :class:`PlannedGraphStore`)."""

    @abstractmethod
    def _committed_offsets(self) -> dict[TopicPartition, int]: ...

    @abstractmethod
    def _watermark(self) -> int | None: ...

    @abstractmethod
    def _out_edges(self, edge_type: str, node_id: str) -> Iterable[tuple[str, tuple[float, int]]]:
        """``(target id, (stored weight, t_ref))`` of the node's out-edges; empty if unknown
        (a memory store's dict items as they are)."""

    @abstractmethod
    def _edge_value(self, edge_type: str, src_id: str, dst_id: str) -> tuple[float, int] | None: ...

    @abstractmethod
    def _degree(self, edge_type: str, node_id: str) -> int: ...

    @abstractmethod
    def _counts(self) -> StoreCounts: ...

    @abstractmethod
    def _session(self, session_id: str) -> SessionState | None: ...

    @abstractmethod
    def _popularity_rows(self) -> Iterable[tuple[str, tuple[float, int]]]:
        """``(item id, (stored popularity, t_ref))`` of every item with popularity."""

    def _popularity_of(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(weight float64, t_ref int64)`` stored for each id, ``(0, 0)`` when it has none.
        Generic over :meth:`_popularity_rows`; a backend may look the ids up directly."""
        stored = dict(self._popularity_rows())
        return _weight_arrays([stored.get(i, _NO_POPULARITY) for i in ids])

    @abstractmethod
    def _node_index(self, node_type: str, node_id: str) -> int | None: ...

    @abstractmethod
    def _node_ids(self, node_type: str) -> list[str]: ...

    @abstractmethod
    def _dirty(self) -> dict[str, set[str]]: ...

    @abstractmethod
    def _clear_dirty(self, nodes: dict[str, set[str]]) -> None: ...

    @abstractmethod
    def _edge_rows(self, edge_type: str) -> EdgeRows:
        """All edges of a forward type as parallel lists (src index, dst index, w, t_ref)."""

    def _edge_row_chunks(self, edge_type: str, chunk: int) -> Iterator[EdgeRows]:
        yield self._edge_rows(edge_type)

    @abstractmethod
    def _close(self) -> None: ...


_NO_POPULARITY = (0.0, 0)


def _weight_arrays(pairs: list[tuple[float, int]]) -> tuple[np.ndarray, np.ndarray]:
    """``[(w, t_ref)]`` → ``(w float64 [n], t_ref int64 [n])``."""
    if not pairs:
        return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64)
    weight, t_ref = zip(*pairs)
    return np.array(weight, dtype=np.float64), np.array(t_ref, dtype=np.int64)
