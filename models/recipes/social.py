"""``gnnrec train/eval --model social``: the social session recommender on SEFrame's Delicious.

Protocol (SEFrame, ``run.py`` + ``srs/utils/train_runner.py``): train on every prefix → next
item of the ``train.txt`` sessions with full softmax cross-entropy; after each epoch score
every prefix of the ``valid.txt`` sessions and stop when validation NDCG@20 has not improved
for ``patience`` epochs; report the best-validation weights on every prefix → next item of the
``test.txt`` sessions (25,258 examples), ranked against all 5,793 items with no exclusions.
The graph (clicks, transitions, follows) is built from ``train.txt`` and ``edges.txt`` only.

``out`` (train) is a checkpoint file when it ends in ``.pt``, else a folder that receives
``social-<dataset>.pt``.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.checkpoint import load_checkpoint, save_checkpoint
from models.data.delicious import load_delicious, load_delicious_valid
from models.data.sessions import SessionSplit
from models.metrics import hit_rate_at_k, mrr_at_k, ndcg_at_k_single
from models.report import EvalReport
from models.social import FOLLOWED_BY, EdgeType, FriendIndex, SessionBatch, SocialSessionRec, build_edge_index_dict
from models.training import (RunningMean, Stopwatch, count_parameters, limit_threads, minibatch_indices,
                             num_batches, progress as progress_bar, seed_everything)

DATASETS = ("delicious",)
LOG = logging.getLogger("models.train")
MODEL = "social"
PROTOCOL = ("SEFrame (Chen & Wong, WSDM 2021) Delicious: train on every prefix->next item of train.txt; "
            "early stopping on valid.txt prefixes (NDCG@20); test = every prefix->next item of test.txt "
            "sessions (25,258 examples), full ranking over all 5,793 items, no exclusion of prefix items; "
            "graph from train.txt clicks/transitions + edges.txt")


@dataclass(frozen=True)
class TrainConfig:
    """Model hyperparameters plus the optimisation settings of one run."""

    embedding_dim: int = 64
    num_layers: int = 1
    heads: int = 1
    dropout: float = 0.2
    use_social: bool = True
    score_scale: float = 0.0
    loss: str = "ce"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 1024
    eval_batch_size: int = 2048
    max_epochs: int = 30
    patience: int = 2
    threads: int = 1

    def build_model(self, n_users: int, n_items: int) -> SocialSessionRec:
        return SocialSessionRec(n_users, n_items, embedding_dim=self.embedding_dim, num_layers=self.num_layers,
                                heads=self.heads, dropout=self.dropout, use_social=self.use_social,
                                score_scale=self.score_scale, loss=self.loss)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Examples:
    """(user, prefix) → target examples with prefixes stored as slices of one flat item tensor."""

    users: Tensor
    flat: Tensor
    starts: Tensor
    lengths: Tensor
    targets: Tensor

    def __len__(self) -> int:
        return self.targets.numel()

    @classmethod
    def from_sessions(cls, sessions: list[list[int]], users: list[int]) -> Examples:
        """Every proper prefix of every session (SR-GNN/SEFrame augmentation)."""
        flat = torch.tensor([i for s in sessions for i in s], dtype=torch.long)
        lens = torch.tensor([len(s) for s in sessions], dtype=torch.long)
        sess_start = lens.cumsum(0) - lens
        n_prefixes = lens - 1
        owner = torch.repeat_interleave(torch.arange(len(sessions)), n_prefixes)
        k = torch.arange(owner.numel()) - (n_prefixes.cumsum(0) - n_prefixes)[owner] + 1
        return cls(torch.tensor(users)[owner], flat, sess_start[owner], k, flat[sess_start[owner] + k])

    @classmethod
    def from_prefixes(cls, prefixes: list[list[int]], targets: list[int], users: list[int]) -> Examples:
        lens = torch.tensor([len(p) for p in prefixes], dtype=torch.long)
        flat = torch.tensor([i for p in prefixes for i in p], dtype=torch.long)
        return cls(torch.tensor(users), flat, lens.cumsum(0) - lens, lens, torch.tensor(targets))

    def batch(self, idx: Tensor) -> tuple[SessionBatch, Tensor]:
        batch = SessionBatch.from_ragged(self.users[idx], self.flat, self.starts[idx], self.lengths[idx])
        return batch, self.targets[idx]

    def to(self, device: torch.device | str) -> Examples:
        return Examples(*(t.to(device) for t in (self.users, self.flat, self.starts, self.lengths, self.targets)))

    def subset(self, index: slice | Tensor) -> Examples:
        """The examples at ``index`` (the flat item tensor is shared, not copied)."""
        return replace(self, users=self.users[index], starts=self.starts[index], lengths=self.lengths[index],
                       targets=self.targets[index])


@dataclass(frozen=True)
class Graph:
    """The training graph and the followee lists the friend attention reads."""

    edges: dict[EdgeType, Tensor]
    friends: FriendIndex

    @classmethod
    def from_split(cls, split: SessionSplit) -> Graph:
        if split.train_users is None:
            raise ValueError(f"{split.name} has no users; the social model needs a dataset with users")
        edges = build_edge_index_dict(split.n_users, split.train_sessions, split.train_users, split.social_edges)
        return cls(edges, FriendIndex.from_edge_index(edges[FOLLOWED_BY], split.n_users))

    def to(self, device: torch.device | str) -> Graph:
        return Graph({k: v.to(device) for k, v in self.edges.items()},
                     FriendIndex(ptr=self.friends.ptr.to(device), followees=self.friends.followees.to(device)))


@dataclass
class FitResult:
    best_state: dict[str, Tensor]
    best_epoch: int
    epochs_run: int
    history: list[dict[str, float]]
    stopwatch: Stopwatch


@torch.no_grad()
def evaluate_examples(model: SocialSessionRec, graph: Graph, examples: Examples, *, batch_size: int = 2048,
                      ks: tuple[int, ...] = (10, 20)) -> dict[str, float]:
    """HR/NDCG/MRR@k (fractions) over ``examples``, graph embeddings computed once."""
    model.eval()
    user_h, item_h = model.get_embedding(graph.edges)
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("hr", "ndcg", "mrr")}
    for idx in minibatch_indices(len(examples), batch_size):
        batch, targets = examples.batch(torch.from_numpy(idx).to(examples.targets.device))
        scores = model.score(user_h, item_h, batch, graph.friends)
        for k in ks:
            sums[f"hr@{k}"] += hit_rate_at_k(scores, targets, k).sum().item()
            sums[f"ndcg@{k}"] += ndcg_at_k_single(scores, targets, k).sum().item()
            sums[f"mrr@{k}"] += mrr_at_k(scores, targets, k).sum().item()
    return {name: total / max(len(examples), 1) for name, total in sums.items()}


def train_epoch(model: SocialSessionRec, graph: Graph, train: Examples, optimizer: torch.optim.Optimizer,
                batch_size: int, rng: np.random.Generator, show_progress: bool, desc: str) -> float:
    """One pass over shuffled ``train``; returns the mean loss."""
    model.train()
    loss_mean = RunningMean()
    batches = progress_bar(minibatch_indices(len(train), batch_size, rng=rng), enabled=show_progress,
                           total=num_batches(len(train), batch_size), desc=desc)
    for idx in batches:
        batch, targets = train.batch(torch.from_numpy(idx).to(train.targets.device))
        loss = model.recommendation_loss(model(graph.edges, batch, graph.friends), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_mean.update(loss.item(), len(idx))
    return loss_mean.value


def fit(model: SocialSessionRec, graph: Graph, train: Examples, valid: Examples, cfg: TrainConfig, *,
        seed: int, show_progress: bool = False,
        on_epoch: Callable[[dict[str, float]], None] | None = None) -> FitResult:
    """Train with early stopping on validation NDCG@20; returns the best weights and the history."""
    rng = seed_everything(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    watch, history = Stopwatch(), []
    best, best_epoch, best_state, bad = -1.0, 0, _copy_state(model), 0
    for epoch in range(1, cfg.max_epochs + 1):
        with watch.time("epoch"):
            loss = train_epoch(model, graph, train, optimizer, cfg.batch_size, rng, show_progress,
                               f"social epoch {epoch}")
        with watch.time("valid"):
            metrics = evaluate_examples(model, graph, valid, batch_size=cfg.eval_batch_size)
        history.append({"epoch": epoch, "loss": loss} | {f"valid_{k}": v for k, v in metrics.items()})
        if on_epoch is not None:
            on_epoch(history[-1])
        if metrics["ndcg@20"] > best:
            best, best_epoch, best_state, bad = metrics["ndcg@20"], epoch, _copy_state(model), 0
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    return FitResult(best_state, best_epoch, len(history), history, watch)


def _copy_state(model: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _checkpoint_path(out: Path, dataset: str) -> Path:
    return out if out.suffix == ".pt" else out / f"{MODEL}-{dataset}.pt"


def _check(dataset: str, device: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"social runs on {DATASETS}, not {dataset!r}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: pass --device cpu or --device cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device here; pass --device cpu")


def _report(dataset: str, metrics: dict[str, float], info: dict[str, Any], params: int,
            model: str = MODEL, device: str = "cpu") -> EvalReport:
    extra = {k: v for k, v in info.items() if k not in ("train_seconds", "epochs")}
    return EvalReport(model=model, dataset=dataset, metrics=metrics, train_seconds=info["train_seconds"],
                      epochs=info["epochs"], params=params, device=device, extra=extra | {"protocol": PROTOCOL})


def run(dataset: str, cfg: TrainConfig, *, seed: int, show_progress: bool,
        root: Path | None = None, device: str = "cpu") -> tuple[SocialSessionRec, dict[str, float], dict[str, Any]]:
    """Load, train with early stopping, restore the best weights, score the test examples."""
    limit_threads(cfg.threads)
    split, valid_split = load_delicious(root), load_delicious_valid(root)
    graph = Graph.from_split(split).to(device)
    train_ex = Examples.from_sessions(split.train_sessions, split.train_users or []).to(device)
    valid_ex = Examples.from_prefixes(valid_split.test_prefixes, valid_split.test_targets,
                                      valid_split.test_users or []).to(device)
    test_ex = Examples.from_prefixes(split.test_prefixes, split.test_targets, split.test_users or []).to(device)
    seed_everything(seed)
    model = cfg.build_model(split.n_users, split.n_items).to(device)
    start = time.perf_counter()
    result = fit(model, graph, train_ex, valid_ex, cfg, seed=seed, show_progress=show_progress,
                 on_epoch=lambda h: LOG.info(json.dumps({"model": MODEL, **h})))
    train_seconds = time.perf_counter() - start
    model.load_state_dict(result.best_state)
    metrics = evaluate_examples(model, graph, test_ex, batch_size=cfg.eval_batch_size)
    info = {"train_seconds": train_seconds, "epochs": result.epochs_run, "best_epoch": result.best_epoch,
            "sec_per_epoch": result.stopwatch.mean("epoch"), "sec_per_valid": result.stopwatch.mean("valid"),
            "seed": seed, "hyperparameters": asdict(cfg), "history": result.history,
            "n_train_examples": len(train_ex), "n_valid_examples": len(valid_ex), "n_test_examples": len(test_ex)}
    return model, metrics, info


def train(dataset: str, *, epochs: int | None, device: str, out: Path, seed: int,
          progress: bool) -> tuple[Path, EvalReport]:
    """Train, save a versioned checkpoint, return its path and the test report."""
    _check(dataset, device)
    cfg = TrainConfig() if epochs is None else TrainConfig(max_epochs=epochs)
    model, metrics, info = run(dataset, cfg, seed=seed, show_progress=progress, device=device)
    path = _checkpoint_path(out, dataset)
    version = save_checkpoint(path, model=MODEL, dataset=dataset, hparams=model.hparams(),
                              state_dict={k: v.cpu() for k, v in model.state_dict().items()},
                              extra=info | {"metrics": metrics, "device": device})
    report = _report(dataset, metrics, info | {"model_version": version}, count_parameters(model), device=device)
    return path, report


def evaluate(dataset: str, *, checkpoint: Path | None, device: str, epochs: int | None, seed: int,
             progress: bool) -> EvalReport:
    """Score a saved checkpoint on the test examples (or train one in memory when none is given)."""
    _check(dataset, device)
    if checkpoint is None:
        cfg = TrainConfig() if epochs is None else TrainConfig(max_epochs=epochs)
        model, metrics, info = run(dataset, cfg, seed=seed, show_progress=progress, device=device)
        return _report(dataset, metrics, info, count_parameters(model), device=device)
    payload = load_checkpoint(checkpoint, expect_model=MODEL)
    if payload["dataset"] != dataset:
        raise ValueError(f"{checkpoint} was trained on {payload['dataset']!r}, not {dataset!r}")
    info = dict(payload["extra"])
    limit_threads(info.get("hyperparameters", {}).get("threads", 1))
    model = SocialSessionRec(**payload["hparams"])
    model.load_state_dict(payload["state_dict"])
    model.to(device)
    split = load_delicious()
    test_ex = Examples.from_prefixes(split.test_prefixes, split.test_targets, split.test_users or []).to(device)
    metrics = evaluate_examples(model, Graph.from_split(split).to(device), test_ex)
    info.pop("metrics", None)
    return _report(dataset, metrics, info | {"model_version": payload["model_version"],
                                             "checkpoint": str(checkpoint)}, count_parameters(model), device=device)


def evaluate_without_friends(dataset: str, *, epochs: int | None, seed: int, progress: bool,
                             device: str = "cpu") -> EvalReport:
    """The no-social ablation: same model, data and budget, without follow edges or friend attention.

    Reported as model ``social-nofriends`` so it sits beside ``social`` in the results table.
    """
    _check(dataset, device)
    cfg = TrainConfig(use_social=False) if epochs is None else TrainConfig(use_social=False, max_epochs=epochs)
    model, metrics, info = run(dataset, cfg, seed=seed, show_progress=progress, device=device)
    return _report(dataset, metrics, info, count_parameters(model), model=f"{MODEL}-nofriends", device=device)
