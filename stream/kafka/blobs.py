"""Byte blobs on a Kafka topic, chunked and checksummed: the pure codec and the reassembler.

A blob (a model bundle, a snapshot of the embedding table, one set of changed rows) is sent under
an *index key* ``K`` as ``n`` chunk records followed by one index record, all UTF-8 keyed::

    key "K/<i>"   value b"C" | u16 id length | blob id (UTF-8) | u32 i | chunk bytes   (i = 0..n-1)
    key "K"       value b"I" | u32 header length | header (JSON) | inline bytes

(integers big-endian). The header is ``{"id", "size", "sha256", "chunks", "meta"}``: the blob's
id (unique per publication, e.g. a model version), its length, the hex SHA-256 of its bytes, its
chunk count and the publisher's metadata. A blob of at most one chunk's size travels inside its
index record (``chunks`` 0, the bytes after the header), so small blobs cost one record.

Chunks stay under the broker's message limit (Apache Kafka refuses records above
``max.message.bytes``, 1 MB by default). The publisher has every chunk acknowledged before it
sends the index, so the chunks an index names precede it in the partition; a reader
(:class:`BlobAssembler`) collects chunks by ``(K, id)`` and, at the index, checks count, length
and digest before handing the blob out. A blob with a missing or corrupt chunk becomes a
:class:`BlobError` value, never a crash and never half a blob.

Index keys are the publisher's *slots* (``bundle/0``, ``bundle/1``, ``delta/17``), reused
publication after publication: on a topic with ``cleanup.policy=compact`` the broker keeps the
newest record of each key, hence the newest blob of each slot and nothing older. A null value
(a tombstone) is skipped.
"""
from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson

CHUNK = b"C"
INDEX = b"I"
MAX_ID_BYTES = 255
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


@dataclass(frozen=True)
class Blob:
    """A reassembled, checksum-verified blob; ``offset`` is its index record's."""

    key: str
    id: str
    data: bytes
    meta: dict[str, Any]
    offset: int


@dataclass(frozen=True)
class BlobError:
    """A record or blob that could not be used. ``reason``: malformed (the record does not
    decode), missing_chunks, checksum (length or digest differ from the index) or incomplete
    (chunks whose index never came, dropped to bound memory)."""

    key: str
    id: str | None
    reason: str
    detail: str
    offset: int


def chunk_key(index_key: str, i: int) -> bytes:
    return f"{index_key}/{i}".encode()


def encode_chunk(blob_id: str, i: int, data: bytes) -> bytes:
    raw_id = blob_id.encode()
    return b"".join([CHUNK, _U16.pack(len(raw_id)), raw_id, _U32.pack(i), data])


def encode_index(blob_id: str, data: bytes, meta: dict[str, Any], chunks: int) -> bytes:
    """The index record's value; ``data`` is carried inline only when ``chunks`` is 0."""
    header = orjson.dumps({"id": blob_id, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                           "chunks": chunks, "meta": meta})
    return b"".join([INDEX, _U32.pack(len(header)), header, data if chunks == 0 else b""])


def encode_blob(index_key: str, blob_id: str, data: bytes, meta: dict[str, Any],
                chunk_bytes: int) -> tuple[list[tuple[bytes, bytes]], tuple[bytes, bytes]]:
    """``(chunk records, index record)`` as ``(key, value)`` pairs, to be sent in that order."""
    if not index_key:
        raise ValueError("index_key must be a non-empty string")
    if not blob_id or len(blob_id.encode()) > MAX_ID_BYTES:
        raise ValueError(f"blob id must be 1..{MAX_ID_BYTES} UTF-8 bytes, got {blob_id!r}")
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be >= 1, got {chunk_bytes}")
    if len(data) <= chunk_bytes:
        return [], (index_key.encode(), encode_index(blob_id, data, meta, 0))
    chunks = [(chunk_key(index_key, i), encode_chunk(blob_id, i, data[start:start + chunk_bytes]))
              for i, start in enumerate(range(0, len(data), chunk_bytes))]
    return chunks, (index_key.encode(), encode_index(blob_id, data, meta, len(chunks)))


@dataclass
class _Pending:
    chunks: dict[int, bytes] = field(default_factory=dict)


class BlobAssembler:
    """Records of one partition in offset order → :class:`Blob` and :class:`BlobError` values.

    Pure (no I/O, no clock). Holds the chunks of at most ``max_pending`` blobs whose index has not
    arrived yet; beyond that the oldest are dropped (an ``incomplete`` error: a publisher that
    died between its chunks and its index).
    """

    def __init__(self, max_pending: int = 4) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.max_pending = max_pending
        self._pending: OrderedDict[tuple[str, str], _Pending] = OrderedDict()

    @property
    def pending(self) -> int:
        """Blobs with chunks held, waiting for their index."""
        return len(self._pending)

    def on_record(self, offset: int, key: bytes | None, value: bytes | None) -> list[Blob | BlobError]:
        """Take one record; return what it completed or broke (usually nothing for a chunk)."""
        if value is None:
            return []  # a tombstone: the publisher retired a slot
        name = "" if key is None else key.decode("utf-8", "replace")
        try:
            kind = value[:1]
            if kind == CHUNK:
                return self._on_chunk(offset, name, value)
            if kind == INDEX:
                return [self._on_index(offset, name, value)]
            raise ValueError(f"unknown record type {value[:1]!r}")
        except (ValueError, KeyError, TypeError, struct.error, orjson.JSONDecodeError) as exc:
            return [BlobError(name, None, "malformed", f"record at offset {offset} does not decode: {exc}", offset)]

    def _on_chunk(self, offset: int, name: str, value: bytes) -> list[Blob | BlobError]:
        (id_len,) = _U16.unpack_from(value, 1)
        blob_id = value[3:3 + id_len].decode()
        (i,) = _U32.unpack_from(value, 3 + id_len)
        index_key = name.rsplit("/", 1)[0]
        if f"{index_key}/{i}" != name:
            raise ValueError(f"chunk {i} under key {name!r}")
        slot = (index_key, blob_id)
        pending = self._pending.get(slot)
        out: list[Blob | BlobError] = []
        if pending is None:
            pending = self._pending[slot] = _Pending()
            while len(self._pending) > self.max_pending:
                (old_key, old_id), old = self._pending.popitem(last=False)
                out.append(BlobError(old_key, old_id, "incomplete",
                                     f"{len(old.chunks)} chunks of blob {old_id!r} never got their index", offset))
        pending.chunks[i] = value[7 + id_len:]
        return out

    def _on_index(self, offset: int, name: str, value: bytes) -> Blob | BlobError:
        (size,) = _U32.unpack_from(value, 1)
        header = orjson.loads(value[5:5 + size])
        blob_id, n, meta = str(header["id"]), int(header["chunks"]), dict(header["meta"])
        want_size, digest = int(header["size"]), str(header["sha256"])
        pending = self._pending.pop((name, blob_id), None)
        if n == 0:
            data = value[5 + size:]
        else:
            chunks = {} if pending is None else pending.chunks
            missing = [i for i in range(n) if i not in chunks]
            if missing:
                return BlobError(name, blob_id, "missing_chunks",
                                 f"blob {blob_id!r} lacks chunks {missing[:5]} of {n} (removed by retention, or "
                                 "the publisher's sends were lost)", offset)
            data = b"".join(chunks[i] for i in range(n))
        if len(data) != want_size or hashlib.sha256(data).hexdigest() != digest:
            return BlobError(name, blob_id, "checksum",
                             f"blob {blob_id!r} is {len(data)} bytes, its index says {want_size} with another "
                             "digest: a chunk was corrupted or belongs to another publication", offset)
        return Blob(name, blob_id, data, meta, offset)
