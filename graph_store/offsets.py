"""Replay filtering for at-least-once consumers: the store keeps offsets, the caller skips replays.

After a restart the consumer seeks to ``store.committed_offsets()``; records that are
redelivered anyway (a rebalance, or a seek that lands earlier) carry an offset below the
committed next offset of their partition and must not be applied twice.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from graph_store.schema import TopicPartition

__all__ = ["filter_replays", "next_offsets"]

R = TypeVar("R")


def filter_replays(records: Iterable[R], committed: Mapping[TopicPartition, int]) -> list[R]:
    """Drop records whose ``offset`` is below the committed next offset of their partition.

    ``records`` are duck-typed like Kafka consumer records (``topic``, ``partition``,
    ``offset`` attributes); partitions absent from ``committed`` keep all their records.

    >>> from types import SimpleNamespace as R
    >>> recs = [R(topic="t", partition=0, offset=o) for o in (4, 5, 6)]
    >>> [r.offset for r in filter_replays(recs, {("t", 0): 5})]
    [5, 6]
    """
    return [r for r in records if r.offset >= committed.get((r.topic, r.partition), 0)]


def next_offsets(records: Iterable[Any]) -> dict[TopicPartition, int]:
    """The offsets to commit after applying ``records``: last offset + 1 per partition."""
    out: dict[TopicPartition, int] = {}
    for r in records:
        tp = (r.topic, r.partition)
        if r.offset + 1 > out.get(tp, 0):
            out[tp] = r.offset + 1
    return out
