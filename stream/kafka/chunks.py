"""Fetched record batches handed out whole, for the ingest hot path.

aiokafka turns every fetched record into a ``ConsumerRecord`` (~1 µs each: most of what a bare
``getmany`` loop costs). A consumer created with ``key_deserializer=RAW_CHUNKS`` gets instead,
per partition and fetch, one :class:`Chunk`: the partition's record batches as the fetch
response carried them, which the native kernel reads itself (``graph_store/native/src/kafka.rs``;
:meth:`graph_store.rocksdb.native.NativeRocksDBGraphStore.stage_kafka`), so only records the wire
decoder cannot take become Python objects.

How: aiokafka's fetcher wraps each partition's bytes in a ``MemoryRecords`` and iterates them
with a ``PartitionRecords``, both module globals of ``aiokafka.consumer.fetcher`` looked up at
every fetch. :func:`install` replaces them with a ``MemoryRecords`` that keeps the bytes (and
delegates everything to aiokafka's own) and a ``PartitionRecords`` that, for a ``RAW_CHUNKS``
consumer only, yields one chunk and moves the fetch position past its last complete batch, as
aiokafka's own does once it has yielded the records. Every other consumer is unaffected. A
fetch with a batch this path does not read (compressed, an older magic, or aborted
transactions under ``read_committed``) goes through aiokafka's per-record path, so a chunk
consumer's lists may hold ``ConsumerRecord``s too; so does every fetch if :func:`install`
finds aiokafka's internals changed (it then returns False and ``RAW_CHUNKS`` is the identity).
"""
from __future__ import annotations

import inspect
import logging
import struct

log = logging.getLogger(__name__)

_HEADER = 61  # bytes of a v2 record batch header
_PARTITION_RECORDS_ARGS = ["tp", "records", "aborted_transactions", "fetch_offset", "key_deserializer",
                           "value_deserializer", "check_crcs", "isolation_level"]
_installed: bool | None = None


def RAW_CHUNKS(key: bytes | None) -> bytes | None:  # noqa: N802 - a marker, named like a constant
    """Pass as ``key_deserializer`` to get :class:`Chunk`s; as a deserializer it is the identity."""
    return key


class Chunk:
    """One partition's fetched record batches (Kafka's wire format), not yet read."""

    __slots__ = ("buf", "fetch_offset", "next_offset", "check_crc")

    def __init__(self, buf: bytes, fetch_offset: int, next_offset: int, check_crc: bool) -> None:
        self.buf = buf  # may end with a batch the broker cut short: readers stop before it
        self.fetch_offset = fetch_offset  # records below it were consumed already
        self.next_offset = next_offset  # after the last complete batch: where the next fetch starts
        self.check_crc = check_crc

    def __repr__(self) -> str:
        return f"Chunk({len(self.buf)} bytes, offsets {self.fetch_offset}..{self.next_offset})"


def _scan(buf: bytes, fetch_offset: int, read_committed_aborts: bool) -> int | None:
    """The offset after the last complete batch, or None if a batch needs aiokafka's reader."""
    pos, n, nxt = 0, len(buf), fetch_offset
    unpack = struct.unpack_from
    while n - pos >= _HEADER:
        length = unpack(">i", buf, pos + 8)[0]
        end = pos + 12 + length
        if end > n:
            break
        base, = unpack(">q", buf, pos)
        attributes, last_delta = unpack(">hi", buf, pos + 21)
        if buf[pos + 16] != 2 or attributes & 0x07 or (read_committed_aborts and attributes & 0x10):
            return None
        nxt = max(nxt, base + last_delta + 1)
        pos = end
    return nxt


def install() -> bool:
    """Hook chunked fetching into aiokafka (idempotent); False if its fetcher is not the expected one."""
    global _installed
    if _installed is not None:
        return _installed
    try:
        from aiokafka.consumer import fetcher
        base_records, base_partition = fetcher.MemoryRecords, fetcher.PartitionRecords
        read_committed = fetcher.READ_COMMITTED
        args = list(inspect.signature(base_partition.__init__).parameters)[1:]
        ok = args == _PARTITION_RECORDS_ARGS and callable(getattr(base_partition, "_unpack_records", None))
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        log.warning("chunked fetch off: aiokafka's fetcher is not as expected (%s)", exc)
        ok = False
    if not ok:
        _installed = False
        return False

    class KeepBytes:
        """aiokafka's MemoryRecords, plus the bytes it reads (``raw``)."""

        __slots__ = ("raw", "_inner")

        def __init__(self, data: bytes) -> None:
            self.raw = data
            self._inner = base_records(data)

        def has_next(self) -> bool:
            return self._inner.has_next()

        def next_batch(self):
            return self._inner.next_batch()

        def size_in_bytes(self) -> int:
            return self._inner.size_in_bytes()

    class ChunkedPartitionRecords(base_partition):
        def _unpack_records(self):
            raw = getattr(self._records, "raw", None)
            if self._key_deserializer is not RAW_CHUNKS or type(raw) is not bytes:
                yield from super()._unpack_records()
                return
            aborts = self._isolation_level == read_committed and bool(self._aborted_transactions)
            nxt = _scan(raw, self.next_fetch_offset, aborts)
            if nxt is None:
                yield from super()._unpack_records()
                return
            chunk = Chunk(raw, self.next_fetch_offset, nxt, self._check_crcs)
            self.next_fetch_offset = nxt
            yield chunk

    fetcher.MemoryRecords = KeepBytes
    fetcher.PartitionRecords = ChunkedPartitionRecords
    _installed = True
    return True
