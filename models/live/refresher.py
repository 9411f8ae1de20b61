"""Local embedding refresh: dirty nodes → k-hop set → exact LightGCN recomputation there.

:class:`Refresher` owns the propagation state of one model bundle over the live graph
(:class:`~models.live.graph.LiveGraph` + :class:`~models.incremental.PropagationCache`).
:meth:`Refresher.refresh` takes the store's dirty marks, clears them *before* reading (so a
change committed meanwhile marks its nodes again), re-reads the edges of those nodes, and
recomputes layer ``l`` only on the closed ``l``-hop neighbourhood of the nodes whose edges
changed (:func:`models.incremental.local_update`): the result equals a full propagation over
the same graph snapshot. The rows it publishes are exactly the closed ``L``-hop set plus the
appended nodes — every other row is unchanged by construction.

**Nodes the bundle has never seen** get their ego embedding from the bundle's inductive
encoder (:class:`models.inductive.InductiveEgo`, fitted by the trainer): the importance-weighted
mean (decayed edge weight as importance) of their neighbours' trained ego rows through a learned
per-type map — or the plain mean for a bundle without one; then ordinary propagation places
them. No retraining is involved; a node with no trained neighbour starts at zero and is still
placed by propagation from its neighbours' layers.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from graph_store import GraphStore
from models.incremental.local import PropagationCache, full_propagation, k_hop_affected, local_update
from models.incremental.graph import SymGraph, take
from models.inductive import InductiveEgo
from models.live.bundle import ModelBundle
from models.live.graph import LiveGraph


@dataclass(frozen=True, eq=False)
class RefreshResult:
    """Rows to publish (``node_type -> (ids, vectors [n, d] float32)``) and what it cost."""

    embedding_version: str
    model_version: str
    rows: dict[str, tuple[list[str], np.ndarray]]
    dirty: int
    recomputed: int
    appended: int
    full: bool
    seconds: float
    watermark_ms: int

    @property
    def published(self) -> int:
        return sum(len(ids) for ids, _ in self.rows.values())


def inductive_x0(graph: SymGraph, nodes: Tensor, x0: Tensor, known: Tensor,
                 encoder: InductiveEgo | None = None, node_type: Tensor | None = None) -> Tensor:
    """Ego embeddings ``[len(nodes), d]`` for nodes without a trained one.

    The importance-weighted mean of the ego rows of their neighbours that have one (``known [N]``
    bool; weights = decayed edge weights), through ``encoder``'s per-type map when one is given
    (``node_type [len(nodes)]``: 0 user, 1 item); zero where no neighbour is known.
    """
    counts = graph.indptr[nodes + 1] - graph.indptr[nodes]
    owner = torch.repeat_interleave(torch.arange(nodes.numel()), counts)
    offsets = torch.arange(owner.numel()) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    entry = take(graph.indptr, nodes)[owner] + offsets
    neighbours, weight = take(graph.indices, entry), take(graph.weight, entry)
    # a bipartite problem: sources are the neighbours' rows, targets the requested nodes
    edge_index = torch.stack([torch.arange(owner.numel()), owner])
    pooled, has = InductiveEgo.pool(take(x0, neighbours), edge_index, weight, take(known, neighbours),
                                    num_targets=nodes.numel())
    if encoder is not None and node_type is not None:
        with torch.no_grad():
            pooled = encoder.transform(pooled, node_type)
    return torch.where(has.unsqueeze(1), pooled, torch.zeros_like(pooled))


class Refresher:
    """Keeps one bundle's LightGCN embeddings of the store's nodes fresh."""

    def __init__(self, bundle: ModelBundle, *, dense_above: float = 0.5) -> None:
        self.bundle = bundle
        self.dense_above = dense_above
        self.live = LiveGraph()
        self.cache: PropagationCache | None = None
        self.x0 = torch.zeros(0, bundle.dim)
        self.known = torch.zeros(0, dtype=torch.bool)
        self.sequence = 0
        self._ego_row = {"user": bundle.ego_of("user"), "item": bundle.ego_of("item")}

    @property
    def model_version(self) -> str:
        return self.bundle.version

    def embedding_version(self) -> str:
        return f"{self.bundle.version}/r{self.sequence}"

    def _ego_rows(self, start: int) -> tuple[Tensor, Tensor]:
        """Trained ego rows for live nodes ``start..N-1`` and whether each had one."""
        keys = self.live.keys(range(start, self.live.num_nodes))
        rows = torch.tensor([self._ego_row[t].get(i, -1) for t, i in keys], dtype=torch.long)
        known = rows >= 0
        x = torch.zeros(rows.numel(), self.bundle.dim)
        x[known] = self.bundle.ego[rows[known]]
        return x, known

    def _grow_x0(self, graph: SymGraph) -> Tensor:
        """Extend ``x0`` to the graph's nodes; returns the appended rows."""
        start = self.x0.size(0)
        x_new, known_new = self._ego_rows(start)
        self.x0 = torch.cat([self.x0, x_new])
        self.known = torch.cat([self.known, known_new])
        unknown = torch.nonzero(~known_new).view(-1) + start
        if unknown.numel():
            types = torch.tensor([t == "item" for t, _ in self.live.keys(unknown.tolist())], dtype=torch.long)
            self.x0[unknown] = inductive_x0(graph, unknown, self.x0, self.known, self.bundle.inductive, types)
        return self.x0[start:]

    def rebuild(self, store: GraphStore, now_ms: int) -> RefreshResult:
        """Full recomputation over every edge in the store at ``now_ms``; publishes every row."""
        started = time.perf_counter()
        dirty = store.dirty_nodes()
        if dirty:
            store.clear_dirty(dirty)
        graph = self.live.build(store, now_ms)
        self.x0, self.known = self.x0[:0], self.known[:0]
        self._grow_x0(graph)
        final, layers = full_propagation(self.x0, graph, num_layers=self.bundle.num_layers)
        self.cache = PropagationCache(final, layers)
        self.sequence += 1
        every = torch.arange(graph.num_nodes)
        return self._result(every, sum(len(v) for v in dirty.values()), graph.num_nodes, True, started, now_ms)

    def refresh(self, store: GraphStore, now_ms: int) -> RefreshResult:
        """Local recomputation for what changed since the last refresh (a rebuild if none yet)."""
        if self.cache is None:
            return self.rebuild(store, now_ms)
        started = time.perf_counter()
        dirty = store.dirty_nodes()
        if dirty:
            store.clear_dirty(dirty)
        delta = self.live.sync(store, now_ms, dirty)
        n_dirty = int(delta.dirty.numel())
        if n_dirty == 0:
            return self._result(torch.zeros(0, dtype=torch.long), 0, 0, False, started, now_ms)
        new_rows = self._grow_x0(delta.new)
        self.cache, _ = local_update(self.cache, delta.old, delta.new, delta.dirty, new_rows, inplace=True,
                                     dense_above=self.dense_above)
        layers = self.bundle.num_layers
        affected = k_hop_affected(delta.new, delta.dirty, layers)[-1] if layers else delta.dirty
        rows = torch.unique(torch.cat([affected, delta.appended]))
        self.sequence += 1
        return self._result(rows, n_dirty, int(delta.appended.numel()), False, started, now_ms)

    def swap(self, bundle: ModelBundle, store: GraphStore, now_ms: int) -> RefreshResult:
        """Adopt a newly trained bundle: full rebuild with its weights, every row republished."""
        self.bundle = bundle
        self._ego_row = {"user": bundle.ego_of("user"), "item": bundle.ego_of("item")}
        self.x0 = torch.zeros(0, bundle.dim)
        self.known = torch.zeros(0, dtype=torch.bool)
        self.cache = None
        return self.rebuild(store, now_ms)

    def full_oracle(self) -> Tensor:
        """Full propagation of the current ``x0`` over the current snapshot (tests, benchmarks)."""
        return full_propagation(self.x0, self.live.graph, num_layers=self.bundle.num_layers)[0]

    def _result(self, rows: Tensor, dirty: int, appended: int, full: bool, started: float,
                now_ms: int) -> RefreshResult:
        out: dict[str, tuple[list[str], np.ndarray]] = {}
        if rows.numel():
            assert self.cache is not None
            vectors = self.cache.final[rows].numpy().astype(np.float32, copy=False)
            keys = self.live.keys(rows.tolist())
            for node_type in ("user", "item"):
                sel = [k for k, key in enumerate(keys) if key[0] == node_type]
                out[node_type] = ([keys[k][1] for k in sel], np.ascontiguousarray(vectors[sel]))
        return RefreshResult(self.embedding_version(), self.bundle.version, out, dirty, int(rows.numel()),
                             appended, full, time.perf_counter() - started, now_ms)
