"""Local LightGCN refresh against the oracle: full recomputation on the new graph.

Every update (exact recomputation, residual push) is compared with ``full_propagation`` on the
changed graph, which is itself checked against PyG (``LightGCN.propagate`` / ``gcn_norm``).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from models.incremental.local import (
    PropagationCache,
    SymGraph,
    apply_edge_changes,
    dirty_from_graph_diff,
    full_propagation,
    k_hop_affected,
    local_update,
)
from models.incremental.push import flush_residuals, push_update
from models.lightgcn import LightGCN, bipartite_edge_index

TOL = 1e-5


def _random_bipartite(seed: int, n_users: int = 40, n_items: int = 50, n_edges: int = 300,
                      weighted: bool = False) -> tuple[SymGraph, int]:
    g = torch.Generator().manual_seed(seed)
    key = torch.unique(torch.randint(n_users * n_items, (n_edges,), generator=g))
    w = torch.rand(key.numel(), generator=g) * 2 + 0.1 if weighted else None
    return SymGraph.from_bipartite(key // n_items, key % n_items, n_users, n_items, w), n_users


def _random_changes(graph: SymGraph, n_users: int, seed: int, n_add: int = 8, n_remove: int = 4,
                    n_reweight: int = 3, new_users: int = 0, new_items: int = 0):
    """Undirected changes (src, dst, w) on a users-then-items graph; new nodes are appended after it."""
    g = torch.Generator().manual_seed(seed)
    n = graph.num_nodes
    users_all = torch.cat([torch.arange(n_users), torch.arange(n, n + new_users)])
    items_all = torch.cat([torch.arange(n_users, n), torch.arange(n + new_users, n + new_users + new_items)])
    upper = torch.nonzero(graph.row < graph.indices).view(-1)
    pick = upper[torch.randperm(upper.numel(), generator=g)[: n_remove + n_reweight]]
    src = [graph.row[pick], users_all[torch.randint(users_all.numel(), (n_add,), generator=g)],
           torch.arange(n, n + new_users)]
    dst = [graph.indices[pick], items_all[torch.randint(items_all.numel(), (n_add,), generator=g)],
           items_all[torch.randint(items_all.numel(), (new_users,), generator=g)]]
    w = [torch.cat([torch.zeros(min(n_remove, pick.numel())), torch.full((max(0, pick.numel() - n_remove),), 3.0)]),
         torch.ones(n_add), torch.ones(new_users)]
    for item in range(n + new_users, n + new_users + new_items):  # each new item gets one user
        src.append(users_all[torch.randint(users_all.numel(), (1,), generator=g)])
        dst.append(torch.tensor([item]))
        w.append(torch.ones(1))
    src, dst, w = torch.cat(src), torch.cat(dst), torch.cat(w)
    key = torch.minimum(src, dst) * 10**6 + torch.maximum(src, dst)
    first = torch.tensor([k not in set(key[:i].tolist()) for i, k in enumerate(key.tolist())], dtype=torch.bool)
    return src[first], dst[first], w[first], n + new_users + new_items


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max()) if a.numel() else 0.0


def _setup(seed: int, weighted: bool = False, new_users: int = 0, new_items: int = 0, d: int = 8):
    graph, n_users = _random_bipartite(seed, weighted=weighted)
    x0 = torch.randn(graph.num_nodes, d, generator=torch.Generator().manual_seed(seed)) * 0.1
    final, layers = full_propagation(x0, graph)
    src, dst, w, n_new = _random_changes(graph, n_users, seed + 1, new_users=new_users, new_items=new_items)
    new_graph, dirty = apply_edge_changes(graph, src, dst, w, num_nodes=n_new)
    x0_new = torch.randn(n_new - graph.num_nodes, d, generator=torch.Generator().manual_seed(seed + 2)) * 0.1
    ref_final, ref_layers = full_propagation(torch.cat([x0, x0_new]), new_graph)
    return graph, new_graph, dirty, PropagationCache(final, layers), x0_new, ref_final, ref_layers


# ---- the oracle itself ------------------------------------------------------------------
def test_full_propagation_matches_lightgcn_and_gcn_norm() -> None:
    graph, n_users = _random_bipartite(0)
    model = LightGCN(n_users, graph.num_nodes - n_users, embedding_dim=8, num_layers=3)
    x0 = model.embedding.weight.detach()
    edges = torch.stack([graph.row[graph.row < n_users], graph.indices[graph.row < n_users] - n_users])
    with torch.no_grad():
        expected = model.propagate(x0, bipartite_edge_index(edges, n_users))
    assert _max_diff(full_propagation(x0, graph)[0], expected) <= 1e-6
    # weighted: D^-1/2 A D^-1/2 over the weighted degree, exactly PyG's gcn_norm without self-loops
    wgraph, _ = _random_bipartite(1, weighted=True)
    ei = torch.stack([wgraph.row, wgraph.indices])
    _, norm = gcn_norm(ei, wgraph.weight, wgraph.num_nodes, add_self_loops=False)
    x0 = torch.randn(wgraph.num_nodes, 8)
    with torch.no_grad():
        expected = LightGCN(n_users, wgraph.num_nodes - n_users, 8, 3).propagate(x0, ei, norm)
    assert _max_diff(full_propagation(x0, ei, wgraph.weight)[0], expected) <= 1e-6


def test_from_edge_index_rejects_asymmetric_edges() -> None:
    with pytest.raises(ValueError, match="symmetric"):
        SymGraph.from_edge_index(torch.tensor([[0, 1, 1], [1, 0, 2]]), 3)
    with pytest.raises(ValueError, match="listed twice"):
        SymGraph.from_undirected(torch.tensor([0, 1]), torch.tensor([1, 0]), 2)


# ---- dirty sets and affected sets -----------------------------------------------------------
def test_dirty_set_is_the_endpoints_of_real_changes() -> None:
    graph, n_users = _random_bipartite(2, weighted=True)
    src, dst, w, n_new = _random_changes(graph, n_users, 3, new_users=2, new_items=1)
    new_graph, dirty = apply_edge_changes(graph, src, dst, w, num_nodes=n_new)
    assert torch.equal(dirty, dirty_from_graph_diff(graph, new_graph))
    # setting an edge to its current weight, or removing an absent edge, changes nothing
    u, v = int(graph.row[0]), int(graph.indices[0])
    absent = (0, n_users + int(torch.nonzero(~torch.isin(torch.arange(n_users, graph.num_nodes),
                                                         graph.indices[graph.row == 0]))[0]))
    same, none = apply_edge_changes(graph, torch.tensor([u, absent[0]]), torch.tensor([v, absent[1]]),
                                    torch.tensor([float(graph.weight[0]), 0.0]))
    assert none.numel() == 0 and torch.equal(same.indices, graph.indices)


def _bfs(graph: SymGraph, dirty: list[int], k: int) -> list[set[int]]:
    nbrs = {u: set(graph.indices[graph.indptr[u]:graph.indptr[u + 1]].tolist()) for u in range(graph.num_nodes)}
    seen, out = set(dirty), []
    for _ in range(k):
        seen = seen | {v for u in seen for v in nbrs[u]}
        out.append(set(seen))
    return out


def test_k_hop_affected_matches_bfs() -> None:
    graph, _ = _random_bipartite(4, n_edges=120)
    dirty = [0, 3, 55]
    got = k_hop_affected(graph, torch.tensor(dirty), 3)
    for a, expected in zip(got, _bfs(graph, dirty, 3)):
        assert a.tolist() == sorted(expected)
    assert k_hop_affected(graph, torch.tensor(dirty), 0) == []


# ---- exact local recomputation ----------------------------------------------------------------
@pytest.mark.parametrize("seed,weighted,new_users,new_items", [(0, False, 0, 0), (1, True, 0, 0), (2, False, 2, 3),
                                                              (3, True, 1, 1)])
def test_local_update_equals_full_recomputation(seed, weighted, new_users, new_items) -> None:
    graph, new_graph, dirty, cache, x0_new, ref_final, ref_layers = _setup(seed, weighted, new_users, new_items)
    before = cache.clone()
    out, stats = local_update(cache, graph, new_graph, dirty, x0_new, dense_above=1.0)  # always local
    assert stats.exact and stats.dirty == dirty.numel()
    assert _max_diff(out.final, ref_final) <= TOL
    assert all(_max_diff(a, b) <= TOL for a, b in zip(out.layers, ref_layers))
    assert torch.equal(cache.final, before.final)  # inplace=False leaves the input alone
    # rows outside A_L (and not appended) were not written, and still equal the full result
    affected = k_hop_affected(new_graph, dirty, 3)[-1]
    outside = torch.ones(graph.num_nodes, dtype=torch.bool)
    outside[affected[affected < graph.num_nodes]] = False
    assert stats.affected[-1] == affected.numel()
    for new, old, ref in zip([out.final] + out.layers, [before.final] + before.layers, [ref_final] + ref_layers):
        assert torch.equal(new[:graph.num_nodes][outside], old[outside])
        assert _max_diff(new[:graph.num_nodes][outside], ref[:graph.num_nodes][outside]) <= TOL


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n_add=st.integers(0, 10), n_remove=st.integers(0, 6),
       n_reweight=st.integers(0, 4), new_users=st.integers(0, 2), weighted=st.booleans())
def test_local_and_push_updates_match_full_on_random_changes(seed, n_add, n_remove, n_reweight, new_users,
                                                             weighted) -> None:
    graph, n_users = _random_bipartite(seed, n_users=12, n_items=15, n_edges=40, weighted=weighted)
    x0 = torch.randn(graph.num_nodes, 4, generator=torch.Generator().manual_seed(seed))
    cache = PropagationCache(*full_propagation(x0, graph))
    src, dst, w, n_new = _random_changes(graph, n_users, seed + 1, n_add, n_remove, n_reweight, new_users)
    new_graph, dirty = apply_edge_changes(graph, src, dst, w, num_nodes=n_new)
    x0_new = torch.randn(n_new - graph.num_nodes, 4, generator=torch.Generator().manual_seed(seed + 2))
    ref_final, _ = full_propagation(torch.cat([x0, x0_new]), new_graph)
    for update in (local_update, lambda *a: push_update(*a, eps=0.0)):
        out, stats = update(cache, graph, new_graph, dirty, x0_new)
        assert stats.exact
        assert _max_diff(out.final, ref_final) <= TOL


# ---- residual push --------------------------------------------------------------------------
def test_push_eps0_is_exact_and_touches_only_the_l_hop_neighbourhood() -> None:
    graph, new_graph, dirty, cache, x0_new, ref_final, ref_layers = _setup(5, True, 1, 2)
    before = cache.clone()
    out, stats = push_update(cache, graph, new_graph, dirty, x0_new, eps=0.0)
    assert stats.exact and stats.pending == 0
    assert all(_max_diff(a, b) <= TOL for a, b in zip([out.final] + out.layers, [ref_final] + ref_layers))
    affected = k_hop_affected(new_graph, torch.cat([dirty, torch.arange(graph.num_nodes, new_graph.num_nodes)]), 3)
    outside = torch.ones(graph.num_nodes, dtype=torch.bool)
    outside[affected[-1][affected[-1] < graph.num_nodes]] = False
    assert torch.equal(out.final[:graph.num_nodes][outside], before.final[outside])


def _invariant_gap(cache: PropagationCache, graph: SymGraph) -> float:
    """max |layers[l] - Â pushed[l-1]|: the push invariant, independent of eps."""
    from models.incremental.local import normalised_weights

    n = graph.num_nodes
    adj = torch.sparse_csr_tensor(graph.indptr, graph.indices, normalised_weights(graph), (n, n))
    return max(_max_diff(cache.layers[l], torch.sparse.mm(adj, cache.pushed_layer(l - 1)))
               for l in range(1, cache.num_layers + 1))


def test_push_with_threshold_keeps_invariant_bounded_error_and_flushes_to_exact() -> None:
    graph, n_users = _random_bipartite(6, n_users=60, n_items=80, n_edges=600)
    x0 = torch.randn(graph.num_nodes, 8, generator=torch.Generator().manual_seed(6)) * 0.1
    cache = PropagationCache(*full_propagation(x0, graph))
    errors = []
    for step in range(8):  # a stream of updates: the error must not drift
        src, dst, w, n_new = _random_changes(graph, n_users, 100 + step, n_add=5, n_remove=2, n_reweight=1)
        new_graph, dirty = apply_edge_changes(graph, src, dst, w, num_nodes=n_new)
        cache, stats = push_update(cache, graph, new_graph, dirty, eps=2e-3, inplace=True)
        assert _invariant_gap(cache, new_graph) <= 1e-6
        errors.append(_max_diff(cache.final, full_propagation(x0, new_graph)[0]))
        graph = new_graph
    assert stats.pending > 0 and not stats.exact  # the threshold did leave work pending ...
    assert 0 < max(errors) < 0.01 and errors[-1] <= 2 * max(errors[:4])  # ... bounded, not drifting
    with pytest.raises(ValueError, match="residuals"):
        local_update(cache, graph, graph, torch.zeros(0, dtype=torch.long))
    flushed, fstats = flush_residuals(cache, graph)
    assert fstats.exact and fstats.pending == 0
    assert _max_diff(flushed.final, full_propagation(x0, graph)[0]) <= TOL
    # exact recomputation is allowed again once nothing is pending
    src, dst, w, _ = _random_changes(graph, n_users, 999)
    new_graph, dirty = apply_edge_changes(graph, src, dst, w)
    out, _ = local_update(flushed, graph, new_graph, dirty)
    assert _max_diff(out.final, full_propagation(x0, new_graph)[0]) <= TOL
    assert _invariant_gap(out, new_graph) <= 1e-6


def test_update_arguments_are_checked() -> None:
    graph, new_graph, dirty, cache, x0_new, *_ = _setup(7, new_users=1)
    with pytest.raises(ValueError, match="x0_new_rows"):
        local_update(cache, graph, new_graph, dirty, torch.zeros(5, 8))
    with pytest.raises(ValueError, match="not in dirty"):
        push_update(cache, graph, new_graph, dirty[dirty < graph.num_nodes], x0_new, eps=0.0)
    with pytest.raises(ValueError, match="old_graph"):
        local_update(cache, new_graph, new_graph, dirty)
    with pytest.raises(ValueError, match="eps"):
        push_update(cache, graph, new_graph, dirty, x0_new, eps=-1.0)


# ---- real data: a Gowalla slice -------------------------------------------------------------
@lru_cache(maxsize=1)
def _gowalla_slice(root: Path, n_users: int = 3000) -> tuple[SymGraph, int]:
    from models.data.gowalla import read_user_item_lists

    users, items = read_user_item_lists(root / "gowalla_lightgcn/derived/train_from_s_adj_mat.txt.gz")
    users, items = torch.from_numpy(users), torch.from_numpy(items)
    keep = users < n_users
    item_ids, items = torch.unique(items[keep], return_inverse=True)
    return SymGraph.from_bipartite(users[keep], items, n_users, item_ids.numel()), n_users


@pytest.mark.data
def test_gowalla_slice_local_and_push_equal_full(shared_data: Path) -> None:
    from bench.refresh import dirty_changes

    graph, n_users = _gowalla_slice(shared_data)
    assert graph.num_nodes > 3000 and graph.num_entries > 2 * 50_000
    x0 = torch.randn(graph.num_nodes, 64, generator=torch.Generator().manual_seed(0)) * 0.1
    cache = PropagationCache(*full_propagation(x0, graph))
    gen = torch.Generator().manual_seed(1)
    src, dst, w = dirty_changes(graph, n_users, 0.01, gen)
    # plus one brand-new user linked to two items and a reweighted existing edge
    new_user = graph.num_nodes
    src = torch.cat([src, torch.tensor([new_user, new_user, int(graph.row[0])])])
    dst = torch.cat([dst, torch.tensor([n_users, n_users + 1, int(graph.indices[0])])])
    w = torch.cat([w, torch.tensor([1.0, 1.0, 0.5])])
    new_graph, dirty = apply_edge_changes(graph, src, dst, w, num_nodes=new_user + 1)
    assert torch.equal(dirty, dirty_from_graph_diff(graph, new_graph))
    x0_new = torch.full((1, 64), 0.05)
    ref_final, _ = full_propagation(torch.cat([x0, x0_new]), new_graph)
    affected = [a.numel() for a in k_hop_affected(new_graph, dirty, 3)]
    assert affected[0] < affected[1] < affected[2] < new_graph.num_nodes
    for dense_above, expected in ((1.0, affected), (0.5, affected[:1] + [new_graph.num_nodes] * 2)):
        out, stats = local_update(cache, graph, new_graph, dirty, x0_new, dense_above=dense_above)
        assert _max_diff(out.final, ref_final) <= TOL
        assert list(stats.affected) == expected  # A_2 holds > half the edges: whole layers from there
    pushed, _ = push_update(cache, graph, new_graph, dirty, x0_new, eps=0.0)
    assert _max_diff(pushed.final, ref_final) <= TOL


@pytest.mark.data
def test_bench_changes_dirty_exactly_the_requested_fraction(shared_data: Path) -> None:
    from bench.refresh import dirty_changes

    graph, n_users = _gowalla_slice(shared_data)
    for fraction in (0.001, 0.01, 0.1):
        src, dst, w = dirty_changes(graph, n_users, fraction, torch.Generator().manual_seed(3))
        new_graph, dirty = apply_edge_changes(graph, src, dst, w)
        assert dirty.numel() == max(2, round(fraction * graph.num_nodes))
        assert torch.equal(dirty, dirty_from_graph_diff(graph, new_graph))
        assert bool((w == 0).any()) or fraction < 0.01  # removals happen at these sizes
        assert new_graph.num_entries == graph.num_entries + 2 * int((w > 0).sum()) - 2 * int((w == 0).sum())
