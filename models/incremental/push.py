"""Residual-push update of a LightGCN propagation cache (in the spirit of InstantGNN, VLDB 2022).

Instead of recomputing the ``l``-hop neighbourhood, propagate the *changes* layer by layer.
Besides each layer :math:`x^{(l)}` the cache keeps :math:`y^{(l)}`, the value of layer ``l``
that layer ``l+1`` was computed from, with the invariant :math:`x^{(l)} = \\hat A\\, y^{(l-1)}`;
the residual :math:`x^{(l)} - y^{(l)}` is change not yet pushed on. After a graph change
:math:`\\hat A \\to \\hat A'` with dirty set ``D``, and layer ``l-1`` already updated:

* dirty rows ``r ∈ D`` are recomputed outright: :math:`x'^{(l)}_r = \\hat A'_{r,:}\\, y'^{(l-1)}`;
* any other row ``c`` keeps its own edges (only a dirty neighbour's degree rescales
  :math:`\\hat A_{cr}`), so it changes by
  :math:`\\delta_c = \\sum_{r \\in D} (\\hat A'_{cr} - \\hat A_{cr})\\, y^{(l-1)}_r
  + \\sum_s \\hat A'_{cs} (y'^{(l-1)}_s - y^{(l-1)}_s)`, the second sum over the pushed rows.

Then every changed row ``s`` of layer ``l`` whose residual has
:math:`\\max_k |x^{(l)}_{sk} - y^{(l)}_{sk}| > \\varepsilon \\sqrt{d_s}` is pushed
(:math:`y_s \\leftarrow x_s`); the rest stay pending until later changes push them over the
threshold. Why :math:`\\sqrt{d_s}`: a pending residual ``r`` at ``s`` moves each neighbour ``c``
by :math:`w_{sc} r / \\sqrt{d_s d_c}`, while pushing ``s`` costs :math:`d_s` edges — hubs, costly
to push and diluted over many neighbours, wait longer. On Gowalla at 1% dirty this touches
~25% fewer edges than a plain :math:`\\max|r| > \\varepsilon` rule for the same max error. With ``eps = 0``
every change is pushed and the update is exact (float32 rounding only). With ``eps > 0`` the
cache differs from the exact propagation by :math:`e^{(l)} = \\sum_{k<l} \\hat A^{\\,l-k}(y^{(k)} - x^{(k)})`,
a function of the pending residuals only: the error stays bounded over any number of
updates instead of drifting, and :func:`flush_residuals` makes the cache exact again.

Cost per layer: the entries of the dirty rows (twice: their rows and their columns) plus the
entries of the pushed rows. The dirty part alone is about ``2·|D|/N`` of a full layer for a
random ``D``, so no variant of this update can beat ``N / (2|D|)`` times the full pass.
"""
from __future__ import annotations

import torch
from torch import Tensor

from models.incremental.local import (
    PropagationCache,
    UpdateStats,
    _check_new_nodes_dirty,
    _check_update_args,
)
from models.incremental.graph import SymGraph, gather_rows, inv_sqrt_degree, row_operator, scatter_matmul, take

__all__ = ["flush_residuals", "push_update"]


def _split(cache: PropagationCache, layer: int, rows: Tensor, delta: Tensor, eps: float,
           sqrt_degree: Tensor, flush: bool) -> tuple[Tensor, Tensor]:
    """Rows of ``layer`` (just changed by ``delta``) to push now, and their pushed change ``y' - y``.

    Row ``s`` is pushed when its residual's max-abs exceeds ``eps * sqrt_degree[s]``.

    Only changed rows are examined (a pending row's residual is otherwise unchanged, so it stays
    under the threshold): O(changed rows), except ``flush``, which also scans ``pending``.
    """
    if cache.pushed is None or cache.pending is None:  # eps == 0 and no buffers: y is x itself
        return rows, delta
    x, y, pending = cache.layers[layer], cache.pushed[layer], cache.pending[layer]
    if flush:
        rows = torch.unique(torch.cat([rows, torch.nonzero(pending).view(-1)]))
    resid = take(x, rows) - take(y, rows)
    size = resid.abs().amax(1)
    push = torch.nonzero(size > eps * take(sqrt_degree, rows)).view(-1)
    out = take(rows, push)
    y.index_copy_(0, out, take(x, out))
    pending.index_copy_(0, rows, size > 0)
    pending.index_fill_(0, out, False)
    return out, take(resid, push)


def push_update(cache: PropagationCache, old_graph: SymGraph, new_graph: SymGraph, dirty_nodes: Tensor,
                x0_new_rows: Tensor | None = None, *, eps: float, inplace: bool = False,
                ) -> tuple[PropagationCache, UpdateStats]:
    """Residual-push update of ``cache`` from ``old_graph`` to ``new_graph`` (see module doc).

    Args as :func:`models.incremental.local_update`, plus ``eps >= 0``: a changed row ``s`` is
    pushed to the next layer when its pending change has max-abs above ``eps·sqrt(d_s)``;
    ``eps = 0`` is exact. ``stats.exact`` is True only if nothing is left pending. With ``eps > 0`` the
    cache gets ``pushed``/``pending`` buffers (allocate them up front with
    :meth:`PropagationCache.with_push_buffers` to keep that O(L·N·d) copy out of an update).
    """
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0 (0 = exact), got {eps!r}")
    return _push(cache, old_graph, new_graph, dirty_nodes, x0_new_rows, eps, inplace, flush=False)


def flush_residuals(cache: PropagationCache, graph: SymGraph, *, inplace: bool = False,
                    ) -> tuple[PropagationCache, UpdateStats]:
    """Push every pending residual: afterwards ``cache`` equals full propagation on ``graph``."""
    return _push(cache, graph, graph, torch.zeros(0, dtype=torch.long), None, 0.0, inplace, flush=True)


def _push(cache: PropagationCache, old_graph: SymGraph, new_graph: SymGraph, dirty_nodes: Tensor,
          x0_new_rows: Tensor | None, eps: float, inplace: bool, flush: bool) -> tuple[PropagationCache, UpdateStats]:
    dirty = _check_update_args(cache, old_graph, new_graph, dirty_nodes)
    old_n, n_layers, n_new = cache.num_nodes, cache.num_layers, new_graph.num_nodes
    _check_new_nodes_dirty(old_n, new_graph, dirty)
    cache = cache if inplace else cache.clone()
    if eps > 0:
        cache.with_push_buffers()
    d = cache.final.size(1)

    # y of the dirty rows before any layer is written (appended nodes: 0; dirty is sorted).
    old_dirty = dirty[dirty < old_n]
    y_old = [torch.cat([take(cache.pushed_layer(layer), old_dirty), torch.zeros(dirty.numel() - old_dirty.numel(), d)])
             for layer in range(n_layers)]
    cache = cache.grown(n_new, x0_new_rows)

    dis = inv_sqrt_degree(new_graph.degree)
    dis_old_dirty = inv_sqrt_degree(take(old_graph.padded(n_new).degree, dirty))
    is_dirty = torch.zeros(n_new, dtype=torch.bool)
    is_dirty[dirty] = True
    dirty_op = row_operator(new_graph, dirty, dis)  # rows Â'_{r,:}, r dirty: recomputed outright
    r_loc, col, w = gather_rows(new_graph, dirty)
    outer = torch.nonzero(~take(is_dirty, col)).view(-1)
    t_dst, t_src = take(col, outer), take(r_loc, outer)
    t_coef = take(w, outer) * take(dis, t_dst) * take(take(dis, dirty) - dis_old_dirty, t_src)  # Â'_{cr} - Â_{cr}

    new_ids = torch.arange(old_n, n_new)
    sqrt_degree = new_graph.degree.sqrt()
    push_rows, push_vals = _split(cache, 0, new_ids, take(cache.layers[0], new_ids), eps, sqrt_degree, flush)
    touched, affected, pushed = 0, [], [int(push_rows.numel())]
    for layer in range(1, n_layers + 1):
        s_loc, s_col, s_w = gather_rows(new_graph, push_rows)
        keep = torch.nonzero(~take(is_dirty, s_col)).view(-1)  # dirty rows: all from their recomputation
        s_loc, s_col = take(s_loc, keep), take(s_col, keep)
        s_coef = take(s_w, keep) * take(take(dis, push_rows), s_loc) * take(dis, s_col)
        other_rows, other_delta = scatter_matmul(
            torch.cat([t_dst, s_col]), torch.cat([t_src, s_loc + dirty.numel()]),
            torch.cat([t_coef, s_coef]), torch.cat([y_old[layer - 1], push_vals]))
        fresh = torch.sparse.mm(dirty_op, cache.pushed_layer(layer - 1))
        x = cache.layers[layer]
        rows = torch.cat([dirty, other_rows])
        delta = torch.cat([fresh - take(x, dirty), other_delta])
        x.index_copy_(0, dirty, fresh)
        x.index_add_(0, other_rows, other_delta)
        cache.final.index_add_(0, rows, delta / (n_layers + 1))
        touched += col.numel() + s_w.numel()
        affected.append(int(rows.numel()))
        if layer < n_layers:
            push_rows, push_vals = _split(cache, layer, rows, delta, eps, sqrt_degree, flush)
            pushed.append(int(push_rows.numel()))
    pending = cache.pending_rows()
    label = "flush" if flush else f"push eps={eps:g}"
    return cache, UpdateStats(label, int(dirty.numel()), tuple(affected), touched, pending == 0,
                              tuple(pushed), pending)
