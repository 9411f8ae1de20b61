"""The refresh worker's view of the store's user–item graph, kept in step from dirty marks.

LightGCN propagates over one node numbering holding users and items together. The store
numbers each type on its own, and ids arrive forever, so :class:`LiveGraph` assigns its own
dense indices in order of first sight (a node keeps its index for the worker's lifetime) and
keeps the undirected, weighted user–item graph as a :class:`~models.incremental.graph.SymGraph`.

:meth:`LiveGraph.sync` re-reads from the store only the edges of the nodes the store marked
dirty, with their weights decayed to ``now_ms``, and applies them with
:func:`~models.incremental.graph.apply_edge_changes`, which reports the endpoints whose edges
really changed. The snapshot the refresh propagates over is therefore: every edge incident
to a dirty node at its weight at the refresh time, every other edge at its weight when it was
last read. Decay of untouched edges reaches the embeddings at the next full rebuild
(:meth:`LiveGraph.build`, on start and on every model swap), which bounds the drift by the
model's lifetime; exactness is stated against this snapshot (local == full over it).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from graph_store import GraphStore
from models.incremental.graph import SymGraph, apply_edge_changes

NODE_TYPES = ("user", "item")


@dataclass(frozen=True, eq=False)
class GraphDelta:
    """What one :meth:`LiveGraph.sync` changed: graphs before/after, and the live indices of
    the nodes whose incident edges changed (``dirty``, sorted) and of the appended nodes."""

    old: SymGraph
    new: SymGraph
    dirty: Tensor
    appended: Tensor
    edges_read: int


def _empty_graph(n: int = 0) -> SymGraph:
    empty = torch.zeros(0, dtype=torch.long)
    return SymGraph.from_entries(empty, empty, torch.zeros(0), n)


class LiveGraph:
    """Users and items of the store in one dense numbering, with the decayed user–item graph."""

    def __init__(self) -> None:
        self._index: dict[tuple[str, str], int] = {}
        self._keys: list[tuple[str, str]] = []
        self.graph = _empty_graph()

    @property
    def num_nodes(self) -> int:
        return len(self._keys)

    def key(self, index: int) -> tuple[str, str]:
        """``(node_type, id)`` of a live index."""
        return self._keys[index]

    def keys(self, indices: Iterable[int]) -> list[tuple[str, str]]:
        return [self._keys[i] for i in indices]

    def index(self, node_type: str, node_id: str) -> int | None:
        return self._index.get((node_type, node_id))

    def ids_of_type(self, node_type: str) -> tuple[list[str], Tensor]:
        """Ids of one type and their live indices, in index order."""
        pairs = [(i, k[1]) for i, k in enumerate(self._keys) if k[0] == node_type]
        return [p[1] for p in pairs], torch.tensor([p[0] for p in pairs], dtype=torch.long)

    def _assign(self, node_type: str, node_id: str) -> int:
        key = (node_type, node_id)
        found = self._index.get(key)
        if found is None:
            found = self._index[key] = len(self._keys)
            self._keys.append(key)
        return found

    # ---- building ------------------------------------------------------------------------
    def build(self, store: GraphStore, now_ms: int) -> SymGraph:
        """Rebuild the graph from every user–item edge in the store, decayed to ``now_ms``.

        Known nodes keep their indices; nodes new to this worker are appended (users first, in
        store order, then items), so a rebuild never reorders the embeddings already served.
        """
        data = store.to_pyg(now_ms)
        users, items = store.node_ids("user"), store.node_ids("item")
        user_live = np.fromiter((self._assign("user", u) for u in users), dtype=np.int64, count=len(users))
        item_live = np.fromiter((self._assign("item", i) for i in items), dtype=np.int64, count=len(items))
        edges = data["user", "ui", "item"]
        src = torch.from_numpy(user_live)[edges.edge_index[0]]
        dst = torch.from_numpy(item_live)[edges.edge_index[1]]
        keep = edges.edge_weight > 0
        self.graph = SymGraph.from_undirected(src[keep], dst[keep], self.num_nodes, edges.edge_weight[keep])
        return self.graph

    def sync(self, store: GraphStore, now_ms: int, dirty: Mapping[str, Iterable[str]]) -> GraphDelta:
        """Re-read the user–item edges of the ``dirty`` users and items at ``now_ms``.

        ``dirty`` is a snapshot of ``store.dirty_nodes()`` (sessions are ignored here; the
        scorer reads session state itself). Returns the change for
        :func:`models.incremental.local_update`.
        """
        old_n, before = self.num_nodes, self.graph
        pairs: dict[tuple[int, int], float] = {}
        read = 0
        for node_type, edge_type in (("user", "ui"), ("item", "iu")):
            for node_id in sorted(dirty.get(node_type, ())):
                me = self._assign(node_type, node_id)
                other_type = "item" if node_type == "user" else "user"
                for nb in store.neighbours(node_type, node_id, edge_type, now_ms):
                    other = self._assign(other_type, nb.node_id)
                    pairs[(me, other) if node_type == "user" else (other, me)] = nb.weight
                    read += 1
        old = self.graph.padded(self.num_nodes)
        if pairs:
            ui = torch.tensor(list(pairs), dtype=torch.long).view(-1, 2)
            weight = torch.tensor(list(pairs.values()), dtype=torch.float32)
            new, changed = apply_edge_changes(old, ui[:, 0], ui[:, 1], weight, self.num_nodes)
        else:
            new, changed = old, torch.zeros(0, dtype=torch.long)
        appended = torch.arange(old_n, self.num_nodes)
        self.graph = new
        dirty_idx = torch.unique(torch.cat([changed, appended]))
        return GraphDelta(before, new, dirty_idx, appended, read)
