"""Ego embeddings for nodes a LightGCN was never trained on, from their neighbours' trained ones.

The live system trains LightGCN periodically; between trainings new users and items appear.
:class:`InductiveEgo` is a one-layer GraphSAGE encoder with PinSAGE's importance pooling: a new
node's neighbours' trained ego rows, averaged with importance weights (the decayed edge
weights, normalised per node), go through a per-node-type linear map, plus a per-type bias:

.. math:: \\hat x_v = W_{t(v)} \\sum_{u \\in N(v)} \\alpha_{vu}\\, x_u + b_{t(v)},
          \\quad \\alpha_{vu} = w_{vu} / \\textstyle\\sum_{u'} w_{vu'}

Only neighbours that have a trained row count. With ``W = I, b = 0`` (the initial state) this
is the plain weighted mean. :func:`fit_inductive_ego` trains it on the nodes that *do* have a
trained row, each predicted from its neighbours alone (its own row hidden, as for a new node),
and keeps the identity map unless the fit predicts held-out nodes better.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.utils import scatter


class InductiveEgo(torch.nn.Module):
    """Args:
        dim: ego embedding size (the LightGCN's).
        num_types: node types, each with its own map (users and items: 2).

    Shapes: ``forward(x [N, dim], edge_index [2, E] (source → target), edge_weight [E],
    node_type [N], known [N] bool)`` → ``[N, dim]``; rows of targets without a known source
    neighbour are zero.
    """

    def __init__(self, dim: int, num_types: int = 2) -> None:
        super().__init__()
        if dim < 1 or num_types < 1:
            raise ValueError(f"InductiveEgo: need dim >= 1 and num_types >= 1, got {dim=}, {num_types=}")
        self.dim, self.num_types = dim, num_types
        self.weight = torch.nn.Parameter(torch.empty(num_types, dim, dim))
        self.bias = torch.nn.Parameter(torch.empty(num_types, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The identity map: the encoder starts as the plain importance-weighted mean."""
        with torch.no_grad():
            self.weight.copy_(torch.eye(self.dim).expand(self.num_types, -1, -1))
            self.bias.zero_()

    def hparams(self) -> dict[str, int]:
        return {"dim": self.dim, "num_types": self.num_types}

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(dim={self.dim}, num_types={self.num_types})"

    @staticmethod
    def pool(x: Tensor, edge_index: Tensor, edge_weight: Tensor, known: Tensor,
             num_targets: int | None = None) -> tuple[Tensor, Tensor]:
        """Importance-weighted mean of known source rows per target ``[T, dim]`` (``T =
        num_targets``, default ``x.size(0)``), and which targets had any known source ``[T]``."""
        src, dst = edge_index
        keep = known[src] & (edge_weight > 0)
        src, dst, w = src[keep], dst[keep], edge_weight[keep].to(x.dtype)
        n = x.size(0) if num_targets is None else num_targets
        total = scatter(w, dst, dim=0, dim_size=n, reduce="sum")
        summed = scatter(w.unsqueeze(1) * x[src], dst, dim=0, dim_size=n, reduce="sum")
        has = total > 0
        return summed / total.clamp(min=torch.finfo(x.dtype).tiny).unsqueeze(1), has

    def transform(self, pooled: Tensor, node_type: Tensor) -> Tensor:
        """The per-type map applied to pooled rows ``[M, dim]`` of types ``[M]``."""
        out = torch.empty_like(pooled)
        for t in range(self.num_types):  # one matmul per type, not a [M, dim, dim] gather
            rows = node_type == t
            out[rows] = pooled[rows] @ self.weight[t].T + self.bias[t]
        return out

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor, node_type: Tensor,
                known: Tensor) -> Tensor:
        pooled, has = self.pool(x, edge_index, edge_weight, known)
        return torch.where(has.unsqueeze(1), self.transform(pooled, node_type), torch.zeros_like(pooled))


@dataclass(frozen=True)
class InductiveFitConfig:
    """Optimisation of :func:`fit_inductive_ego`."""

    steps: int = 200
    lr: float = 1e-2
    weight_decay: float = 1e-4
    holdout: float = 0.1
    seed: int = 0


def fit_inductive_ego(ego: Tensor, edge_index: Tensor, edge_weight: Tensor, node_type: Tensor,
                      cfg: InductiveFitConfig = InductiveFitConfig()) -> tuple[InductiveEgo, dict[str, float]]:
    """Fit the map on nodes with trained rows (``ego [N, dim]``, all known), each predicted from
    its neighbours over ``edge_index`` (both directions wanted) with MSE, full batch.

    A ``holdout`` share of the nodes is never a training target; the fitted map is kept only if
    it predicts their rows better than the identity (plain mean), else the identity is returned.
    Returns the encoder and ``{"holdout_mse_mean", "holdout_mse_fit", "used": 0|1}``.
    """
    n = ego.size(0)
    known = torch.ones(n, dtype=torch.bool)
    generator = torch.Generator().manual_seed(cfg.seed)
    is_holdout = torch.rand(n, generator=generator) < cfg.holdout
    model = InductiveEgo(ego.size(1), int(node_type.max()) + 1 if n else 1)
    target = ego.detach()
    pooled, has = InductiveEgo.pool(target, edge_index, edge_weight, known)
    train_rows, holdout_rows = has & ~is_holdout, has & is_holdout

    def mse(rows: Tensor) -> Tensor:
        return (model.transform(pooled[rows], node_type[rows]) - target[rows]).pow(2).sum(1).mean()

    with torch.no_grad():
        baseline = float(mse(holdout_rows)) if bool(holdout_rows.any()) else float("nan")
    if bool(train_rows.any()):
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        for _ in range(cfg.steps):
            optimizer.zero_grad()
            loss = mse(train_rows)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        fitted = float(mse(holdout_rows)) if bool(holdout_rows.any()) else float("nan")
    used = fitted < baseline
    if not used:
        model.reset_parameters()
    return model.eval(), {"holdout_mse_mean": baseline, "holdout_mse_fit": fitted, "used": float(used)}
