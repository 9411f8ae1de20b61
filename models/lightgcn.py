"""LightGCN (He et al., SIGIR 2020) on a user–item graph, built on PyG's :class:`LGConv`.

Users are nodes ``0..n_users-1`` and items ``n_users..n_users+n_items-1`` of one undirected
graph. With :math:`\\hat A = D^{-1/2} A D^{-1/2}` (no self-loops) and ego embeddings
:math:`E^{(0)}`, propagation is

.. math:: E^{(l+1)} = \\hat A E^{(l)}, \\qquad E = \\frac{1}{L+1}\\sum_{l=0}^{L} E^{(l)}

and a user–item score is :math:`e_u^\\top e_i`. Training minimises BPR plus
:math:`\\lambda \\cdot \\frac{1}{2B}\\lVert E^{(0)}_{batch}\\rVert^2` on the ego embeddings.

Split of roles: :meth:`LightGCN.get_embedding` (refresh worker: propagate, return all or some
node embeddings) vs :meth:`LightGCN.score` / :meth:`LightGCN.recommend` (scorer: embeddings in,
scores or top-K out). :meth:`LightGCN.propagate` takes any ego embeddings and edges, so a
local recomputation can run it on a subgraph with globally normalised edge weights.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric.nn import LGConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import to_torch_csr_tensor

from models.losses import bpr_loss, dot_scores, l2_regularisation


class _SymmetricSpmm(torch.autograd.Function):
    """``A @ X`` for a symmetric sparse ``A``: the backward ``Aᵀ @ G`` reuses ``A`` itself.

    torch's generic sparse backward transposes the CSR matrix on every call, which makes a
    LightGCN step ~2.5× slower on CPU for the full Gowalla graph.
    """

    @staticmethod
    def forward(ctx: Any, adj: Tensor, x: Tensor) -> Tensor:
        ctx.adj = adj
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor]:
        return None, torch.sparse.mm(ctx.adj, grad)


def symmetric_spmm(adj: Tensor, x: Tensor) -> Tensor:
    """``adj @ x`` where the caller guarantees ``adj == adj.T`` (sparse CSR ``[N, N]``, ``x [N, d]``)."""
    return _SymmetricSpmm.apply(adj, x)


class SymmetricLGConv(LGConv):
    """:class:`LGConv` (``normalize=False``) for a symmetric sparse adjacency; faster backward."""

    def __init__(self) -> None:
        super().__init__(normalize=False)

    def message_and_aggregate(self, adj_t: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        return symmetric_spmm(adj_t, x)


def bipartite_edge_index(train_edge_index: Tensor, n_users: int) -> Tensor:
    """Undirected homogeneous ``[2, 2E]`` edges from user→item ``[2, E]`` (items offset by ``n_users``)."""
    users, items = train_edge_index[0], train_edge_index[1] + n_users
    return torch.stack([torch.cat([users, items]), torch.cat([items, users])])


def normalized_adjacency(edge_index: Tensor, num_nodes: int, edge_weight: Tensor | None = None) -> Tensor:
    """Sparse CSR ``adj_t`` for PyG message passing. Without ``edge_weight`` the edges get
    :math:`D^{-1/2} A D^{-1/2}` weights (PyG's ``gcn_norm`` without self-loops).

    Shapes: ``edge_index [2, E]`` (source, target), ``edge_weight [E]`` → ``[num_nodes, num_nodes]``.
    """
    if edge_weight is None:
        edge_index, edge_weight = gcn_norm(edge_index, None, num_nodes, add_self_loops=False)
    return to_torch_csr_tensor(edge_index.flip(0), edge_weight, size=(num_nodes, num_nodes))


def top_k_excluding(scores: Tensor, users: Tensor, k: int, exclude: tuple[Tensor, Tensor] | None) -> Tensor:
    """Top-``k`` columns of ``scores [B, N]`` after masking, per row ``b``, the CSR entries
    ``exclude = (indptr, items)`` of user ``users[b]``. ``scores`` is left unchanged."""
    if exclude is not None:
        indptr, items = exclude
        counts = indptr[users + 1] - indptr[users]
        rows = torch.repeat_interleave(torch.arange(users.numel()), counts)
        offs = torch.arange(int(counts.sum())) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        scores = scores.clone()
        scores[rows, items[indptr[users][rows] + offs]] = float("-inf")
    return scores.topk(k, dim=1).indices


class LightGCN(torch.nn.Module):
    """LightGCN with separate user/item counts.

    Args:
        n_users, n_items: graph sizes; node ids are users then items.
        embedding_dim: size of the ego embeddings (paper: 64).
        num_layers: propagation layers (paper: 3).

    Shapes:
        ``get_embedding(edge_index)`` → ``[n_users + n_items, embedding_dim]``;
        ``score(emb, users)`` → ``[B, n_items]``; ``recommend(emb, users, k)`` → ``[B, k]``.
    """

    def __init__(self, n_users: int, n_items: int, embedding_dim: int = 64, num_layers: int = 3) -> None:
        super().__init__()
        if min(n_users, n_items, embedding_dim) < 1 or num_layers < 0:
            raise ValueError(f"LightGCN: need positive sizes and num_layers >= 0, got "
                             f"{n_users=}, {n_items=}, {embedding_dim=}, {num_layers=}")
        self.n_users, self.n_items = n_users, n_items
        self.embedding_dim, self.num_layers = embedding_dim, num_layers
        self.embedding = torch.nn.Embedding(n_users + n_items, embedding_dim)
        self.conv = LGConv(normalize=False)
        self.sym_conv = SymmetricLGConv()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # N(0, 0.1²) as in the reference PyTorch implementation (LightGCN-PyTorch, model.py)
        torch.nn.init.normal_(self.embedding.weight, std=0.1)

    def hparams(self) -> dict[str, int]:
        """Constructor arguments (what a checkpoint stores to rebuild the model)."""
        return {"n_users": self.n_users, "n_items": self.n_items,
                "embedding_dim": self.embedding_dim, "num_layers": self.num_layers}

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(n_users={self.n_users}, n_items={self.n_items}, "
                f"embedding_dim={self.embedding_dim}, num_layers={self.num_layers})")

    @property
    def num_nodes(self) -> int:
        return self.n_users + self.n_items

    def adjacency(self, train_edge_index: Tensor) -> Tensor:
        """The normalised symmetric adjacency of user→item training edges ``[2, E]``."""
        return normalized_adjacency(bipartite_edge_index(train_edge_index, self.n_users), self.num_nodes)

    def propagate(self, x0: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None, *,
                  symmetric: bool = False) -> Tensor:
        """Layer mean of ``num_layers`` LGConv steps from ``x0 [N, d]``.

        ``edge_index`` is either ``[2, E]`` (weights from ``edge_weight`` or, if ``None``,
        symmetric normalisation over these edges) or a sparse CSR ``adj_t [N, N]`` from
        :meth:`adjacency`. ``symmetric=True`` promises ``adj == adj.T`` (true for
        :meth:`adjacency`) and selects a faster backward pass.
        """
        if not edge_index.is_sparse_csr:
            edge_index = normalized_adjacency(edge_index, x0.size(0), edge_weight)
        conv = self.sym_conv if symmetric else self.conv
        out, h = x0, x0
        for _ in range(self.num_layers):
            h = conv(h, edge_index)
            out = out + h
        return out / (self.num_layers + 1)

    def get_embedding(self, edge_index: Tensor, nodes: Tensor | None = None) -> Tensor:
        """Propagated embeddings of all nodes, or of ``nodes`` (homogeneous ids) only.

        ``edge_index``: ``[2, E]`` undirected edges or a sparse adjacency from :meth:`adjacency`.
        """
        out = self.propagate(self.embedding.weight, edge_index)
        return out if nodes is None else out[nodes]

    def split(self, emb: Tensor) -> tuple[Tensor, Tensor]:
        """``(user [n_users, d], item [n_items, d])`` views of a full embedding table."""
        return emb[:self.n_users], emb[self.n_users:]

    def score(self, emb: Tensor, users: Tensor, items: Tensor | None = None) -> Tensor:
        """Inner-product scores of ``users [B]`` against all items (or ``items [M]``)."""
        user_emb, item_emb = self.split(emb)
        return dot_scores(user_emb[users], item_emb if items is None else item_emb[items])

    def recommend(self, emb: Tensor, users: Tensor, k: int, exclude: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Top-``k`` item ids per user; ``exclude = (indptr, items)`` CSR of items never to return."""
        return top_k_excluding(self.score(emb, users), users, k, exclude)

    def recommendation_loss(self, adj: Tensor, users: Tensor, pos: Tensor, neg: Tensor,
                            reg_weight: float = 1e-4) -> Tensor:
        """BPR over ``(users, pos, neg) [B]`` (item ids) + ``reg_weight`` × L2 on their ego embeddings.

        ``adj`` is the symmetric sparse adjacency from :meth:`adjacency`.
        """
        emb = self.propagate(self.embedding.weight, adj, symmetric=True)
        u, p, n = users, pos + self.n_users, neg + self.n_users
        pos_s = (emb[u] * emb[p]).sum(-1)
        neg_s = (emb[u] * emb[n]).sum(-1)
        ego = self.embedding.weight
        return bpr_loss(pos_s, neg_s) + reg_weight * l2_regularisation(ego[u], ego[p], ego[n])
