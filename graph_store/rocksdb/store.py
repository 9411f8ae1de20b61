"""Graph store on RocksDB (rocksdict): one ``WriteBatch`` per ``apply_many``.

A commit carries the graph changes, the consumed offsets, the watermark, the dirty marks and
the counters, so after a crash the store and its offsets agree and the worker resumes from
``committed_offsets()``. Byte layout: :mod:`graph_store.codec`. One writer per data dir
(RocksDB's LOCK); :meth:`RocksDBGraphStore.open_read_only` lets another process inspect a
store whose writer is stopped.
"""
from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import rocksdict

from graph_store import codec
from graph_store.base import EdgeRows
from graph_store.batch import BatchPlan, BatchView
from graph_store.errors import GraphStoreError
from graph_store.options import RocksDBOptions
from graph_store.planned import PlannedGraphStore
from graph_store.rocksdb.commit import EDGE_HEAD as _EDGE_HEAD
from graph_store.rocksdb.commit import build_write_batch
from graph_store.rocksdb.meta import guard, load_meta, open_rdict
from graph_store.schema import (
    EDGE_TYPES,
    NODE_TYPES,
    SessionState,
    StoreCounts,
    StoreSettings,
    TopicPartition,
)

__all__ = ["RocksDBGraphStore"]

_EDGE, _WEIGHT, _U32, _I64 = codec.EDGE_KEY, codec.WEIGHT, codec.U32, codec.I64


class RocksDBGraphStore(PlannedGraphStore):
    """Persistent graph store. See :class:`graph_store.base.GraphStore` for the contract.

    Args:
        path: data dir (created if missing); exactly one writer process may open it.
        settings: must match the stored half-life of an existing store; ``None`` reuses the
            stored settings (defaults for a new store). Other settings may change between runs
            (they only affect events applied later) and are re-persisted.
        options: RocksDB tuning.
        read_only: open without the lock for inspection; use :meth:`open_read_only`.
    """

    def __init__(
        self,
        path: str | Path,
        settings: StoreSettings | None = None,
        options: RocksDBOptions = RocksDBOptions(),
        *,
        read_only: bool = False,
    ) -> None:
        if settings is not None and not isinstance(settings, StoreSettings):
            raise TypeError(f"settings must be a StoreSettings or None, got {type(settings)}")
        self.path = Path(path)
        self.options = options
        self._read_only = read_only
        self._write_opt = options.to_write_options()
        # Cumulative cost of RocksDB's own write call (it holds the GIL), for the ingest bench.
        self.write_seconds = 0.0
        self.keys_written = 0
        self._node_cache: dict[str, dict[str, int]] = {t: {} for t in NODE_TYPES}
        self._session_cache: dict[str, SessionState] = {}
        # Write-back caches of committed state, updated after each successful commit (this
        # process is the only writer). Edge keys are batch.edge_key ints, popularity keys item
        # indices. Each holds at most about options.cache_size entries (roughly 150-250 bytes
        # each; sessions more, by their history) and is cleared when a batch could overflow it.
        self._pop_cache: dict[int, tuple[float, int]] = {}
        self._edge_cache: dict[str, dict[int, tuple[float, int]]] = {"ui": {}, "ii": {}, "uu": {}}
        self._db = open_rdict(self.path, options, read_only)
        try:
            self.settings, self._counters, self._wm = load_meta(
                self._db, self.path, settings, read_only, self._write_opt
            )
            self._dirty_marks = self._scan_dirty()  # mirror: only new marks are written
            # A cache that has seen every write since the store was empty is complete: a miss
            # then means "absent" and the batch path reads nothing from RocksDB.
            empty = not any(self._counters[f] for f in ("users", "items", "sessions", "ui", "ii", "uu"))
            self._complete = dict.fromkeys(self._caches(), empty)
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def open_read_only(
        cls, path: str | Path, settings: StoreSettings | None = None, options: RocksDBOptions = RocksDBOptions()
    ) -> RocksDBGraphStore:
        """Open a store for reading while no writer runs (sees the state as of opening)."""
        return cls(path, settings, options, read_only=True)

    def _guard(self):
        return guard(self.path)

    def _scan(self, prefix: bytes, keys_only: bool = False) -> Iterator:
        """Items (or keys) whose key starts with ``prefix``, in key order."""
        read = rocksdict.ReadOptions()
        read.set_iterate_upper_bound(codec.prefix_end(prefix))
        # A generator, so ``read`` outlives the iterator: rocksdict keeps only a pointer to the
        # upper bound, and once ReadOptions is freed the scan silently stops early.
        if keys_only:
            yield from self._db.keys(from_key=prefix, read_opt=read)
        else:
            yield from self._db.items(from_key=prefix, read_opt=read)

    def _lookup_indices(self, node_type: str, ids: list[str]) -> dict[str, int]:
        """Indices of the known ids among ``ids`` (cache first, one multi-get for the rest)."""
        cache = self._node_cache[node_type]
        found: dict[str, int] = {}
        missing = []
        for node_id in ids:
            idx = cache.get(node_id)
            if idx is None:
                missing.append(node_id)
            else:
                found[node_id] = idx
        if missing:
            values = self._db[[codec.node_key(node_type, i) for i in missing]]
            for node_id, value in zip(missing, values):
                if value is not None:
                    found[node_id] = _U32.unpack(value)[0]
            self._remember(node_type, ((i, found[i]) for i in missing if i in found))
        return found

    def _remember(self, node_type: str, pairs) -> None:
        cache = self._node_cache[node_type]
        if len(cache) >= self.options.cache_size:
            cache.clear()
            self._complete[node_type] = False
        cache.update(pairs)

    def _ids_of(self, node_type: str, indices: list[int]) -> list[str]:
        values = self._db[[codec.index_key(node_type, i) for i in indices]]
        return [v.decode() for v in values]

    # ---- batch primitives ---------------------------------------------------------------
    def _batch_view(self, events: Sequence[Any]) -> BatchView:
        self._make_room(len(events))
        if not all(self._complete.values()):
            with self._guard():
                self._prefetch(events)
        counts = {t: self._counters[t + "s"] for t in NODE_TYPES}
        e = self._edge_cache
        return BatchView(
            self._node_cache, counts, self._session_cache, e["ui"], e["ii"], e["uu"], self._pop_cache,
            {t: [] for t in NODE_TYPES},
        )

    def _forget_nodes(self, added: dict[str, list[str]]) -> None:
        for t, ids in added.items():
            cache = self._node_cache[t]
            for node_id in ids:
                cache.pop(node_id, None)

    def _caches(self) -> dict[str, dict]:
        return {
            **{t: self._node_cache[t] for t in NODE_TYPES},
            "sessions": self._session_cache, "pop": self._pop_cache, **self._edge_cache,
        }

    def _make_room(self, n_events: int) -> None:
        """Clear each cache that a batch of ``n_events`` could push past ``cache_size``.

        A batch adds at most 2 entries per event to any cache (a follow adds two users; an
        item may also come from a stored session), and nothing is evicted while it runs, so
        what ``_prefetch`` loaded is still there when the batch is planned. A cleared cache is
        no longer complete: its misses are read from RocksDB until the store is reopened.
        """
        limit = self.options.cache_size - 2 * n_events
        for name, cache in self._caches().items():
            if cache and len(cache) > limit:
                cache.clear()
                self._complete[name] = False

    def _prefetch(self, events: Sequence[Any]) -> None:
        """Load into the incomplete caches the stored ids, sessions and edge values of a batch."""
        done = self._complete
        ids: dict[str, dict[str, None]] = {t: {} for t in NODE_TYPES}
        users, items, sessions = ids["user"], ids["item"], ids["session"]
        for e in events:
            if hasattr(e, "item_id"):
                users[e.user_id] = items[e.item_id] = sessions[e.session_id] = None
            else:
                users[e.src_user] = users[e.dst_user] = None
        if not done["sessions"]:
            cache = self._session_cache
            missing = [s for s in sessions if s not in cache]
            if missing:
                values = self._db[[codec.session_key(s) for s in missing]]
                cache.update((s, codec.decode_session(v)) for s, v in zip(missing, values) if v is not None)
        for state in map(self._session_cache.get, sessions):
            if state is not None:  # its last item starts the batch's first transition
                items[state.items[-1]] = None
        for t in NODE_TYPES:
            if not done[t]:
                self._lookup_indices(t, list(ids[t]))
        self._prefetch_weights(events)

    def _prefetch_weights(self, events: Sequence[Any]) -> None:
        """Read the stored values of the batch's edges between known nodes that a cache misses."""
        users, items = self._node_cache["user"], self._node_cache["item"]
        wanted: dict[str, dict[int, None]] = {"ui": {}, "ii": {}, "uu": {}, "pop": {}}
        ui, ii, uu, pop = wanted["ui"], wanted["ii"], wanted["uu"], wanted["pop"]
        sessions = self._session_cache
        prev_of: dict[str, str] = {}
        for e in events:
            if not hasattr(e, "item_id"):
                s, d = users.get(e.src_user), users.get(e.dst_user)
                if s is not None and d is not None:
                    uu[s << 32 | d] = None
                continue
            u, i = users.get(e.user_id), items.get(e.item_id)
            if i is None:
                prev_of[e.session_id] = e.item_id
                continue
            pop[i] = None
            if u is not None:
                ui[u << 32 | i] = None
            s = e.session_id
            prev = prev_of.get(s)
            if prev is None and s in sessions:
                prev = sessions[s].items[-1]
            if prev is not None and prev != e.item_id and prev in items:
                ii[items[prev] << 32 | i] = None
            prev_of[s] = e.item_id
        for name, keys in wanted.items():
            if self._complete[name]:
                continue
            cache = self._pop_cache if name == "pop" else self._edge_cache[name]
            missing = [k for k in keys if k not in cache]
            if not missing:
                continue
            if name == "pop":
                raw = [codec.POP_KEY.pack(b"P", k) for k in missing]
            else:
                head = _EDGE_HEAD[name]
                raw = [head + k.to_bytes(8, "big") for k in missing]
            unpack = _WEIGHT.unpack
            cache.update((k, unpack(v)) for k, v in zip(missing, self._db[raw]) if v is not None)

    def _commit(self, plan: BatchPlan, offsets: dict[TopicPartition, int]) -> None:
        for t, added in plan.new_nodes.items():
            if added and added[-1][1] > codec.MAX_INDEX:  # index order: the last is the largest
                raise GraphStoreError(f"more than 2**32 {t} nodes: the u32 node index is exhausted")
        new_marks = {t: ids - self._dirty_marks[t] for t, ids in plan.dirty.items()}
        batch, counters, wm = build_write_batch(plan, offsets, new_marks, self._counters, self._wm)
        self._write(batch)
        # Only after the commit succeeded: in-memory mirrors of committed state (the new ids
        # are in the node caches already: aggregate added them, a failed commit removes them).
        self._counters, self._wm = counters, wm
        for t, ids in new_marks.items():
            self._dirty_marks[t] |= ids
        self._session_cache.update(plan.sessions)
        self._pop_cache.update(plan.pop)
        edges = self._edge_cache
        edges["ui"].update(plan.ui)
        edges["ii"].update(plan.ii)
        uu = edges["uu"]
        uu.update(plan.uu_put)
        for k in plan.uu_del:
            uu.pop(k, None)

    def _write(self, batch: rocksdict.WriteBatch) -> None:
        """Write one commit's batch, counting its keys and the seconds RocksDB took."""
        n_keys = len(batch)  # a written batch is consumed and cannot be asked any more
        started = time.perf_counter()
        with self._guard():
            self._db.write(batch, self._write_opt)
        self.write_seconds += time.perf_counter() - started
        self.keys_written += n_keys

    # ---- read primitives ------------------------------------------------------------------
    def _committed_offsets(self) -> dict[TopicPartition, int]:
        with self._guard():
            return {
                codec.decode_offset_key(k): _I64.unpack(v)[0] for k, v in self._scan(codec.OFFSET_PREFIX)
            }

    def _watermark(self) -> int | None:
        return self._wm

    def _out_edges(self, edge_type: str, node_id: str) -> list[tuple[str, tuple[float, int]]]:
        src_t, dst_t, _ = EDGE_TYPES[edge_type]
        with self._guard():
            src = self._lookup_indices(src_t, [node_id]).get(node_id)
            if src is None:
                return []
            scan = self._scan(codec.edge_prefix(edge_type, src))
            rows = [(_U32.unpack_from(k, 6)[0], _WEIGHT.unpack(v)) for k, v in scan]
            ids = self._ids_of(dst_t, [r[0] for r in rows]) if rows else []
        return [(node, wt) for node, (_, wt) in zip(ids, rows)]

    def _edge_value(self, edge_type: str, src_id: str, dst_id: str) -> tuple[float, int] | None:
        src_t, dst_t, _ = EDGE_TYPES[edge_type]
        with self._guard():
            src = self._lookup_indices(src_t, [src_id]).get(src_id)
            dst = self._lookup_indices(dst_t, [dst_id]).get(dst_id)
            if src is None or dst is None:
                return None
            value = self._db.get(codec.edge_key(edge_type, src, dst))
            return None if value is None else _WEIGHT.unpack(value)

    def _degree(self, edge_type: str, node_id: str) -> int:
        src_t = EDGE_TYPES[edge_type][0]
        with self._guard():
            src = self._lookup_indices(src_t, [node_id]).get(node_id)
            if src is None:
                return 0
            return sum(1 for _ in self._scan(codec.edge_prefix(edge_type, src), keys_only=True))

    def _counts(self) -> StoreCounts:
        c = self._counters
        return StoreCounts(
            users=c["users"], items=c["items"], sessions=c["sessions"],
            edges={"ui": c["ui"], "ii": c["ii"], "uu": c["uu"]},
            interactions=c["interactions"], follows=c["follows"], unfollows=c["unfollows"],
        )

    def _session(self, session_id: str) -> SessionState | None:
        if session_id in self._session_cache:
            return self._session_cache[session_id]
        with self._guard():
            value = self._db.get(codec.session_key(session_id))
            return None if value is None else codec.decode_session(value)

    def _popularity_rows(self) -> list[tuple[str, tuple[float, int]]]:
        with self._guard():
            ids = self._node_ids("item")
            return [(ids[_U32.unpack_from(k, 1)[0]], _WEIGHT.unpack(v)) for k, v in self._scan(codec.POP_PREFIX)]

    def _node_index(self, node_type: str, node_id: str) -> int | None:
        with self._guard():
            return self._lookup_indices(node_type, [node_id]).get(node_id)

    def _node_ids(self, node_type: str) -> list[str]:
        with self._guard():
            return [v.decode() for _, v in self._scan(codec.index_prefix(node_type))]

    def _dirty(self) -> dict[str, set[str]]:
        return {t: set(ids) for t, ids in self._dirty_marks.items()}

    def _scan_dirty(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {t: set() for t in NODE_TYPES}
        with self._guard():
            for key, _ in self._scan(codec.DIRTY_PREFIX):
                node_type, node_id = codec.decode_dirty_key(key)
                out[node_type].add(node_id)
        return out

    def _clear_dirty(self, nodes: dict[str, set[str]]) -> None:
        batch = rocksdict.WriteBatch(raw_mode=True)
        for node_type, ids in nodes.items():
            for node_id in ids:
                batch.delete(codec.dirty_key(node_type, node_id))
        with self._guard():
            self._db.write(batch, self._write_opt)
        for node_type, ids in nodes.items():
            self._dirty_marks[node_type] -= ids

    def _edge_rows(self, edge_type: str) -> EdgeRows:
        return next(self._edge_row_chunks(edge_type, 1 << 62), ([], [], [], []))

    def _edge_row_chunks(self, edge_type: str, chunk: int) -> Iterator[EdgeRows]:
        src, dst, w, t = [], [], [], []
        unpack_key, unpack_w = _EDGE.unpack, _WEIGHT.unpack
        with self._guard():  # one iterator: the version it pinned, whatever is written meanwhile
            for k, v in self._scan(codec.edge_prefix(edge_type)):
                _, _, s, d = unpack_key(k)
                weight, t_ref = unpack_w(v)
                src.append(s)
                dst.append(d)
                w.append(weight)
                t.append(t_ref)
                if len(src) >= chunk:
                    yield src, dst, w, t
                    src, dst, w, t = [], [], [], []
        if src:
            yield src, dst, w, t

    def flush(self, wait: bool = True) -> None:
        """Write the memtable out to an SST file; ``wait=False`` returns at once and RocksDB
        writes it in the background (benchmarks count the cost with ``wait=True``)."""
        self._check_writable()
        with self._guard():
            self._db.flush(wait)

    @property
    def needs_checkpoints(self) -> bool:
        """Whether a crash loses commits still in the memtable (no write-ahead log): the writer
        then flushes on a schedule to bound what a restart re-reads from Kafka."""
        return not self.options.wal

    def _close(self) -> None:
        self._db.close()

