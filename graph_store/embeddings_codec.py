"""Pure byte codecs of the embedding store's RocksDB layout (numpy only, no I/O).

Layout (raw bytes; ``code``: one ASCII byte u/i/s for user/item/session)::

    b"Membeddings.format"           -> u32 big-endian format version (1)
    b"Membeddings.version"          -> current version, UTF-8
    b"Membeddings.dim" + code       -> u32 big-endian vector size of that node type
    b"E" + code + node id (UTF-8)   -> vector: dim x float32 little-endian ('<f4'), 4·dim bytes
    b"Membeddings.seq"              -> u64 big-endian: commits so far (absent = 0)
    b"L" + u64 big-endian seq       -> change log of commit ``seq``: the ids it wrote per node type
                                       (:func:`encode_change_log`); the last ``LOG_KEEP`` are kept

The change log lets a reader that has seen commit ``s`` read only the rows written since
(``read_changes``) instead of every row at every refresh.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

FORMAT_VERSION = 1
# A reader more than LOG_KEEP commits behind, or behind a commit that wrote more than
# LOG_MAX_IDS rows (a full rebuild), reads everything instead.
LOG_KEEP = 64
LOG_MAX_IDS = 50_000
TYPE_CODE = {"user": b"u", "item": b"i", "session": b"s"}
KEY_FORMAT = b"Membeddings.format"
KEY_VERSION = b"Membeddings.version"
DIM_PREFIX = b"Membeddings.dim"
VECTOR_PREFIX = b"E"
KEY_SEQ = b"Membeddings.seq"
LOG_PREFIX = b"L"
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
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


def encode_u64(value: int) -> bytes:
    return _U64.pack(value)


def decode_u64(raw: bytes) -> int:
    return _U64.unpack(raw)[0]


def log_key(seq: int) -> bytes:
    """Big-endian, so the log's keys sort in commit order."""
    return LOG_PREFIX + _U64.pack(seq)


def encode_change_log(ids: dict[str, list[str]]) -> bytes:
    """``{node_type: ids}`` of one commit, or ``b""`` (too many to list: read everything).

    Per node type: its code byte, a u32 count, then each id as a u32 byte length + UTF-8 bytes.
    """
    if sum(len(v) for v in ids.values()) > LOG_MAX_IDS:
        return b""
    parts = []
    for node_type, node_ids in ids.items():
        parts.append(TYPE_CODE[node_type] + _U32.pack(len(node_ids)))
        for node_id in node_ids:
            raw = node_id.encode()
            parts.append(_U32.pack(len(raw)) + raw)
    return b"".join(parts)


_TYPE_OF = {code: t for t, code in TYPE_CODE.items()}


def decode_change_log(raw: bytes) -> dict[str, list[str]] | None:
    """Inverse of :func:`encode_change_log`; None for a commit too large to list."""
    if not raw:
        return None
    out: dict[str, list[str]] = {}
    pos, view = 0, memoryview(raw)
    while pos < len(raw):
        node_type = _TYPE_OF[raw[pos:pos + 1]]
        (count,) = _U32.unpack_from(raw, pos + 1)
        pos += 5
        ids = out.setdefault(node_type, [])
        for _ in range(count):
            (size,) = _U32.unpack_from(raw, pos)
            ids.append(bytes(view[pos + 4:pos + 4 + size]).decode())
            pos += 4 + size
    return out
