"""NGCF (Wang et al., SIGIR 2019): neural graph collaborative filtering.

With the symmetric normalised adjacency :math:`L = D^{-1/2} A D^{-1/2}` (no self-loops) of
the user–item graph, each layer is (paper eq. 7, matrix form eq. 8)

.. math:: E^{(l)} = \\mathrm{LeakyReLU}\\big((L + I) E^{(l-1)} W_1 + (L E^{(l-1)} \\odot E^{(l-1)}) W_2\\big)

followed by message dropout. The final representation concatenates the ego embeddings with
the L2-normalised outputs of every layer (as in the reference code):
:math:`e = [E^{(0)} \\Vert \\hat E^{(1)} \\Vert \\dots \\Vert \\hat E^{(L)}]`, scores are inner
products, and training uses BPR + ``reg_weight`` × L2 on the final embeddings of the batch.
Node dropout is not used.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.utils import spmm

from models.lightgcn import bipartite_edge_index, normalized_adjacency, symmetric_spmm, top_k_excluding
from models.losses import bpr_loss, dot_scores, l2_regularisation


class NGCFConv(MessagePassing):
    """One NGCF propagation layer (sum aggregation of :math:`L`-weighted neighbour messages).

    Shapes: ``x [N, in_channels]``, ``adj_t`` sparse CSR ``[N, N]`` → ``[N, out_channels]``.
    """

    def __init__(self, in_channels: int, out_channels: int, negative_slope: float = 0.2) -> None:
        super().__init__(aggr="add")
        self.in_channels, self.out_channels, self.negative_slope = in_channels, out_channels, negative_slope
        self.lin_sum = Linear(in_channels, out_channels, weight_initializer="glorot", bias_initializer="zeros")
        self.lin_bi = Linear(in_channels, out_channels, weight_initializer="glorot", bias_initializer="zeros")

    def reset_parameters(self) -> None:
        self.lin_sum.reset_parameters()
        self.lin_bi.reset_parameters()

    def forward(self, x: Tensor, adj_t: Tensor, symmetric: bool = False) -> Tensor:
        side = symmetric_spmm(adj_t, x) if symmetric else self.propagate(adj_t, x=x)
        return F.leaky_relu(self.lin_sum(side + x) + self.lin_bi(side * x), self.negative_slope)

    def message_and_aggregate(self, adj_t: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        return spmm(adj_t, x, reduce=self.aggr)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.out_channels})"


class NGCF(torch.nn.Module):
    """NGCF over users ``0..n_users-1`` and items ``n_users..``.

    Args:
        n_users, n_items: graph sizes.
        embedding_dim: ego embedding size (paper: 64).
        layer_sizes: output size of each propagation layer (paper: [64, 64, 64]).
        message_dropout: dropout on each layer's output during training (paper: 0.1).
        negative_slope: LeakyReLU slope (reference code: 0.2).

    Shapes: ``get_embedding(adj)`` → ``[n_users + n_items, embedding_dim + sum(layer_sizes)]``.
    """

    def __init__(self, n_users: int, n_items: int, embedding_dim: int = 64,
                 layer_sizes: Sequence[int] = (64, 64, 64), message_dropout: float = 0.1,
                 negative_slope: float = 0.2) -> None:
        super().__init__()
        if min(n_users, n_items, embedding_dim, *layer_sizes) < 1 or not 0.0 <= message_dropout < 1.0:
            raise ValueError(f"NGCF: need positive sizes and 0 <= message_dropout < 1, got {n_users=}, "
                             f"{n_items=}, {embedding_dim=}, {layer_sizes=}, {message_dropout=}")
        self.n_users, self.n_items, self.embedding_dim = n_users, n_items, embedding_dim
        self.layer_sizes = tuple(int(s) for s in layer_sizes)
        self.message_dropout, self.negative_slope = message_dropout, negative_slope
        self.embedding = torch.nn.Embedding(n_users + n_items, embedding_dim)
        dims = (embedding_dim, *self.layer_sizes)
        self.convs = torch.nn.ModuleList(NGCFConv(a, b, negative_slope) for a, b in zip(dims[:-1], dims[1:]))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.xavier_uniform_(self.embedding.weight)  # reference code: Xavier
        for conv in self.convs:
            conv.reset_parameters()

    def hparams(self) -> dict[str, object]:
        return {"n_users": self.n_users, "n_items": self.n_items, "embedding_dim": self.embedding_dim,
                "layer_sizes": list(self.layer_sizes), "message_dropout": self.message_dropout,
                "negative_slope": self.negative_slope}

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(n_users={self.n_users}, n_items={self.n_items}, "
                f"embedding_dim={self.embedding_dim}, layer_sizes={list(self.layer_sizes)}, "
                f"message_dropout={self.message_dropout})")

    @property
    def num_nodes(self) -> int:
        return self.n_users + self.n_items

    @property
    def out_channels(self) -> int:
        return self.embedding_dim + sum(self.layer_sizes)

    def adjacency(self, train_edge_index: Tensor) -> Tensor:
        """Symmetric normalised adjacency :math:`L` of user→item training edges ``[2, E]``."""
        return normalized_adjacency(bipartite_edge_index(train_edge_index, self.n_users), self.num_nodes)

    def propagate(self, x0: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None, *,
                  symmetric: bool = False) -> Tensor:
        """Concatenated multi-layer representation from ego embeddings ``x0 [N, embedding_dim]``.

        ``edge_index``: ``[2, E]`` (with ``edge_weight`` or symmetric normalisation) or a sparse
        CSR ``adj_t``; ``symmetric=True`` promises ``adj == adj.T`` (faster backward).
        """
        if not edge_index.is_sparse_csr:
            edge_index = normalized_adjacency(edge_index, x0.size(0), edge_weight)
        outs, h = [x0], x0
        for conv in self.convs:
            h = F.dropout(conv(h, edge_index, symmetric=symmetric), self.message_dropout, self.training)
            outs.append(F.normalize(h, p=2.0, dim=1))
        return torch.cat(outs, dim=1)

    def get_embedding(self, edge_index: Tensor, nodes: Tensor | None = None) -> Tensor:
        """Final embeddings of all nodes, or of ``nodes`` (homogeneous ids) only."""
        out = self.propagate(self.embedding.weight, edge_index)
        return out if nodes is None else out[nodes]

    def split(self, emb: Tensor) -> tuple[Tensor, Tensor]:
        return emb[:self.n_users], emb[self.n_users:]

    def score(self, emb: Tensor, users: Tensor, items: Tensor | None = None) -> Tensor:
        """Inner-product scores ``[B, n_items]`` (or ``[B, M]`` for ``items [M]``)."""
        user_emb, item_emb = self.split(emb)
        return dot_scores(user_emb[users], item_emb if items is None else item_emb[items])

    def recommend(self, emb: Tensor, users: Tensor, k: int, exclude: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Top-``k`` item ids per user; ``exclude = (indptr, items)`` CSR of items never to return."""
        return top_k_excluding(self.score(emb, users), users, k, exclude)

    def recommendation_loss(self, adj: Tensor, users: Tensor, pos: Tensor, neg: Tensor,
                            reg_weight: float = 1e-5) -> Tensor:
        """BPR + ``reg_weight`` × L2 of the batch's final embeddings (reference code)."""
        emb = self.propagate(self.embedding.weight, adj, symmetric=True)
        u, p, n = emb[users], emb[pos + self.n_users], emb[neg + self.n_users]
        return bpr_loss((u * p).sum(-1), (u * n).sum(-1)) + reg_weight * l2_regularisation(u, p, n)
