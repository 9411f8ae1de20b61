"""The in-memory :class:`EmbeddingStore`: the contract's reference backend (tests, the live engine)."""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable

import numpy as np

from graph_store.embeddings.base import (
    ChangedRows,
    EmbeddingStore,
    VersionedRows,
    merge_changes,
)
from graph_store.embeddings.codec import (
    LOG_KEEP,
    LOG_MAX_IDS,
    TYPE_CODE,
)


class MemoryEmbeddingStore(EmbeddingStore):
    """In-process backend (tests, demo): a commit stages every row, then swaps under a lock."""

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, np.ndarray]] = {t: {} for t in TYPE_CODE}
        self._dims: dict[str, int] = {}
        self._current: str | None = None
        self._seq_no = 0
        # (seq, {node_type: (ids, vectors)} or None when too many to keep), the last LOG_KEEP commits
        self._log: deque[tuple[int, dict[str, tuple[list[str], np.ndarray]] | None]] = deque(maxlen=LOG_KEEP)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryEmbeddingStore(version={self._current!r})"

    def _put_many(self, node_type: str, items: Iterable[tuple[str, np.ndarray]], dim: int, version: str) -> None:
        self._put_groups({node_type: (items, dim)}, version)

    def _put_groups(self, groups: dict[str, tuple[Iterable[tuple[str, np.ndarray]], int]], version: str) -> None:
        staged = {t: ({node_id: np.array(row, dtype=np.float32) for node_id, row in items}, dim)
                  for t, (items, dim) in groups.items()}
        listed = None
        if sum(len(rows) for rows, _ in staged.values()) <= LOG_MAX_IDS:
            listed = {t: (list(rows), np.stack(list(rows.values())) if rows else np.zeros((0, dim), np.float32))
                      for t, (rows, dim) in staged.items()}
        with self._lock:
            for node_type, (rows, dim) in staged.items():
                self._rows[node_type].update(rows)
                self._dims[node_type] = dim
            self._current = version
            self._seq_no += 1
            self._log.append((self._seq_no, listed))

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

    def _seq(self) -> int:
        return self._seq_no

    def _read_changes(self, since: int) -> ChangedRows | None:
        with self._lock:
            seq, version = self._seq_no, self._current
            entries = [entry for s, entry in self._log if s > since]
            if since > seq or len(entries) != seq - since or any(e is None for e in entries):
                return None
        return ChangedRows(version, seq, {t: (list(ids), vectors.copy())
                                          for t, (ids, vectors) in merge_changes(entries).items()})

    def _dim(self, node_type: str) -> int | None:
        return self._dims.get(node_type)
