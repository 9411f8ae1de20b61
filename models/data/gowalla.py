"""Gowalla as split by LightGCN/NGCF: an implicit user–item matrix with a fixed train/test split.

Files under ``<shared>/gowalla_lightgcn/`` (LightGCN's text format, one user per line)::

    derived/train_from_s_adj_mat.txt.gz   user item item ...   (810,128 train interactions)
    test.txt                              user item item ...   (217,242 test interactions)

Users are ``0..n_users-1`` and items ``0..n_items-1`` (29,858 × 40,981). Evaluation follows
the LightGCN protocol: for every user with test items, score **all** items, drop the user's
training items, and compute Recall@K / NDCG@K against the test items (:func:`evaluate_full_ranking`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from models.data.io import FormatError, iter_text_lines, shared_data_root
from models.metrics import recall_ndcg_at_k

SUBDIR = "gowalla_lightgcn"
TRAIN_FILE = "derived/train_from_s_adj_mat.txt.gz"
TEST_FILE = "test.txt"


@dataclass(frozen=True, eq=False)
class CFSplit:
    """An implicit-feedback split: training edges and per-user held-out test items.

    ``train_edge_index``: LongTensor ``[2, E]``, row 0 users, row 1 items, sorted by (user, item),
    without duplicates. ``test_indptr`` ``[n_users + 1]`` / ``test_items`` ``[T]``: CSR of the
    test items, so user ``u``'s items are ``test_items[test_indptr[u]:test_indptr[u + 1]]``.
    """

    name: str
    n_users: int
    n_items: int
    train_edge_index: Tensor
    test_indptr: Tensor
    test_items: Tensor

    def __post_init__(self) -> None:
        ei = self.train_edge_index
        if ei.dim() != 2 or ei.size(0) != 2 or ei.dtype != torch.long:
            raise ValueError(f"{self.name}: train_edge_index must be a LongTensor [2, E], got {tuple(ei.shape)} {ei.dtype}")
        if self.test_indptr.numel() != self.n_users + 1:
            raise ValueError(f"{self.name}: test_indptr has {self.test_indptr.numel()} entries, expected n_users + 1 = {self.n_users + 1}")
        for what, ids, bound in (("train users", ei[0], self.n_users), ("train items", ei[1], self.n_items),
                                 ("test items", self.test_items, self.n_items)):
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= bound):
                raise ValueError(f"{self.name}: {what} fall outside [0, {bound})")

    @property
    def n_train(self) -> int:
        return int(self.train_edge_index.size(1))

    @property
    def n_test(self) -> int:
        return int(self.test_items.numel())

    @cached_property
    def train_indptr(self) -> Tensor:
        """CSR row pointer of the training matrix ``[n_users + 1]`` (items are ``train_edge_index[1]``)."""
        counts = torch.bincount(self.train_edge_index[0], minlength=self.n_users)
        return torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])

    def train_csr(self, dtype: type = np.float32) -> sp.csr_matrix:
        """The binary ``n_users × n_items`` training matrix as scipy CSR."""
        ei = self.train_edge_index.numpy()
        data = np.ones(ei.shape[1], dtype=dtype)
        return sp.csr_matrix((data, (ei[0], ei[1])), shape=(self.n_users, self.n_items))

    def item_popularity(self) -> Tensor:
        """Training interactions per item ``[n_items]`` (float)."""
        return torch.bincount(self.train_edge_index[1], minlength=self.n_items).float()

    def test_users(self) -> Tensor:
        """Users with at least one test item."""
        return torch.nonzero(self.test_indptr[1:] > self.test_indptr[:-1]).view(-1)

    def subset_users(self, n_users: int, min_item_interactions: int = 1) -> CFSplit:
        """The first ``n_users`` users, restricted to items with at least
        ``min_item_interactions`` training interactions among them, re-indexed densely.

        Test items outside that item set are dropped (they would be unseen items). Used for
        small, fast learning tests on real data.
        """
        ei = self.train_edge_index
        sub = ei[:, ei[0] < n_users]
        counts = torch.bincount(sub[1], minlength=self.n_items)
        sub = sub[:, counts[sub[1]] >= min_item_interactions]
        items = torch.unique(sub[1])
        new_id = torch.full((self.n_items,), -1, dtype=torch.long)
        new_id[items] = torch.arange(items.numel())
        sub = torch.stack([sub[0], new_id[sub[1]]])
        t_end = int(self.test_indptr[n_users])
        t_user = torch.repeat_interleave(torch.arange(n_users), self.test_indptr[1:n_users + 1] - self.test_indptr[:n_users])
        t_item = new_id[self.test_items[:t_end]]
        ok = t_item >= 0
        suffix = f"{n_users}" if min_item_interactions <= 1 else f"{n_users}, items>={min_item_interactions}"
        return CFSplit(f"{self.name}[:{suffix}]", n_users, int(items.numel()), _sorted_edges(sub, items.numel()),
                       *_csr(t_user[ok], t_item[ok], n_users))

    def restrict_items(self, items: Tensor) -> CFSplit:
        """Only the given items (re-indexed ``0..len(items)-1`` in the given order), all users.

        Used to rank a candidate subset, e.g. items held out of training.
        """
        new_id = torch.full((self.n_items,), -1, dtype=torch.long)
        new_id[items] = torch.arange(items.numel())
        ei = self.train_edge_index
        tr = new_id[ei[1]]
        te_user = torch.repeat_interleave(torch.arange(self.n_users), self.test_indptr[1:] - self.test_indptr[:-1])
        te = new_id[self.test_items]
        return CFSplit(f"{self.name}[{items.numel()} items]", self.n_users, int(items.numel()),
                       _sorted_edges(torch.stack([ei[0][tr >= 0], tr[tr >= 0]]), items.numel()),
                       *_csr(te_user[te >= 0], te[te >= 0], self.n_users))


def _sorted_edges(edge_index: Tensor, n_items: int) -> Tensor:
    key = torch.unique(edge_index[0] * n_items + edge_index[1])
    return torch.stack([key // n_items, key % n_items])


def _csr(users: Tensor, items: Tensor, n_users: int) -> tuple[Tensor, Tensor]:
    order = torch.argsort(users * (int(items.max()) + 1 if items.numel() else 1) + items)
    counts = torch.bincount(users, minlength=n_users)
    return torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]), items[order]


def read_user_item_lists(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse LightGCN's ``user item item ...`` format into ``(users, items)`` int64 arrays.

    Every line must hold a non-negative integer user followed by non-negative integer items; a
    user may appear on one line only. Raises :class:`FormatError` (file + line) otherwise.
    """
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    seen: dict[int, int] = {}
    for line_no, line in iter_text_lines(path):
        fields = line.split()
        if not fields:
            raise FormatError(path, line_no, "empty line; expected 'user item item ...'")
        try:
            ids = np.array([int(f) for f in fields], dtype=np.int64)
        except ValueError:
            raise FormatError(path, line_no, f"ids must be integers, got {line[:60]!r}") from None
        if ids.min() < 0:
            raise FormatError(path, line_no, f"ids must be >= 0, got {int(ids.min())}")
        user = int(ids[0])
        if user in seen:
            raise FormatError(path, line_no, f"user {user} already listed on line {seen[user]}")
        seen[user] = line_no
        users.append(np.full(ids.size - 1, user, dtype=np.int64))
        items.append(ids[1:])
    if not seen:
        raise FormatError(path, 0, "no lines")
    return np.concatenate(users), np.concatenate(items)


def load_gowalla(root: Path | None = None) -> CFSplit:
    """Load the LightGCN Gowalla split from ``<root>/gowalla_lightgcn`` (root: shared data dir)."""
    base = (root if root is not None else shared_data_root()) / SUBDIR
    tr_u, tr_i = read_user_item_lists(base / TRAIN_FILE)
    te_u, te_i = read_user_item_lists(base / TEST_FILE)
    n_users = int(max(tr_u.max(), te_u.max())) + 1
    n_items = int(max(tr_i.max(), te_i.max())) + 1
    train = _sorted_edges(torch.stack([torch.from_numpy(tr_u), torch.from_numpy(tr_i)]), n_items)
    if train.size(1) != tr_u.size:
        raise FormatError(base / TRAIN_FILE, 0, f"{tr_u.size - train.size(1)} duplicate (user, item) pairs")
    test_indptr, test_items = _csr(torch.from_numpy(te_u), torch.from_numpy(te_i), n_users)
    return CFSplit("gowalla", n_users, n_items, train, test_indptr, test_items)


def evaluate_full_ranking(split: CFSplit, score_users: Callable[[Tensor], Tensor], *, k: int = 20,
                          batch_size: int = 1024, users: Sequence[int] | Tensor | None = None) -> dict[str, float]:
    """LightGCN-protocol full ranking: Recall@K, NDCG@K and HR@K averaged over users with test items.

    ``score_users(users [B]) -> scores [B, n_items]``. Training items are set to ``-inf``
    before the top-K, so they are never recommended. HR@K is the share of users with at
    least one test item in their top K. ``users`` restricts the evaluation (default: all
    users with test items).
    """
    all_users = split.test_users() if users is None else torch.as_tensor(users, dtype=torch.long)
    has_test = split.test_indptr[all_users + 1] > split.test_indptr[all_users]
    all_users = all_users[has_test]
    if all_users.numel() == 0:
        raise ValueError(f"{split.name}: no user with test items to evaluate")
    tr_ptr, tr_items = split.train_indptr, split.train_edge_index[1]
    sums = torch.zeros(3, dtype=torch.float64)
    for start in range(0, all_users.numel(), batch_size):
        batch = all_users[start:start + batch_size]
        with torch.no_grad():
            scores = score_users(batch).float().clone()
        if scores.shape != (batch.numel(), split.n_items):
            raise ValueError(f"score_users returned {tuple(scores.shape)}, expected ({batch.numel()}, {split.n_items})")
        rows, cols = _gather_rows(tr_ptr, tr_items, batch)
        scores[rows, cols] = float("-inf")
        relevant = torch.zeros_like(scores, dtype=torch.bool)
        rows, cols = _gather_rows(split.test_indptr, split.test_items, batch)
        relevant[rows, cols] = True
        recall, ndcg = recall_ndcg_at_k(scores, relevant, k)
        hit = relevant.gather(1, scores.topk(k, dim=1).indices).any(dim=1)
        sums += torch.stack([recall.sum(), ndcg.sum(), hit.float().sum()]).double()
    means = (sums / all_users.numel()).tolist()
    return {f"recall@{k}": means[0], f"ndcg@{k}": means[1], f"hr@{k}": means[2]}


def _gather_rows(indptr: Tensor, indices: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Batch-local row ids and column ids of the CSR entries of ``rows``."""
    starts, counts = indptr[rows], indptr[rows + 1] - indptr[rows]
    local = torch.repeat_interleave(torch.arange(rows.numel()), counts)
    offsets = torch.arange(int(counts.sum())) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    return local, indices[starts[local] + offsets]
