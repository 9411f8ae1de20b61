"""Incremental heterogeneous graph store: the state between the event stream and the GNN.

``graph_store`` owns the graph built from interaction and follow events: user, item and
session nodes with dense per-type indices; decayed ``ui``/``ii``/``uu`` edges (with reverse
indexes ``iu``/``ii_rev``/``uu_rev``), item popularity and session state; the consumed Kafka
offsets, the event-time watermark and the set of dirty nodes, all written in one atomic commit
per batch. One contract (:class:`GraphStore`) has two backends: :class:`MemoryGraphStore` and
:class:`RocksDBGraphStore`. Weights decay in event time (:mod:`graph_store.decay`), so nothing
here reads a clock. It does not consume Kafka, validate wire schemas or train models: callers
hand it duck-typed events and take neighbours, counts or a ``HeteroData`` snapshot back.
"""
from graph_store.base import GraphStore
from graph_store.decay import add_decayed, decay, decayed_at
from graph_store.errors import (
    GraphStoreError,
    InvalidEventError,
    InvalidOffsetsError,
    ReadOnlyStoreError,
    SettingsMismatchError,
    StoreClosedError,
    StoreCorruptedError,
    StoreLockedError,
    StoreNotFoundError,
    UnknownTypeError,
)
from graph_store.memory import MemoryGraphStore
from graph_store.offsets import filter_replays, next_offsets
from graph_store.options import RocksDBOptions
from graph_store.rocksdb import RocksDBGraphStore
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
)

__all__ = [
    "EDGE_TYPES",
    "FORWARD_EDGE_TYPES",
    "NODE_TYPES",
    "ApplyStats",
    "GraphStore",
    "GraphStoreError",
    "InvalidEventError",
    "InvalidOffsetsError",
    "MemoryGraphStore",
    "Neighbour",
    "ReadOnlyStoreError",
    "RocksDBGraphStore",
    "RocksDBOptions",
    "SessionState",
    "SettingsMismatchError",
    "StoreClosedError",
    "StoreCorruptedError",
    "StoreCounts",
    "StoreLockedError",
    "StoreNotFoundError",
    "StoreSettings",
    "TopicPartition",
    "UnknownTypeError",
    "add_decayed",
    "decay",
    "decayed_at",
    "filter_replays",
    "next_offsets",
]
