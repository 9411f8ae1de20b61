"""Gowalla (LightGCN split) loading, slicing and the full-ranking evaluation protocol."""
from __future__ import annotations

import gzip
import math
from functools import lru_cache
from pathlib import Path

import pytest
import torch

from models.data.gowalla import CFSplit, evaluate_full_ranking, load_gowalla
from models.data.io import FormatError


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@lru_cache(maxsize=1)
def _gowalla(root: Path) -> CFSplit:
    return load_gowalla(root)


@pytest.mark.data
def test_counts_match_the_data_readme(shared_data: Path) -> None:
    split = _gowalla(shared_data)
    assert (split.n_users, split.n_items) == (29_858, 40_981)
    assert split.n_train == 810_128
    assert split.n_test == 217_242
    assert split.test_users().numel() == 29_858  # every user has test items
    # training edges are sorted and unique; test CSR rows are sorted
    key = split.train_edge_index[0] * split.n_items + split.train_edge_index[1]
    assert bool((key[1:] > key[:-1]).all())
    assert int(split.train_indptr[-1]) == split.n_train


@pytest.mark.data
def test_first_lines_parsed_as_written(shared_data: Path) -> None:
    split = _gowalla(shared_data)
    # test.txt line 2 is "1 31613 34341 ... 2525": 13 items
    user1 = split.test_items[split.test_indptr[1]:split.test_indptr[2]]
    assert user1.numel() == 13 and 31613 in user1.tolist() and 2525 in user1.tolist()
    # derived train file, line 1: user 0 trained on items 0, 1, 2, ...
    assert split.train_edge_index[:, :3].tolist() == [[0, 0, 0], [0, 1, 2]]


@pytest.mark.data
def test_subset_users_reindexes_items_densely(shared_data: Path) -> None:
    full = _gowalla(shared_data)
    sub = full.subset_users(300)
    assert sub.n_users == 300
    assert torch.unique(sub.train_edge_index[1]).numel() == sub.n_items  # every item has a train edge
    n_full = int((full.train_edge_index[0] < 300).sum())
    assert sub.n_train == n_full
    # test items kept are exactly those the 300 users' training set contains
    assert sub.n_test <= int(full.test_indptr[300])
    assert int(sub.test_indptr[-1]) == sub.n_test


def _write_split(root: Path, train_lines: list[str], test_lines: list[str]) -> None:
    base = root / "gowalla_lightgcn"
    (base / "derived").mkdir(parents=True)
    with gzip.open(base / "derived" / "train_from_s_adj_mat.txt.gz", "wt") as fh:
        fh.write("".join(line + "\n" for line in train_lines))
    (base / "test.txt").write_text("".join(line + "\n" for line in test_lines))


def test_tiny_split_loads(tmp_path: Path) -> None:
    _write_split(tmp_path, ["0 0 2", "1 1"], ["0 1", "1 0 2"])
    split = load_gowalla(tmp_path)
    assert (split.n_users, split.n_items, split.n_train, split.n_test) == (2, 3, 3, 3)
    assert split.train_edge_index.tolist() == [[0, 0, 1], [0, 2, 1]]
    assert split.test_items.tolist() == [1, 0, 2]


@pytest.mark.parametrize("bad_line, message", [
    ("1 7 x", "must be integers"),
    ("1 -3", ">= 0"),
    ("0 4", "already listed on line 1"),
    ("", "empty line"),
])
def test_garbled_line_names_file_and_line(tmp_path: Path, bad_line: str, message: str) -> None:
    _write_split(tmp_path, ["0 0 2", bad_line, "2 1"], ["0 1"])
    with pytest.raises(FormatError, match=message) as info:
        load_gowalla(tmp_path)
    assert info.value.line == 2
    assert info.value.path.name == "train_from_s_adj_mat.txt.gz"


def test_truncated_gzip_is_a_format_error(tmp_path: Path) -> None:
    _write_split(tmp_path, [" ".join(str(i) for i in range(u, u + 40)) for u in range(200)], ["0 1"])
    path = tmp_path / "gowalla_lightgcn" / "derived" / "train_from_s_adj_mat.txt.gz"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(FormatError):
        load_gowalla(tmp_path)


def _toy_split() -> CFSplit:
    # user 0 trained on item 0, tests on items 1 and 3; user 1 trained on 2, tests on 4
    return CFSplit("toy", 2, 5, torch.tensor([[0, 1], [0, 2]]), torch.tensor([0, 2, 3]), torch.tensor([1, 3, 4]))


def test_full_ranking_metrics_by_hand() -> None:
    split = _toy_split()
    scores = torch.tensor([[9.0, 5.0, 4.0, 1.0, 3.0],    # ranking after removing item 0: 1, 2, 4, 3
                           [0.0, 1.0, 9.0, 2.0, 0.5]])   # after removing item 2: 3, 1, 4, 0
    metrics = evaluate_full_ranking(split, lambda users: scores[users], k=2)
    # user 0: top-2 = {1, 2}: recall 1/2, DCG 1, IDCG 1 + 1/log2(3); user 1: top-2 = {3, 1}: 0
    ndcg0 = 1.0 / (1.0 + 1.0 / math.log2(3))
    assert metrics["recall@2"] == pytest.approx(0.25)
    assert metrics["ndcg@2"] == pytest.approx(ndcg0 / 2)
    assert metrics["hr@2"] == pytest.approx(0.5)
    # scores are not modified by the evaluation
    assert scores[0, 0] == 9.0


def test_training_items_are_never_counted() -> None:
    split = _toy_split()
    # the training item scores highest for both users; with k=1 it must be skipped
    scores = torch.tensor([[10.0, 9.0, 0.0, 0.0, 0.0], [0.0, 0.0, 10.0, 0.0, 9.0]])
    metrics = evaluate_full_ranking(split, lambda users: scores[users], k=1)
    assert metrics["hr@1"] == 1.0
    assert metrics["recall@1"] == pytest.approx((0.5 + 1.0) / 2)


@pytest.mark.data
def test_popularity_on_a_slice(shared_data: Path) -> None:
    sub = _gowalla(shared_data).subset_users(1000)
    pop = sub.item_popularity()
    metrics = evaluate_full_ranking(sub, lambda users: pop.expand(users.numel(), -1))
    # measured here: recall 0.0444, ndcg 0.0502, hr 0.334 (first 1,000 users)
    assert metrics["recall@20"] == pytest.approx(0.0444, abs=2e-3)
    assert metrics["hr@20"] == pytest.approx(0.334, abs=5e-3)


def test_restrict_items_reindexes_in_given_order() -> None:
    split = _toy_split()  # train: (0, 0), (1, 2); test: user 0 → {1, 3}, user 1 → {4}
    sub = split.restrict_items(torch.tensor([3, 2, 1]))  # 3 → 0, 2 → 1, 1 → 2
    assert (sub.n_users, sub.n_items) == (2, 3)
    assert sub.train_edge_index.tolist() == [[1], [1]]
    assert sub.test_indptr.tolist() == [0, 2, 2]
    assert sub.test_items.tolist() == [0, 2]
