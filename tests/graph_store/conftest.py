"""Event types the store consumes (duck-typed in the store, defined here for tests) and store fixtures."""
from __future__ import annotations

from dataclasses import dataclass

import os

import pytest

from graph_store import MemoryGraphStore, RocksDBGraphStore, StoreSettings
from graph_store.rocksdb.native import NativeRocksDBGraphStore, native_available, native_unavailable_reason


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


STORE_KINDS = ("memory", "rocksdb", "native")


def require_native() -> None:
    """Skip unless the native kernel is built; in CI (``GNNREC_REQUIRE_NATIVE=1``) fail instead."""
    if native_available():
        return
    if os.environ.get("GNNREC_REQUIRE_NATIVE") == "1":
        pytest.fail(native_unavailable_reason())
    pytest.skip(native_unavailable_reason())


def open_store(kind: str, path, settings: StoreSettings):
    if kind == "memory":
        return MemoryGraphStore(settings)
    if kind == "native":
        require_native()
        return NativeRocksDBGraphStore(path, settings)
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
