"""The one ``WriteBatch`` of a RocksDB graph-store commit, built from a :class:`BatchPlan`.

Pure of the open database: data, dirty marks, counters, watermark and consumed offsets go
into one batch, which :class:`graph_store.rocksdb.RocksDBGraphStore` writes atomically and
only then mirrors into its caches. Byte layout: :mod:`graph_store.codec`.
"""
from __future__ import annotations

from collections import deque

import rocksdict

from graph_store import codec
from graph_store.batch import BatchPlan
from graph_store.schema import NODE_TYPES, TopicPartition

__all__ = ["EDGE_HEAD", "advance_counters", "build_write_batch", "put_commit_meta"]

_WEIGHT, _U32, _I64 = codec.WEIGHT, codec.U32, codec.I64
_LOW32 = 0xFFFFFFFF
# Key head of each edge type; "<forward>_rev" names the reverse of every forward type.
EDGE_HEAD = {t: b"E" + bytes([c]) for t, c in codec.EDGE_CODE.items()}
EDGE_HEAD["ui_rev"] = EDGE_HEAD["iu"]
_TYPES_BY_CODE = sorted(NODE_TYPES, key=codec.NODE_CODE.__getitem__)  # item, session, user


def build_write_batch(plan: BatchPlan, offsets: dict[TopicPartition, int], new_marks: dict[str, set[str]],
                      counters: dict[str, int], wm: int | None) -> tuple[rocksdict.WriteBatch, dict[str, int], int | None]:
    """The commit's batch, plus the counters and watermark it writes (for the caller's mirrors).

    ``new_marks`` are the dirty ids not marked yet; ``counters`` / ``wm`` the committed ones.
    """
    batch = rocksdict.WriteBatch(raw_mode=True)
    put = batch.put
    pack_w = _WEIGHT.pack
    # Keys go in ascending order (prefixes D < E < I < M < N < O < P < S; node types
    # i < s < u): consecutive memtable inserts then land next to each other in the skiplist.
    # Sorting ints and ids per group is much cheaper than sorting the (key, value) rows.
    for t in _TYPES_BY_CODE:
        head = b"D" + codec.NODE_CODE[t]
        for node_id in sorted(new_marks[t]):
            put(head + node_id.encode(), b"")
    for edge_type, values in (("ui", plan.ui), ("ii", plan.ii), ("uu", plan.uu_put)):
        head, rev_head = EDGE_HEAD[edge_type], EDGE_HEAD[edge_type + "_rev"]
        if len(values) >= codec.BULK_MIN_ROWS:
            for keys, packed in codec.encode_weight_rows((head, rev_head), values):
                deque(map(put, keys, packed), 0)  # the loop runs in C
        else:  # a small commit (one event): numpy's fixed costs would dominate
            for k, (w, t) in sorted(values.items()):
                put(head + k.to_bytes(8, "big"), pack_w(w, t))
            for k, (w, t) in sorted(((k & _LOW32) << 32 | k >> 32, v) for k, v in values.items()):
                put(rev_head + k.to_bytes(8, "big"), pack_w(w, t))
        if edge_type == "uu":
            for k in plan.uu_del:
                batch.delete(head + k.to_bytes(8, "big"))
                batch.delete(rev_head + ((k & _LOW32) << 32 | k >> 32).to_bytes(8, "big"))
    for t in _TYPES_BY_CODE:
        for node_id, idx in plan.new_nodes[t]:
            put(codec.index_key(t, idx), node_id.encode())
    counters = advance_counters(counters, {
        **{t + "s": len(added) for t, added in plan.new_nodes.items()}, **plan.new_edges,
        "interactions": plan.stats.interactions, "follows": plan.follows, "unfollows": plan.unfollows})
    for t in _TYPES_BY_CODE:
        head = b"N" + codec.NODE_CODE[t]
        for node_id, idx in sorted(plan.new_nodes[t]):
            put(head + node_id.encode(), _U32.pack(idx))
    wm = put_commit_meta(batch, counters, plan.watermark, wm, offsets)
    pop = plan.pop
    if len(pop) >= codec.BULK_MIN_ROWS:
        ((keys, packed),) = codec.encode_weight_rows((codec.POP_PREFIX,), pop, width=4)
        deque(map(put, keys, packed), 0)
    else:
        for i, (w, t) in sorted(pop.items()):
            put(codec.popularity_key(i), pack_w(w, t))
    sessions = plan.sessions
    encode_session = codec.encode_session
    for s in sorted(sessions):
        put(b"S" + s.encode(), encode_session(sessions[s]))
    return batch, counters, wm


def advance_counters(counters: dict[str, int], changes: dict[str, int]) -> dict[str, int]:
    """A copy of the committed ``counters`` (``codec.COUNTER_FIELDS``) with a commit's ``changes`` added."""
    out = dict(counters)
    for name, change in changes.items():
        out[name] += change
    return out


def put_commit_meta(batch: rocksdict.WriteBatch, counters: dict[str, int], batch_watermark: int | None,
                    wm: int | None, offsets: dict[TopicPartition, int]) -> int | None:
    """Put a commit's counters, its watermark if it moved, and the consumed offsets; returns
    the watermark after the commit."""
    batch.put(codec.META_COUNTERS, codec.encode_counters(counters))
    if batch_watermark is not None and (wm is None or batch_watermark > wm):
        wm = batch_watermark
        batch.put(codec.META_WATERMARK, _I64.pack(wm))
    for key, offset in sorted((codec.offset_key(t, p), o) for (t, p), o in offsets.items()):
        batch.put(key, _I64.pack(offset))
    return wm
