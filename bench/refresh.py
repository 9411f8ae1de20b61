"""`gnnrec bench refresh --json`: local embedding refresh against full recomputation on Gowalla.

Protocol (one process, ``torch.set_num_threads(1)`` for both sides, median of ``repeats`` runs):

1. Load the Gowalla LightGCN train graph (29,858 users + 40,981 items, 810,128 edges) and
   ego embeddings ``E0`` (N(0, 0.1²), 64-d, seeded; or a LightGCN checkpoint's weights).
2. Full propagation (L=3) gives the cache the local updates start from.
3. Per dirty fraction ``f``: draw ``round(f·N)`` nodes ``D`` (users and items alike); every
   user in ``D`` gets a new edge to a random item in ``D``, every item in ``D`` left without
   one gets a new edge to a random user in ``D``, and about half the users in ``D`` that
   have an edge to an item in ``D`` lose one — so exactly the nodes of ``D`` are dirty.
4. For each local method, time ``full_propagation`` on the new graph and the method (from a
   fresh copy of the cache; the copy is not timed) alternately, ``repeats`` times each, and
   compare every final embedding with the full one.
   Methods: ``exact`` (:func:`models.incremental.local_update`, whole-layer matmul where the
   affected rows hold most edges), ``exact local-only`` (never falls back), ``push eps=e``
   (:func:`models.incremental.push.push_update`; ``eps=0`` is exact, ``eps>0`` approximate,
   flagged ``"exact": false`` whenever residuals are left pending).

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


DEFAULT_EPS = (1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 1e-3)
TRAIN_FILE = "gowalla_lightgcn/derived/train_from_s_adj_mat.txt.gz"
N_USERS, N_ITEMS = 29_858, 40_981


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


def _paired_times(full: Callable[[], Any], local: Callable[[Any], Any], setup: Callable[[], Any],
                  repeats: int) -> tuple[list[float], list[float], Any]:
    """Alternate full and local runs (``full, local, full, local, ...``) so both sides see the
    same machine load; returns medians ``[full_wall, local_wall]``, ``[full_cpu, local_cpu]``
    and the last local output. ``setup`` (untimed) makes each local run's fresh cache copy.
    CPU time (``process_time``) is less sensitive to other processes sharing the cores."""
    walls: list[list[float]] = [[], []]
    cpus: list[list[float]] = [[], []]
    out = None
    for _ in range(repeats):
        for side, fn in enumerate((full, local)):
            args = (setup(),) if side else ()
            w0, c0 = time.perf_counter(), time.process_time()
            result = fn(*args)
            walls[side].append(time.perf_counter() - w0)
            cpus[side].append(time.process_time() - c0)
            if side:
                out = result
    return [statistics.median(w) for w in walls], [statistics.median(c) for c in cpus], out


def load_gowalla_graph(data_root: Path | None):
    """Gowalla train interactions as a :class:`SymGraph` (users, then items offset by n_users)."""
    import torch  # not at module level: every `gnnrec` command imports this module's parser
    from models.data.gowalla import read_user_item_lists
    from models.data.io import require_file, shared_data_root
    from models.incremental.local import SymGraph

    root = data_root if data_root is not None else shared_data_root()
    users, items = read_user_item_lists(require_file(Path(root) / TRAIN_FILE))
    return SymGraph.from_bipartite(torch.from_numpy(users), torch.from_numpy(items), N_USERS, N_ITEMS)


def ego_embeddings(num_nodes: int, seed: int, checkpoint: Path | None, dim: int = 64) -> torch.Tensor:
    import torch
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
    import torch
    from models.incremental.graph import gather_rows, isin_sorted

    n = graph.num_nodes
    picked = torch.randperm(n, generator=gen)[: max(2, round(fraction * n))]
    users, items = picked[picked < n_users], picked[picked >= n_users]
    if users.numel() == 0 or items.numel() == 0:
        raise ValueError(f"dirty fraction {fraction} picks no user or no item; use a larger fraction")
    keys = graph.row * n + graph.indices

    def fresh_partners(a: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
        partner = pool[torch.randint(pool.numel(), (a.numel(),), generator=gen)]
        for _ in range(100):  # resample partners that are already neighbours
            clash = isin_sorted(a * n + partner, keys)  # CSR entry keys are ascending
            if not bool(clash.any()):
                return partner
            partner[clash] = pool[torch.randint(pool.numel(), (int(clash.sum()),), generator=gen)]
        raise RuntimeError("could not find non-adjacent partners; the dirty set is too dense")

    u_partner = fresh_partners(users, items)
    lonely = items[~isin_sorted(items, torch.sort(u_partner).values)]
    i_partner = fresh_partners(lonely, users)
    src, dst = torch.cat([users, i_partner]), torch.cat([u_partner, lonely])
    key = src * n + dst
    keep = torch.ones(key.numel(), dtype=torch.bool)
    keep[users.numel():] = ~isin_sorted(key[users.numel():], torch.sort(key[: users.numel()]).values)
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
    import torch
    from models.incremental.local import PropagationCache, apply_edge_changes, full_propagation, local_update
    from models.incremental.push import push_update

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        graph = load_gowalla_graph(data_root)
        x0 = ego_embeddings(graph.num_nodes, seed, checkpoint)
        cache = PropagationCache(*full_propagation(x0, graph, num_layers=num_layers))
        gen = torch.Generator().manual_seed(seed + 1)
        results, changes = [], []
        for fraction in fractions:
            src, dst, w = dirty_changes(graph, N_USERS, fraction, gen)
            t0 = time.perf_counter()
            new_graph, dirty = apply_edge_changes(graph, src, dst, w)
            graph_update_s = time.perf_counter() - t0
            ref, ref_layers = full_propagation(x0, new_graph, num_layers=num_layers)
            profile = _change_profile(fraction, graph, new_graph, dirty, cache, ref, ref_layers, graph_update_s)
            changes.append({**profile, "added_edges": int((w > 0).sum()), "removed_edges": int((w == 0).sum())})
            methods: list[tuple[str, Callable]] = [
                ("exact", lambda c: local_update(c, graph, new_graph, dirty, inplace=True)),
                ("exact local-only", lambda c: local_update(c, graph, new_graph, dirty, inplace=True, dense_above=1.0))]
            for eps in (0.0, *eps_values):
                methods.append((f"push eps={eps:g}",
                                lambda c, eps=eps: push_update(c, graph, new_graph, dirty, eps=eps, inplace=True)))
            for name, fn in methods:
                # a running worker keeps its push buffers: allocating them is not part of an update
                setup = cache.clone if not name.startswith("push") or name == "push eps=0" else (
                    lambda: cache.clone().with_push_buffers())
                (full_s, local_s), (full_cpu, local_cpu), (out, stats) = _paired_times(
                    lambda: full_propagation(x0, new_graph, num_layers=num_layers), fn, setup, repeats)
                results.append({
                    "dirty_fraction": fraction, "dirty_nodes": int(dirty.numel()), "method": name,
                    "exact": stats.exact, "affected_nodes": stats.affected[-1],
                    "affected_per_layer": list(stats.affected), "pushed_per_layer": list(stats.pushed),
                    "pending_rows": stats.pending, "edges_touched": stats.edges_touched,
                    "full_s": full_s, "local_s": local_s, "speedup": full_s / local_s,
                    "full_cpu_s": full_cpu, "local_cpu_s": local_cpu, "speedup_cpu": full_cpu / local_cpu,
                    "max_abs_diff": float((out.final - ref).abs().max()),
                    "max_abs_diff_layers": float(max((a - b).abs().max() for a, b in zip(out.layers, ref_layers))),
                })
        return {"dataset": "gowalla", "edges": graph.num_entries // 2, "nodes": graph.num_nodes,
                "layers": num_layers, "dim": int(x0.size(1)), "seed": seed, "repeats": repeats,
                "threads": 1, "torch": torch.__version__, "load_avg_at_end": list(os.getloadavg()),
                "embeddings": str(checkpoint) if checkpoint else "random N(0, 0.1^2)",
                "changes": changes, "results": results}
    finally:
        torch.set_num_threads(threads)


def _change_profile(fraction: float, graph, new_graph, dirty: torch.Tensor, cache, ref: torch.Tensor,
                    ref_layers: list[torch.Tensor], graph_update_s: float) -> dict[str, Any]:
    """How far one change set reaches: the exact affected sets, and how many rows really move.

    ``rows_changed_over[t]`` counts final embeddings that moved by more than ``t`` (max-abs);
    any update within ``t`` of the full result must write at least those rows, and
    ``layer2_rows_over[t]`` / ``layer2_edges_over[t]`` the layer-2 rows (and their edges) whose
    change must reach layer 3 to keep it within ``t`` — a lower bound on any local method.
    """
    import torch
    from models.incremental.local import k_hop_affected

    deg = new_graph.indptr[1:] - new_graph.indptr[:-1]
    moved = (ref - cache.final).abs().amax(1)
    moved2 = (ref_layers[2] - cache.layers[2]).abs().amax(1)
    thresholds = (1e-6, 1e-5, 1e-4)
    return {
        "dirty_fraction": fraction, "dirty_nodes": int(dirty.numel()),
        "dirty_edge_share": float(deg[dirty].sum()) / new_graph.num_entries,
        "graph_update_s": graph_update_s,
        "affected_exact_per_layer": [int(a.numel()) for a in k_hop_affected(new_graph, dirty, len(ref_layers) - 1)],
        "rows_changed_over": {f"{t:g}": int((moved > t).sum()) for t in thresholds},
        "layer2_rows_over": {f"{t:g}": int((moved2 > t).sum()) for t in thresholds},
        "layer2_edges_over": {f"{t:g}": int(deg[moved2 > t].sum()) for t in thresholds},
    }


def run(args: argparse.Namespace) -> int:
    """CLI handler: run the benchmark, print JSON (``--json``) or a table."""
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
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
