"""Ranking metrics (models/metrics.py) and losses/scoring helpers (models/losses.py).

Every expected value below is computed by hand in the comment next to it.
"""
from __future__ import annotations

import math

import pytest
import torch

from models import losses, metrics

# Three queries over five items, distinct scores.
SCORES = torch.tensor([
    [0.1, 0.9, 0.3, 0.5, 0.7],  # order: 1, 4, 3, 2, 0
    [0.5, 0.4, 0.3, 0.2, 0.1],  # order: 0, 1, 2, 3, 4
    [0.2, 0.1, 0.9, 0.8, 0.3],  # order: 2, 3, 4, 0, 1
])
TARGETS = torch.tensor([3, 4, 2])  # ranks 3, 5, 1


def test_hit_rate_by_hand() -> None:
    assert metrics.hit_rate_at_k(SCORES, TARGETS, 1).tolist() == [0.0, 0.0, 1.0]
    assert metrics.hit_rate_at_k(SCORES, TARGETS, 3).tolist() == [1.0, 0.0, 1.0]
    assert metrics.hit_rate_at_k(SCORES, TARGETS, 5).tolist() == [1.0, 1.0, 1.0]


def test_mrr_by_hand() -> None:
    assert metrics.mrr_at_k(SCORES, TARGETS, 3).tolist() == pytest.approx([1 / 3, 0.0, 1.0])
    assert metrics.mrr_at_k(SCORES, TARGETS, 5).tolist() == pytest.approx([1 / 3, 1 / 5, 1.0])


def test_ndcg_single_by_hand() -> None:
    got = metrics.ndcg_at_k_single(SCORES, TARGETS, 3).tolist()
    assert got == pytest.approx([1 / math.log2(4), 0.0, 1.0])


def test_recall_ndcg_multi_target_by_hand() -> None:
    relevant = torch.zeros(3, 5, dtype=torch.bool)
    relevant[0, [1, 0]] = True  # top-2 of row 0 is [1, 4]: one hit at position 1
    relevant[1, [3]] = True  # top-2 of row 1 is [0, 1]: miss
    relevant[2, [2, 3, 4]] = True  # top-2 of row 2 is [2, 3]: two hits
    recall, ndcg = metrics.recall_ndcg_at_k(SCORES, relevant, 2)
    assert recall.tolist() == pytest.approx([1 / 2, 0.0, 2 / 3])
    idcg2 = 1.0 + 1.0 / math.log2(3)
    # row 0: dcg = 1 (hit at rank 1), ideal over min(2, 2) = 2 positions
    # row 2: dcg = 1 + 1/log2(3), ideal over min(3, 2) = 2 positions → 1.0
    assert ndcg.tolist() == pytest.approx([1.0 / idcg2, 0.0, 1.0])


def test_recall_ndcg_empty_row_is_zero() -> None:
    relevant = torch.zeros(1, 5, dtype=torch.bool)
    recall, ndcg = metrics.recall_ndcg_at_k(SCORES[:1], relevant, 2)
    assert recall.tolist() == [0.0] and ndcg.tolist() == [0.0]


def test_metrics_are_invariant_to_item_relabelling() -> None:
    perm = torch.tensor([4, 2, 0, 1, 3])  # new column j holds old item perm[j]
    inverse = torch.argsort(perm)
    shuffled, targets = SCORES[:, perm], inverse[TARGETS]
    for k in (1, 3, 5):
        assert torch.equal(metrics.hit_rate_at_k(shuffled, targets, k), metrics.hit_rate_at_k(SCORES, TARGETS, k))
        assert torch.allclose(metrics.mrr_at_k(shuffled, targets, k), metrics.mrr_at_k(SCORES, TARGETS, k))


def test_tied_scores_rank_by_item_index_and_nan_ranks_last() -> None:
    constant = torch.zeros(3, 100)
    targets = torch.tensor([50, 99, 5])
    # Ties go to the lower index: ranks 51, 100 and 6.
    assert metrics.hit_rate_at_k(constant, targets, 20).tolist() == [0.0, 0.0, 1.0]
    assert metrics.mrr_at_k(constant, targets, 20).tolist() == pytest.approx([0.0, 0.0, 1 / 6])
    nan = torch.full((1, 10), float("nan"))
    nan[0, 3] = 0.5
    assert metrics.mrr_at_k(nan, torch.tensor([3]), 5).item() == 1.0
    assert metrics.hit_rate_at_k(nan, torch.tensor([4]), 3).item() == 0.0


# ---- losses -----------------------------------------------------------------------------


def test_bpr_by_hand() -> None:
    pos, neg = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0])
    # -log sigmoid(1) = log(1 + e^-1); -log sigmoid(0) = log 2
    expected = (math.log(1 + math.exp(-1)) + math.log(2)) / 2
    assert losses.bpr_loss(pos, neg).item() == pytest.approx(expected)
    # no overflow for a huge wrong margin: loss ≈ the margin
    assert losses.bpr_loss(torch.tensor([-1000.0]), torch.tensor([0.0])).item() == pytest.approx(1000.0)


def test_max_margin_by_hand() -> None:
    pos, neg = torch.tensor([3.0, 1.0, 0.0]), torch.tensor([1.0, 1.0, 2.0])
    # max(0, 1-2)=0, max(0, 1-0)=1, max(0, 1+2)=3 → mean 4/3
    assert losses.max_margin_loss(pos, neg, margin=1.0).item() == pytest.approx(4 / 3)
    assert losses.max_margin_loss(pos, neg, margin=0.0).item() == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="margin"):
        losses.max_margin_loss(pos, neg, margin=-1.0)


def test_softmax_cross_entropy_by_hand() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [math.log(3.0), 0.0, 0.0, 0.0]])
    targets = torch.tensor([1, 0])
    # row 0: log 4; row 1: -log(3 / 6) = log 2
    expected = (math.log(4) + math.log(2)) / 2
    assert losses.softmax_cross_entropy(logits, targets).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="logits"):
        losses.softmax_cross_entropy(logits, targets[:1])


def test_bce_with_logits_by_hand() -> None:
    logits, labels = torch.tensor([0.0, 2.0]), torch.tensor([1, 0])
    # -log sigmoid(0) = log 2; -log(1 - sigmoid(2)) = log(1 + e^2)
    expected = (math.log(2) + math.log(1 + math.exp(2))) / 2
    assert losses.bce_with_logits(logits, labels).item() == pytest.approx(expected)


def test_pairwise_losses_reject_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        losses.bpr_loss(torch.zeros(3), torch.zeros(4))


def test_losses_leave_inputs_unchanged_and_have_gradients() -> None:
    pos = torch.randn(5, requires_grad=True)
    neg = torch.randn(5, requires_grad=True)
    before = (pos.detach().clone(), neg.detach().clone())
    losses.bpr_loss(pos, neg).backward()
    assert torch.equal(pos.detach(), before[0]) and torch.equal(neg.detach(), before[1])
    assert pos.grad is not None and (pos.grad < 0).all() and (neg.grad > 0).all()


def test_l2_regularisation_by_hand() -> None:
    a, b = torch.tensor([[1.0, 2.0], [0.0, 1.0]]), torch.tensor([[3.0], [0.0]])
    # (1 + 4 + 0 + 1 + 9) / (2 * 2)
    assert losses.l2_regularisation(a, b).item() == pytest.approx(15 / 4)


def test_scoring_helpers_by_hand() -> None:
    q = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    c = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert losses.dot_scores(q, c).tolist() == [[2.0, 0.0, 0.0], [6.0, 4.0, 0.0]]
    cos = losses.cosine_scores(q, c)
    assert torch.allclose(cos, torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0]]))
    with pytest.raises(ValueError, match="same d"):
        losses.dot_scores(q, torch.zeros(3, 3))
