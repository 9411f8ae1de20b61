"""EASE and ItemKNN on matrices small enough to check by hand."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from models.baselines.ease import EASE
from models.baselines.itemknn import ItemKNN

# 3 users × 2 items: item 0 bought by all three, item 1 by users 0 and 2
X2 = sp.csr_matrix(np.array([[1, 1], [1, 0], [1, 1]], dtype=np.float32))


def test_ease_two_items_by_hand() -> None:
    # G = [[3+λ, 2], [2, 2+λ]]; B_01 = -P_01/P_11 = 2/(3+λ), B_10 = 2/(2+λ); λ = 1
    model = EASE(l2=1.0).fit(X2)
    assert model.weights is not None
    assert np.allclose(model.weights, [[0.0, 2 / 4], [2 / 3, 0.0]], atol=1e-6)
    # user 1 has item 0 only: score of item 1 = B_01 = 0.5
    assert model.score(X2[1]) == pytest.approx(np.array([[0.0, 0.5]]), abs=1e-6)


def test_ease_matches_dense_formula_and_restriction() -> None:
    rng = np.random.default_rng(0)
    x = sp.csr_matrix((rng.random((40, 12)) < 0.3).astype(np.float32))
    lam = 3.0
    g = (x.T @ x).toarray().astype(np.float64) + lam * np.eye(12)
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    model = EASE(l2=lam, block=5).fit(x)  # block smaller than n: exercises the blocked paths
    assert np.allclose(model.weights, b, atol=1e-4)
    counts = np.asarray(x.sum(axis=0)).ravel()
    restricted = EASE(l2=lam, min_item_interactions=int(np.median(counts)) + 1).fit(x)
    scores = restricted.score(x[:3])
    assert np.isneginf(scores[:, counts <= np.median(counts)]).all()
    with pytest.raises(ValueError, match="l2 must be > 0"):
        EASE(l2=0.0)


def test_itemknn_cosine_with_shrinkage_by_hand() -> None:
    # co-count(0, 1) = 2, |x_0| = sqrt 3, |x_1| = sqrt 2; shrink 1 → s = 2 / (sqrt 6 + 1)
    model = ItemKNN(top_k=5, shrink=1.0).fit(X2)
    s = 2 / (np.sqrt(6) + 1)
    assert model.weights is not None
    assert np.allclose(model.weights.toarray(), [[0.0, s], [s, 0.0]], atol=1e-6)
    assert model.score(X2[1]) == pytest.approx(np.array([[0.0, s]]), abs=1e-6)


def test_itemknn_keeps_top_k_per_target_item() -> None:
    # item 0 co-occurs with 1 twice, with 2 once; with top_k = 1 only item 1 feeds item 0
    x = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 1], [0, 0, 1], [0, 0, 1]], dtype=np.float32))
    w = ItemKNN(top_k=1, shrink=0.0).fit(x).weights.toarray()  # type: ignore[union-attr]
    assert (w > 0).sum(axis=0).tolist() == [1, 1, 1]
    assert w[1, 0] == pytest.approx(1.0)  # items 0 and 1 have identical columns: cosine 1
    assert w[2, 0] == 0.0
    # item 2's best neighbour: cos(2, 0) = cos(2, 1) = 1/sqrt(2·3); tie → one of them, value fixed
    assert w[:, 2].max() == pytest.approx(1 / np.sqrt(6))
