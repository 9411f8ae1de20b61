"""The persistent graph store: RocksDB through rocksdict, one WriteBatch per commit.

``store`` is the Python backend (:class:`RocksDBGraphStore`), ``commit`` turns one aggregated
batch into that WriteBatch (data, consumed offsets and watermark together), ``meta`` reads and
checks what the database says about itself (format, settings), and ``native`` is the same
store planned by the Rust kernel of ``graph_store/native/`` (byte for byte the same commits).
"""
from graph_store.rocksdb.store import RocksDBGraphStore

__all__ = ["RocksDBGraphStore"]
