"""Train a :class:`~models.live.bundle.ModelBundle` from a graph store snapshot.

Three models, trained in order on the store as of ``now_ms`` (weights decayed to it):

1. **LightGCN** with BPR on the decayed user–item graph, normalised exactly as the refresh
   worker normalises it (:func:`models.incremental.normalised_adjacency` of a
   :class:`~models.incremental.graph.SymGraph`), so the trained ego embeddings propagate over
   the live graph the way they were trained.
2. **SR-GNN** over LightGCN's propagated item embeddings, kept frozen: only the gated GNN,
   attention and readout are learned, so at serving time the scorer can swap in the refresh
   worker's current item embeddings (new items included) without retraining.
3. The **social** model (:class:`models.social.SocialSessionRec` with no graph layers: session
   attention + attention over followees + fusion) over the same frozen user and item
   embeddings, when the store holds follows.

When the popularity prior is on (``prior_holdout``), the three models are first trained
without the most recent sessions, and the prior's weight is fitted on those, against a
popularity without their last clicks (:mod:`models.live.prior`); with ``prior_refit`` they
are then trained again, same seed, on all the data, and those are served with the fitted
weight, so the served models have seen the most recent sessions too.

Everything is deterministic for a seed; time is an argument.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from graph_store import GraphStore
from models.live.budget import Deadline
from models.live.train_inputs import SessionRow, TrainInputs, prior_holdout_size, train_inputs
from models.inductive import InductiveEgo, InductiveFitConfig, fit_inductive_ego
from models.incremental.local import normalised_adjacency
from models.incremental.graph import SymGraph
from models.lightgcn import LightGCN
from models.sampling import sample_bpr_triples
from models.social import FriendIndex, SessionBatch, SocialSessionRec
from models.training.srgnn import TrainConfig as SRGNNTrainConfig
from models.training.srgnn import fit as fit_srgnn
from models.srgnn import SRGNN, SessionExamples, collate_sessions
from models.training import Stopwatch
from models.live.bundle import ModelBundle, make_bundle_version
from models.live.prior import edge_log_popularity, fit_prior_weight, holdout_scores
from models.live.repeats import fit_exclude_seen
from models.live.transition_prior import fit_joint_prior_weights, last_transition_shares, transition_prior_rows


@dataclass(frozen=True)
class LiveTrainConfig:
    """Hyperparameters of one live training run (small: it runs beside the stream)."""

    dim: int = 32
    num_layers: int = 2
    lightgcn_epochs: int = 30
    lightgcn_lr: float = 5e-3
    lightgcn_reg: float = 1e-4
    batch_size: int = 2048
    srgnn_epochs: int = 3
    srgnn_lr: float = 3e-3
    social_epochs: int = 3
    social_lr: float = 3e-3
    session_batch: int = 256
    max_sessions: int = 20_000  # most recent sessions kept for the session models
    inductive_steps: int = 200  # fit of the new-node encoder (models.inductive); 0 = plain mean
    prior_holdout: float = 0.1  # recent sessions held out to fit the popularity prior's weight (0 = no prior)
    prior_holdout_min: int = 200  # held out when the share is fewer, up to a fifth of the sessions
    prior_refit: bool = True  # serve models retrained on all data (held-out ones only fit the prior)
    transition_successors: int = 50  # successors of a session's last item in the transition prior (0 = none)
    prior_holdout_cells: int = 50_000_000  # held-out sessions x items scored densely by the prior's fit, at most
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        if self.dim < 1 or self.num_layers < 0 or self.batch_size < 1 or self.session_batch < 1:
            raise ValueError("dim, batch_size and session_batch must be >= 1 and num_layers >= 0")
        if not 0 <= self.prior_holdout < 1:
            raise ValueError(f"LiveTrainConfig.prior_holdout must be in [0, 1), got {self.prior_holdout}")
        if not isinstance(self.prior_refit, bool):
            raise TypeError(f"LiveTrainConfig.prior_refit must be a bool, got {self.prior_refit!r}")
        for name in ("lightgcn_epochs", "srgnn_epochs", "social_epochs", "max_sessions", "inductive_steps",
                     "prior_holdout_min", "transition_successors", "prior_holdout_cells"):
            if getattr(self, name) < 0:
                raise ValueError(f"LiveTrainConfig.{name} must be >= 0, got {getattr(self, name)}")


class NotEnoughDataError(ValueError):
    """The store does not hold enough interactions to train on yet."""


def _csr(src: Tensor, dst: Tensor, n_src: int) -> tuple[Tensor, Tensor]:
    order = torch.argsort(src * (int(dst.max()) + 1 if dst.numel() else 1) + dst)
    counts = torch.bincount(src, minlength=n_src)
    indptr = torch.zeros(n_src + 1, dtype=torch.long)
    torch.cumsum(counts, 0, out=indptr[1:])
    return indptr, dst[order]


def train_lightgcn(edge_index: Tensor, weight: Tensor, n_users: int, n_items: int, cfg: LiveTrainConfig,
                   generator: torch.Generator,
                   deadline: Deadline = Deadline()) -> tuple[LightGCN, Tensor, dict[str, float]]:
    """BPR-train LightGCN on user→item ``edge_index [2, E]`` with decayed ``weight [E]``;
    returns the model and the normalised adjacency it was trained over. Epochs stop at
    ``deadline`` (after the first)."""
    model = LightGCN(n_users, n_items, cfg.dim, cfg.num_layers)
    adj = normalised_adjacency(SymGraph.from_bipartite(edge_index[0], edge_index[1], n_users, n_items, weight))
    indptr, items = _csr(edge_index[0], edge_index[1], n_users)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lightgcn_lr)
    n_edges, loss, epochs = edge_index.size(1), float("nan"), 0
    for epoch in range(cfg.lightgcn_epochs):
        if epoch and deadline.expired():
            break
        epochs += 1
        users, pos, neg = sample_bpr_triples(indptr, items, n_items, n_edges, generator)
        for s in range(0, n_edges, cfg.batch_size):
            batch_loss = model.recommendation_loss(adj, users[s:s + cfg.batch_size], pos[s:s + cfg.batch_size],
                                                   neg[s:s + cfg.batch_size], cfg.lightgcn_reg)
            optimizer.zero_grad()
            batch_loss.backward()
            optimizer.step()
            loss = batch_loss.item()
    return model, adj, {"lightgcn_loss": loss, "lightgcn_epochs": epochs}


def train_srgnn(table: Tensor, sessions: list[list[int]], cfg: LiveTrainConfig,
                rng: np.random.Generator, deadline: Deadline = Deadline()) -> tuple[SRGNN, float]:
    """SR-GNN over the frozen item ``table [I + 1, d]`` (row 0 padding), with the offline
    trainer (:func:`models.training.srgnn.fit`; Adam skips the frozen table, it gets no grad)."""
    model = SRGNN(table.size(0) - 1, table.size(1))
    model.embedding.weight.data.copy_(table)
    model.embedding.weight.requires_grad_(False)
    examples = SessionExamples.from_sessions(sessions)
    losses: list[float] = []
    if len(examples) and cfg.srgnn_epochs:
        config = SRGNNTrainConfig(epochs=cfg.srgnn_epochs, batch_size=cfg.session_batch, lr=cfg.srgnn_lr)
        losses = fit_srgnn(model, examples, config, rng=rng, device=torch.device("cpu"), show_progress=False,
                           watch=Stopwatch(), budget_seconds=deadline.seconds())
    model.eval()
    return model, losses[-1] if losses else float("nan")


def train_social(user_h: Tensor, item_table: Tensor, friends: FriendIndex, sessions: list[list[int]],
                 users: list[int], cfg: LiveTrainConfig, rng: np.random.Generator,
                 deadline: Deadline = Deadline()) -> tuple[SocialSessionRec, float]:
    """The social model's readout and friend attention over frozen ``user_h`` / ``item_table``."""
    model = SocialSessionRec(user_h.size(0), item_table.size(0) - 1, user_h.size(1), num_layers=0, dropout=0.0)
    prefixes, owners, targets = [], [], []
    for seq, user in zip(sessions, users):
        for k in range(1, len(seq)):
            prefixes.append(seq[:k])
            owners.append(user)
            targets.append(seq[k])
    optimizer = torch.optim.Adam([p for n, p in model.named_parameters() if not n.endswith("_emb.weight")],
                                 lr=cfg.social_lr)
    loss = float("nan")
    for epoch in range(cfg.social_epochs if targets else 0):
        if epoch and deadline.expired():
            break
        order = rng.permutation(len(targets))
        for start in range(0, len(order), cfg.session_batch):
            idx = order[start:start + cfg.session_batch]
            batch = SessionBatch.from_lists([owners[i] for i in idx], [prefixes[i] for i in idx])
            scores = model.score(user_h, item_table, batch, friends)
            batch_loss = model.recommendation_loss(scores, torch.tensor([targets[i] for i in idx]))
            optimizer.zero_grad()
            batch_loss.backward()
            optimizer.step()
            loss = batch_loss.item()
    model.eval()
    return model, loss


def friend_index(inputs: TrainInputs) -> FriendIndex:
    """Followees of every user of the inputs, from their uu edges (follower → followee)."""
    src, dst, weight = (torch.from_numpy(a) for a in inputs.uu)
    keep = weight > 0
    return FriendIndex.from_edge_index(torch.stack([dst[keep], src[keep]]), len(inputs.user_ids))


def fit_new_node_encoder(ego: Tensor, edge_index: Tensor, weight: Tensor, n_users: int,
                         cfg: LiveTrainConfig) -> tuple[InductiveEgo | None, dict[str, float]]:
    """The encoder that gives nodes appearing after this training their ego rows: fitted to
    predict every trained row from its neighbours' (user→item ``edge_index``, decayed
    ``weight``). None when the fit does not beat the plain mean on held-out nodes."""
    items = edge_index[1] + n_users
    both = torch.stack([torch.cat([edge_index[0], items]), torch.cat([items, edge_index[0]])])
    node_type = (torch.arange(ego.size(0)) >= n_users).long()
    encoder, info = fit_inductive_ego(ego, both, torch.cat([weight, weight]), node_type,
                                      InductiveFitConfig(steps=cfg.inductive_steps, seed=cfg.seed))
    return (encoder if info["used"] else None), info


def _without_pairs(edge_index: Tensor, weight: Tensor, pairs: list[tuple[int, int]],
                   n_items: int) -> tuple[Tensor, Tensor]:
    """``edge_index [2, E]`` / ``weight`` without the (user row, item row) ``pairs``."""
    if not pairs:
        return edge_index, weight
    drop = torch.tensor([u * n_items + i for u, i in pairs], dtype=torch.long)
    keep = ~torch.isin(edge_index[0] * n_items + edge_index[1], drop)
    return edge_index[:, keep], weight[keep]


@dataclass
class TrainedModels:
    """The models of one training run: LightGCN's ego rows and their propagation (``user_h
    [U, d]``, ``item_h [I, d]``, ``table [I + 1, d]`` with padding row 0), SR-GNN, the social
    model (None without follows) and the new-node encoder (None when not fitted or not used)."""

    ego: Tensor
    user_h: Tensor
    item_h: Tensor
    table: Tensor
    srgnn: SRGNN
    social: SocialSessionRec | None
    inductive: InductiveEgo | None
    info: dict


def train_models(edge_index: Tensor, weight: Tensor, n_users: int, n_items: int, sessions: list[list[int]],
                 session_users: list[int], friends: FriendIndex, cfg: LiveTrainConfig, *,
                 new_node_encoder: bool = True, deadline: Deadline = Deadline()) -> TrainedModels:
    """LightGCN on user→item ``edge_index [2, E]`` (decayed ``weight [E]``), then SR-GNN and the
    social model (when ``friends`` has followees) on ``sessions``, all seeded from ``cfg.seed``:
    the same inputs give the same models whatever ran before. Within ``deadline``: LightGCN gets
    60% of it, SR-GNN 60% of the rest, the social model what is left."""
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    lightgcn, adj, info = train_lightgcn(edge_index, weight, n_users, n_items, cfg, generator, deadline.share(0.6))
    with torch.no_grad():
        ego = lightgcn.embedding.weight.detach().clone()
        final = lightgcn.propagate(ego, adj)
    user_h, item_h = final[:n_users], final[n_users:]
    inductive = None
    if cfg.inductive_steps and new_node_encoder:
        inductive, info["inductive"] = fit_new_node_encoder(ego, edge_index, weight, n_users, cfg)
    table = torch.cat([torch.zeros(1, cfg.dim), item_h])
    srgnn, info["srgnn_loss"] = train_srgnn(table, sessions, cfg, rng, deadline.share(0.6))
    social = None
    if friends.followees.numel():
        social, info["social_loss"] = train_social(user_h, table, friends, sessions, session_users, cfg, rng,
                                                   deadline)
    return TrainedModels(ego, user_h, item_h, table, srgnn, social, inductive, info)


def fit_prior_weights(prior: Tensor, models: TrainedModels, friends: FriendIndex, held_out: list[list[int]],
                      held_users: list[int], transitions: Tensor | None = None) -> tuple[dict[str, float], float, dict]:
    """The popularity prior's weight per model (:mod:`models.live.prior`), fitted on the last
    click of each held-out session against ``prior [I]`` (log-popularity without those clicks;
    ``models`` not trained on them either), and the held-out MRR@20 of every weight tried;
    weights 0 when nothing was held out. With ``transitions [H, I]`` (the held-out sessions'
    transition prior, :mod:`models.live.transition_prior`) the next-item weight is fitted
    jointly with the transition prior's, returned second (0 without). Then, at those weights,
    whether each model's answers leave out the prefix's own items (:mod:`models.live.repeats`):
    ``fits["exclude_seen"]``, with both variants' MRR@20 in ``fits["exclude_seen_mrr@20"]``."""
    weights = {"next_item": 0.0, "social": 0.0}
    if not held_out:
        return weights, 0.0, {"held_out": 0}
    prefixes = [seq[:-1] for seq in held_out]
    seen = [[row - 1 for row in p] for p in prefixes]  # 1-based rows -> item columns
    targets = torch.tensor([seq[-1] - 1 for seq in held_out])
    srgnn, social, table, user_h, item_h = models.srgnn, models.social, models.table, models.user_h, models.item_h
    fits: dict = {"held_out": len(held_out), "exclude_seen": {}, "exclude_seen_mrr@20": {}}
    gamma = 0.0

    def next_scores(idx: list[int]) -> Tensor:
        return srgnn.session_embedding(collate_sessions([prefixes[i] for i in idx]), table) @ item_h.t()

    def social_scores(idx: list[int]) -> Tensor:
        batch = SessionBatch.from_lists([held_users[i] for i in idx], [prefixes[i] for i in idx])
        return social.query(user_h, table, batch, friends) @ item_h.t()

    def choose(kind: str, scores: Tensor, served) -> None:
        excluded, mrr = fit_exclude_seen(scores, seen, targets, served)
        fits["exclude_seen"][kind], fits["exclude_seen_mrr@20"][kind] = excluded, mrr

    scores = holdout_scores(next_scores, len(prefixes))
    if transitions is None:
        weights["next_item"], fits["next_item"] = fit_prior_weight(scores, prior, targets)
    else:
        weights["next_item"], gamma, fits["next_item"] = fit_joint_prior_weights(scores, prior, transitions, targets)
    beta = weights["next_item"]
    choose("next_item", scores, lambda s: s + beta * prior[None, :] + (gamma * transitions if gamma else 0.0))
    if social is not None:
        scores = holdout_scores(social_scores, len(prefixes))
        weights["social"], fits["social"] = fit_prior_weight(scores, prior, targets)
        beta_social = weights["social"]
        choose("social", scores, lambda s: s + beta_social * prior[None, :])
    return weights, gamma, fits


def held_out_transition_prior(inputs: TrainInputs, held: list[SessionRow], item_row: dict[str, int]) -> Tensor:
    """The transition prior each held-out click was predicted with: successors of the item
    before it, without any held-out session's last transition (the module docstring of
    :mod:`models.live.transition_prior`)."""
    without = last_transition_shares([(s.items, s.last_ts) for s in held], inputs.now_ms, inputs.half_life_ms)
    prev = [s.items[-2] for s in held]
    return transition_prior_rows([inputs.successors.get(p, []) for p in prev], item_row, len(inputs.item_ids),
                                 without, prev)


def train_bundle(store: GraphStore, now_ms: int, cfg: LiveTrainConfig = LiveTrainConfig()) -> ModelBundle:
    """Train on the store as of ``now_ms``: :func:`train_from_inputs` of everything it holds."""
    return train_from_inputs(train_inputs(store, now_ms, cfg), cfg)


def train_from_inputs(inputs: TrainInputs, cfg: LiveTrainConfig = LiveTrainConfig(),
                      deadline: Deadline = Deadline()) -> ModelBundle:
    """Train LightGCN, SR-GNN and the social model on ``inputs``, and fit the popularity
    prior's weight on held-out recent sessions (see the module docstring), within ``deadline``:
    the held-out fit gets half of it, and the models are refitted on all data only if what is
    left is at least what that fit took."""
    started = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        now_ms = inputs.now_ms
        edge_index = torch.stack([torch.from_numpy(inputs.ui[0]), torch.from_numpy(inputs.ui[1])])
        weight = torch.from_numpy(inputs.ui[2])
        if edge_index.size(1) < 2:
            raise NotEnoughDataError(f"the store holds {edge_index.size(1)} user-item edges; need at least 2 to train")
        user_ids, item_ids = inputs.user_ids, inputs.item_ids
        n_users, n_items = len(user_ids), len(item_ids)
        user_row = {u: i for i, u in enumerate(user_ids)}
        item_row = {it: i for i, it in enumerate(item_ids)}
        rows = inputs.sessions
        sessions = [[item_row[i] + 1 for i in s.items] for s in rows]  # SR-GNN's 1-based ids
        session_users = [user_row[s.user] for s in rows]
        friends = friend_index(inputs)
        # The held-out clicks must be unseen by every model the prior is fitted against, LightGCN
        # included (its embeddings would otherwise already hold those user-item edges), and by
        # the popularity it is fitted with.
        cut = len(sessions) - prior_holdout_size(len(sessions), cfg, n_items)
        held_out, held_users = sessions[cut:], session_users[cut:]
        refit = bool(held_out) and cfg.prior_refit
        train_edges, train_weight = _without_pairs(
            edge_index, weight, [(u, seq[-1] - 1) for seq, u in zip(held_out, held_users)], n_items)
        fit_deadline = deadline.share(0.5) if refit else deadline
        fitted = train_models(train_edges, train_weight, n_users, n_items, sessions[:cut], session_users[:cut],
                              friends, cfg, new_node_encoder=not refit, deadline=fit_deadline)
        transitions = None
        if held_out and cfg.transition_successors:
            transitions = held_out_transition_prior(inputs, rows[cut:], item_row)
        prior_weight, transition_weight, prior_fit = fit_prior_weights(
            edge_log_popularity(train_edges[1], train_weight, n_items), fitted, friends, held_out, held_users,
            transitions)
        del transitions
        served = fitted
        info: dict[str, Any] = {}
        fit_seconds = time.perf_counter() - started
        if refit and deadline.left() < fit_seconds:
            refit = False  # no time to train again: serve the models the prior was fitted on
        if refit:  # serve models that saw everything; the held-out ones only gave the weight
            info["prior_fit_seconds"] = fit_seconds
            served = train_models(edge_index, weight, n_users, n_items, sessions, session_users, friends, cfg,
                                  deadline=deadline)
        info.update(served.info)
        info.update(prior_weight=prior_weight, prior_refit=refit, train_seconds=time.perf_counter() - started,
                    exclude_seen=prior_fit.pop("exclude_seen", {}),
                    exclude_seen_fit=prior_fit.pop("exclude_seen_mrr@20", {}),
                    transition_weight={"next_item": transition_weight},
                    transition_successors=cfg.transition_successors,
                    edges=int(edge_index.size(1)), store_edges=inputs.store_ui_edges, sessions=len(sessions),
                    follows=int(friends.followees.numel()))
        info["prior_fit_mrr@20"] = prior_fit
        return ModelBundle(make_bundle_version(served.ego, now_ms), user_ids, item_ids, served.ego, cfg.num_layers,
                           served.srgnn, served.social, now_ms, info, served.inductive)
    finally:
        torch.set_num_threads(previous_threads)
