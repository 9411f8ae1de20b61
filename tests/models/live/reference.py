"""A reference scorer: the served scoring rule written out plainly, for tests to compare with.

It shares no code with :mod:`models.live.scorer`. From the bundle it takes only the trained
weights (the SR-GNN encoder's and the social model's parameters) and the documented
parameters (``prior_weight``, ``transition_weight``, ``exclude_seen``); everything else is
computed here in float64, one request at a time, from plain inputs: the published embedding
of each item and user by id, and the decayed popularity of each item at the refresh.

The rule (docs/serving.md, :mod:`models.live.prior`, :mod:`models.live.transition_prior`,
:mod:`models.live.repeats`), for a request whose session holds items ``s_1 .. s_m`` (oldest
first; items without a published embedding are left out of the session):

* next item: the query ``q`` is the SR-GNN session vector (Wu et al. 2019, eqs. 1–7) of the
  session, over the published item embeddings; ``score_i = q·e_i + β·log(1 + pop_i)
  + γ·log(1 + w(s_m → i))`` where ``w`` are the decayed weights of the ``M`` strongest
  successors of the session's last item (0 for every other item);
* social: ``q = W_fuse [s; c; u]`` with ``s`` the attention readout of the session, ``c`` the
  session-queried attention over the followees' embeddings (0 without followees) and ``u`` the
  user's embedding; ``score_i = q·e_i + β_social·log(1 + pop_i)``;
* when the bundle excludes seen items for the model, the session's items are not ranked;
* the answer is the ``k`` best scores, highest first, ties in catalogue order (the order in
  which the item embeddings were published); ``None`` when no session item has an embedding.

Above ``ann_threshold`` the scorer ranks a shortlist instead of the catalogue: the ``4k`` best
items by ``q·e`` (``k`` without priors; plus as many as are excluded), the successors and, with
a popularity prior, the 500 most popular items, scored exactly with the priors. ``shortlist=`` gives that rule with an exact shortlist, so a test can
tell the index's recall apart from what the rule itself leaves out.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from graph_store import GraphStore
from models.live.bundle import ModelBundle

Ranked = list[tuple[str, float]]


def _linear(layer: torch.nn.Linear, x: Tensor) -> Tensor:
    """``x W^T + b`` in float64."""
    out = x @ layer.weight.detach().double().t()
    return out if layer.bias is None else out + layer.bias.detach().double()


def _softmax(logits: Tensor) -> Tensor:
    """Softmax over the first axis of ``logits [n]``."""
    e = torch.exp(logits - logits.max())
    return e / e.sum()


def transition_weights(store: GraphStore, session: Sequence[str], now_ms: int, m: int) -> dict[str, float]:
    """``{item: w(last → item)}``: the ``m`` strongest decayed successors of the session's last
    item in ``store`` at ``now_ms`` (empty for an empty session or ``m = 0``)."""
    if not session or m <= 0:
        return {}
    return {n.node_id: n.weight for n in store.neighbours("item", session[-1], "ii", now_ms, k=m)}


def decayed_popularity(store: GraphStore, now_ms: int) -> dict[str, float]:
    """``{item: decayed popularity at now_ms}`` over every item the store counts."""
    return {n.node_id: n.weight for n in store.item_popularity(now_ms)}


class ReferenceScorer:
    """The served ranking recomputed densely, one request at a time.

    Args:
        bundle: the trained weights and the fitted parameters.
        item_ids: the catalogue, in the order its embeddings were published (the tie order).
        item_vectors: ``[len(item_ids), d]``, the published embedding of each item.
        user_vectors: ``{user: [d]}``, the published user embeddings (social only).
        popularity: ``{item: decayed popularity}`` at the refresh (missing items: 0).
    """

    def __init__(self, bundle: ModelBundle, item_ids: Sequence[str], item_vectors: np.ndarray,
                 user_vectors: Mapping[str, np.ndarray], popularity: Mapping[str, float]) -> None:
        self.bundle = bundle
        self.item_ids = list(item_ids)
        self.index = {item: i for i, item in enumerate(self.item_ids)}
        self.items = torch.from_numpy(np.asarray(item_vectors, dtype=np.float64))
        self.users = {u: torch.from_numpy(np.asarray(v, dtype=np.float64)) for u, v in user_vectors.items()}
        self.log_pop = torch.tensor([np.log1p(popularity.get(i, 0.0)) for i in self.item_ids], dtype=torch.float64)
        self.popular_candidates = 500  # the scorer's ScorerSettings.ann_prior_candidates

    def _known(self, session: Sequence[str]) -> list[str]:
        return [i for i in session if i in self.index]

    # ---- next item --------------------------------------------------------------------------
    def session_query(self, session: Sequence[str]) -> Tensor | None:
        """SR-GNN's ``s_h`` for the session's known items, ``[d]`` float64, or None."""
        clicks = self._known(session)
        if not clicks:
            return None
        model = self.bundle.srgnn
        nodes = list(dict.fromkeys(clicks))  # the session graph's nodes: its distinct items
        node = {item: v for v, item in enumerate(nodes)}
        edges = {(node[a], node[b]) for a, b in zip(clicks, clicks[1:])}  # self-loops kept
        a_in = torch.zeros(len(nodes), len(nodes), dtype=torch.float64)  # a_in[v, u]: u -> v
        for u, v in edges:
            a_in[v, u] = 1.0
        a_out = a_in.t().clone()  # a_out[u, v]: u -> v
        a_in = a_in / a_in.sum(1, keepdim=True).clamp(min=1.0)  # mean over in-neighbours
        a_out = a_out / a_out.sum(1, keepdim=True).clamp(min=1.0)  # mean over out-neighbours
        h = self.items[[self.index[i] for i in nodes]]
        gru = model.gru
        w_ih, w_hh = gru.weight_ih.detach().double(), gru.weight_hh.detach().double()
        b_ih, b_hh = gru.bias_ih.detach().double(), gru.bias_hh.detach().double()
        for _ in range(model.num_steps):
            m_in = a_in @ _linear(model.lin_edge_in, h) + model.bias_in.detach().double()
            m_out = a_out @ _linear(model.lin_edge_out, h) + model.bias_out.detach().double()
            gi = torch.cat([m_in, m_out], dim=1) @ w_ih.t() + b_ih
            gh = h @ w_hh.t() + b_hh
            i_r, i_z, i_n = gi.chunk(3, dim=1)
            h_r, h_z, h_n = gh.chunk(3, dim=1)
            r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
            h = (1 - z) * torch.tanh(i_n + r * h_n) + z * h
        seq = h[[node[i] for i in clicks]]  # one row per click: a repeated item counts per click
        last = seq[-1]
        alpha = _linear(model.att_out, torch.sigmoid(_linear(model.att_last, last)[None, :]
                                                     + _linear(model.att_click, seq)))
        s_global = (alpha * seq).sum(0)
        return _linear(model.transform, torch.cat([s_global, last])) if model.hybrid else s_global

    def next_scores(self, session: Sequence[str], successors: Mapping[str, float] | None = None,
                    shortlist: int | None = None) -> Tensor | None:
        """Every item's next-item score ``[n]`` (-inf where excluded or, given ``shortlist``,
        outside the ``shortlist`` best by ``q·e`` and the successors), or None."""
        q = self.session_query(session)
        if q is None:
            return None
        inner = self.items @ q
        scores = inner + self.bundle.prior_weight("next_item") * self.log_pop
        gamma = self.bundle.transition_weight()
        lifted = [item for item in (successors or {}) if gamma and item in self.index]
        for item in lifted:
            scores[self.index[item]] += gamma * np.log1p(successors[item])
        if shortlist is not None:
            scores = self._shortlisted(scores, inner, session, "next_item", shortlist, lifted)
        return self._exclude(scores, session, "next_item")

    def recommend_next(self, session: Sequence[str], k: int, successors: Mapping[str, float] | None = None,
                       shortlist: int | None = None) -> Ranked | None:
        return self._top(self.next_scores(session, successors, shortlist), k)

    # ---- social -----------------------------------------------------------------------------
    def social_query(self, user: str, followees: Sequence[str], session: Sequence[str]) -> Tensor | None:
        """The social model's fused query ``[d]`` float64, or None."""
        model = self.bundle.social
        items = self._known(session)
        if model is None or user not in self.users or not items:
            return None
        if model.score_scale > 0:
            raise NotImplementedError("the live social model ranks by inner product (score_scale 0)")
        h = self.items[[self.index[i] for i in items]]
        u = self.users[user]
        query = _linear(model.att_last, h[-1]) + _linear(model.att_user, u)
        alpha = _softmax(_linear(model.att_out, torch.sigmoid(query[None, :] + _linear(model.att_item, h)))[:, 0])
        s = _linear(model.session_out, torch.cat([h[-1], (alpha[:, None] * h).sum(0)]))
        parts = [s, u]
        if model.use_social:
            friends = [self.users[f] for f in followees if f in self.users]
            c = torch.zeros_like(u)
            if friends:
                hf = torch.stack(friends)
                beta = _softmax(_linear(model.friend_out, torch.tanh(_linear(model.friend_query, s)[None, :]
                                                                     + _linear(model.friend_key, hf)))[:, 0])
                c = (beta[:, None] * hf).sum(0)
            parts.insert(1, c)
        return _linear(model.fuse, torch.cat(parts))

    def social_scores(self, user: str, followees: Sequence[str], session: Sequence[str],
                      shortlist: int | None = None) -> Tensor | None:
        q = self.social_query(user, followees, session)
        if q is None:
            return None
        inner = self.items @ q
        scores = inner + self.bundle.prior_weight("social") * self.log_pop
        if shortlist is not None:
            scores = self._shortlisted(scores, inner, session, "social", shortlist, [])
        return self._exclude(scores, session, "social")

    def recommend_social(self, user: str, followees: Sequence[str], session: Sequence[str], k: int,
                         shortlist: int | None = None) -> Ranked | None:
        return self._top(self.social_scores(user, followees, session, shortlist), k)

    # ---- shared -------------------------------------------------------------------------------
    def _shortlisted(self, scores: Tensor, inner: Tensor, session: Sequence[str], kind: str, size: int,
                     lifted: Sequence[str]) -> Tensor:
        """``scores`` with -inf outside the ``size`` best by ``inner`` (plus one per excluded
        item), the ``lifted`` items and, when the model has a popularity prior, the
        ``popular_candidates`` items of highest popularity."""
        excluded = set(self._known(session)) if self.bundle.exclude_seen(kind) else set()
        best = np.argsort(-inner.numpy(), kind="stable")[:size + len(excluded)]
        keep = torch.zeros(len(self.item_ids), dtype=torch.bool)
        keep[torch.from_numpy(best)] = True
        if self.bundle.prior_weight(kind):
            popular = np.argsort(-self.log_pop.numpy(), kind="stable")[:self.popular_candidates]
            keep[torch.from_numpy(popular)] = True
        for item in lifted:
            keep[self.index[item]] = True
        return torch.where(keep, scores, torch.tensor(float("-inf"), dtype=torch.float64))

    def _exclude(self, scores: Tensor, session: Sequence[str], kind: str) -> Tensor:
        if self.bundle.exclude_seen(kind):
            for item in self._known(session):
                scores[self.index[item]] = float("-inf")
        return scores

    def _top(self, scores: Tensor | None, k: int) -> Ranked | None:
        """The ``k`` best of ``scores``, highest first, ties by catalogue order; excluded items
        (-inf) are never answered."""
        if scores is None:
            return None
        order = np.argsort(-scores.numpy(), kind="stable")  # stable: equal scores keep catalogue order
        return [(self.item_ids[r], float(scores[r])) for r in order[:k] if scores[r] != float("-inf")]
