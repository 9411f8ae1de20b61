"""RocksDB backend of the embedding store (rocksdict): one ``WriteBatch`` per ``put_many`` / ``put_groups``.

Byte layout: :mod:`graph_store.embeddings.codec`. One ``WriteBatch`` holds a whole ``put_many``,
so its size bounds a commit (~4·d bytes per row: 70k rows of 64-d are 18 MB); tables far larger
than memory would need versioned key namespaces and a pointer flip instead.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from graph_store.embeddings.base import (
    ChangedRows,
    EmbeddingStore,
    EmbeddingStoreError,
    VersionedRows,
    merge_changes,
)
from graph_store.embeddings.codec import (
    FORMAT_VERSION,
    KEY_FORMAT,
    KEY_SEQ,
    KEY_VERSION,
    LOG_KEEP,
    decode_change_log,
    decode_u32,
    decode_u64,
    decode_vectors,
    dim_key,
    encode_change_log,
    encode_u32,
    encode_u64,
    encode_vector,
    log_key,
    vector_key,
    vector_prefix,
)
from graph_store.errors import GraphStoreError, StoreCorruptedError, StoreLockedError, StoreNotFoundError
from graph_store.options import RocksDBOptions


def _translate(exc: Exception, path: Path) -> GraphStoreError:
    msg = str(exc)
    if "lock" in msg.lower():
        return StoreLockedError(f"embedding store {path} is locked by another writer ({msg}); one refresh "
                                "worker per store path, readers use open_read_only/open_secondary")
    if "corruption" in msg.lower():
        return StoreCorruptedError(f"RocksDB reports corruption in {path}: {msg}. Embeddings are derived "
                                   "data: move the dir aside and let the refresh worker rewrite it")
    return EmbeddingStoreError(f"RocksDB error on {path}: {msg}")


class RocksDBEmbeddingStore(EmbeddingStore):
    """Persistent backend (rocksdict). One writer per path; readers in other processes use
    :meth:`open_read_only` (state as of opening) or :meth:`open_secondary` + :meth:`catch_up`
    (follows the writer; every catch-up lands on a commit boundary)."""

    def __init__(self, path: str | Path, options: RocksDBOptions = RocksDBOptions(), *,
                 read_only: bool = False, secondary_path: str | Path | None = None) -> None:
        import rocksdict

        self.path = Path(path)
        self._write_opt = options.to_write_options()
        self._read_only = read_only or secondary_path is not None
        if self._read_only and not (self.path / "CURRENT").exists():
            raise StoreNotFoundError(f"no embedding store at {self.path} (no RocksDB CURRENT file)")
        if secondary_path is not None:
            access = rocksdict.AccessType.secondary(str(secondary_path))
        elif read_only:
            access = rocksdict.AccessType.read_only(False)
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            access = rocksdict.AccessType.read_write()
        try:
            self._db = rocksdict.Rdict(str(self.path), options.to_options(), access_type=access)
        except Exception as exc:
            raise _translate(exc, self.path) from None
        try:
            self._check_format()
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def open_read_only(cls, path: str | Path, options: RocksDBOptions = RocksDBOptions()) -> RocksDBEmbeddingStore:
        return cls(path, options, read_only=True)

    @classmethod
    def open_secondary(cls, path: str | Path, secondary_path: str | Path,
                       options: RocksDBOptions = RocksDBOptions()) -> RocksDBEmbeddingStore:
        """A reader that follows a live writer; ``secondary_path`` is its own scratch dir."""
        return cls(path, options, secondary_path=secondary_path)

    def catch_up(self) -> None:
        """(secondary) Apply the writer's commits made since opening or the last catch-up."""
        self._check_open()
        try:
            self._db.try_catch_up_with_primary()
        except Exception as exc:
            raise _translate(exc, self.path) from None

    def __repr__(self) -> str:
        return f"RocksDBEmbeddingStore({str(self.path)!r}, {'read-only' if self._read_only else 'writer'})"

    def _check_format(self) -> None:
        raw = self._db.get(KEY_FORMAT)
        if raw is None:
            if next(iter(self._db.keys()), None) is not None:
                raise StoreCorruptedError(f"{self.path} holds a RocksDB database that is not an embedding "
                                          "store (no format key); point the store at its own directory")
            if not self._read_only:
                self._db.put(KEY_FORMAT, encode_u32(FORMAT_VERSION), self._write_opt)
            return
        if decode_u32(raw) != FORMAT_VERSION:
            raise StoreCorruptedError(f"{self.path} has embedding format {decode_u32(raw)}, this code reads "
                                      f"{FORMAT_VERSION}; rewrite it with the matching refresh worker")

    def _put_many(self, node_type: str, items: Iterable[tuple[str, np.ndarray]], dim: int, version: str) -> None:
        self._put_groups({node_type: (items, dim)}, version)

    def _put_groups(self, groups: dict[str, tuple[Iterable[tuple[str, np.ndarray]], int]], version: str) -> None:
        import rocksdict

        batch = rocksdict.WriteBatch(raw_mode=True)
        written: dict[str, tuple[list[str], list[bytes], int]] = {}
        for node_type, (items, dim) in groups.items():
            ids, blobs = [], []
            for node_id, row in items:
                blob = encode_vector(row)
                batch.put(vector_key(node_type, node_id), blob)
                ids.append(node_id)
                blobs.append(blob)
            written[node_type] = (ids, blobs, dim)
            batch.put(dim_key(node_type), encode_u32(dim))
        batch.put(KEY_VERSION, version.encode())
        seq = self._seq() + 1  # one writer per path: nobody commits between this read and the write
        batch.put(KEY_SEQ, encode_u64(seq))
        batch.put(log_key(seq), encode_change_log(written))
        if seq > LOG_KEEP:
            batch.delete(log_key(seq - LOG_KEEP))
        try:
            self._db.write(batch, self._write_opt)
        except Exception as exc:
            raise _translate(exc, self.path) from None

    def _read_many(self, node_type: str, ids: list[str]) -> VersionedRows:
        keys = [KEY_VERSION, dim_key(node_type)] + [vector_key(node_type, i) for i in ids]
        values = self._db.get(keys)  # one multi-get: one consistent view of all keys
        version = None if values[0] is None else values[0].decode()
        dim = 0 if values[1] is None else decode_u32(values[1])
        rows = values[2:]
        found = np.array([v is not None for v in rows], dtype=bool)
        out = np.zeros((len(ids), dim), dtype=np.float32)
        if found.any():
            out[found] = self._decode([v for v in rows if v is not None], dim)
        return VersionedRows(version, out, found)

    def _read_all(self, node_type: str) -> tuple[str | None, list[str], np.ndarray]:
        it = self._db.iter()  # one iterator = one implicit snapshot for the version and the rows
        version, dim = None, 0
        it.seek(KEY_VERSION)
        if it.valid() and it.key() == KEY_VERSION:
            version = it.value().decode()
        it.seek(dim_key(node_type))
        if it.valid() and it.key() == dim_key(node_type):
            dim = decode_u32(it.value())
        prefix = vector_prefix(node_type)
        ids, values = [], []
        it.seek(prefix)
        while it.valid() and it.key().startswith(prefix):
            ids.append(it.key()[len(prefix):].decode())
            values.append(it.value())
            it.next()
        return version, ids, self._decode(values, dim)

    def _decode(self, values: list[bytes], dim: int) -> np.ndarray:
        try:
            return decode_vectors(values, dim)
        except ValueError as exc:
            raise StoreCorruptedError(f"embedding rows in {self.path} do not decode ({exc}); move the dir "
                                      "aside and let the refresh worker rewrite it") from None

    def _version(self) -> str | None:
        raw = self._db.get(KEY_VERSION)
        return None if raw is None else raw.decode()

    def _seq(self) -> int:
        raw = self._db.get(KEY_SEQ)
        return 0 if raw is None else decode_u64(raw)

    def _read_changes(self, since: int) -> ChangedRows | None:
        head = self._db.get([KEY_VERSION, KEY_SEQ])
        version = None if head[0] is None else head[0].decode()
        seq = 0 if head[1] is None else decode_u64(head[1])
        if since > seq or seq - since > LOG_KEEP:
            return None
        logs = self._db.get([log_key(s) for s in range(since + 1, seq + 1)]) if seq > since else []
        try:
            entries = [None if raw is None else decode_change_log(raw) for raw in logs]
        except (ValueError, KeyError) as exc:
            raise StoreCorruptedError(f"change log in {self.path} does not decode ({exc}); move the dir "
                                      "aside and let the refresh worker rewrite it") from None
        if any(e is None for e in entries):
            return None
        return ChangedRows(version, seq, merge_changes(entries))

    def _dim(self, node_type: str) -> int | None:
        raw = self._db.get(dim_key(node_type))
        return None if raw is None else decode_u32(raw)

    def _close(self) -> None:
        self._db.close()
