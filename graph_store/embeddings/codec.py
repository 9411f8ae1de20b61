"""Pure byte codecs of the embedding store's RocksDB layout (numpy only, no I/O).

Layout (raw bytes; ``code``: one ASCII byte u/i/s for user/item/session)::

    b"Membeddings.format"           -> u32 big-endian format version (1)
    b"Membeddings.version"          -> current version, UTF-8
    b"Membeddings.dim" + code       -> u32 big-endian vector size of that node type
    b"E" + code + node id (UTF-8)   -> vector: dim x float32 little-endian ('<f4'), 4·dim bytes
    b"Membeddings.seq"              -> u64 big-endian: commits so far (absent = 0)
    b"L" + u64 big-endian seq       -> change log of commit ``seq``: the ids and vectors it wrote per
                                       node type (:func:`encode_change_log`); the last ``LOG_KEEP``
                                       are kept

The change log lets a reader that has seen commit ``s`` read only the rows written since
(``read_changes``) instead of every row at every refresh.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
import orjson

FORMAT_VERSION = 1
# A reader more than LOG_KEEP commits behind, or behind a commit that wrote more than
# LOG_MAX_IDS rows (a full rebuild), reads everything instead.
LOG_KEEP = 16
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


def encode_change_log(groups: dict[str, tuple[list[str], list[bytes], int]]) -> bytes:
    """One commit's rows ``{node_type: (ids, each row's encode_vector bytes, dim)}``, or
    ``b""`` when they are too many to keep twice (a full rebuild: readers read everything).

    Layout: a u32 header length, the header (JSON: ``[[type code, ids, dim], ...]``), then
    each group's vectors in header order. The vectors ride along because a follower reading
    them back row by row (a multi-get and a decode per row) spent ~3 µs a row; from here it is
    one JSON parse and one ``frombuffer`` per commit.
    """
    if sum(len(ids) for ids, _, _ in groups.values()) > LOG_MAX_IDS:
        return b""
    header = orjson.dumps([[TYPE_CODE[t].decode(), ids, dim] for t, (ids, _, dim) in groups.items()])
    return b"".join([_U32.pack(len(header)), header, *(b for _, blobs, _ in groups.values() for b in blobs)])


_TYPE_OF = {code.decode(): t for t, code in TYPE_CODE.items()}


def decode_change_log(raw: bytes) -> dict[str, tuple[list[str], np.ndarray]] | None:
    """Inverse of :func:`encode_change_log` → ``{node_type: (ids, vectors [n, dim])}``; None for
    a commit too large to list."""
    if not raw:
        return None
    (size,) = _U32.unpack_from(raw, 0)
    pos = 4 + size
    out: dict[str, tuple[list[str], np.ndarray]] = {}
    for code, ids, dim in orjson.loads(raw[4:pos]):
        end = pos + 4 * dim * len(ids)
        if end > len(raw):
            raise ValueError(f"change log holds {len(raw)} bytes, its header promises {end}")
        out[_TYPE_OF[code]] = (ids, np.frombuffer(raw, dtype=_F32, count=dim * len(ids), offset=pos)
                               .astype(np.float32).reshape(len(ids), dim))
        pos = end
    return out


def encode_rows(groups: dict[str, tuple[list[str], np.ndarray]]) -> bytes:
    """Rows of several node types ``{node_type: (ids, vectors [n, dim] float32)}`` as one buffer,
    for carrying them outside the store (the embeddings topic): the :func:`encode_change_log`
    layout, without its size cap. Layout: a u32 header length, the header (JSON:
    ``[[type code, ids, dim], ...]``), then each group's vectors as ``<f4`` in header order."""
    header = orjson.dumps([[TYPE_CODE[t].decode(), list(ids), int(vectors.shape[1])]
                           for t, (ids, vectors) in groups.items()])
    return b"".join([_U32.pack(len(header)), header,
                     *(np.ascontiguousarray(vectors, dtype=_F32).tobytes() for _, vectors in groups.values())])


def decode_rows(raw: bytes) -> dict[str, tuple[list[str], np.ndarray]]:
    """Inverse of :func:`encode_rows`; ValueError if ``raw`` is cut short, too long or not rows."""
    if len(raw) < 4:
        raise ValueError(f"{len(raw)} bytes hold no rows header")
    try:
        out = decode_change_log(raw) or {}
    except (KeyError, TypeError, struct.error) as exc:
        raise ValueError(f"rows header does not decode: {exc!r}") from None
    (size,) = _U32.unpack_from(raw, 0)
    end = 4 + size + sum(4 * vectors.size for _, vectors in out.values())
    if end != len(raw):
        raise ValueError(f"rows buffer holds {len(raw)} bytes, its header accounts for {end}")
    for node_type, (ids, vectors) in out.items():
        if len(set(ids)) != len(ids) or not all(isinstance(i, str) for i in ids):
            raise ValueError(f"{node_type} ids must be distinct strings")
    return out
