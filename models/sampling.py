"""Pure, vectorised samplers for collaborative-filtering training (no pyg-lib / torch-cluster needed).

Graphs are given in CSR form: ``indptr [N + 1]`` and ``indices [E]`` (LongTensors), so the
neighbours of node ``v`` are ``indices[indptr[v]:indptr[v + 1]]``. Every function takes its
random ``generator`` explicitly and returns new tensors; inputs are never modified.

* :func:`sample_bpr_triples` — LightGCN's uniform ``(user, positive, negative)`` sampler.
* :func:`uniform_negatives` — items a user has not interacted with, by rejection.
* :func:`importance_neighbours` — PinSAGE's neighbourhood: the top-T nodes by visit count of
  short random walks, with visit counts normalised to importance weights.
* :func:`k_hop_subgraph` — the computation graph of a mini-batch over such neighbourhoods.
* :func:`sample_rank_band` — hard negatives: items ranked between ``lo`` and ``hi`` by a score.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def csr_from_edges(src: Tensor, dst: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """CSR ``(indptr, indices)`` of edges ``src → dst`` grouped by ``src`` (neighbours sorted)."""
    order = torch.argsort(src * num_nodes + dst)
    counts = torch.bincount(src, minlength=num_nodes)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)]), dst[order]


def _is_edge(indptr: Tensor, indices: Tensor, rows: Tensor, cols: Tensor, n_cols: int) -> Tensor:
    """Whether each ``(rows[b], cols[b])`` is an entry of the CSR matrix (indices sorted per row)."""
    rows_of_entries = torch.repeat_interleave(torch.arange(indptr.numel() - 1), indptr[1:] - indptr[:-1])
    keys = rows_of_entries * n_cols + indices  # sorted because rows and per-row indices are sorted
    query = rows * n_cols + cols
    if keys.numel() == 0:
        return torch.zeros_like(query, dtype=torch.bool)
    pos = torch.searchsorted(keys, query).clamp(max=keys.numel() - 1)
    return keys[pos] == query


def uniform_negatives(indptr: Tensor, indices: Tensor, users: Tensor, n_items: int,
                      generator: torch.Generator, candidates: Tensor | None = None, max_rounds: int = 100) -> Tensor:
    """One uniformly drawn item per user that is not among the user's items (rejection sampling).

    Items are drawn from ``candidates`` (default: all ``n_items``). Raises ``ValueError`` if a
    user has interacted with every item, or if rejection does not finish in ``max_rounds`` rounds.
    """
    degree = indptr[users + 1] - indptr[users]
    pool = candidates.numel() if candidates is not None else n_items
    if bool((degree >= pool).any()):
        raise ValueError("uniform_negatives: a user has interacted with every candidate item; no negative exists")

    def draw(n: int) -> Tensor:
        idx = torch.randint(pool, (n,), generator=generator)
        return idx if candidates is None else candidates[idx]

    neg = draw(users.numel())
    bad = _is_edge(indptr, indices, users, neg, n_items)
    for _ in range(max_rounds):
        if not bool(bad.any()):
            return neg
        idx = torch.nonzero(bad).view(-1)
        neg[idx] = draw(idx.numel())
        bad[idx] = _is_edge(indptr, indices, users[idx], neg[idx], n_items)
    raise ValueError(f"uniform_negatives: rejection sampling did not finish in {max_rounds} rounds")


def sample_bpr_triples(indptr: Tensor, indices: Tensor, n_items: int, num_samples: int,
                       generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """LightGCN's ``UniformSample_original``: user uniform over users with items, positive
    uniform over the user's items, negative uniform over the other items.

    Shapes: ``indptr [U + 1]``, ``indices [E]`` (user → item CSR) → three ``[num_samples]``.
    """
    degree = indptr[1:] - indptr[:-1]
    active = torch.nonzero(degree > 0).view(-1)
    if active.numel() == 0:
        raise ValueError("sample_bpr_triples: no user has a training item")
    users = active[torch.randint(active.numel(), (num_samples,), generator=generator)]
    offset = (torch.rand(num_samples, generator=generator) * degree[users]).long()
    pos = indices[indptr[users] + offset.clamp(max=degree[users] - 1)]
    return users, pos, uniform_negatives(indptr, indices, users, n_items, generator)


@dataclass(frozen=True, eq=False)
class Neighbourhood:
    """Importance-weighted neighbourhoods in CSR form: node ``v``'s neighbours are
    ``indices[indptr[v]:indptr[v+1]]`` with weights ``weight[...]`` summing to 1 per node."""

    indptr: Tensor
    indices: Tensor
    weight: Tensor

    @property
    def num_nodes(self) -> int:
        return self.indptr.numel() - 1


def random_walk_visits(indptr: Tensor, indices: Tensor, seeds: Tensor, *, num_walks: int,
                       walk_length: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(seed position, visited node)`` pairs at the odd steps 1, 3, ... of uniform random walks.

    On a bipartite graph odd steps land on the other side (user → items, item → users), so
    the visits are direct neighbours plus 3-hop, 5-hop ... nodes reached through them. Walks
    stop at nodes without neighbours.
    """
    starts = seeds.repeat_interleave(num_walks)
    owner = torch.arange(seeds.numel()).repeat_interleave(num_walks)
    cur, alive = starts.clone(), torch.ones_like(starts, dtype=torch.bool)
    owners, visits = [], []
    for step in range(1, walk_length + 1):
        deg = indptr[cur + 1] - indptr[cur]
        alive &= deg > 0
        pick = (torch.rand(cur.numel(), generator=generator) * deg).long().clamp(max=(deg - 1).clamp(min=0))
        cur = torch.where(alive, indices[(indptr[cur] + pick).clamp(max=max(indices.numel() - 1, 0))], cur)
        if step % 2 == 1:
            owners.append(owner[alive])
            visits.append(cur[alive])
    if not owners:
        raise ValueError("random_walk_visits: walk_length must be >= 1")
    return torch.cat(owners), torch.cat(visits)


def importance_neighbours(indptr: Tensor, indices: Tensor, seeds: Tensor, *, num_walks: int = 20,
                          walk_length: int = 3, top_t: int = 10, generator: torch.Generator) -> Neighbourhood:
    """PinSAGE neighbourhoods: for each seed, the ``top_t`` nodes most visited by
    ``num_walks`` random walks, weighted by normalised visit counts.

    Returns a :class:`Neighbourhood` over ``seeds.numel()`` rows (row ``s`` belongs to
    ``seeds[s]``); ties in visit count are broken by node id.
    """
    if top_t < 1 or num_walks < 1:
        raise ValueError(f"importance_neighbours: need top_t >= 1 and num_walks >= 1, got {top_t}, {num_walks}")
    owner, node = random_walk_visits(indptr, indices, seeds, num_walks=num_walks,
                                     walk_length=walk_length, generator=generator)
    n = indptr.numel() - 1
    keys, counts = torch.unique(owner * n + node, return_counts=True)
    owner, node = keys // n, keys % n
    # sort by (owner asc, count desc, node asc) and keep the first top_t of each owner
    big = int(counts.max()) + 1 if counts.numel() else 1
    order = torch.argsort(owner * big + (big - 1 - counts), stable=True)
    owner, node, counts = owner[order], node[order], counts[order]
    per_owner = torch.bincount(owner, minlength=seeds.numel())
    first = torch.cumsum(per_owner, 0) - per_owner
    rank = torch.arange(owner.numel()) - first[owner]
    keep = rank < top_t
    owner, node, counts = owner[keep], node[keep], counts[keep].float()
    total = torch.zeros(seeds.numel()).index_add_(0, owner, counts)
    kept = torch.bincount(owner, minlength=seeds.numel())
    ptr = torch.cat([kept.new_zeros(1), kept.cumsum(0)])
    return Neighbourhood(ptr, node, counts / total[owner])


@dataclass(frozen=True, eq=False)
class SampledSubgraph:
    """A mini-batch computation graph. ``nodes [M]`` global ids (the unique seeds first);
    ``edge_index [2, K]`` local ids, row 0 the neighbour (source), row 1 the node it feeds;
    ``edge_weight [K]``; ``seed_index [S]`` local position of each requested seed."""

    nodes: Tensor
    edge_index: Tensor
    edge_weight: Tensor
    seed_index: Tensor


def k_hop_subgraph(neighbourhood: Neighbourhood, seeds: Tensor, num_hops: int) -> SampledSubgraph:
    """Nodes within ``num_hops`` of ``seeds`` along importance edges, and those edges.

    Edges are gathered for every node at distance ``< num_hops``, so after ``num_hops``
    message-passing layers the seeds' outputs depend on exactly their sampled receptive field.
    """
    uniq, seed_index = torch.unique(seeds, return_inverse=True)
    local = torch.full((neighbourhood.num_nodes,), -1, dtype=torch.long)
    local[uniq] = torch.arange(uniq.numel())
    nodes, frontier, n_local = [uniq], uniq, uniq.numel()
    src, dst, w = [], [], []
    ptr, idx = neighbourhood.indptr, neighbourhood.indices
    for _ in range(num_hops):
        counts = ptr[frontier + 1] - ptr[frontier]
        rep = torch.repeat_interleave(frontier, counts)
        pos = torch.repeat_interleave(ptr[frontier] - (counts.cumsum(0) - counts), counts) + torch.arange(int(counts.sum()))
        nbr = idx[pos]
        new = torch.unique(nbr[local[nbr] < 0])
        local[new] = torch.arange(n_local, n_local + new.numel())
        n_local += new.numel()
        nodes.append(new)
        src.append(nbr)
        dst.append(rep)
        w.append(neighbourhood.weight[pos])
        frontier = new
    all_src, all_dst = torch.cat(src), torch.cat(dst)
    return SampledSubgraph(torch.cat(nodes), torch.stack([local[all_src], local[all_dst]]), torch.cat(w), seed_index)


def sample_rank_band(scores: Tensor, lo: int, hi: int, num: int, generator: torch.Generator) -> Tensor:
    """``num`` column indices per row drawn uniformly from the items ranked ``lo..hi-1``
    (0-based, by descending score). Callers set excluded items (e.g. positives) to ``-inf``.

    Shapes: ``scores [B, N]`` → ``[B, num]``.
    """
    if not 0 <= lo < hi <= scores.size(1):
        raise ValueError(f"sample_rank_band: need 0 <= lo < hi <= {scores.size(1)}, got lo={lo}, hi={hi}")
    top = scores.topk(hi, dim=1).indices[:, lo:]
    pick = torch.randint(hi - lo, (scores.size(0), num), generator=generator)
    return top.gather(1, pick)
