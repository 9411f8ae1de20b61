"""`gnnrec bench refresh --json`: local embedding refresh against full recomputation on Gowalla.

Protocol (one process, ``torch.set_num_threads(1)`` for both sides, median of ``repeats`` runs):

1. Load the Gowalla LightGCN train graph (29,858 users + 40,981 items, 810,128 edges) and
   ego embeddings ``E0`` (N(0, 0.1²), 64-d, seeded; or a LightGCN checkpoint's weights).
2. Full propagation (L=3) gives the cache the local updates start from.
3. Per dirty fraction ``f``: draw ``round(f·N)`` nodes ``D`` (users and items alike); every
   user in ``D`` gets a new edge to a random item in ``D``, every item in ``D`` left without
   one gets a new edge to a random user in ``D``, and about half the users in ``D`` that
   have an edge to an item in ``D`` lose one — so exactly the nodes of ``D`` are dirty.
4. Time ``full_propagation`` on the new graph and each local method from a fresh copy of
   the cache (the copy is not timed), and compare every final embedding with the full one.

Building the new CSR (``graph_update_s``) is the same input for both sides and timed apart.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

DEFAULT_EPS = (1e-7, 3e-7, 1e-6, 3e-6, 1e-5, 1e-4)
TRAIN_FILE = "gowalla_lightgcn/derived/train_from_s_adj_mat.txt.gz"
N_USERS, N_ITEMS = 29_858, 40_981


def add_parser(sub) -> None:
    """``bench refresh`` under an existing ``bench`` sub-parser set (the lead wires it in)."""
    b = sub.add_parser("refresh", help="local embedding refresh vs full LightGCN propagation (Gowalla)")
    add_arguments(b)
    b.set_defaults(handler=lambda args: _print(args))


def add_arguments(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument("--data-root", type=Path, default=env("GNNREC_SHARED_DATA"),
                   help="shared data dir (env GNNREC_SHARED_DATA; default <repo>/../shared/data)")
    p.add_argument("--fractions", type=float, nargs="+",
                   default=[float(f) for f in env("GNNREC_BENCH_FRACTIONS", "0.001 0.01 0.1").split()],
                   help="dirty fractions (env GNNREC_BENCH_FRACTIONS)")
    p.add_argument("--eps", type=float, nargs="*",
                   default=[float(e) for e in env("GNNREC_BENCH_EPS", " ".join(map(str, DEFAULT_EPS))).split()],
                   help="push thresholds besides the exact methods (env GNNREC_BENCH_EPS)")
    p.add_argument("--seed", type=int, default=int(env("GNNREC_SEED", 0)), help="env GNNREC_SEED")
    p.add_argument("--repeats", type=int, default=int(env("GNNREC_BENCH_REPEATS", 3)), help="env GNNREC_BENCH_REPEATS")
    p.add_argument("--checkpoint", type=Path, default=env("GNNREC_CHECKPOINT"),
                   help="LightGCN checkpoint whose ego embeddings to use (env GNNREC_CHECKPOINT)")
    p.add_argument("--json", action="store_true")


def _median_time(fn: Callable[[], Any], repeats: int, setup: Callable[[], Any] | None = None) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        arg = setup() if setup is not None else None
        t0 = time.perf_counter()
        out = fn(arg) if setup is not None else fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def load_gowalla_graph(data_root: Path | None):
    """Gowalla train interactions as a :class:`SymGraph` (users, then items offset by n_users)."""
    from models.data.gowalla import read_user_item_lists
    from models.data.io import require_file, shared_data_root
    from models.incremental import SymGraph

    root = data_root if data_root is not None else shared_data_root()
    users, items = read_user_item_lists(require_file(Path(root) / TRAIN_FILE))
    return SymGraph.from_bipartite(torch.from_numpy(users), torch.from_numpy(items), N_USERS, N_ITEMS)


def ego_embeddings(num_nodes: int, seed: int, checkpoint: Path | None, dim: int = 64) -> torch.Tensor:
    if checkpoint is None:
        return torch.randn(num_nodes, dim, generator=torch.Generator().manual_seed(seed)) * 0.1
    from models.checkpoint import load_checkpoint

    weight = load_checkpoint(Path(checkpoint), expect_model="lightgcn")["state_dict"]["embedding.weight"]
    if weight.size(0) != num_nodes:
        raise ValueError(f"checkpoint {checkpoint} has {weight.size(0)} nodes, the Gowalla graph {num_nodes}; "
                         "pass a checkpoint trained on the full Gowalla split")
    return weight.float()


def dirty_changes(graph, n_users: int, fraction: float, gen: torch.Generator):
    """Edge changes that make exactly ``round(fraction · N)`` random nodes dirty (see module doc).

    Returns ``(src, dst, weight)`` of undirected changes (weight 0 = removal).
    """
    from models.incremental_graph import gather_rows

    n = graph.num_nodes
    picked = torch.randperm(n, generator=gen)[: max(2, round(fraction * n))]
    users, items = picked[picked < n_users], picked[picked >= n_users]
    if users.numel() == 0 or items.numel() == 0:
        raise ValueError(f"dirty fraction {fraction} picks no user or no item; use a larger fraction")
    keys = graph.row * n + graph.indices

    def fresh_partners(a: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
        partner = pool[torch.randint(pool.numel(), (a.numel(),), generator=gen)]
        for _ in range(100):  # resample partners that are already neighbours
            clash = torch.isin(a * n + partner, keys)
            if not bool(clash.any()):
                return partner
            partner[clash] = pool[torch.randint(pool.numel(), (int(clash.sum()),), generator=gen)]
        raise RuntimeError("could not find non-adjacent partners; the dirty set is too dense")

    u_partner = fresh_partners(users, items)
    lonely = items[~torch.isin(items, u_partner)]
    i_partner = fresh_partners(lonely, users)
    src, dst = torch.cat([users, i_partner]), torch.cat([u_partner, lonely])
    key = src * n + dst
    keep = torch.ones(key.numel(), dtype=torch.bool)
    keep[users.numel():] = ~torch.isin(key[users.numel():], key[: users.numel()])
    src, dst = src[keep], dst[keep]
    # removals: one existing edge between a dirty user and a dirty item, for about half the users
    in_d = torch.zeros(n, dtype=torch.bool)
    in_d[picked] = True
    loc, col, _ = gather_rows(graph, users)
    both = in_d[col]
    loc, col = loc[both], col[both]
    first = torch.ones(loc.numel(), dtype=torch.bool)
    first[1:] = loc[1:] != loc[:-1]
    loc, col = loc[first], col[first]
    coin = torch.rand(loc.numel(), generator=gen) < 0.5
    r_src, r_dst = users[loc[coin]], col[coin]
    weight = torch.cat([torch.ones(src.numel()), torch.zeros(r_src.numel())])
    return torch.cat([src, r_src]), torch.cat([dst, r_dst]), weight


def run_refresh_bench(data_root: Path | None = None, fractions: Sequence[float] = (0.001, 0.01, 0.1),
                      seed: int = 0, *, eps_values: Sequence[float] = DEFAULT_EPS, repeats: int = 3,
                      checkpoint: Path | None = None, num_layers: int = 3) -> dict[str, Any]:
    """Run the protocol of the module docstring; returns the JSON-ready result dict."""
    from models.incremental import PropagationCache, apply_edge_changes, full_propagation, local_update
    from models.incremental_push import push_update

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        graph = load_gowalla_graph(data_root)
        x0 = ego_embeddings(graph.num_nodes, seed, checkpoint)
        full_old_s, (final, layers) = _median_time(lambda: full_propagation(x0, graph, num_layers=num_layers), repeats)
        cache = PropagationCache(final, layers)
        gen = torch.Generator().manual_seed(seed + 1)
        results = []
        for fraction in fractions:
            src, dst, w = dirty_changes(graph, N_USERS, fraction, gen)
            t0 = time.perf_counter()
            new_graph, dirty = apply_edge_changes(graph, src, dst, w)
            graph_update_s = time.perf_counter() - t0
            full_s, (ref, ref_layers) = _median_time(lambda: full_propagation(x0, new_graph, num_layers=num_layers), repeats)
            methods: list[tuple[str, Callable]] = [
                ("exact", lambda c: local_update(c, graph, new_graph, dirty, inplace=True))]
            for eps in (0.0, *eps_values):
                methods.append((f"push eps={eps:g}",
                                lambda c, eps=eps: push_update(c, graph, new_graph, dirty, eps=eps, inplace=True)))
            for name, fn in methods:
                local_s, (out, stats) = _median_time(fn, repeats, setup=cache.clone)
                results.append({
                    "dirty_fraction": fraction, "dirty_nodes": int(dirty.numel()),
                    "added_edges": int((w > 0).sum()), "removed_edges": int((w == 0).sum()),
                    "affected_nodes": stats.affected[-1], "affected_per_layer": list(stats.affected),
                    "pushed_per_layer": list(stats.pushed), "pending_rows": stats.pending,
                    "edges_touched": stats.edges_touched, "graph_update_s": graph_update_s,
                    "full_s": full_s, "local_s": local_s, "speedup": full_s / local_s,
                    "max_abs_diff": float((out.final - ref).abs().max()),
                    "max_abs_diff_layers": float(max((a - b).abs().max() for a, b in zip(out.layers, ref_layers))),
                    "method": name, "exact": stats.exact,
                })
        return {"dataset": "gowalla", "edges": graph.num_entries // 2, "nodes": graph.num_nodes,
                "layers": num_layers, "dim": int(x0.size(1)), "seed": seed, "repeats": repeats,
                "threads": 1, "full_old_graph_s": full_old_s,
                "embeddings": "checkpoint" if checkpoint else "random N(0, 0.1^2)", "results": results}
    finally:
        torch.set_num_threads(threads)


def _print(args: argparse.Namespace) -> int:
    out = run_refresh_bench(args.data_root, args.fractions, args.seed, eps_values=args.eps,
                            repeats=args.repeats, checkpoint=args.checkpoint)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"gowalla: {out['nodes']} nodes, {out['edges']} edges, L={out['layers']}")
        for r in out["results"]:
            print(f"{r['dirty_fraction']:>6g} {r['method']:<16} dirty={r['dirty_nodes']:>6} "
                  f"affected={r['affected_nodes']:>6} full={r['full_s'] * 1e3:8.1f}ms "
                  f"local={r['local_s'] * 1e3:8.1f}ms x{r['speedup']:7.1f} maxdiff={r['max_abs_diff']:.2e}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_refresh", description=__doc__.splitlines()[0])
    add_arguments(p)
    return _print(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
