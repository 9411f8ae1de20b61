"""The embedding store contract: validating public methods over backend primitives.

:class:`EmbeddingStore` validates every argument in its public methods and hands clean input to
the ``_primitives`` a backend implements (``graph_store.embeddings`` holds the in-memory backend,
``graph_store.embeddings.rocksdb`` the persistent one).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from graph_store.errors import GraphStoreError
from graph_store.lifecycle import StoreLifecycle
from graph_store.schema import check_node_type


class EmbeddingStoreError(GraphStoreError):
    """Base class of the embedding store's own errors."""


class InvalidEmbeddingsError(EmbeddingStoreError, ValueError):
    """``put_many`` got malformed ids, vectors or version; nothing was written."""


class EmbeddingDimError(EmbeddingStoreError, ValueError):
    """Vectors whose size differs from the size already stored for that node type."""



class VersionedRows(NamedTuple):
    """A consistent read: the current ``version``, ``vectors [n, dim]`` float32 (zeros where
    missing) and ``found [n]`` bool."""

    version: str | None
    vectors: np.ndarray
    found: np.ndarray


class ChangedRows(NamedTuple):
    """What commits after some ``seq`` wrote: ``rows {node_type: (ids, vectors [n, dim])}``, the
    current ``version`` and ``seq`` (commits so far; pass it to the next ``read_changes``)."""

    version: str | None
    seq: int
    rows: dict[str, tuple[list[str], np.ndarray]]


def merge_changes(entries: Iterable[dict[str, tuple[list[str], np.ndarray]]]) -> dict[str, tuple[list[str], np.ndarray]]:
    """Several commits' ``{node_type: (ids, vectors)}`` in commit order → each id once, with the
    vector of the last commit that wrote it."""
    grouped: dict[str, list[tuple[list[str], np.ndarray]]] = {}
    for entry in entries:
        for node_type, pair in entry.items():
            grouped.setdefault(node_type, []).append(pair)
    out = {}
    for node_type, pairs in grouped.items():
        if len(pairs) == 1:
            out[node_type] = pairs[0]
            continue
        ids = [i for group, _ in pairs for i in group]
        last = {node_id: k for k, node_id in enumerate(ids)}  # later commits overwrite
        rows = np.fromiter(last.values(), dtype=np.int64, count=len(last))
        out[node_type] = (list(last), np.concatenate([v for _, v in pairs])[rows])
    return out


def _check_version(version: str) -> None:
    if not isinstance(version, str) or not version or len(version.encode()) > 1024:
        raise InvalidEmbeddingsError(f"version must be a non-empty str (<= 1 KiB), got {version!r}")


def _check_ids(ids: Sequence[str]) -> list[str]:
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise InvalidEmbeddingsError(f"ids must be a list of str, got {type(ids).__name__}")
    ids = list(ids)
    for node_id in ids:
        if not isinstance(node_id, str):
            raise InvalidEmbeddingsError(f"ids must be str node ids, got {node_id!r}")
    return ids


class EmbeddingStore(StoreLifecycle, ABC):
    """Versioned node embeddings. Public methods validate; ``_primitives`` implement."""

    READ_ONLY_HINT = "embedding store opened for reading; only the refresh worker writes"

    def put_many(self, node_type: str, ids: Sequence[str], vectors: np.ndarray, version: str) -> None:
        """Write ``vectors [len(ids), dim]`` float32 for ``ids`` and make ``version`` current, atomically.

        Rows not listed keep their values (an incremental refresh writes only what changed).
        Raises :class:`InvalidEmbeddingsError` / :class:`EmbeddingDimError` before writing
        anything on duplicate ids, a non-float32 or non-finite matrix, a wrong shape, or a
        ``dim`` other than the one stored for ``node_type``.
        """
        self._check_writable()
        _check_version(version)
        ids, dim = self._check_rows(node_type, ids, vectors)
        self._put_many(node_type, self._row_items(ids, vectors), dim, version)

    def put_groups(self, groups: Mapping[str, tuple[Sequence[str], np.ndarray]], version: str) -> None:
        """``put_many`` for several node types in ONE atomic commit: ``{node_type: (ids, vectors)}``.

        The refresh worker publishes the users and items of one refresh this way, so a reader
        never pairs users of the new version with items of the old one. Every group is validated
        as in :meth:`put_many` before anything is written; then all rows, each type's ``dim``
        and ``version`` are committed together, or nothing is.
        """
        self._check_writable()
        _check_version(version)
        if not isinstance(groups, Mapping) or not groups:
            raise InvalidEmbeddingsError("groups must be a non-empty {node_type: (ids, vectors)} mapping")
        checked: dict[str, tuple[list[str], np.ndarray, int]] = {}
        for node_type, pair in groups.items():
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise InvalidEmbeddingsError(f"groups[{node_type!r}] must be an (ids, vectors) pair")
            ids, dim = self._check_rows(node_type, pair[0], pair[1])
            checked[node_type] = (ids, pair[1], dim)
        self._put_groups({t: (self._row_items(ids, vectors), dim) for t, (ids, vectors, dim) in checked.items()},
                         version)

    def _check_rows(self, node_type: str, ids: Sequence[str], vectors: np.ndarray) -> tuple[list[str], int]:
        """Validated ``(ids, dim)`` of one node type's rows (see :meth:`put_many` for the rules)."""
        check_node_type(node_type)
        ids = _check_ids(ids)
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
        return ids, dim

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

    def seq(self) -> int:
        """How many commits the store holds (0 when empty); each ``put_many``/``put_groups`` adds one."""
        self._check_open()
        return self._seq()

    def read_changes(self, since: int) -> ChangedRows | None:
        """The rows written by the commits after ``since`` (a ``seq`` seen earlier), at their
        current values, with the current version and seq.

        A follower calls this instead of :meth:`read_all` at each refresh, so its cost follows
        what changed, not the table. None when those commits are no longer listed (more than the
        kept log behind, a commit too large to list, or ``since`` ahead of this store: another
        store at the same path): read everything with :meth:`read_all` then, taking
        :meth:`seq` *before* it (a commit landing during the full read is then read again).
        """
        self._check_open()
        if not isinstance(since, int) or isinstance(since, bool) or since < 0:
            raise ValueError(f"since must be a seq (int >= 0) from seq() or read_changes(), got {since!r}")
        return self._read_changes(since)

    def version(self) -> str | None:
        """The version of the last committed ``put_many`` (None on an empty store)."""
        self._check_open()
        return self._version()

    def dim(self, node_type: str) -> int | None:
        self._check_open()
        check_node_type(node_type)
        return self._dim(node_type)

    @abstractmethod
    def _put_many(self, node_type: str, items: Iterable[tuple[str, np.ndarray]], dim: int, version: str) -> None:
        """Consume ``items`` and commit them with ``dim`` and ``version`` all or nothing."""

    @abstractmethod
    def _put_groups(self, groups: dict[str, tuple[Iterable[tuple[str, np.ndarray]], int]], version: str) -> None:
        """Consume every group's row items and commit them, each type's dim and ``version`` all or nothing."""

    @abstractmethod
    def _read_many(self, node_type: str, ids: list[str]) -> VersionedRows: ...

    @abstractmethod
    def _read_all(self, node_type: str) -> tuple[str | None, list[str], np.ndarray]: ...

    @abstractmethod
    def _version(self) -> str | None: ...

    @abstractmethod
    def _seq(self) -> int: ...

    @abstractmethod
    def _read_changes(self, since: int) -> ChangedRows | None: ...

    @abstractmethod
    def _dim(self, node_type: str) -> int | None: ...

