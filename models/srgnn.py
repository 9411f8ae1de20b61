"""SR-GNN: session-based recommendation with graph neural networks (Wu et al., AAAI 2019).

Each session prefix becomes a directed graph over its *unique* items, with an edge u→v for every
consecutive click pair (duplicates collapsed, self-loops kept, as in the reference code). One or
more gated GNN steps update the node vectors, a soft attention pools them into a session vector,
and every item is scored by an inner product with that vector.

Why not :class:`torch_geometric.nn.GatedGraphConv`: it aggregates one message ``Σ_j W h_j`` of
width ``d`` and feeds it to a ``GRUCell(d, d)``. SR-GNN propagates separately along incoming and
outgoing edges, each *averaged* over the receiving node's degree in that direction and with its
own weights and biases, and feeds the concatenation ``[a_in ; a_out]`` (width ``2d``) to the GRU.
GatedGraphConv can express neither the split nor the per-direction normalisation, so the cell is
built from PyG's :class:`~torch_geometric.nn.SimpleConv` (``aggr="mean"``: exactly the reference's
division of ``A`` by in-/out-degree) plus :class:`torch.nn.GRUCell` (the reference's GRU
equations, fused).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import SimpleConv

from models.losses import softmax_cross_entropy


@dataclass(frozen=True)
class SessionGraphBatch:
    """A batch of session graphs in PyG's disjoint-union layout (``x``, ``edge_index``, ``batch``).

    Shapes (``B`` sessions, longest ``L`` clicks, ``M`` nodes in all, ``E`` edges):
      ``x [M]`` item id of each node (nodes of a session are its unique items, sorted by id);
      ``edge_index [2, E]`` deduplicated transitions between node indices;
      ``batch [M]`` session of each node; ``alias [B, L]`` node of each click (0 where padded);
      ``mask [B, L]`` real clicks; ``last [B]`` node of the last click.
    """

    x: Tensor
    edge_index: Tensor
    batch: Tensor
    alias: Tensor
    mask: Tensor
    last: Tensor

    @property
    def num_sessions(self) -> int:
        return self.alias.size(0)

    def to(self, device: torch.device | str) -> SessionGraphBatch:
        return SessionGraphBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def collate_padded(items: Tensor, lengths: Tensor) -> SessionGraphBatch:
    """Build session graphs from right-padded click sequences, vectorised over the batch.

    ``items [B, L]`` item ids ``>= 1`` in the first ``lengths[b]`` positions (anything after);
    ``lengths [B]`` in ``1..L``.
    """
    if items.dim() != 2 or lengths.shape != (items.size(0),):
        raise ValueError(f"expected items [B, L] and lengths [B], got {tuple(items.shape)}, {tuple(lengths.shape)}")
    B, L = items.shape
    if B == 0 or int(lengths.min()) < 1 or int(lengths.max()) > L:
        raise ValueError(f"every session needs 1..{L} clicks; got lengths in "
                         f"[{int(lengths.min()) if B else 0}, {int(lengths.max()) if B else 0}]")
    items, lengths = items.long(), lengths.long()
    mask = torch.arange(L, device=items.device) < lengths[:, None]
    if int(items[mask].min()) < 1:
        raise ValueError("item ids must be >= 1 (0 is the padding id)")
    stride = int(items[mask].max()) + 1
    keys = torch.arange(B, device=items.device)[:, None] * stride + items
    uniq, inverse = torch.unique(keys[mask], sorted=True, return_inverse=True)
    alias = torch.zeros(B, L, dtype=torch.long, device=items.device)
    alias[mask] = inverse
    pair = mask[:, 1:]  # click t+1 exists, hence so does click t
    num_nodes = uniq.numel()
    edges = torch.unique(alias[:, :-1][pair] * num_nodes + alias[:, 1:][pair])
    return SessionGraphBatch(
        x=uniq % stride, edge_index=torch.stack([edges // num_nodes, edges % num_nodes]),
        batch=uniq // stride, alias=alias, mask=mask,
        last=alias[torch.arange(B, device=items.device), lengths - 1])


def collate_sessions(sessions: Sequence[Sequence[int]]) -> SessionGraphBatch:
    """Session graphs from Python lists of item ids (the scorer's entry point).

    The same batch as :func:`collate_padded` over the padded sessions, built with dicts and
    sets: the live scorer collates a few dozen short sessions per call, where the vectorised
    path's ~20 small tensor ops cost more (~3x here) than the Python they replace.
    """
    if not sessions or min(len(s) for s in sessions) < 1:
        raise ValueError(f"every session needs 1.. clicks; got lengths {[len(s) for s in sessions]}")
    width = max(len(s) for s in sessions)
    x: list[int] = []
    batch: list[int] = []
    alias: list[list[int]] = []
    last: list[int] = []
    edges: set[tuple[int, int]] = set()
    for b, s in enumerate(sessions):
        uniq = sorted(set(s))
        if uniq[0] < 1:
            raise ValueError("item ids must be >= 1 (0 is the padding id)")
        node = {item: len(x) + i for i, item in enumerate(uniq)}
        x.extend(uniq)
        batch.extend([b] * len(uniq))
        row = [node[item] for item in s]
        edges.update(zip(row, row[1:]))
        last.append(row[-1])
        alias.append(row + [0] * (width - len(row)))
    lengths = torch.tensor([len(s) for s in sessions], dtype=torch.long)
    ordered = sorted(edges)  # collate_padded's order: by src * num_nodes + dst
    return SessionGraphBatch(
        x=torch.tensor(x, dtype=torch.long),
        edge_index=torch.tensor(ordered, dtype=torch.long).reshape(-1, 2).t(),
        batch=torch.tensor(batch, dtype=torch.long), alias=torch.tensor(alias, dtype=torch.long),
        mask=torch.arange(width) < lengths[:, None], last=torch.tensor(last, dtype=torch.long))


@dataclass(frozen=True)
class SessionExamples:
    """Prefix → target examples stored once as flat arrays (CSR), batched without copies.

    Prefix ``i`` is ``flat[starts[i] : starts[i] + lengths[i]]``, its target ``targets[i]``.
    """

    flat: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    targets: np.ndarray

    @classmethod
    def from_sessions(cls, sessions: Sequence[Sequence[int]]) -> SessionExamples:
        """Every proper prefix ``s[:k] -> s[k]`` (k = 1..len(s)-1), SR-GNN's augmentation."""
        flat = np.fromiter((i for s in sessions for i in s), dtype=np.int64)
        lens = np.fromiter((len(s) for s in sessions), dtype=np.int64, count=len(sessions))
        offsets = np.concatenate([[0], np.cumsum(lens)[:-1]])
        per = np.maximum(lens - 1, 0)
        first = np.repeat(np.cumsum(per) - per, per)
        k = np.arange(int(per.sum())) - first + 1
        starts = np.repeat(offsets, per)
        return cls(flat=flat, starts=starts, lengths=k, targets=flat[starts + k])

    @classmethod
    def from_prefixes(cls, prefixes: Sequence[Sequence[int]], targets: Sequence[int]) -> SessionExamples:
        lens = np.fromiter((len(p) for p in prefixes), dtype=np.int64, count=len(prefixes))
        flat = np.fromiter((i for p in prefixes for i in p), dtype=np.int64, count=int(lens.sum()))
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
        return cls(flat=flat, starts=starts, lengths=lens, targets=np.asarray(targets, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, index: np.ndarray | slice) -> SessionExamples:
        return SessionExamples(self.flat, self.starts[index], self.lengths[index], self.targets[index])

    def padded(self, index: np.ndarray) -> tuple[Tensor, Tensor, Tensor]:
        """``(items [B, L], lengths [B], targets [B])`` for the examples at ``index``."""
        lengths = self.lengths[index]
        cols = np.arange(int(lengths.max()))
        valid = cols < lengths[:, None]
        pos = np.where(valid, self.starts[index][:, None] + cols, 0)
        items = np.where(valid, self.flat[pos], 0)
        return torch.from_numpy(items), torch.from_numpy(lengths), torch.from_numpy(self.targets[index])


class SRGNN(nn.Module):
    r"""SR-GNN next-item model.

    One gated step (Wu et al., eqs. 1–5), with :math:`\bar A` the mean over in- (out-) neighbours:

    .. math::
        a_v = [\bar A^{in}_v (H W_{in} + b_{in}) + b_{iah};\ \bar A^{out}_v (H W_{out} + b_{out}) + b_{oah}],
        \quad h_v \leftarrow \mathrm{GRU}(a_v, h_v)

    Session vector (eqs. 6–7): :math:`\alpha_i = q^\top\sigma(W_1 h_{last} + W_2 h_{s_i} + c)`,
    :math:`s_g = \sum_i \alpha_i h_{s_i}` over the *clicks* (a repeated item counts once per
    click, as in the reference code), :math:`s_h = W_3[s_g; h_{last}]` (``hybrid=True``) or
    :math:`s_g`. Scores :math:`\hat z = s_h E^\top` over items ``1..n_items``.

    Args:
        n_items: catalogue size; item ids are ``1..n_items`` and row 0 of the table is padding.
        hidden_channels: embedding and hidden width ``d`` (paper: 100).
        num_steps: gated GNN steps (paper: 1).
        hybrid: use the local+global session vector (paper's SR-GNN) instead of global only.

    Shapes: ``session_embedding(batch) -> [B, d]``; ``score(batch) -> [B, n_items + 1]`` with
    column ``i`` the score of item ``i`` and column 0 = ``-inf``; ``recommend(batch, k) -> [B, k]``
    item ids.
    """

    def __init__(self, n_items: int, hidden_channels: int = 100, num_steps: int = 1, hybrid: bool = True) -> None:
        super().__init__()
        if n_items < 1 or hidden_channels < 1 or num_steps < 1:
            raise ValueError(f"n_items, hidden_channels and num_steps must be >= 1; got "
                             f"{n_items}, {hidden_channels}, {num_steps}")
        self.n_items, self.hidden_channels = n_items, hidden_channels
        self.num_steps, self.hybrid = num_steps, hybrid
        d = hidden_channels
        self.embedding = nn.Embedding(n_items + 1, d)
        self.lin_edge_in = nn.Linear(d, d)
        self.lin_edge_out = nn.Linear(d, d)
        self.bias_in = nn.Parameter(torch.empty(d))
        self.bias_out = nn.Parameter(torch.empty(d))
        self.propagate = SimpleConv(aggr="mean")  # parameter-free; mean = divide by degree
        self.gru = nn.GRUCell(2 * d, d)
        self.att_last = nn.Linear(d, d)
        self.att_click = nn.Linear(d, d)
        self.att_out = nn.Linear(d, 1, bias=False)
        self.transform = nn.Linear(2 * d, d)
        padding_bias = torch.zeros(n_items + 1)
        padding_bias[0] = float("-inf")
        self.register_buffer("padding_bias", padding_bias, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every parameter ~ U(-1/√d, 1/√d), as the reference code does (uses torch's global RNG)."""
        bound = 1.0 / math.sqrt(self.hidden_channels)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def hparams(self) -> dict[str, int | bool]:
        """Constructor arguments, for :func:`models.checkpoint.save_checkpoint`."""
        return {"n_items": self.n_items, "hidden_channels": self.hidden_channels,
                "num_steps": self.num_steps, "hybrid": self.hybrid}

    def get_embedding(self) -> Tensor:
        """Item embedding table ``[n_items + 1, d]`` (row 0 is padding), for the refresh worker."""
        return self.embedding.weight

    def _gnn_step(self, h: Tensor, edge_index: Tensor) -> Tensor:
        a_in = self.propagate(self.lin_edge_in(h), edge_index) + self.bias_in
        a_out = self.propagate(self.lin_edge_out(h), edge_index.flip(0)) + self.bias_out
        return self.gru(torch.cat([a_in, a_out], dim=-1), h)

    def session_embedding(self, batch: SessionGraphBatch, table: Tensor | None = None) -> Tensor:
        """Session vectors ``[B, d]`` (``s_h`` in the paper).

        ``table [n + 1, d]`` replaces the learned item table (row 0 padding): the live scorer
        encodes sessions over the refresh worker's current item embeddings, so items added after
        training are encoded and scored without retraining.
        """
        h = self.embedding(batch.x) if table is None else F.embedding(batch.x, table)
        for _ in range(self.num_steps):
            h = self._gnn_step(h, batch.edge_index)
        clicks = h[batch.alias]  # [B, L, d]
        last = h[batch.last]  # [B, d]
        alpha = self.att_out(torch.sigmoid(self.att_last(last)[:, None, :] + self.att_click(clicks)))
        s_global = (alpha * clicks * batch.mask[..., None]).sum(dim=1)
        return self.transform(torch.cat([s_global, last], dim=1)) if self.hybrid else s_global

    def score(self, batch: SessionGraphBatch) -> Tensor:
        """Scores ``[B, n_items + 1]``: column ``i`` is item ``i``; column 0 (padding) is ``-inf``."""
        # One addmm against the whole table with a -inf bias on row 0: the padding item gets no
        # probability and no gradient, as in the reference (which drops row 0), without the
        # full-table copies that slicing ``weight[1:]`` costs in every backward pass.
        return torch.addmm(self.padding_bias, self.session_embedding(batch), self.embedding.weight.t())

    @torch.no_grad()
    def recommend(self, batch: SessionGraphBatch, k: int) -> Tensor:
        """Top-``k`` item ids ``[B, k]``, best first (items already clicked are not excluded,
        following the benchmark protocol, where a session may return to an item)."""
        if not 1 <= k <= self.n_items:
            raise ValueError(f"k must be in 1..{self.n_items}, got {k}")
        return self.score(batch).topk(k, dim=1).indices

    def recommendation_loss(self, batch: SessionGraphBatch, targets: Tensor) -> Tensor:
        """Mean softmax cross-entropy of the next item ``targets [B]`` (ids ``1..n_items``)."""
        if targets.numel() and (int(targets.min()) < 1 or int(targets.max()) > self.n_items):
            raise ValueError(f"targets must be item ids in 1..{self.n_items}")
        return softmax_cross_entropy(self.score(batch), targets)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(n_items={self.n_items}, hidden_channels={self.hidden_channels}, "
                f"num_steps={self.num_steps}, hybrid={self.hybrid})")
