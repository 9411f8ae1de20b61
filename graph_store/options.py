"""RocksDB tuning for :class:`graph_store.rocksdb.RocksDBGraphStore`, as one frozen dataclass."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["RocksDBOptions"]

Compression = Literal["none", "snappy", "lz4", "zstd", "zlib"]
Memtable = Literal["skiplist", "vector"]


@dataclass(frozen=True)
class RocksDBOptions:
    """Storage options; none of them changes what the stored data means.

    Args:
        write_buffer_size: bytes of one memtable before it is flushed to an SST file.
        max_write_buffer_number: memtables kept in memory (one active, the rest flushing).
        target_file_size_base: target size of level-1 SST files.
        compression: SST block compression.
        block_cache_size: bytes of the LRU cache for uncompressed SST blocks.
        bloom_bits_per_key: whole-key bloom filter bits (0 disables); speeds up misses, which
            the ingest path has for every new edge.
        memtable_bloom_ratio: share of the memtable spent on a whole-key bloom filter (0
            disables). Most keys the ingest path reads are new edges still absent; without
            the filter each such miss walks the memtable skiplist (several times slower).
        max_background_jobs: flush + compaction threads.
        sync_writes: fsync the WAL on every commit. False survives a process crash but may
            lose the last commits on an OS crash; they are then re-read from Kafka because
            the offsets are in the same commits.
        wal: write RocksDB's write-ahead log. Without it a commit costs ~0.03 µs less a key
            (measured on the native store), and a process crash loses the commits since the
            last memtable flush, data and offsets together, so the worker re-reads those
            events from Kafka: the topic is the store's changelog (Kafka Streams runs its
            RocksDB stores without a WAL for the same reason). A clean close flushes.
        memtable: ``skiplist`` (RocksDB's default) or ``vector``. A vector memtable appends
            each write and sorts once when it is flushed: a write costs ~0.1-0.3 µs a key
            instead of ~1-1.3 µs (measured with rocksdict on this machine), but every read
            that reaches an unflushed memtable sorts a copy of it. Only for a store that
            writes in bulk and reads almost nothing from RocksDB: the native ingest store
            (:mod:`graph_store.rocksdb.native`), which keeps its whole state in memory.
        cache_size: entries of each in-memory cache (id -> index per node type, session
            states, item popularity). The writer is the only one changing the store and
            updates the caches after each commit, so they are exact; a full cache is cleared.
    """

    write_buffer_size: int = 64 * 2**20
    max_write_buffer_number: int = 3
    target_file_size_base: int = 64 * 2**20
    compression: Compression = "lz4"
    block_cache_size: int = 128 * 2**20
    bloom_bits_per_key: int = 10
    memtable_bloom_ratio: float = 0.1
    max_background_jobs: int = 2
    sync_writes: bool = False
    wal: bool = True
    memtable: Memtable = "skiplist"
    cache_size: int = 1_000_000

    def __post_init__(self) -> None:
        for name in (
            "write_buffer_size", "max_write_buffer_number", "target_file_size_base",
            "block_cache_size", "max_background_jobs", "cache_size",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"RocksDBOptions.{name} must be a positive int, got {value!r}")
        if self.bloom_bits_per_key < 0:
            raise ValueError(f"RocksDBOptions.bloom_bits_per_key must be >= 0, got {self.bloom_bits_per_key}")
        if not 0 <= self.memtable_bloom_ratio <= 0.25:
            raise ValueError(
                f"RocksDBOptions.memtable_bloom_ratio must be in [0, 0.25], got {self.memtable_bloom_ratio}"
            )
        if self.sync_writes and not self.wal:
            raise ValueError("RocksDBOptions.sync_writes needs the WAL (wal=True)")
        if self.memtable not in ("skiplist", "vector"):
            raise ValueError(f"RocksDBOptions.memtable must be skiplist or vector, got {self.memtable!r}")
        if self.compression not in ("none", "snappy", "lz4", "zstd", "zlib"):
            raise ValueError(
                f"RocksDBOptions.compression must be none/snappy/lz4/zstd/zlib, got {self.compression!r}"
            )

    def to_options(self):  # -> rocksdict.Options
        """rocksdict ``Options`` in raw mode (keys and values are our own bytes)."""
        import rocksdict

        opts = rocksdict.Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.set_write_buffer_size(self.write_buffer_size)
        opts.set_max_write_buffer_number(self.max_write_buffer_number)
        opts.set_target_file_size_base(self.target_file_size_base)
        opts.set_max_background_jobs(self.max_background_jobs)
        if self.memtable_bloom_ratio:
            opts.set_memtable_prefix_bloom_ratio(self.memtable_bloom_ratio)
            opts.set_memtable_whole_key_filtering(True)
        if self.memtable == "vector":
            opts.set_allow_concurrent_memtable_write(False)  # a vector memtable takes one writer
            opts.set_memtable_factory(rocksdict.MemtableFactory.vector())
        opts.set_compression_type(getattr(rocksdict.DBCompressionType, self.compression)())
        table = rocksdict.BlockBasedOptions()
        table.set_block_cache(rocksdict.Cache(self.block_cache_size))
        if self.bloom_bits_per_key:
            table.set_bloom_filter(self.bloom_bits_per_key, False)
        opts.set_block_based_table_factory(table)
        return opts

    def to_write_options(self):  # -> rocksdict.WriteOptions
        import rocksdict

        write = rocksdict.WriteOptions()
        write.sync = self.sync_writes
        write.disable_wal = not self.wal
        return write
