"""Session baselines on toy data small enough to rank by hand, plus a brute-force kNN oracle."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

from models.baselines import common, pop, sknn, transitions, vsknn
from models.baselines.sknn import SessionKNN
from models.data.sessions import SessionSplit

# Training sessions in time order; item 6 is never clicked in training.
TRAIN = [[1, 2, 3], [2, 3, 4], [1, 4], [5, 1, 2]]
# popularity: 1:3, 2:3, 3:2, 4:2, 5:1, 6:0 → popularity order 1, 2, 3, 4, 5, 6 (ties by lower id)


def toy_split(prefixes: list[list[int]], targets: list[int]) -> SessionSplit:
    return SessionSplit(name="toy", n_items=6, train_sessions=TRAIN, test_prefixes=prefixes, test_targets=targets)


def ranking(scores: np.ndarray) -> list[int]:
    """Items by descending score, padding column excluded."""
    assert np.isneginf(scores[0]) and len(set(scores.tolist())) == scores.size, "scores must be tie-free"
    return [int(i) for i in np.argsort(-scores) if i != 0]


def test_popularity_and_tie_breaker() -> None:
    split = toy_split([[1]], [2])
    popularity = common.item_popularity(split)
    assert popularity.tolist() == [0, 3, 3, 2, 2, 1, 0]
    scores = popularity + common.tie_breaker(popularity)
    assert ranking(scores) == [1, 2, 3, 4, 5, 6]


def test_transitions_rank_followers_of_last_item_then_popularity() -> None:
    # from item 1: 1→2 twice (sessions 0, 3), 1→4 once (session 2); the rest back-filled by popularity
    scorer = transitions.TransitionScorer(toy_split([[1]], [2]))
    assert ranking(scorer([[5, 1]])[0]) == [2, 4, 1, 3, 5, 6]
    # item 6 has never been clicked: pure popularity
    assert ranking(scorer([[6]])[0]) == [1, 2, 3, 4, 5, 6]


def test_sknn_by_hand() -> None:
    split = toy_split([[1, 2]], [3])
    # prefix {1, 2}: cos to s0 {1,2,3} = 2/√6 ≈ .816, s1 = 1/√6, s2 {1,4} = 1/2, s3 {5,1,2} = 2/√6.
    full = SessionKNN(split, k=2, sample_size=10)
    nb = full.neighbours([[1, 2]]).toarray()[0]
    assert nb == pytest.approx([2 / math.sqrt(6), 0.0, 0.0, 2 / math.sqrt(6)])
    # scores: 1, 2 → 2·.816; 3, 5 → .816; 4, 6 back-filled (4 is more popular)
    assert ranking(full([[1, 2]])[0]) == [1, 2, 3, 5, 4, 6]
    # sample_size=2 keeps only the two most recent candidates, s2 (.5) and s3 (.816):
    # 1 → 1.316; 2, 5 → .816 (2 more popular); 4 → .5; then 3, 6
    recent = SessionKNN(split, k=2, sample_size=2)
    assert ranking(recent([[1, 2]])[0]) == [1, 2, 5, 4, 3, 6]


def test_vsknn_weights_recent_clicks_more() -> None:
    # prefix [3, 1, 4]. Binary cosine: s0 shares {1,3}: 2/(√3√3) = .667; s1 shares {3,4}: .667;
    # s2 {1,4}: 2/(√3√2) = .816.
    # Linear weights 3→1/3, 1→2/3, 4→1 (‖w‖ = √14/3): s2: (2/3 + 1)/(‖w‖√2) ≈ .945 is still first,
    # s1: (1/3 + 1)/(‖w‖√3) ≈ .617 now beats s0: (1/3 + 2/3)/(‖w‖√3) ≈ .463.
    split = toy_split([[3, 1, 4]], [2])
    binary = SessionKNN(split, k=3, sample_size=10).neighbours([[3, 1, 4]]).toarray()[0]
    linear = SessionKNN(split, k=3, sample_size=10, weighting="linear").neighbours([[3, 1, 4]]).toarray()[0]
    w = math.sqrt(14) / 3
    assert binary[:3] == pytest.approx([2 / 3, 2 / 3, 2 / math.sqrt(6)])
    assert linear[:3] == pytest.approx([1 / (w * math.sqrt(3)), (4 / 3) / (w * math.sqrt(3)),
                                        (5 / 3) / (w * math.sqrt(2))])
    assert linear[1] > linear[0] and binary[1] == pytest.approx(binary[0])


def brute_force_knn(train: list[list[int]], prefix: list[int], n_items: int, k: int, sample_size: int,
                    weighting: str) -> np.ndarray:
    weights = {item: (1.0 if weighting == "binary" else (p + 1) / len(prefix)) for p, item in enumerate(prefix)}
    norm = math.sqrt(sum(w * w for w in weights.values()))
    candidates = [n for n in range(len(train)) if set(train[n]) & set(weights)]
    candidates = sorted(candidates, reverse=True)[:sample_size]
    sims = [(sum(weights[i] for i in set(train[n]) & set(weights)) / (norm * math.sqrt(len(set(train[n])))), n)
            for n in candidates]
    scores = np.zeros(n_items + 1)
    for sim, n in sorted(sims, reverse=True)[:k]:  # ties: larger session index first
        for i in set(train[n]):
            scores[i] += sim
    return scores


@pytest.mark.parametrize("weighting", ["binary", "linear"])
def test_knn_matches_brute_force_oracle(weighting: str) -> None:
    rng = random.Random(7)
    train = [[rng.randint(1, 30) for _ in range(rng.randint(2, 8))] for _ in range(200)]
    prefixes = [[rng.randint(1, 30) for _ in range(rng.randint(1, 6))] for _ in range(40)]
    split = SessionSplit("toy", 30, train, prefixes, [1] * len(prefixes))
    scorer = SessionKNN(split, k=10, sample_size=25, weighting=weighting)
    got = (scorer.neighbours(prefixes) @ scorer.sessions).toarray()
    expected = np.stack([brute_force_knn(train, p, 30, 10, 25, weighting) for p in prefixes])
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_evaluate_scorer_report_by_hand() -> None:
    # transitions on three queries: [5, 1] → target 2 (rank 1), [1] → 4 (rank 2), [6] → 6 (rank 6)
    split = toy_split([[5, 1], [1], [6]], [2, 4, 6])
    report = common.evaluate_scorer("transitions", split, transitions.TransitionScorer(split), fit_seconds=0.0,
                                    seed=0, batch_size=2)
    assert report.kind == "baseline" and report.epochs == 0 and report.dataset == "toy"
    assert report.metrics["hr@20"] == pytest.approx(1.0)
    assert report.metrics["mrr@20"] == pytest.approx((1 + 1 / 2 + 1 / 6) / 3)
    assert report.metrics["ndcg@20"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(7)) / 3)


def test_baselines_declare_datasets_and_reject_others() -> None:
    for module in (pop, transitions, sknn, vsknn):
        assert {"diginetica", "yoochoose64", "delicious"} <= set(module.DATASETS)
        with pytest.raises(ValueError, match="runs on"):
            module.evaluate("movielens", seed=0)
    assert "gowalla" in pop.DATASETS


def test_knn_rejects_bad_hyperparameters() -> None:
    with pytest.raises(ValueError, match="k <= sample_size"):
        SessionKNN(toy_split([[1]], [2]), k=10, sample_size=5)
