"""Opening the graph store a worker's settings ask for."""
from __future__ import annotations

from graph_store import GraphStore, MemoryGraphStore, RocksDBGraphStore, StoreSettings
from workers.settings import StoreBacked


def store_settings(settings: StoreBacked) -> StoreSettings:
    return StoreSettings(half_life_ms=settings.half_life_hours * 3_600_000,
                         session_history=settings.session_history)


def open_store(settings: StoreBacked) -> GraphStore:
    if settings.store == "memory":
        return MemoryGraphStore(store_settings(settings))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return RocksDBGraphStore(settings.data_dir / "graph", store_settings(settings))
