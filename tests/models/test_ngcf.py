"""NGCF: layer maths against a dense oracle, contract checks and a learning test on real data."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from models.checkpoint import load_checkpoint, save_checkpoint
from models.data.gowalla import evaluate_full_ranking, load_gowalla
from models.recipes.lightgcn import BPRConfig, fit_bpr
from models.lightgcn import bipartite_edge_index
from models.ngcf import NGCF


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _toy(seed: int = 0, n_users: int = 6, n_items: int = 8) -> tuple[NGCF, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    key = torch.unique(torch.randint(n_users * n_items, (22,), generator=g))
    torch.manual_seed(seed)
    model = NGCF(n_users, n_items, embedding_dim=8, layer_sizes=(6, 5), message_dropout=0.1)
    return model, torch.stack([key // n_items, key % n_items])


def _dense_reference(model: NGCF, edges: torch.Tensor) -> torch.Tensor:
    n = model.num_nodes
    a = torch.zeros(n, n)
    a[edges[0], edges[1] + model.n_users] = 1.0
    a = a + a.t()
    deg = a.sum(1)
    d = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    lap = d[:, None] * a * d[None, :]
    e = model.embedding.weight.detach()
    outs = [e]
    for conv in model.convs:
        w1, b1 = conv.lin_sum.weight.detach(), conv.lin_sum.bias.detach()
        w2, b2 = conv.lin_bi.weight.detach(), conv.lin_bi.bias.detach()
        side = lap @ e
        e = F.leaky_relu((side + e) @ w1.t() + b1 + (side * e) @ w2.t() + b2, 0.2)
        outs.append(e / e.norm(dim=1, keepdim=True).clamp(min=1e-12))
    return torch.cat(outs, dim=1)


def test_propagation_equals_dense_formula() -> None:
    model, edges = _toy()
    model.eval()
    with torch.no_grad():
        out = model.get_embedding(model.adjacency(edges))
        out_ei = model.propagate(model.embedding.weight, bipartite_edge_index(edges, model.n_users))
    expected = _dense_reference(model, edges)
    assert out.shape == (model.num_nodes, 8 + 6 + 5) == (model.num_nodes, model.out_channels)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(out_ei, expected, atol=1e-5)


def test_message_dropout_only_in_training() -> None:
    model, edges = _toy(1)
    adj = model.adjacency(edges)
    model.eval()
    with torch.no_grad():
        a, b = model.get_embedding(adj), model.get_embedding(adj)
    assert torch.equal(a, b)
    model.train()
    with torch.no_grad():
        c = model.get_embedding(adj)
    assert not torch.allclose(a, c)
    assert torch.equal(a[:, :8], c[:, :8])  # ego part is never dropped


def test_permutation_equivariance_and_inputs_unchanged() -> None:
    model, edges = _toy(2)
    model.eval()
    edges_before = edges.clone()
    g = torch.Generator().manual_seed(5)
    perm_u, perm_i = torch.randperm(model.n_users, generator=g), torch.randperm(model.n_items, generator=g)
    old_to_new = torch.cat([perm_u, perm_i + model.n_users])
    x0 = model.embedding.weight.detach().clone()
    x0_new = torch.empty_like(x0)
    x0_new[old_to_new] = x0
    with torch.no_grad():
        out = model.propagate(x0, model.adjacency(edges))
        out_new = model.propagate(x0_new, model.adjacency(torch.stack([perm_u[edges[0]], perm_i[edges[1]]])))
    assert torch.allclose(out_new[old_to_new], out, atol=1e-6)
    assert torch.equal(edges, edges_before) and torch.equal(model.embedding.weight.detach(), x0)


def test_reset_checkpoint_round_trip_and_repr(tmp_path: Path) -> None:
    model, edges = _toy(3)
    model.eval()
    adj = model.adjacency(edges)
    w = model.convs[0].lin_sum.weight.detach().clone()
    model.reset_parameters()
    assert not torch.equal(w, model.convs[0].lin_sum.weight)
    path = tmp_path / "ngcf.pt"
    save_checkpoint(path, model="ngcf", dataset="toy", hparams=model.hparams(), state_dict=model.state_dict())
    payload = load_checkpoint(path, expect_model="ngcf")
    loaded = NGCF(**payload["hparams"])
    loaded.load_state_dict(payload["state_dict"])
    loaded.eval()
    users = torch.arange(model.n_users)
    with torch.no_grad():
        assert torch.equal(model.score(model.get_embedding(adj), users), loaded.score(loaded.get_embedding(adj), users))
    assert repr(loaded) == "NGCF(n_users=6, n_items=8, embedding_dim=8, layer_sizes=[6, 5], message_dropout=0.1)"
    with pytest.raises(ValueError, match="message_dropout"):
        NGCF(3, 3, message_dropout=1.0)


@pytest.mark.data
@pytest.mark.slow
def test_learns_on_a_gowalla_slice(shared_data: Path) -> None:
    split = load_gowalla(shared_data).subset_users(600, min_item_interactions=3)
    pop = split.item_popularity()
    pop_recall = evaluate_full_ranking(split, lambda u: pop.expand(u.numel(), -1))["recall@20"]
    torch.manual_seed(0)
    model = NGCF(split.n_users, split.n_items)
    history, _ = fit_bpr(model, split, BPRConfig(epochs=3, lr=2e-3, batch_size=1024, reg_weight=1e-5),
                         seed=0, eval_at={1, 3})
    assert history[1]["loss"] < history[0]["loss"] < 0.69
    # measured (600 users, items with >= 3 interactions; seeds 0-2): pop 0.074; NGCF 0.107-0.121
    assert history[1]["recall@20"] > 1.3 * pop_recall
