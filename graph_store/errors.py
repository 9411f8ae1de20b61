"""Typed exceptions of the graph store; every message says what broke and how to fix it."""
from __future__ import annotations


class GraphStoreError(Exception):
    """Base class of every error raised by ``graph_store``."""


class InvalidEventError(GraphStoreError, ValueError):
    """An event handed to ``apply_many``/``apply_one`` is malformed; nothing of its batch was applied."""


class InvalidOffsetsError(GraphStoreError, ValueError):
    """The offsets handed to ``apply_many`` are malformed; nothing of the batch was applied."""


class UnknownTypeError(GraphStoreError, ValueError):
    """A query named a node type or edge type the store does not have, or mixed them up."""


class StoreClosedError(GraphStoreError):
    """The store was used after ``close()``."""


class ReadOnlyStoreError(GraphStoreError):
    """A write was attempted on a store opened with ``open_read_only``."""


class StoreLockedError(GraphStoreError):
    """Another process (or another open store object) holds the RocksDB lock on the data dir."""


class StoreCorruptedError(GraphStoreError):
    """The on-disk store cannot be read: RocksDB reported corruption or a value does not decode."""


class StoreNotFoundError(GraphStoreError):
    """``open_read_only`` was pointed at a directory that holds no graph store."""


class SettingsMismatchError(GraphStoreError):
    """The store was opened with settings that change the meaning of the data already stored."""
