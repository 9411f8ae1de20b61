"""Incremental heterogeneous graph store: the state between the event stream and the GNN.

``graph_store`` owns the graph built from interaction and follow events: user, item and
session nodes with dense per-type indices; decayed ``ui``/``ii``/``uu`` edges (with reverse
indexes ``iu``/``ii_rev``/``uu_rev``), item popularity and session state; the consumed Kafka
offsets, the event-time watermark and the set of dirty nodes, all written in one atomic commit
per batch. One contract (:class:`GraphStore`) has two backends: :class:`MemoryGraphStore` and
:class:`RocksDBGraphStore`. Weights decay in event time (:mod:`graph_store.decay`), so nothing
here reads a clock. Callers hand it duck-typed events and take neighbours, counts or a
``HeteroData`` snapshot back; it never connects to Kafka and trains no model.

The one exception to "events in" is the ingest store's native kernel (``graph_store/native/``,
Rust, behind :class:`graph_store.rocksdb.native.NativeRocksDBGraphStore`): for speed it takes
bytes, not events. It parses Kafka's v2 record-batch format (a partition's fetched batches,
handed over whole by :mod:`stream.kafka.chunks`; CRC-32C checked) and the v1 wire JSON of
interactions (a strict subset: what it is not sure of goes back to :mod:`stream.events` to be
decoded or dead-lettered). Nothing in the Python package imports :mod:`stream`.
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
