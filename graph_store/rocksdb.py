"""Graph store on RocksDB (rocksdict): one ``WriteBatch`` per ``apply_many``.

A commit carries the graph changes, the consumed offsets, the watermark, the dirty marks and
the counters, so after a crash the store and its offsets agree and the worker resumes from
``committed_offsets()``. Byte layout: :mod:`graph_store.codec`. One writer per data dir
(RocksDB's LOCK); :meth:`RocksDBGraphStore.open_read_only` lets another process inspect a
store whose writer is stopped.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import rocksdict

from graph_store import codec
from graph_store.base import EdgeRows
from graph_store.batch import BatchContext, BatchDelta, BatchPlan, StoredWeights
from graph_store.errors import GraphStoreError
from graph_store.options import RocksDBOptions
from graph_store.planned import PlannedGraphStore
from graph_store.rocksdb_meta import guard, load_meta, open_rdict
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
_CODES = codec.EDGE_CODE


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
        self._node_cache: dict[str, dict[str, int]] = {t: {} for t in NODE_TYPES}
        self._session_cache: dict[str, SessionState] = {}
        self._pop_cache: dict[str, tuple[float, int]] = {}
        self._db = open_rdict(self.path, options, read_only)
        try:
            self.settings, self._counters, self._wm = load_meta(
                self._db, self.path, settings, read_only, self._write_opt
            )
            self._dirty_marks = self._scan_dirty()  # mirror: only new marks are written
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
        _bounded_update(self._node_cache[node_type], pairs, self.options.cache_size)

    def _ids_of(self, node_type: str, indices: list[int]) -> list[str]:
        values = self._db[[codec.index_key(node_type, i) for i in indices]]
        return [v.decode() for v in values]

    # ---- batch primitives ---------------------------------------------------------------
    def _read_context(self, order: dict[str, list[str]]) -> BatchContext:
        with self._guard():
            ids = order["session"]
            cache = self._session_cache
            sessions = {s: cache[s] for s in ids if s in cache}
            missing = [s for s in ids if s not in sessions]
            values = self._db[[codec.session_key(s) for s in missing]] if missing else []
            sessions.update((s, codec.decode_session(v)) for s, v in zip(missing, values) if v is not None)
            # A stored session's last item starts this batch's first transition: index it too.
            wanted = {**dict.fromkeys(order["item"]), **{st.items[-1]: None for st in sessions.values()}}
            known = {
                "user": self._lookup_indices("user", order["user"]),
                "item": self._lookup_indices("item", list(wanted)),
                "session": self._lookup_indices("session", ids),
            }
        counts = {t: self._counters[t + "s"] for t in NODE_TYPES}
        return BatchContext(known, counts, sessions)

    def _read_weights(self, delta: BatchDelta) -> StoredWeights:
        users, items = delta.node_index["user"], delta.node_index["item"]
        n_users, n_items = delta.node_counts_before["user"], delta.node_counts_before["item"]
        pack = _EDGE.pack
        # Keys touching a node first seen in this batch cannot exist: do not read them.
        groups = []
        for edge_type, pairs, src_idx, dst_idx, n_src, n_dst in (
            ("ui", delta.ui, users, items, n_users, n_items),
            ("ii", delta.ii, items, items, n_items, n_items),
            ("uu", dict.fromkeys((s, d) for s, d, _, _ in delta.follow_ops), users, users, n_users, n_users),
        ):
            code = _CODES[edge_type]
            wanted, keys = [], []
            for pair in pairs:
                s, d = src_idx[pair[0]], dst_idx[pair[1]]
                if s < n_src and d < n_dst:
                    wanted.append(pair)
                    keys.append(pack(b"E", code, s, d))
            groups.append((wanted, keys))
        out = StoredWeights()
        cache = self._pop_cache
        pop_wanted = []
        for i in delta.pop:
            if i in cache:
                out.pop[i] = cache[i]
            elif items[i] < n_items:
                pop_wanted.append(i)
        pop_keys = [codec.POP_KEY.pack(b"P", items[i]) for i in pop_wanted]
        all_keys = [k for _, keys in groups for k in keys] + pop_keys
        if not all_keys:
            return out
        with self._guard():
            values = iter(self._db[all_keys])
            unpack = _WEIGHT.unpack
            for (wanted, _), dest in zip(groups, (out.ui, out.ii, out.uu)):
                for pair in wanted:
                    v = next(values)
                    if v is not None:
                        dest[pair] = unpack(v)
            for item in pop_wanted:
                v = next(values)
                if v is not None:
                    out.pop[item] = unpack(v)
        return out

    def _commit(self, plan: BatchPlan, offsets: dict[TopicPartition, int]) -> None:
        batch = rocksdict.WriteBatch(raw_mode=True)
        rows: list[tuple[bytes, bytes]] = []
        put = rows.append
        for t, added in plan.new_nodes.items():
            for node_id, idx in added:
                if idx > codec.MAX_INDEX:
                    raise GraphStoreError(f"more than 2**32 {t} nodes: the u32 node index is exhausted")
                put((codec.node_key(t, node_id), _U32.pack(idx)))
                put((codec.index_key(t, idx), node_id.encode()))
        users, items = plan.node_index["user"], plan.node_index["item"]
        pack, pack_w = _EDGE.pack, _WEIGHT.pack
        for edge_type, values, src_idx, dst_idx in (
            ("ui", plan.ui, users, items),
            ("ii", plan.ii, items, items),
            ("uu", plan.uu_put, users, users),
        ):
            code = _CODES[edge_type]
            for (s, d), (w, t) in values.items():
                si, di = src_idx[s], dst_idx[d]
                value = pack_w(w, t)
                put((pack(b"E", code, si, di), value))
                put((pack(b"E", code + 1, di, si), value))  # reverse type code is forward + 1
        for s, d in plan.uu_del:
            si, di = users[s], users[d]
            batch.delete(pack(b"E", _CODES["uu"], si, di))
            batch.delete(pack(b"E", _CODES["uu_rev"], di, si))
        for item, (w, t) in plan.pop.items():
            put((codec.POP_KEY.pack(b"P", items[item]), pack_w(w, t)))
        for session_id, state in plan.sessions.items():
            put((codec.session_key(session_id), codec.encode_session(state)))
        for (topic, partition), offset in offsets.items():
            put((codec.offset_key(topic, partition), _I64.pack(offset)))
        wm = self._wm
        if plan.watermark is not None and (wm is None or plan.watermark > wm):
            wm = plan.watermark
            put((codec.META_WATERMARK, _I64.pack(wm)))
        new_marks = {t: ids - self._dirty_marks[t] for t, ids in plan.dirty.items()}
        for t, ids in new_marks.items():
            head = b"D" + codec.NODE_CODE[t]
            for node_id in ids:
                put((head + node_id.encode(), b""))
        counters = dict(self._counters)
        for t, added in plan.new_nodes.items():
            counters[t + "s"] += len(added)
        for edge_type, change in plan.new_edges.items():
            counters[edge_type] += change
        counters["interactions"] += plan.stats.interactions
        counters["follows"] += plan.follows
        counters["unfollows"] += plan.unfollows
        put((codec.META_COUNTERS, codec.encode_counters(counters)))
        # Keys go in sorted: consecutive memtable inserts then land near each other in the
        # skiplist, which made the write ~30% cheaper in bench/store_apply.py.
        rows.sort()
        put_raw = batch.put
        for key, value in rows:
            put_raw(key, value)
        with self._guard():
            self._db.write(batch, self._write_opt)
        # Only after the commit succeeded: in-memory mirrors of committed state.
        self._counters, self._wm = counters, wm
        for t, added in plan.new_nodes.items():
            self._remember(t, added)
        for t, ids in new_marks.items():
            self._dirty_marks[t] |= ids
        size = self.options.cache_size
        _bounded_update(self._session_cache, plan.sessions.items(), size)
        _bounded_update(self._pop_cache, plan.pop.items(), size)

    # ---- read primitives ------------------------------------------------------------------
    def _committed_offsets(self) -> dict[TopicPartition, int]:
        with self._guard():
            return {
                codec.decode_offset_key(k): _I64.unpack(v)[0] for k, v in self._scan(codec.OFFSET_PREFIX)
            }

    def _watermark(self) -> int | None:
        return self._wm

    def _out_edges(self, edge_type: str, node_id: str) -> list[tuple[str, float, int]]:
        src_t, dst_t, _ = EDGE_TYPES[edge_type]
        with self._guard():
            src = self._lookup_indices(src_t, [node_id]).get(node_id)
            if src is None:
                return []
            rows = [
                (_U32.unpack_from(k, 6)[0], *_WEIGHT.unpack(v))
                for k, v in self._scan(codec.edge_prefix(edge_type, src))
            ]
            ids = self._ids_of(dst_t, [r[0] for r in rows]) if rows else []
        return [(node, w, t) for node, (_, w, t) in zip(ids, rows)]

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

    def _popularity_rows(self) -> list[tuple[str, float, int]]:
        with self._guard():
            ids = self._node_ids("item")
            return [(ids[_U32.unpack_from(k, 1)[0]], *_WEIGHT.unpack(v)) for k, v in self._scan(codec.POP_PREFIX)]

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
        src, dst, w, t = [], [], [], []
        unpack_key, unpack_w = _EDGE.unpack, _WEIGHT.unpack
        with self._guard():
            for k, v in self._scan(codec.edge_prefix(edge_type)):
                _, _, s, d = unpack_key(k)
                weight, t_ref = unpack_w(v)
                src.append(s)
                dst.append(d)
                w.append(weight)
                t.append(t_ref)
        return src, dst, w, t

    def _close(self) -> None:
        self._db.close()


def _bounded_update(cache: dict, pairs, size: int) -> None:
    """Add ``pairs`` to a cache of at most ``size`` entries, clearing it when it would overflow."""
    if len(cache) >= size:
        cache.clear()
    cache.update(pairs)
