"""Embedding store: the refresh worker's node embeddings, versioned, for the scorer to read.

One contract (:class:`EmbeddingStore`), two backends (:class:`MemoryEmbeddingStore`,
:class:`RocksDBEmbeddingStore`). ``put_many`` writes rows *and* the new current version as one
atomic commit (one ``WriteBatch``): a reader sees the rows of the previous version or those of
the new one with its version, never a mix, and a crash at any point leaves the previous
version readable. Reads of several keys (``read_many``: one multi-get; ``read_all``: one
iterator) come from one consistent view. numpy only: no torch import.

RocksDB layout (raw bytes; ``code``: one ASCII byte u/i/s for user/item/session)::

    b"Membeddings.format"           -> u32 big-endian format version (1)
    b"Membeddings.version"          -> current version, UTF-8
    b"Membeddings.dim" + code       -> u32 big-endian vector size of that node type
    b"E" + code + node id (UTF-8)   -> vector: dim x float32 little-endian ('<f4'), 4·dim bytes

One ``WriteBatch`` holds a whole ``put_many``, so its size bounds a commit (~4·d bytes per
row: 70k rows of 64-d are 18 MB); tables far larger than memory would need versioned key
namespaces and a pointer flip instead.
"""
from __future__ import annotations

import struct
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from graph_store.errors import (
    GraphStoreError,
    ReadOnlyStoreError,
    StoreClosedError,
    StoreCorruptedError,
    StoreLockedError,
    StoreNotFoundError,
)
from graph_store.options import RocksDBOptions
from graph_store.schema import check_node_type

__all__ = [
    "EmbeddingDimError",
    "EmbeddingStore",
    "EmbeddingStoreError",
    "InvalidEmbeddingsError",
    "MemoryEmbeddingStore",
    "RocksDBEmbeddingStore",
    "VersionedRows",
    "decode_u32",
    "decode_vectors",
    "encode_u32",
    "encode_vector",
    "vector_key",
    "vector_prefix",
]

FORMAT_VERSION = 1
TYPE_CODE = {"user": b"u", "item": b"i", "session": b"s"}
KEY_FORMAT = b"Membeddings.format"
KEY_VERSION = b"Membeddings.version"
DIM_PREFIX = b"Membeddings.dim"
VECTOR_PREFIX = b"E"
_U32 = struct.Struct(">I")
_F32 = np.dtype("<f4")


class EmbeddingStoreError(GraphStoreError):
    """Base class of the embedding store's own errors."""


class InvalidEmbeddingsError(EmbeddingStoreError, ValueError):
    """``put_many`` got malformed ids, vectors or version; nothing was written."""


class EmbeddingDimError(EmbeddingStoreError, ValueError):
    """Vectors whose size differs from the size already stored for that node type."""


# ---- pure codecs ----------------------------------------------------------------------
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


class VersionedRows(NamedTuple):
    """A consistent read: the current ``version``, ``vectors [n, dim]`` float32 (zeros where
    missing) and ``found [n]`` bool."""

    version: str | None
    vectors: np.ndarray
    found: np.ndarray


def _check_ids(ids: Sequence[str]) -> list[str]:
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise InvalidEmbeddingsError(f"ids must be a list of str, got {type(ids).__name__}")
    ids = list(ids)
    for node_id in ids:
        if not isinstance(node_id, str):
            raise InvalidEmbeddingsError(f"ids must be str node ids, got {node_id!r}")
    return ids


class EmbeddingStore(ABC):
    """Versioned node embeddings. Public methods validate; ``_primitives`` implement."""

    _closed: bool = False
    _read_only: bool = False

    def put_many(self, node_type: str, ids: Sequence[str], vectors: np.ndarray, version: str) -> None:
        """Write ``vectors [len(ids), dim]`` float32 for ``ids`` and make ``version`` current, atomically.

        Rows not listed keep their values (an incremental refresh writes only what changed).
        Raises :class:`InvalidEmbeddingsError` / :class:`EmbeddingDimError` before writing
        anything on duplicate ids, a non-float32 or non-finite matrix, a wrong shape, or a
        ``dim`` other than the one stored for ``node_type``.
        """
        self._check_writable()
        check_node_type(node_type)
        ids = _check_ids(ids)
        if not isinstance(version, str) or not version or len(version.encode()) > 1024:
            raise InvalidEmbeddingsError(f"version must be a non-empty str (<= 1 KiB), got {version!r}")
        if not isinstance(vectors, np.ndarray) or vectors.dtype != np.float32 or vectors.ndim != 2:
            raise InvalidEmbeddingsError(
                "vectors must be a 2-D numpy float32 array (cast with .astype(np.float32) on purpose), got "
                f"{type(vectors).__name__} {getattr(vectors, 'dtype', '')} {getattr(vectors, 'shape', '')}")
        if vectors.shape[0] != len(ids):
            raise InvalidEmbeddingsError(f"{len(ids)} ids but {vectors.shape[0]} vector rows")
        if len(set(ids)) != len(ids):
            raise InvalidEmbeddingsError("ids contain duplicates; write each node once per version")
        if not np.isfinite(vectors).all():
            raise InvalidEmbeddingsError("vectors contain NaN or inf; refusing to publish them to the scorer")
        dim = int(vectors.shape[1])
        stored = self._dim(node_type)
        if stored is not None and stored != dim:
            raise EmbeddingDimError(
                f"{node_type} vectors are {dim}-d but the store holds {stored}-d ones; a model with "
                "another size needs its own embedding store (a new path)")
        if dim == 0:
            raise InvalidEmbeddingsError("vectors must have at least one column")
        self._put_many(node_type, self._row_items(ids, vectors), dim, version)

    def _row_items(self, ids: list[str], vectors: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
        """The rows to write, one by one (a primitive consumes them into one commit)."""
        yield from zip(ids, vectors)

    def read_many(self, node_type: str, ids: Sequence[str]) -> VersionedRows:
        """Rows of ``ids`` and the version they belong to, from one consistent view."""
        self._check_open()
        check_node_type(node_type)
        return self._read_many(node_type, _check_ids(ids))

    def get_many(self, node_type: str, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(vectors [n, dim] float32, found [n] bool)``; missing rows are zeros."""
        rows = self.read_many(node_type, ids)
        return rows.vectors, rows.found

    def read_all(self, node_type: str) -> tuple[str | None, list[str], np.ndarray]:
        """``(version, ids, matrix [n, dim])`` of one node type from one consistent view."""
        self._check_open()
        check_node_type(node_type)
        return self._read_all(node_type)

    def get_all(self, node_type: str) -> tuple[list[str], np.ndarray]:
        """All stored ``(ids, matrix [n, dim] float32)`` of a node type, ordered by id bytes."""
        _, ids, matrix = self.read_all(node_type)
        return ids, matrix

    def version(self) -> str | None:
        """The version of the last committed ``put_many`` (None on an empty store)."""
        self._check_open()
        return self._version()

    def dim(self, node_type: str) -> int | None:
        self._check_open()
        check_node_type(node_type)
        return self._dim(node_type)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> EmbeddingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"{type(self).__name__} is closed; open a new store object")

    def _check_writable(self) -> None:
        self._check_open()
        if self._read_only:
            raise ReadOnlyStoreError("embedding store opened for reading; only the refresh worker writes")

    @abstractmethod
    def _put_many(self, node_type: str, items: Iterable[tuple[str, np.ndarray]], dim: int, version: str) -> None:
        """Consume ``items`` and commit them with ``dim`` and ``version`` all or nothing."""

    @abstractmethod
    def _read_many(self, node_type: str, ids: list[str]) -> VersionedRows: ...

    @abstractmethod
    def _read_all(self, node_type: str) -> tuple[str | None, list[str], np.ndarray]: ...

    @abstractmethod
    def _version(self) -> str | None: ...

    @abstractmethod
    def _dim(self, node_type: str) -> int | None: ...

    def _close(self) -> None:
        pass


class MemoryEmbeddingStore(EmbeddingStore):
    """In-process backend (tests, demo): a commit stages every row, then swaps under a lock."""

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, np.ndarray]] = {t: {} for t in TYPE_CODE}
        self._dims: dict[str, int] = {}
        self._current: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryEmbeddingStore(version={self._current!r})"

    def _put_many(self, node_type: str, items: Iterable[tuple[str, np.ndarray]], dim: int, version: str) -> None:
        staged = {node_id: np.array(row, dtype=np.float32) for node_id, row in items}
        with self._lock:
            self._rows[node_type].update(staged)
            self._dims[node_type] = dim
            self._current = version

    def _read_many(self, node_type: str, ids: list[str]) -> VersionedRows:
        with self._lock:
            table, dim, version = self._rows[node_type], self._dims.get(node_type, 0), self._current
            rows = [table.get(node_id) for node_id in ids]
        found = np.array([r is not None for r in rows], dtype=bool)
        out = np.zeros((len(ids), dim), dtype=np.float32)
        if found.any():
            out[found] = np.stack([r for r in rows if r is not None])
        return VersionedRows(version, out, found)

    def _read_all(self, node_type: str) -> tuple[str | None, list[str], np.ndarray]:
        with self._lock:
            items = sorted(self._rows[node_type].items(), key=lambda kv: kv[0].encode())
            dim, version = self._dims.get(node_type, 0), self._current
        matrix = np.stack([v for _, v in items]) if items else np.zeros((0, dim), dtype=np.float32)
        return version, [k for k, _ in items], matrix

    def _version(self) -> str | None:
        return self._current

    def _dim(self, node_type: str) -> int | None:
        return self._dims.get(node_type)


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
        import rocksdict

        batch = rocksdict.WriteBatch(raw_mode=True)
        for node_id, row in items:
            batch.put(vector_key(node_type, node_id), encode_vector(row))
        batch.put(dim_key(node_type), encode_u32(dim))
        batch.put(KEY_VERSION, version.encode())
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

    def _dim(self, node_type: str) -> int | None:
        raw = self._db.get(dim_key(node_type))
        return None if raw is None else decode_u32(raw)

    def _close(self) -> None:
        self._db.close()
