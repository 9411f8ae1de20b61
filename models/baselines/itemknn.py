"""``gnnrec eval --baseline itemknn``: item-based k-nearest-neighbour CF with cosine similarity.

As ItemKNNCF in Dacrema et al. (RecSys 2019, the "are we really making much progress" code)
and BARS: on the binary user–item matrix :math:`X`,

.. math:: s_{ij} = \\frac{x_i^\\top x_j}{\\lVert x_i\\rVert \\lVert x_j\\rVert + h}

with shrinkage :math:`h`, no self-similarity, and for every target item :math:`j` only its
``top_k`` most similar items kept (a sparse :math:`W`, column ``j``). Scores are :math:`X_u W`.
Similarities are computed in blocks of target items so the dense part stays small.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
import torch

from models.data.gowalla import evaluate_full_ranking, load_gowalla
from models.report import EvalReport

DATASETS = ("gowalla",)
NAME = "itemknn"
TOP_K = 100
SHRINK = 10.0


class ItemKNN:
    """Cosine item–item neighbours. Shapes: ``fit(X [U, I])``; ``score(X_rows [B, I])`` → ``[B, I]``."""

    def __init__(self, top_k: int = TOP_K, shrink: float = SHRINK, block: int = 1024) -> None:
        if top_k < 1 or shrink < 0:
            raise ValueError(f"ItemKNN: need top_k >= 1 and shrink >= 0, got {top_k=}, {shrink=}")
        self.top_k, self.shrink, self.block = top_k, shrink, block
        self.weights: sp.csr_matrix | None = None

    def __repr__(self) -> str:
        return f"ItemKNN(top_k={self.top_k}, shrink={self.shrink})"

    def fit(self, x: sp.csr_matrix) -> ItemKNN:
        xs = x.astype(np.float32).tocsc()
        xt = xs.T.tocsr()
        n = xs.shape[1]
        norms = np.sqrt(np.asarray(xs.power(2).sum(axis=0)).ravel()).astype(np.float32)
        k = min(self.top_k, n - 1)
        rows, cols, vals = [], [], []
        for a in range(0, n, self.block):
            b = min(a + self.block, n)
            sim = (xt[a:b] @ xs).toarray()  # [targets j in a:b, all items i]; symmetric co-counts
            sim /= norms[a:b, None] * norms[None, :] + self.shrink + 1e-12
            sim[np.arange(b - a), np.arange(a, b)] = 0.0
            nbr = np.argpartition(-sim, k - 1, axis=1)[:, :k] if k > 0 else np.empty((b - a, 0), dtype=np.int64)
            val = np.take_along_axis(sim, nbr, axis=1)
            keep = val > 0
            rows.append(nbr[keep])
            cols.append(np.repeat(np.arange(a, b), k).reshape(b - a, k)[keep])
            vals.append(val[keep])
        self.weights = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                     shape=(n, n), dtype=np.float32)
        return self

    def score(self, x_rows: sp.csr_matrix) -> np.ndarray:
        if self.weights is None:
            raise RuntimeError("ItemKNN.score called before fit")
        return np.asarray((x_rows.astype(np.float32) @ self.weights).todense())


def evaluate(dataset: str, *, seed: int, top_k: int = TOP_K, shrink: float = SHRINK) -> EvalReport:
    if dataset not in DATASETS:
        raise ValueError(f"itemknn runs on {DATASETS}, not {dataset!r}")
    torch.set_num_threads(1)
    split = load_gowalla()
    x = split.train_csr()
    start = time.perf_counter()
    model = ItemKNN(top_k, shrink).fit(x)
    fit_s = time.perf_counter() - start
    metrics = evaluate_full_ranking(split, lambda users: torch.from_numpy(model.score(x[users.numpy()])))
    return EvalReport(model=NAME, dataset=dataset, metrics=metrics, train_seconds=fit_s, epochs=0, params=0,
                      device="cpu", kind="baseline",
                      extra={"top_k": top_k, "shrink": shrink, "similarity": "cosine", "seed": seed,
                             "tuned": False})
