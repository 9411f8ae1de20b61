"""Embedding store: the refresh worker's node embeddings, versioned, for the scorer to read.

One contract (:class:`EmbeddingStore`), two backends (:class:`MemoryEmbeddingStore`,
:class:`RocksDBEmbeddingStore`). ``put_many`` writes rows *and* the new current version as one
atomic commit (one ``WriteBatch``): a reader sees the rows of the previous version or those of
the new one with its version, never a mix, and a crash at any point leaves the previous
version readable. Reads of several keys (``read_many``: one multi-get; ``read_all``: one
iterator) come from one consistent view. numpy only: no torch import.

Modules: ``base`` (the contract and its errors), ``codec`` (the pure byte codecs; the RocksDB
key layout is in its docstring), ``rocksdb`` (the persistent backend) and ``memory`` (the
in-memory backend). Everything public is importable from here.
"""
from graph_store.embeddings.base import (ChangedRows, EmbeddingDimError, EmbeddingStore, EmbeddingStoreError,
                                         InvalidEmbeddingsError, VersionedRows, merge_changes)
from graph_store.embeddings.codec import (DIM_PREFIX, FORMAT_VERSION, KEY_FORMAT, KEY_VERSION, TYPE_CODE,
                                          VECTOR_PREFIX, decode_u32, decode_vectors, dim_key, encode_u32,
                                          encode_vector, vector_key, vector_prefix)
from graph_store.embeddings.memory import MemoryEmbeddingStore
from graph_store.embeddings.rocksdb import RocksDBEmbeddingStore

__all__ = [
    "ChangedRows",
    "DIM_PREFIX",
    "FORMAT_VERSION",
    "KEY_FORMAT",
    "KEY_VERSION",
    "TYPE_CODE",
    "VECTOR_PREFIX",
    "EmbeddingDimError",
    "EmbeddingStore",
    "EmbeddingStoreError",
    "InvalidEmbeddingsError",
    "MemoryEmbeddingStore",
    "RocksDBEmbeddingStore",
    "VersionedRows",
    "decode_u32",
    "decode_vectors",
    "dim_key",
    "encode_u32",
    "encode_vector",
    "vector_key",
    "vector_prefix",
]
