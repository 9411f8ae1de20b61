"""``gnnrec eval --baseline ease``: EASE^R (Steck, WWW 2019), a closed-form item–item model.

.. math:: G = X^\\top X + \\lambda I, \\quad P = G^{-1}, \\quad B = I - P \\,\\mathrm{diag}(1/\\mathrm{diag}\\,P)

i.e. :math:`B_{ij} = -P_{ij}/P_{jj}` off the diagonal and :math:`B_{jj} = 0`; scores are
:math:`X_u B`. For Gowalla's 40,981 items the dense :math:`G` is 6.7 GB in float32, so it is
built block by block into one array and factorised and inverted **in place** through its
column-major view with torch's LAPACK (``torch.linalg.cholesky`` then ``torch.cholesky_inverse``,
both with ``out=`` the input): peak memory is that one matrix plus a few hundred MB. (scipy's
32-bit OpenBLAS ``spotrf`` segfaulted on the 40,981² matrix here, while 24,000² worked.)
``min_item_interactions`` can restrict the model to items with that many training
interactions (the others are never recommended); the report says which was used.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
import torch

from models.data.gowalla import evaluate_full_ranking, load_gowalla
from models.report import EvalReport

DATASETS = ("gowalla",)
NAME = "ease"
L2 = 500.0


class EASE:
    """EASE^R with L2 weight ``l2`` (λ), optionally over frequent items only.

    Shapes: ``fit(X [U, I] scipy CSR)``; ``score(X_rows [B, I])`` → ``[B, I]`` float32 with
    ``-inf`` for items outside the model.
    """

    def __init__(self, l2: float = L2, min_item_interactions: int = 1, block: int = 2048) -> None:
        if l2 <= 0:
            raise ValueError(f"EASE: l2 must be > 0 (it keeps G invertible), got {l2}")
        self.l2, self.min_item_interactions, self.block = l2, min_item_interactions, block
        self.items: np.ndarray | None = None
        self.weights: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"EASE(l2={self.l2}, min_item_interactions={self.min_item_interactions})"

    def fit(self, x: sp.csr_matrix) -> EASE:
        counts = np.asarray(x.sum(axis=0)).ravel()
        self.items = np.flatnonzero(counts >= self.min_item_interactions)
        xs = x[:, self.items].astype(np.float32).tocsr()
        xt = xs.T.tocsr()
        n = self.items.size
        _check_memory(n)
        g = np.empty((n, n), dtype=np.float32)
        for a in range(0, n, self.block):
            g[a:a + self.block] = (xt[a:a + self.block] @ xs).toarray()
        p = torch.from_numpy(g)  # shares memory with g
        p.diagonal().add_(self.l2)
        col_major = p.mT  # G is symmetric: this view is G itself, laid out as LAPACK wants it
        try:
            torch.linalg.cholesky(col_major, out=col_major)
        except torch.linalg.LinAlgError as exc:
            raise torch.linalg.LinAlgError(f"EASE: G + λI is not positive definite ({exc}); increase l2") from exc
        torch.cholesky_inverse(col_major, out=col_major)  # P = G⁻¹, full symmetric matrix
        diag = p.diagonal().clone()
        p.div_(-diag[None, :])
        p.diagonal().zero_()
        self.weights = g
        return self

    def score(self, x_rows: sp.csr_matrix) -> np.ndarray:
        if self.weights is None or self.items is None:
            raise RuntimeError("EASE.score called before fit")
        out = np.full(x_rows.shape, -np.inf, dtype=np.float32)
        out[:, self.items] = x_rows[:, self.items] @ self.weights
        return out


def _check_memory(n: int, margin_bytes: int = 2 << 30) -> None:
    """Refuse to allocate the dense ``n × n`` float32 Gram matrix without room for it."""
    need = 4 * n * n
    try:
        with open("/proc/meminfo") as fh:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh}
    except (OSError, ValueError, IndexError):
        return  # no /proc: cannot tell, proceed
    available = info.get("MemAvailable", need + margin_bytes)
    if need + margin_bytes > available:
        raise MemoryError(f"EASE needs {need / 2**30:.1f} GiB for the {n}x{n} Gram matrix but only "
                          f"{available / 2**30:.1f} GiB is available; raise min_item_interactions to "
                          f"restrict the item set")


def evaluate(dataset: str, *, seed: int, l2: float = L2, min_item_interactions: int = 1) -> EvalReport:
    if dataset not in DATASETS:
        raise ValueError(f"ease runs on {DATASETS}, not {dataset!r}")
    torch.set_num_threads(1)
    split = load_gowalla()
    x = split.train_csr()
    start = time.perf_counter()
    model = EASE(l2, min_item_interactions).fit(x)
    fit_s = time.perf_counter() - start
    metrics = evaluate_full_ranking(split, lambda users: torch.from_numpy(model.score(x[users.numpy()])))
    n_model = int(model.items.size) if model.items is not None else 0
    return EvalReport(model=NAME, dataset=dataset, metrics=metrics, train_seconds=fit_s, epochs=0, params=0,
                      device="cpu", kind="baseline",
                      extra={"l2": l2, "min_item_interactions": min_item_interactions, "items_in_model": n_model,
                             "items_total": split.n_items, "restricted": n_model < split.n_items,
                             "dtype": "float32", "seed": seed, "threads": 1,
                             "l2_tuned": False})
