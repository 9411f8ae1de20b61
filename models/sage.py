"""Inductive GraphSAGE / PinSAGE-style encoder for the user–item graph.

No learned per-node embedding is used: every input is computable for a node that did not
exist at training time, from its neighbourhood alone.

**Input features** (:class:`SpectralBasis`). A truncated SVD of the training graph's
normalised matrix :math:`\\tilde R = D_u^{-1/2} R D_i^{-1/2} \\approx P S Q^\\top` gives a basis
on the nodes known at training time. For *any* user and item, on the current graph,

.. math:: x_u = \\sum_{i \\in N(u)} \\frac{Q_i}{\\sqrt{d_u d_i}}, \\qquad
          x_i = \\sum_{u \\in N(i)} \\frac{P_u}{\\sqrt{d_u d_i}}

(neighbours unknown to the basis contribute nothing), i.e. the SVD fold-in: a training node
on the training graph gets exactly :math:`P_u S` / :math:`Q_i S`, a new node the same
formula over its observed neighbours. Columns are scaled to unit variance on the training
nodes and ``log(1 + degree)`` is appended.

**Neighbourhoods** (:mod:`models.sampling`): the top-T nodes by visit count of short random
walks (PinSAGE), with normalised visit counts as importance weights. On the bipartite graph
a user's neighbourhood is items and an item's is users.

**Encoder** (:class:`SAGERecommender`): type-specific input projections, then ``num_layers``
convolutions chosen by ``aggr``: ``"mean"`` (importance-weighted mean, SAGEConv),
``"pool"`` (PinSAGE: weighted mean of ``ReLU(Q h_j + q)``, SAGEConv with ``project=True``) or
``"gat"`` (GATConv with the importance weight as edge feature, plus a root weight). Outputs
are L2-normalised; scores are inner products (cosines).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import GATConv, SAGEConv
from torch_geometric.nn.dense.linear import Linear

from models.lightgcn import top_k_excluding
from models.losses import dot_scores, max_margin_loss
from models.sampling import Neighbourhood, csr_from_edges, importance_neighbours, k_hop_subgraph

Aggr = Literal["mean", "pool", "gat"]


def _normalised_matrix(edge_index: Tensor, n_users: int, n_items: int) -> Tensor:
    """Sparse CSR :math:`D_u^{-1/2} R D_i^{-1/2}` ``[n_users, n_items]`` of user→item edges."""
    du = torch.bincount(edge_index[0], minlength=n_users).float()
    di = torch.bincount(edge_index[1], minlength=n_items).float()
    w = (du[edge_index[0]] * di[edge_index[1]]).rsqrt()
    return torch.sparse_coo_tensor(edge_index, w, (n_users, n_items)).coalesce().to_sparse_csr()


@dataclass(frozen=True, eq=False)
class SpectralBasis:
    """SVD basis of a training graph. ``user_basis [U, k]`` / ``item_basis [I, k]`` (zero rows
    for nodes without training edges), per-column ``user_scale`` / ``item_scale [k]``."""

    user_basis: Tensor
    item_basis: Tensor
    user_scale: Tensor
    item_scale: Tensor

    @property
    def rank(self) -> int:
        return self.user_basis.size(1)

    @property
    def num_features(self) -> int:
        return self.rank + 1

    @classmethod
    def fit(cls, edge_index: Tensor, n_users: int, n_items: int, rank: int = 64, seed: int = 0) -> SpectralBasis:
        """Randomised truncated SVD (``torch.svd_lowrank``) of the normalised training matrix."""
        if rank < 1 or rank > min(n_users, n_items):
            raise ValueError(f"SpectralBasis: rank must be in [1, {min(n_users, n_items)}], got {rank}")
        mat = _normalised_matrix(edge_index, n_users, n_items).to_sparse_coo()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            p, _, q = torch.svd_lowrank(mat, q=rank, niter=4)
        du = torch.bincount(edge_index[0], minlength=n_users) > 0
        di = torch.bincount(edge_index[1], minlength=n_items) > 0
        # nodes without training edges are unknown: exact zeros, not round-off from the SVD
        p, q = p * du[:, None], q * di[:, None]
        ones = torch.ones(rank)
        x_user, x_item = cls(p, q, ones, ones)._spectral(edge_index, n_users, n_items)
        return cls(p, q, 1.0 / x_user[du].std(0).clamp(min=1e-8), 1.0 / x_item[di].std(0).clamp(min=1e-8))

    def _spectral(self, edge_index: Tensor, n_users: int, n_items: int) -> tuple[Tensor, Tensor]:
        mat = _normalised_matrix(edge_index, n_users, n_items)
        item_basis = _pad_rows(self.item_basis, n_items)
        user_basis = _pad_rows(self.user_basis, n_users)
        x_user = torch.sparse.mm(mat, item_basis) * self.user_scale
        x_item = torch.sparse.mm(mat.t().to_sparse_csr(), user_basis) * self.item_scale
        return x_user, x_item

    def features(self, edge_index: Tensor, n_users: int, n_items: int) -> tuple[Tensor, Tensor]:
        """Input features ``([n_users, k + 1], [n_items, k + 1])`` of the graph ``edge_index``
        (user→item ``[2, E]``); ids beyond the basis are new nodes."""
        x_user, x_item = self._spectral(edge_index, n_users, n_items)
        du = torch.bincount(edge_index[0], minlength=n_users).float()
        di = torch.bincount(edge_index[1], minlength=n_items).float()
        return (torch.cat([x_user, du.log1p()[:, None]], 1), torch.cat([x_item, di.log1p()[:, None]], 1))


def _pad_rows(basis: Tensor, n: int) -> Tensor:
    if basis.size(0) >= n:
        return basis[:n]
    return torch.cat([basis, basis.new_zeros(n - basis.size(0), basis.size(1))])


@dataclass(frozen=True, eq=False)
class SageGraph:
    """What the encoder reads about one graph: users ``0..n_users-1``, items after them.

    ``features [N, F]``, ``is_user [N]`` and the importance ``neighbourhood`` over ``N`` nodes.
    """

    n_users: int
    n_items: int
    features: Tensor
    is_user: Tensor
    neighbourhood: Neighbourhood

    @property
    def num_nodes(self) -> int:
        return self.n_users + self.n_items


def build_sage_graph(edge_index: Tensor, n_users: int, n_items: int, basis: SpectralBasis, *,
                     num_walks: int = 20, walk_length: int = 3, top_t: int = 10,
                     generator: torch.Generator) -> SageGraph:
    """Features and random-walk importance neighbourhoods of the user→item graph ``[2, E]``."""
    x_user, x_item = basis.features(edge_index, n_users, n_items)
    n = n_users + n_items
    src = torch.cat([edge_index[0], edge_index[1] + n_users])
    dst = torch.cat([edge_index[1] + n_users, edge_index[0]])
    indptr, indices = csr_from_edges(src, dst, n)
    neighbourhood = importance_neighbours(indptr, indices, torch.arange(n), num_walks=num_walks,
                                          walk_length=walk_length, top_t=top_t, generator=generator)
    is_user = torch.arange(n) < n_users
    return SageGraph(n_users, n_items, torch.cat([x_user, x_item]), is_user, neighbourhood)


class ImportanceSAGEConv(SAGEConv):
    """SAGEConv whose neighbour messages are weighted by importance (weights sum to 1 per node).

    .. math:: h_i' = W_l \\sum_j \\alpha_{ij}\\, \\phi(h_j) + W_r h_i, \\quad
              \\phi = \\mathrm{ReLU}(Q\\cdot + q) \\text{ if project else identity}
    """

    def __init__(self, in_channels: int, out_channels: int, project: bool) -> None:
        super().__init__(in_channels, out_channels, aggr="sum", project=project)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor) -> Tensor:  # type: ignore[override]
        x_src = self.lin(x).relu() if self.project else x
        # propagate_type: (x: PairTensor, edge_weight: Tensor)
        out = self.propagate(edge_index, x=(x_src, x), edge_weight=edge_weight)
        return self.lin_l(out) + self.lin_r(x)

    def message(self, x_j: Tensor, edge_weight: Tensor) -> Tensor:  # type: ignore[override]
        return edge_weight.view(-1, 1) * x_j


class SAGERecommender(torch.nn.Module):
    """Inductive encoder: features of sampled neighbourhoods → L2-normalised embeddings.

    Args:
        in_channels: input feature size (``SpectralBasis.num_features``).
        hidden_channels, out_channels: layer sizes.
        num_layers: convolutions (receptive field in importance hops).
        aggr: ``"mean"`` | ``"pool"`` | ``"gat"`` (see module docstring).
        heads: attention heads for ``"gat"`` (hidden and out channels must divide by it).
        margin: max-margin loss margin on cosine scores.

    Shapes: ``encode(x [M, F], is_user [M], edge_index [2, K], edge_weight [K])`` → ``[M, out]``.
    """

    def __init__(self, in_channels: int, hidden_channels: int = 64, out_channels: int = 64, num_layers: int = 2,
                 aggr: Aggr = "pool", heads: int = 2, margin: float = 0.1) -> None:
        super().__init__()
        if aggr not in ("mean", "pool", "gat"):
            raise ValueError(f"SAGERecommender: aggr must be 'mean', 'pool' or 'gat', got {aggr!r}")
        if num_layers < 1 or (aggr == "gat" and (hidden_channels % heads or out_channels % heads)):
            raise ValueError(f"SAGERecommender: need num_layers >= 1 and, for gat, hidden/out channels divisible "
                             f"by heads; got {num_layers=}, {hidden_channels=}, {out_channels=}, {heads=}")
        self.in_channels, self.hidden_channels, self.out_channels = in_channels, hidden_channels, out_channels
        self.num_layers, self.aggr, self.heads, self.margin = num_layers, aggr, heads, margin
        self.lin_user = Linear(in_channels, hidden_channels)
        self.lin_item = Linear(in_channels, hidden_channels)
        self.convs = torch.nn.ModuleList()
        self.roots = torch.nn.ModuleList()
        for layer in range(num_layers):
            out = out_channels if layer == num_layers - 1 else hidden_channels
            if aggr == "gat":
                self.convs.append(GATConv(hidden_channels, out // heads, heads=heads, edge_dim=1, add_self_loops=False))
                self.roots.append(Linear(hidden_channels, out, bias=False))
            else:
                self.convs.append(ImportanceSAGEConv(hidden_channels, out, project=aggr == "pool"))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin_user.reset_parameters()
        self.lin_item.reset_parameters()
        for module in (*self.convs, *self.roots):
            module.reset_parameters()

    def hparams(self) -> dict[str, object]:
        return {"in_channels": self.in_channels, "hidden_channels": self.hidden_channels,
                "out_channels": self.out_channels, "num_layers": self.num_layers, "aggr": self.aggr,
                "heads": self.heads, "margin": self.margin}

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"hidden_channels={self.hidden_channels}, num_layers={self.num_layers}, aggr={self.aggr!r})")

    def encode(self, x: Tensor, is_user: Tensor, edge_index: Tensor, edge_weight: Tensor) -> Tensor:
        h = torch.where(is_user[:, None], self.lin_user(x), self.lin_item(x))
        for layer, conv in enumerate(self.convs):
            if self.aggr == "gat":
                h = conv(h, edge_index, edge_attr=edge_weight.view(-1, 1)) + self.roots[layer](h)
            else:
                h = conv(h, edge_index, edge_weight)
            if layer < self.num_layers - 1:
                h = h.relu()
        return F.normalize(h, p=2.0, dim=-1)

    def embed_nodes(self, graph: SageGraph, nodes: Tensor) -> Tensor:
        """Embeddings ``[len(nodes), out]`` of homogeneous node ids from their sampled receptive field."""
        sub = k_hop_subgraph(graph.neighbourhood, nodes, self.num_layers)
        h = self.encode(graph.features[sub.nodes], graph.is_user[sub.nodes], sub.edge_index, sub.edge_weight)
        return h[sub.seed_index]

    def get_embedding(self, graph: SageGraph, nodes: Tensor | None = None, batch_size: int = 8192) -> Tensor:
        """Embeddings of all nodes ``[N, out]`` in one pass over every importance edge, or of
        ``nodes`` through their sampled receptive fields in batches of ``batch_size`` seeds.

        Both give the same values: a seed's output after L layers reads only the layer-0
        features of its L-hop nodes, which the receptive field contains.
        """
        if nodes is None:
            nb = graph.neighbourhood
            dst = torch.repeat_interleave(torch.arange(nb.num_nodes), nb.indptr[1:] - nb.indptr[:-1])
            return self.encode(graph.features, graph.is_user, torch.stack([nb.indices, dst]), nb.weight)
        return torch.cat([self.embed_nodes(graph, nodes[s:s + batch_size]) for s in range(0, nodes.numel(), batch_size)])

    def score(self, emb: Tensor, users: Tensor, items: Tensor | None = None, *, n_users: int) -> Tensor:
        """Cosine scores of ``users [B]`` against all items (or ``items [M]``); ``emb`` from
        :meth:`get_embedding` over a graph with ``n_users`` users."""
        item_emb = emb[n_users:]
        return dot_scores(emb[users], item_emb if items is None else item_emb[items])

    def recommend(self, emb: Tensor, users: Tensor, k: int, *, n_users: int,
                  exclude: tuple[Tensor, Tensor] | None = None) -> Tensor:
        return top_k_excluding(self.score(emb, users, n_users=n_users), users, k, exclude)

    def recommendation_loss(self, graph: SageGraph, users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """Max-margin loss of ``users [B]`` with ``pos [B]`` over every negative in ``neg [B, M]``
        (item ids); all embeddings come from one sampled computation graph."""
        b, m = neg.shape
        seeds = torch.cat([users, pos + graph.n_users, neg.reshape(-1) + graph.n_users])
        z = self.embed_nodes(graph, seeds)
        zu, zp, zn = z[:b], z[b:2 * b], z[2 * b:].view(b, m, -1)
        pos_s = (zu * zp).sum(-1)
        neg_s = (zu[:, None, :] * zn).sum(-1)
        return max_margin_loss(pos_s[:, None].expand(b, m), neg_s, self.margin)
