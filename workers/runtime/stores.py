"""Opening the graph store a worker's settings ask for."""
from __future__ import annotations

import logging

from graph_store import GraphStore, GraphStoreError, MemoryGraphStore, RocksDBGraphStore, StoreSettings
from graph_store.rocksdb.native import NativeRocksDBGraphStore, native_available, native_unavailable_reason
from workers.runtime.settings import StoreBacked

log = logging.getLogger(__name__)


def store_settings(settings: StoreBacked) -> StoreSettings:
    return StoreSettings(half_life_ms=settings.half_life_hours * 3_600_000,
                         session_history=settings.session_history)


def open_store(settings: StoreBacked) -> GraphStore:
    if settings.store == "memory":
        return MemoryGraphStore(store_settings(settings))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / "graph"
    native = getattr(settings, "native", "off")  # the ingest worker's choice; replicas read, so Python
    if native != "off":
        if native_available():
            return NativeRocksDBGraphStore(path, store_settings(settings))
        if native == "on":
            raise GraphStoreError(native_unavailable_reason())
        log.warning("%s; using the Python store", native_unavailable_reason())
    return RocksDBGraphStore(path, store_settings(settings))
