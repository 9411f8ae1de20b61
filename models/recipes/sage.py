"""``gnnrec train/eval --model sage``: the inductive PinSAGE-style encoder on Gowalla.

Datasets:

* ``gowalla`` — transductive: train on the whole training graph, full-ranking evaluation as
  for LightGCN (Recall/NDCG/HR@20 over all items, training items excluded).
* ``gowalla_inductive`` — a fraction of users and of items (``HOLDOUT_FRACTION`` each, drawn
  with the seed) is removed from the graph before training: no edge touching them, no SVD
  basis row. Afterwards every training edge is "observed", the held-out nodes are embedded
  from their neighbourhoods, and we report (a) held-out users ranked over all items and
  (b) all users ranked over the held-out items only, each next to popularity on the same task.

Training: PinSAGE max-margin loss on cosine scores, one uniform negative per positive edge,
plus curriculum hard negatives from epoch 2: ``epoch - 1`` of them (at most ``max_hard``)
drawn from the items the current model ranks in ``[hi/2, hi)`` for that user, with ``hi``
halving each epoch down to ``hard_hi_min``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from models.checkpoint import load_checkpoint, save_checkpoint
from models.data.gowalla import CFSplit, evaluate_full_ranking, load_gowalla
from models.report import EvalReport
from models.sage import Aggr, SAGERecommender, SageGraph, SpectralBasis, build_sage_graph
from models.sampling import sample_rank_band, uniform_negatives
from models.training import RunningMean, count_parameters, limit_threads, progress as progress_bar, seed_everything

DATASETS = ("gowalla", "gowalla_inductive")
MODEL = "sage"
HOLDOUT_FRACTION = 0.1


@dataclass(frozen=True)
class SageConfig:
    """Model, sampler and optimisation settings of one run."""

    rank: int = 64
    hidden_channels: int = 64
    out_channels: int = 64
    num_layers: int = 2
    aggr: Aggr = "pool"
    margin: float = 0.1
    num_walks: int = 20
    walk_length: int = 3
    top_t: int = 10
    lr: float = 5e-3
    batch_size: int = 1024
    epochs: int = 10
    hard_hi0: int = 400
    hard_hi_min: int = 50
    max_hard: int = 3
    hard_pool: int = 32
    threads: int = 1

    def build_model(self) -> SAGERecommender:
        return SAGERecommender(self.rank + 1, self.hidden_channels, self.out_channels, self.num_layers,
                               aggr=self.aggr, margin=self.margin)

    def graph(self, edge_index: Tensor, n_users: int, n_items: int, basis: SpectralBasis, seed: int) -> SageGraph:
        return build_sage_graph(edge_index, n_users, n_items, basis, num_walks=self.num_walks,
                                walk_length=self.walk_length, top_t=self.top_t,
                                generator=torch.Generator().manual_seed(seed))

    def hard_band(self, epoch: int) -> tuple[int, int, int]:
        """``(lo, hi, count)`` of hard negatives for ``epoch`` (count 0 in epoch 1)."""
        if epoch < 2:
            return 0, 0, 0
        hi = max(self.hard_hi0 >> (epoch - 2), self.hard_hi_min)
        return hi // 2, hi, min(epoch - 1, self.max_hard)


@dataclass(frozen=True, eq=False)
class Holdout:
    users: Tensor
    items: Tensor
    train_edge_index: Tensor  # training edges touching neither a held-out user nor item


def make_holdout(split: CFSplit, fraction: float, seed: int) -> Holdout:
    g = torch.Generator().manual_seed(seed)
    users = torch.randperm(split.n_users, generator=g)[:int(fraction * split.n_users)].sort().values
    items = torch.randperm(split.n_items, generator=g)[:int(fraction * split.n_items)].sort().values
    ei = split.train_edge_index
    out_u = torch.zeros(split.n_users, dtype=torch.bool).index_fill_(0, users, True)
    out_i = torch.zeros(split.n_items, dtype=torch.bool).index_fill_(0, items, True)
    return Holdout(users, items, ei[:, ~(out_u[ei[0]] | out_i[ei[1]])])


def hard_negative_pool(model: SAGERecommender, graph: SageGraph, indptr: Tensor, items: Tensor,
                       candidates: Tensor, lo: int, hi: int, size: int, generator: torch.Generator,
                       batch_size: int = 2048) -> Tensor:
    """``[n_users, size]`` item ids ranked ``lo..hi-1`` among ``candidates`` for each user by the
    current model, the user's training items excluded."""
    model.eval()
    with torch.no_grad():
        emb = model.get_embedding(graph)
        pools = []
        for s in range(0, graph.n_users, batch_size):
            users = torch.arange(s, min(s + batch_size, graph.n_users))
            scores = torch.full((users.numel(), graph.n_items), float("-inf"))
            scores[:, candidates] = model.score(emb, users, candidates, n_users=graph.n_users)
            counts = indptr[users + 1] - indptr[users]
            rows = torch.repeat_interleave(torch.arange(users.numel()), counts)
            offs = torch.arange(int(counts.sum())) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
            scores[rows, items[indptr[users][rows] + offs]] = float("-inf")
            pools.append(sample_rank_band(scores, lo, hi, size, generator))
    model.train()
    return torch.cat(pools)


def fit_sage(model: SAGERecommender, graph: SageGraph, train_edge_index: Tensor, cfg: SageConfig, *,
             seed: int, show_progress: bool = False) -> tuple[list[dict[str, float]], float]:
    """Train on the user→item edges ``[2, E]`` of ``graph``; returns per-epoch records and seconds."""
    g = torch.Generator().manual_seed(seed)
    n_users, n_items = graph.n_users, graph.n_items
    counts = torch.bincount(train_edge_index[0], minlength=n_users)
    indptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    order = torch.argsort(train_edge_index[0] * n_items + train_edge_index[1])
    items = train_edge_index[1][order]
    candidates = torch.nonzero(torch.bincount(train_edge_index[1], minlength=n_items) > 0).view(-1)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    history, train_s = [], 0.0
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        lo, hi, n_hard = cfg.hard_band(epoch)
        hi = min(hi, candidates.numel())
        pool = (hard_negative_pool(model, graph, indptr, items, candidates, min(lo, hi - 1), hi, cfg.hard_pool, g)
                if n_hard else None)
        perm = torch.randperm(train_edge_index.size(1), generator=g)
        loss_mean = RunningMean()
        for s in progress_bar(range(0, perm.numel(), cfg.batch_size), enabled=show_progress,
                              total=-(-perm.numel() // cfg.batch_size), desc=f"epoch {epoch}/{cfg.epochs}"):
            u, p = train_edge_index[:, perm[s:s + cfg.batch_size]]
            neg = uniform_negatives(indptr, items, u, n_items, g, candidates=candidates)[:, None]
            if pool is not None:
                neg = torch.cat([neg, pool[u][:, torch.randint(cfg.hard_pool, (n_hard,), generator=g)]], dim=1)
            loss = model.recommendation_loss(graph, u, p, neg)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_mean.update(loss.item(), u.numel())
        train_s += time.perf_counter() - start
        history.append({"epoch": epoch, "loss": loss_mean.value, "hard_negatives": n_hard, "hard_band_hi": hi,
                        "train_seconds": train_s})
    return history, train_s


def embed_and_evaluate(model: SAGERecommender, graph: SageGraph, split: CFSplit,
                       users: Tensor | None = None) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        emb = model.get_embedding(graph)
        return evaluate_full_ranking(split, lambda u: model.score(emb, u, n_users=split.n_users), users=users)


def evaluate_inductive(model: SAGERecommender, basis: SpectralBasis, split: CFSplit, holdout: Holdout,
                       cfg: SageConfig, seed: int) -> dict[str, float]:
    """Embed held-out nodes from the full training graph; metrics next to popularity."""
    graph = cfg.graph(split.train_edge_index, split.n_users, split.n_items, basis, seed + 1)
    model.eval()
    with torch.no_grad():
        emb = model.get_embedding(graph)
    pop = split.item_popularity()
    out: dict[str, float] = {}
    item_split = split.restrict_items(holdout.items)
    for prefix, sp, users, scorer, pop_scores in (
        ("new_users", split, holdout.users, lambda u: model.score(emb, u, n_users=split.n_users), pop),
        ("new_items", item_split, None, lambda u: model.score(emb, u, holdout.items, n_users=split.n_users),
         pop[holdout.items]),
    ):
        for name, fn in ((prefix, scorer), (f"{prefix}_pop", lambda u, s=pop_scores: s.expand(u.numel(), -1))):
            for key, value in evaluate_full_ranking(sp, fn, users=users).items():
                out[f"{name}/{key}"] = value
    return out


def run(dataset: str, cfg: SageConfig, *, seed: int, progress: bool, path: Path | None,
        split: CFSplit | None = None) -> EvalReport:
    """Train and evaluate; ``split`` replaces the loaded Gowalla split (e.g. a slice in tests)."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset {dataset!r} is not supported by sage; choose one of {DATASETS}")
    limit_threads(cfg.threads)
    seed_everything(seed)
    split = load_gowalla() if split is None else split
    holdout = make_holdout(split, HOLDOUT_FRACTION, seed) if dataset == "gowalla_inductive" else None
    train_edges = holdout.train_edge_index if holdout is not None else split.train_edge_index
    basis = SpectralBasis.fit(train_edges, split.n_users, split.n_items, cfg.rank, seed)
    graph = cfg.graph(train_edges, split.n_users, split.n_items, basis, seed)
    model = cfg.build_model()
    history, train_s = fit_sage(model, graph, train_edges, cfg, seed=seed, show_progress=progress)
    if path is not None:
        save_checkpoint(path, model=MODEL, dataset=dataset, hparams=model.hparams(), state_dict=model.state_dict(),
                        extra={"epochs": cfg.epochs, "seed": seed, "config": asdict(cfg), "train_seconds": train_s,
                               "basis": {k: getattr(basis, k) for k in ("user_basis", "item_basis", "user_scale",
                                                                        "item_scale")}})
    return _report(model, basis, split, holdout, cfg, dataset, seed, train_s, history)


def _report(model: SAGERecommender, basis: SpectralBasis, split: CFSplit, holdout: Holdout | None, cfg: SageConfig,
            dataset: str, seed: int, train_s: float, history: list[dict[str, float]]) -> EvalReport:
    if holdout is None:
        graph = cfg.graph(split.train_edge_index, split.n_users, split.n_items, basis, seed)
        metrics = embed_and_evaluate(model, graph, split)
    else:
        metrics = evaluate_inductive(model, basis, split, holdout, cfg, seed)
    return EvalReport(model=MODEL, dataset=dataset, metrics=metrics, train_seconds=train_s, epochs=cfg.epochs,
                      params=count_parameters(model), device="cpu",
                      extra={"sec_per_epoch": train_s / cfg.epochs if cfg.epochs else None, "seed": seed,
                             "hparams": model.hparams(), "config": asdict(cfg), "history": history,
                             "holdout_fraction": HOLDOUT_FRACTION if holdout is not None else 0.0})


def train(dataset: str, *, epochs: int | None, device: str, out: Path, seed: int,
          progress: bool) -> tuple[Path, EvalReport]:
    if device != "cpu":
        raise ValueError("sage runs on cpu only (its samplers are CPU tensor code); pass --device cpu")
    cfg = SageConfig() if epochs is None else replace(SageConfig(), epochs=epochs)
    path = out if out.suffix == ".pt" else out / f"{MODEL}-{dataset}.pt"
    return path, run(dataset, cfg, seed=seed, progress=progress, path=path)


def evaluate(dataset: str, *, checkpoint: Path | None, device: str, epochs: int | None, seed: int,
             progress: bool) -> EvalReport:
    """Evaluate a checkpoint (or, without one, train ``epochs`` epochs in memory first)."""
    if checkpoint is None:
        cfg = SageConfig() if epochs is None else replace(SageConfig(), epochs=epochs)
        return run(dataset, cfg, seed=seed, progress=progress, path=None)
    payload = load_checkpoint(checkpoint, expect_model=MODEL)
    if payload["dataset"] != dataset:
        raise ValueError(f"{checkpoint} was trained on {payload['dataset']!r}, not {dataset!r}")
    model, basis, cfg, extra = restore(payload)
    limit_threads(cfg.threads)
    split = load_gowalla()
    train_seed = int(extra["seed"])
    holdout = make_holdout(split, HOLDOUT_FRACTION, train_seed) if dataset == "gowalla_inductive" else None
    return _report(model, basis, split, holdout, cfg, dataset, train_seed, float(extra["train_seconds"]), [])


def restore(payload: dict) -> tuple[SAGERecommender, SpectralBasis, SageConfig, dict]:
    """Model (eval mode), feature basis, config and extra of a loaded sage checkpoint."""
    extra = payload["extra"]
    cfg = SageConfig(**extra["config"])
    model = cfg.build_model()
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, SpectralBasis(**extra["basis"]), cfg, extra
