"""Pure byte codecs of the embedding store's RocksDB layout (numpy only, no I/O).

Layout (raw bytes; ``code``: one ASCII byte u/i/s for user/item/session)::

    b"Membeddings.format"           -> u32 big-endian format version (1)
    b"Membeddings.version"          -> current version, UTF-8
    b"Membeddings.dim" + code       -> u32 big-endian vector size of that node type
    b"E" + code + node id (UTF-8)   -> vector: dim x float32 little-endian ('<f4'), 4·dim bytes
"""
from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

FORMAT_VERSION = 1
TYPE_CODE = {"user": b"u", "item": b"i", "session": b"s"}
KEY_FORMAT = b"Membeddings.format"
KEY_VERSION = b"Membeddings.version"
DIM_PREFIX = b"Membeddings.dim"
VECTOR_PREFIX = b"E"
_U32 = struct.Struct(">I")
_F32 = np.dtype("<f4")


def vector_key(node_type: str, node_id: str) -> bytes:
    """``b"E" + code + id``: one node type's rows are one contiguous prefix, ordered by id bytes."""
    return VECTOR_PREFIX + TYPE_CODE[node_type] + node_id.encode()


def vector_prefix(node_type: str) -> bytes:
    return VECTOR_PREFIX + TYPE_CODE[node_type]


def dim_key(node_type: str) -> bytes:
    return DIM_PREFIX + TYPE_CODE[node_type]


def encode_u32(value: int) -> bytes:
    return _U32.pack(value)


def decode_u32(raw: bytes) -> int:
    return _U32.unpack(raw)[0]


def encode_vector(row: np.ndarray) -> bytes:
    """One row as ``dim`` little-endian float32 (``4·dim`` bytes)."""
    return np.ascontiguousarray(row, dtype=_F32).tobytes()


def decode_vectors(values: Sequence[bytes], dim: int) -> np.ndarray:
    """Rows written by :func:`encode_vector` → ``[len(values), dim]`` float32 (native order)."""
    raw = b"".join(values)
    if len(raw) != 4 * dim * len(values):
        raise ValueError(f"{len(values)} vectors of dim {dim} need {4 * dim * len(values)} bytes, got {len(raw)}")
    return np.frombuffer(raw, dtype=_F32).astype(np.float32).reshape(len(values), dim)
