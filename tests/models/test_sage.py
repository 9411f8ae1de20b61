"""Inductive SAGE encoder, its importance sampler and the held-out-node test on real data."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.data.gowalla import load_gowalla
from models.recipes.sage import (SageConfig, embed_and_evaluate, evaluate_inductive, fit_sage, make_holdout,
                                     restore, run)
from models.sage import SAGERecommender, SpectralBasis, build_sage_graph
from models.sampling import (Neighbourhood, csr_from_edges, importance_neighbours, k_hop_subgraph,
                             sample_rank_band, uniform_negatives)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _bipartite(n_users: int = 6, n_items: int = 7, n_edges: int = 20, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    key = torch.unique(torch.randint(n_users * n_items, (n_edges,), generator=g))
    return torch.stack([key // n_items, key % n_items])


def _homogeneous_csr(edges: torch.Tensor, n_users: int, n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    src = torch.cat([edges[0], edges[1] + n_users])
    dst = torch.cat([edges[1] + n_users, edges[0]])
    return csr_from_edges(src, dst, n_users + n_items)


# --- sampler -------------------------------------------------------------------------------------


def test_importance_neighbours_are_other_side_weighted_and_capped() -> None:
    edges = _bipartite()
    indptr, indices = _homogeneous_csr(edges, 6, 7)
    nb = importance_neighbours(indptr, indices, torch.arange(13), num_walks=30, walk_length=3, top_t=4,
                               generator=torch.Generator().manual_seed(1))
    counts = nb.indptr[1:] - nb.indptr[:-1]
    assert int(counts.max()) <= 4
    owner = torch.repeat_interleave(torch.arange(13), counts)
    assert bool(((owner < 6) != (nb.indices < 6)).all())  # users see items, items see users
    sums = torch.zeros(13).index_add_(0, owner, nb.weight)
    has = counts > 0
    assert torch.allclose(sums[has], torch.ones(int(has.sum())))
    deg = indptr[1:] - indptr[:-1]
    assert torch.equal(has, deg > 0)  # isolated nodes get no neighbours


def test_one_step_walks_visit_exactly_the_direct_neighbours() -> None:
    # user 0 - items {0, 1, 2}; with walk_length 1 every visit is a direct neighbour
    edges = torch.tensor([[0, 0, 0, 1], [0, 1, 2, 2]])
    indptr, indices = _homogeneous_csr(edges, 2, 3)
    nb = importance_neighbours(indptr, indices, torch.tensor([0, 4]), num_walks=3000, walk_length=1, top_t=10,
                               generator=torch.Generator().manual_seed(0))
    assert sorted(nb.indices[nb.indptr[0]:nb.indptr[1]].tolist()) == [2, 3, 4]
    assert torch.allclose(nb.weight[:3], torch.full((3,), 1 / 3), atol=0.03)
    assert sorted(nb.indices[nb.indptr[1]:nb.indptr[2]].tolist()) == [0, 1]  # item 2 ← users 0, 1


def test_k_hop_subgraph_receptive_field() -> None:
    # a path 0 ← 1 ← 2 ← 3 (node v's only neighbour is v + 1)
    nb = Neighbourhood(torch.tensor([0, 1, 2, 3, 3]), torch.tensor([1, 2, 3]), torch.ones(3))
    sub = k_hop_subgraph(nb, torch.tensor([0, 0]), num_hops=2)
    assert sub.nodes.tolist() == [0, 1, 2]
    assert sub.seed_index.tolist() == [0, 0]
    glob = sub.nodes[sub.edge_index]
    assert sorted(map(tuple, glob.t().tolist())) == [(1, 0), (2, 1)]  # no edge into the 2-hop node


def test_rank_band_and_negatives() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.arange(10.0).flip(0).repeat(4, 1)  # item j has rank j
    picks = sample_rank_band(scores, 3, 6, 50, g)
    assert set(picks.unique().tolist()) == {3, 4, 5}
    with pytest.raises(ValueError, match="lo < hi"):
        sample_rank_band(scores, 5, 5, 1, g)
    indptr, items = torch.tensor([0, 3, 4]), torch.tensor([0, 1, 2, 3])
    users = torch.tensor([0, 1] * 200)
    neg = uniform_negatives(indptr, items, users, 5, g, candidates=torch.tensor([0, 2, 3, 4]))
    assert set(neg[users == 0].tolist()) == {3, 4} and set(neg[users == 1].tolist()) == {0, 2, 4}


# --- features and encoder ------------------------------------------------------------------------


def test_features_of_a_copy_equal_the_original_and_unknown_nodes_add_nothing() -> None:
    edges = _bipartite(6, 7, 25)
    basis = SpectralBasis.fit(edges, 6, 7, rank=3, seed=0)
    u0_items = edges[1][edges[0] == 0]
    # new user 6 copies user 0's items; new item 7 is also bought by user 6
    extra = torch.stack([torch.full_like(u0_items, 6), u0_items])
    grown = torch.cat([edges, extra, torch.tensor([[6], [7]])], dim=1)
    x_user, x_item = basis.features(grown, 7, 8)
    assert x_user.shape == (7, 4) and x_item.shape == (8, 4)
    # user 6 sees user 0's items (same degrees) plus item 7, unknown to the basis, which adds
    # nothing: x_u ∝ 1/sqrt(d_u), so the copy is the original rescaled by sqrt(d_0 / d_6)
    d0, d6 = u0_items.numel(), u0_items.numel() + 1
    assert torch.allclose(x_user[6, :3] * (d6 / d0) ** 0.5, x_user[0, :3], atol=1e-5)
    # item 7's only user is new, so its spectral part is zero; its degree feature is log(2)
    assert float(x_item[7, :3].abs().max()) == 0.0
    assert float(x_item[7, -1]) == pytest.approx(float(torch.log1p(torch.tensor(1.0))))


@pytest.mark.parametrize("aggr", ["mean", "pool", "gat"])
def test_encoder_is_permutation_equivariant(aggr: str) -> None:
    torch.manual_seed(0)
    model = SAGERecommender(5, 8, 6, num_layers=2, aggr=aggr)  # type: ignore[arg-type]
    model.eval()
    n = 9
    x, is_user = torch.randn(n, 5), torch.arange(n) < 4
    edge_index = torch.tensor([[4, 5, 6, 0, 1, 2, 7], [0, 1, 2, 4, 5, 6, 3]])
    weight = torch.rand(7)
    x_before = x.clone()
    perm = torch.randperm(n)  # old id v -> new id perm[v]
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(n)
    with torch.no_grad():
        out = model.encode(x, is_user, edge_index, weight)
        out_p = model.encode(x[inv], is_user[inv], perm[edge_index], weight)
    assert torch.allclose(out_p[perm], out, atol=1e-5)
    assert torch.allclose(out.norm(dim=1), torch.ones(n), atol=1e-5)  # L2-normalised
    assert torch.equal(x, x_before)


def test_reset_checkpoint_round_trip_and_repr(tmp_path: Path) -> None:
    edges = _bipartite(6, 7, 25)
    basis = SpectralBasis.fit(edges, 6, 7, rank=3, seed=0)
    graph = build_sage_graph(edges, 6, 7, basis, num_walks=5, top_t=3, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = SAGERecommender(basis.num_features, 8, 8, aggr="pool")
    model.eval()
    w = model.lin_user.weight.detach().clone()
    model.reset_parameters()
    assert not torch.equal(w, model.lin_user.weight)
    path = tmp_path / "sage.pt"
    save_checkpoint(path, model="sage", dataset="toy", hparams=model.hparams(), state_dict=model.state_dict())
    payload = load_checkpoint(path, expect_model="sage")
    loaded = SAGERecommender(**payload["hparams"])  # type: ignore[arg-type]
    loaded.load_state_dict(payload["state_dict"])
    loaded.eval()
    with torch.no_grad():
        a = model.score(model.get_embedding(graph), torch.arange(6), n_users=6)
        b = loaded.score(loaded.get_embedding(graph, batch_size=4), torch.arange(6), n_users=6)
    assert a.shape == (6, 7) and torch.allclose(a, b, atol=1e-6)
    assert repr(loaded) == "SAGERecommender(4, 8, hidden_channels=8, num_layers=2, aggr='pool')"
    with pytest.raises(ValueError, match="aggr"):
        SAGERecommender(4, aggr="max")  # type: ignore[arg-type]


def test_receptive_field_embedding_equals_full_graph_pass() -> None:
    edges = _bipartite(8, 9, 40, seed=3)
    basis = SpectralBasis.fit(edges, 8, 9, rank=3, seed=0)
    graph = build_sage_graph(edges, 8, 9, basis, num_walks=8, top_t=3, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    model = SAGERecommender(basis.num_features, 8, 8, num_layers=2, aggr="mean")
    model.eval()
    with torch.no_grad():
        full = model.get_embedding(graph)
        some = model.get_embedding(graph, nodes=torch.tensor([3, 12, 3, 0]), batch_size=2)
    assert torch.allclose(some, full[torch.tensor([3, 12, 3, 0])], atol=1e-6)


def test_hard_negative_curriculum_gets_harder() -> None:
    cfg = SageConfig(hard_hi0=400, hard_hi_min=50, max_hard=3)
    assert [cfg.hard_band(e) for e in range(1, 7)] == [
        (0, 0, 0), (200, 400, 1), (100, 200, 2), (50, 100, 3), (25, 50, 3), (25, 50, 3)]


# --- inductive learning on real data --------------------------------------------------------------


@pytest.mark.data
@pytest.mark.slow
def test_unseen_users_and_items_beat_popularity(shared_data: Path) -> None:
    split = load_gowalla(shared_data).subset_users(600, min_item_interactions=3)
    cfg = SageConfig(epochs=2, lr=5e-3, batch_size=1024)
    holdout = make_holdout(split, 0.1, seed=0)
    # nothing of the held-out nodes is visible in training
    assert not bool(torch.isin(holdout.train_edge_index[0], holdout.users).any())
    assert not bool(torch.isin(holdout.train_edge_index[1], holdout.items).any())
    basis = SpectralBasis.fit(holdout.train_edge_index, split.n_users, split.n_items, cfg.rank, seed=0)
    assert float(basis.user_basis[holdout.users].abs().max()) == 0.0
    graph = cfg.graph(holdout.train_edge_index, split.n_users, split.n_items, basis, seed=0)
    torch.manual_seed(0)
    model = cfg.build_model()
    history, _ = fit_sage(model, graph, holdout.train_edge_index, cfg, seed=0)
    assert [h["hard_negatives"] for h in history] == [0, 1]
    m = evaluate_inductive(model, basis, split, holdout, cfg, seed=0)
    # measured (600 users, items >= 3, seeds 0-2): held-out users 0.106-0.176 vs pop 0.044-0.098
    # (ratio 1.5-3.4); held-out items 0.375-0.460 vs pop 0.194-0.311 (ratio 1.5-2.2)
    assert m["new_users/recall@20"] > 1.25 * m["new_users_pop/recall@20"]
    assert m["new_items/recall@20"] > 1.25 * m["new_items_pop/recall@20"]


@pytest.mark.data
def test_experiment_checkpoint_round_trip(shared_data: Path, tmp_path: Path) -> None:
    split = load_gowalla(shared_data).subset_users(150, min_item_interactions=3)
    cfg = SageConfig(epochs=1, batch_size=2048, rank=8, hidden_channels=16, out_channels=16)
    path = tmp_path / "sage.pt"
    report = run("gowalla", cfg, seed=0, progress=False, path=path, split=split)
    assert report.epochs == 1 and set(report.metrics) == {"recall@20", "ndcg@20", "hr@20"}
    model, basis, cfg2, extra = restore(load_checkpoint(path, expect_model="sage"))
    assert cfg2 == cfg and extra["seed"] == 0
    graph = cfg2.graph(split.train_edge_index, split.n_users, split.n_items, basis, seed=0)
    again = embed_and_evaluate(model, graph, split)
    assert again == pytest.approx(report.metrics)
