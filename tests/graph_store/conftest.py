"""Event types the store consumes (duck-typed in the store, defined here for tests) and store fixtures."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from graph_store import MemoryGraphStore, RocksDBGraphStore, StoreSettings


@dataclass(frozen=True)
class Interaction:
    user_id: str
    item_id: str
    session_id: str
    ts: int
    kind: str = "click"
    weight: float | None = None


@dataclass(frozen=True)
class Follow:
    src_user: str
    dst_user: str
    ts: int
    op: str = "follow"


@dataclass(frozen=True)
class Record:
    """A consumed Kafka record carrying an event (what a worker hands to ``filter_replays``)."""

    topic: str
    partition: int
    offset: int
    value: object = None


STORE_KINDS = ("memory", "rocksdb")


def open_store(kind: str, path, settings: StoreSettings):
    if kind == "memory":
        return MemoryGraphStore(settings)
    return RocksDBGraphStore(path, settings)


@pytest.fixture(params=STORE_KINDS)
def make_store(request, tmp_path):
    """Factory of fresh stores of one implementation (memory, or RocksDB under tmp_path)."""
    opened = []

    def make(settings: StoreSettings = StoreSettings()):
        store = open_store(request.param, tmp_path / f"graph{len(opened)}", settings)
        opened.append(store)
        return store

    make.kind = request.param
    yield make
    for store in opened:
        store.close()
