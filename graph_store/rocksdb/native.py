"""The RocksDB graph store with its batch path in Rust: the ingest worker's store.

:class:`NativeRocksDBGraphStore` writes the same bytes as :class:`RocksDBGraphStore` (one
WriteBatch per commit with the data, offsets, watermark, dirty marks and counters;
tests/graph_store/rocksdb/test_native.py compares whole stores), but plans and encodes a batch in
``graph_store._native`` (built from ``graph_store/native/`` by ``deploy/build_native.sh``)
over a native mirror of the committed state: node ids, every edge and popularity weight,
sessions and dirty marks, loaded from RocksDB when the store opens. The Python planner spends
most of its ~10 µs an event in dict and tuple operations and in building keys; the kernel
does the same work in well under a microsecond.

The ingest worker goes further and stages the raw payloads of a fetch (:meth:`stage_raw`):
the kernel decodes every record it is sure the reference decoder accepts and hands the rest
back, so no Python event object is built for a clean record. With :meth:`stage_kafka` it reads
the records themselves from a partition's fetched record batches, so no Python object at all is
built for a clean record (``stream/kafka/chunks.py`` hands those bytes out).

Memory: the mirror holds the whole graph (about 40 bytes an edge), unlike the bounded caches of
the Python store. Writes go to a vector memtable (:class:`graph_store.options.RocksDBOptions`),
on which a read would sort a copy of the whole memtable; so a read that reaches RocksDB
(neighbour scans, :meth:`edge_weight`, offsets) first flushes what was written since the last
one. That is one flush per switch from writing to reading: right for a writer that reads little,
as the ingest worker does (it reads its offsets once, at start).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import rocksdict

from graph_store import codec
from graph_store.batch import validate_events, validate_offsets
from graph_store.errors import GraphStoreError, InvalidEventError
from graph_store.options import RocksDBOptions
from graph_store.rocksdb import RocksDBGraphStore
from graph_store.rocksdb.commit import advance_counters, put_commit_meta
from graph_store.schema import NODE_TYPES, ApplyStats, SessionState, StoreSettings, TopicPartition

try:
    from graph_store import _native
except ImportError as exc:  # not built: the Python store serves instead
    _native = None
    _IMPORT_ERROR = str(exc)
else:
    _IMPORT_ERROR = ""

__all__ = ["NATIVE_OPTIONS", "NativeRocksDBGraphStore", "kafka_records", "native_available", "native_unavailable_reason"]

# The mirror answers every lookup of a batch, so nothing is read back from the memtable: a
# vector memtable and no memtable bloom filter make each written key cheap. No WAL: the
# consumed offsets are in the same commits, so what a crash loses is re-read from Kafka.
NATIVE_OPTIONS = RocksDBOptions(memtable="vector", memtable_bloom_ratio=0.0, wal=False)


def kafka_records(buf: bytes, fetch_offset: int, check_crc: bool = True) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """``(offset, timestamp, key, value)`` of every record at or past ``fetch_offset`` in one
    partition's fetched record batches (see :meth:`NativeRocksDBGraphStore.stage_kafka`)."""
    if _native is None:
        raise RuntimeError(f"graph_store._native is not available ({native_unavailable_reason()})")
    return _native.kafka_records(buf, fetch_offset, check_crc)


def native_available() -> bool:
    return _native is not None


def native_unavailable_reason() -> str:
    return (f"the native ingest kernel graph_store/_native.abi3.so is not built ({_IMPORT_ERROR}); "
            "build it with `bash deploy/build_native.sh` (needs Rust's cargo, https://rustup.rs), "
            "or run the Python store with --native off")


class NativeRocksDBGraphStore(RocksDBGraphStore):
    """:class:`RocksDBGraphStore` planned by the native kernel. Same contract, same bytes.

    Raises :class:`GraphStoreError` if the kernel is not built (see
    :func:`native_unavailable_reason`). ``open_read_only`` gives a plain read-only
    :class:`RocksDBGraphStore`: the on-disk format is the same.
    """

    def __init__(self, path: str | Path, settings: StoreSettings | None = None,
                 options: RocksDBOptions = NATIVE_OPTIONS) -> None:
        if _native is None:
            raise GraphStoreError(native_unavailable_reason())
        self._unflushed = True  # the WAL replayed at open may sit in the memtable
        super().__init__(path, settings, options)
        try:
            s = self.settings
            self._kernel = _native.Kernel(float(s.half_life_ms), dict(s.kind_weights), s.session_history)
            self._load()
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def open_read_only(cls, path: str | Path, settings: StoreSettings | None = None,
                       options: RocksDBOptions = RocksDBOptions()) -> RocksDBGraphStore:
        return RocksDBGraphStore.open_read_only(path, settings, options)

    def _load(self) -> None:
        """Mirror the committed state (ids, forward edges, popularity, sessions, marks)."""
        k = self._kernel
        with self._guard():
            k.load_index(*self._columns(b"I"))
            for edge_type in ("ui", "ii", "uu"):
                k.load_edges(*self._columns(codec.edge_prefix(edge_type)))
            k.load_popularity(*self._columns(codec.POP_PREFIX))
            k.load_sessions(*self._columns(codec.SESSION_PREFIX))
            k.load_dirty(list(self._scan(codec.DIRTY_PREFIX, keys_only=True)))

    def _columns(self, prefix: bytes) -> tuple[list[bytes], list[bytes]]:
        keys: list[bytes] = []
        values: list[bytes] = []
        for key, value in self._scan(prefix):
            keys.append(key)
            values.append(value)
        return keys, values

    # ---- staging: the ingest worker's path --------------------------------------------------
    def configure_wire(self, kinds: Iterable[str], max_id_len: int, max_bytes: int, version: int) -> None:
        """The wire decoder's rules for :meth:`stage_raw`: the interaction kinds it accepts, its
        id and payload limits and its schema version (``stream.events``; this package does not
        import it). Records of kinds the store has no weight for are handed back."""
        self._kernel.configure_wire(list(kinds), max_id_len, max_bytes, version)

    def stage_raw(self, values: list[bytes], max_ts: int) -> list[tuple[int, int]]:
        """Stage raw interaction payloads for the next :meth:`apply_staged`.

        Returns ``(index in values, position)`` for each record the kernel leaves to the
        reference decoder: stage its event with ``stage_event(event, position)``, or leave the
        slot empty (a dead letter). ``max_ts`` is the decoder's ``now_ms + max_future_skew_ms``.
        """
        self._check_writable()
        return self._kernel.stage_raw(values, max_ts)

    def stage_kafka(self, buf: bytes, fetch_offset: int, committed: int, max_ts: int,
                    check_crc: bool = True) -> tuple[list[tuple[int, int, bytes | None, bytes | None, int]], int, int, int]:
        """Stage the interactions of one partition's fetched record batches (Kafka's record
        batch format, magic 2, uncompressed: what a fetch response carries), as :meth:`stage_raw`
        does for payloads, without a Python object per record.

        Records below ``fetch_offset`` are ignored and those below ``committed`` counted as
        replays. Returns ``(deferred, kept, skipped, last_offset)``: ``deferred`` holds ``(offset,
        timestamp, key, value, position)`` of each record for the reference decoder (as from
        :meth:`stage_raw`), ``last_offset`` is that of the last kept record (-1 if none). Raises
        ValueError on a batch that fails its CRC or is not of that format.
        """
        self._check_writable()
        return self._kernel.stage_kafka(buf, fetch_offset, committed, max_ts, check_crc)

    def stage_event(self, event: Any, position: int | None = None) -> None:
        """Stage one event (validated here), appended or into an empty slot of :meth:`stage_raw`."""
        self._check_writable()
        validate_events([event], self.settings.kind_weights)
        self._kernel.stage_event(event, position)

    def discard_staged(self) -> None:
        self._kernel.discard_staged()

    def staged_count(self) -> int:
        return self._kernel.staged_count()

    def apply_staged(self, offsets: Mapping[TopicPartition, int] | None = None) -> ApplyStats:
        """Commit what is staged, in staging order, with ``offsets``: as ``apply_many`` would."""
        self._check_writable()
        offsets = validate_offsets(offsets)
        return self._commit_staged(offsets)

    # ---- the batch path -----------------------------------------------------------------------
    def apply_many(self, events: Sequence[Any], offsets: Mapping[TopicPartition, int] | None = None,
                   *, trusted: bool = False) -> ApplyStats:
        if self._kernel.staged_count():
            raise GraphStoreError("a raw batch is staged: apply_staged() or discard_staged() it before apply_many")
        return super().apply_many(events, offsets, trusted=trusted)

    def _apply_many(self, events: Sequence[Any], offsets: dict[TopicPartition, int]) -> ApplyStats:
        stage = self._kernel.stage_event
        try:
            for e in events:
                stage(e)
        except (AttributeError, TypeError, KeyError, OverflowError) as exc:
            self._kernel.discard_staged()
            raise InvalidEventError(f"an event does not fit the store ({exc!r}); validate it "
                                    "(apply_many without trusted=True) or dead-letter it") from None
        except BaseException:
            self._kernel.discard_staged()
            raise
        return self._commit_staged(offsets)

    def _commit_staged(self, offsets: dict[TopicPartition, int]) -> ApplyStats:
        k = self._kernel
        try:
            (keys, values, deletes), summary = k.plan()
        except OverflowError as exc:
            raise GraphStoreError(str(exc)) from None
        (inter, follows, unfollows, skipped, new_u, new_i, new_s,
         new_ui, new_ii, uu_change, touched, plan_wm) = summary
        try:
            batch = rocksdict.WriteBatch(raw_mode=True)
            deque(map(batch.put, keys, values), 0)  # the loop runs in C
            for key in deletes:
                batch.delete(key)
            counters = advance_counters(self._counters, {
                "users": new_u, "items": new_i, "sessions": new_s, "ui": new_ui, "ii": new_ii, "uu": uu_change,
                "interactions": inter, "follows": follows, "unfollows": unfollows})
            wm = put_commit_meta(batch, counters, plan_wm, self._wm, offsets)
            self._write(batch)
        except BaseException:
            k.abort()
            raise
        k.confirm()
        self._unflushed = True
        self._counters, self._wm = counters, wm
        return ApplyStats(inter, follows + unfollows, skipped, new_u + new_i + new_s, touched)

    # ---- reads the mirror answers (the rest read RocksDB, as the base store does) ---------------
    def _settle(self) -> None:
        """Flush the memtable if it holds writes, so that a read does not sort it (see above)."""
        if self._unflushed and self.options.memtable == "vector":
            with self._guard():
                self._db.flush(True)
        self._unflushed = False

    def _scan(self, prefix: bytes, keys_only: bool = False):
        self._settle()
        return super()._scan(prefix, keys_only)

    def _edge_value(self, edge_type: str, src_id: str, dst_id: str):
        self._settle()
        return super()._edge_value(edge_type, src_id, dst_id)

    def _lookup_indices(self, node_type: str, ids: list[str]) -> dict[str, int]:
        index = self._kernel.node_index
        found = {}
        for node_id in ids:
            x = index(node_type, node_id)
            if x is not None:
                found[node_id] = x
        return found

    def _node_index(self, node_type: str, node_id: str) -> int | None:
        return self._kernel.node_index(node_type, node_id)

    def _node_ids(self, node_type: str) -> list[str]:
        return self._kernel.node_ids(node_type)

    def _session(self, session_id: str) -> SessionState | None:
        state = self._kernel.session(session_id)
        return None if state is None else SessionState(state[0], tuple(state[1]), state[2], state[3])

    def _dirty(self) -> dict[str, set[str]]:
        return {t: set(self._kernel.dirty(t)) for t in NODE_TYPES}

    def _clear_dirty(self, nodes: dict[str, set[str]]) -> None:
        super()._clear_dirty(nodes)
        self._unflushed = True
        for node_type, ids in nodes.items():
            self._kernel.clear_dirty(node_type, list(ids))
