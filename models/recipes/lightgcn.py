"""``gnnrec train/eval --model lightgcn``: LightGCN on the LightGCN/NGCF Gowalla split.

Protocol (LightGCN-PyTorch, ``Procedure.py``): each epoch draws as many ``(user, pos, neg)``
triples as there are training interactions (user uniform, positive uniform among the user's
items, negative uniform among the rest), BPR + 1e-4 L2 on ego embeddings, Adam lr 1e-3,
batch 2048, embedding 64, 3 layers; the reference trains 1,000 epochs. Evaluation ranks all
40,981 items for every user, training items excluded: Recall@20, NDCG@20, HR@20.

The BPR training loop here (:func:`fit_bpr`) also drives NGCF. ``out`` (train) is a
checkpoint file when it ends in ``.pt``, else a folder that receives ``<model>-<dataset>.pt``.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from models.checkpoint import load_checkpoint, save_checkpoint
from models.data.gowalla import CFSplit, evaluate_full_ranking, load_gowalla
from models.lightgcn import LightGCN
from models.report import EvalReport
from models.sampling import sample_bpr_triples
from models.training import (count_parameters, limit_threads, num_batches, progress as progress_bar,
                             seed_everything)

DATASETS = ("gowalla",)
LOG = logging.getLogger("models.train")
MODEL = "lightgcn"
PROTOCOL = ("LightGCN/NGCF Gowalla split (29,858 users, 40,981 items, 810,128 train / 217,242 test); "
            "full ranking over all items with training items excluded; Recall/NDCG/HR@20 averaged over users")


class BPRModel(Protocol):
    """What :func:`fit_bpr` needs from a model (LightGCN and NGCF)."""

    def adjacency(self, train_edge_index: Tensor) -> Tensor: ...
    def recommendation_loss(self, adj: Tensor, users: Tensor, pos: Tensor, neg: Tensor, reg_weight: float) -> Tensor: ...
    def get_embedding(self, edge_index: Tensor, nodes: Tensor | None = None) -> Tensor: ...
    def score(self, emb: Tensor, users: Tensor, items: Tensor | None = None) -> Tensor: ...


@dataclass(frozen=True)
class BPRConfig:
    """Optimisation settings of one BPR run (model hyperparameters live in the model)."""

    lr: float = 1e-3
    batch_size: int = 2048
    reg_weight: float = 1e-4
    epochs: int = 1000
    eval_batch_size: int = 2048
    threads: int = 1
    max_train_seconds: float | None = None  # stop after the epoch that crosses this budget


def load_dataset(dataset: str, root: Path | None = None) -> CFSplit:
    if dataset != "gowalla":
        raise ValueError(f"dataset {dataset!r} is not supported here; choose one of {DATASETS}")
    return load_gowalla(root)


def eval_epochs(total: int) -> set[int]:
    """Epochs after which :func:`fit_bpr` evaluates: 1, 2, 4, 8, ... and the last one."""
    out, e = {total}, 1
    while e < total:
        out.add(e)
        e *= 2
    return out


def evaluate_bpr_model(model: BPRModel, adj: Tensor, split: CFSplit, *, batch_size: int = 2048) -> dict[str, float]:
    """Full-ranking metrics of a trained model: one propagation, then batched scoring."""
    was_training = getattr(model, "training", False)
    model.eval()  # type: ignore[attr-defined]
    with torch.no_grad():
        emb = model.get_embedding(adj)
        metrics = evaluate_full_ranking(split, lambda users: model.score(emb, users.to(emb.device)).cpu(),
                                        batch_size=batch_size)
    model.train(was_training)  # type: ignore[attr-defined]
    return metrics


def fit_bpr(model: BPRModel, split: CFSplit, cfg: BPRConfig, *, seed: int, device: str = "cpu",
            show_progress: bool = False, eval_at: set[int] | None = None,
            on_eval: Callable[[int, dict[str, float]], None] | None = None) -> tuple[list[dict[str, float]], float]:
    """Train ``model`` with BPR for ``cfg.epochs`` epochs of ``split.n_train`` sampled triples.

    After each epoch in ``eval_at`` the full-ranking metrics are computed and appended to the
    returned history (with epoch, mean loss and training seconds so far); ``on_eval(epoch,
    record)`` is called then (e.g. to checkpoint). With ``cfg.max_train_seconds`` training
    stops (and evaluates) after the first epoch that exhausts the budget; ``history[-1]
    ["epoch"]`` is then the number of epochs actually run. Returns ``(history,
    train_seconds)``; the training seconds exclude evaluation time.
    """
    if cfg.epochs < 1:
        raise ValueError(f"fit_bpr: epochs must be >= 1, got {cfg.epochs}")
    generator = torch.Generator().manual_seed(seed)
    adj = model.adjacency(split.train_edge_index).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)  # type: ignore[attr-defined]
    history: list[dict[str, float]] = []
    train_s = 0.0
    model.train()  # type: ignore[attr-defined]
    items = split.train_edge_index[1]

    def sample() -> tuple[Tensor, ...]:
        triples = sample_bpr_triples(split.train_indptr, items, split.n_items, split.n_train, generator)
        return tuple(t.to(device) for t in triples)

    # On an accelerator the next epoch's triples are drawn on a CPU thread while this epoch trains
    # (torch releases the GIL); the generator is still used strictly in epoch order.
    pool = ThreadPoolExecutor(max_workers=1) if torch.device(device).type != "cpu" else None
    pending = pool.submit(sample) if pool is not None else None
    try:
        for epoch in range(1, cfg.epochs + 1):
            start = time.perf_counter()
            users, pos, neg = pending.result() if pending is not None else sample()
            if pool is not None and epoch < cfg.epochs:
                pending = pool.submit(sample)
            # summed on the device: a .item() per batch would stall the GPU queue
            loss_sum = torch.zeros((), device=device)
            steps = range(0, split.n_train, cfg.batch_size)
            for s in progress_bar(steps, enabled=show_progress, total=num_batches(split.n_train, cfg.batch_size),
                                  desc=f"epoch {epoch}/{cfg.epochs}"):
                u, p, n = (t[s:s + cfg.batch_size] for t in (users, pos, neg))
                loss = model.recommendation_loss(adj, u, p, n, cfg.reg_weight)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach() * u.numel()
            loss_mean = float(loss_sum) / split.n_train
            train_s += time.perf_counter() - start
            out_of_time = cfg.max_train_seconds is not None and train_s >= cfg.max_train_seconds
            if eval_at is not None and (epoch in eval_at or out_of_time):
                record = {"epoch": epoch, "loss": loss_mean, "train_seconds": train_s,
                          **evaluate_bpr_model(model, adj, split, batch_size=cfg.eval_batch_size)}
                history.append(record)
                if on_eval is not None:
                    on_eval(epoch, record)
            if out_of_time:
                break
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return history, train_s


def checkpoint_path(out: Path, dataset: str, model: str = MODEL) -> Path:
    return out if out.suffix == ".pt" else out / f"{model}-{dataset}.pt"


def report(model: torch.nn.Module, dataset: str, metrics: dict[str, float], *, epochs: int, train_s: float,
           device: str, seed: int, cfg: BPRConfig, history: list[dict[str, float]], name: str = MODEL,
           extra: dict[str, Any] | None = None) -> EvalReport:
    metric_keys = ("recall@20", "ndcg@20", "hr@20")
    return EvalReport(
        model=name, dataset=dataset, metrics={k: metrics[k] for k in metric_keys}, train_seconds=train_s,
        epochs=epochs, params=count_parameters(model), device=device,
        extra={"sec_per_epoch": train_s / epochs if epochs else None, "seed": seed, "protocol": PROTOCOL,
               "hparams": model.hparams(), "optim": asdict(cfg), "history": history,  # type: ignore[operator]
               **(extra or {})})


def run_bpr(name: str, dataset: str, build: Callable[[CFSplit], torch.nn.Module], cfg: BPRConfig, *,
            device: str, seed: int, progress: bool, path: Path | None) -> EvalReport:
    """Train ``build(split)`` with :func:`fit_bpr`; with a ``path``, checkpoint at every evaluation
    point (epochs 1, 2, 4, ... and the last); return the final report."""
    limit_threads(cfg.threads)
    seed_everything(seed)
    split = load_dataset(dataset)
    model = build(split).to(device)

    def save(epoch: int, record: dict[str, float]) -> None:
        # one line per evaluation point, so a long (e.g. remote GPU) run shows its learning curve
        LOG.info(json.dumps({"model": name, "dataset": dataset, **record}))
        if path is not None:
            save_checkpoint(path, model=name, dataset=dataset, hparams=model.hparams(),  # type: ignore[operator]
                            state_dict={k: v.cpu() for k, v in model.state_dict().items()},
                            extra={"epochs": epoch, "metrics": record, "seed": seed, "optim": asdict(cfg)})

    history, train_s = fit_bpr(model, split, cfg, seed=seed, device=device, show_progress=progress,  # type: ignore[arg-type]
                               eval_at=eval_epochs(cfg.epochs), on_eval=save)
    return report(model, dataset, history[-1], epochs=int(history[-1]["epoch"]), train_s=train_s,
                  device=device, seed=seed, cfg=cfg, history=history, name=name)


def evaluate_checkpoint(name: str, dataset: str, model_cls: type[torch.nn.Module], checkpoint: Path, *,
                        device: str, seed: int) -> EvalReport:
    """Rebuild ``model_cls(**hparams)`` from a checkpoint and evaluate it on ``dataset``."""
    payload = load_checkpoint(checkpoint, expect_model=name)
    split = load_dataset(dataset)
    model = model_cls(**payload["hparams"]).to(device)
    model.load_state_dict(payload["state_dict"])
    extra = payload["extra"]
    cfg = BPRConfig(**extra["optim"]) if "optim" in extra else BPRConfig(epochs=int(extra.get("epochs", 0)))
    limit_threads(cfg.threads)
    metrics = evaluate_bpr_model(model, model.adjacency(split.train_edge_index).to(device), split)  # type: ignore[operator]
    train_s = float(extra.get("metrics", {}).get("train_seconds", 0.0))
    return report(model, dataset, metrics, epochs=int(extra.get("epochs", 0)), train_s=train_s, device=device,
                  seed=seed, cfg=cfg, history=[], name=name,
                  extra={"checkpoint": str(checkpoint), "model_version": payload["model_version"],
                         "train_seed": extra.get("seed")})


def config(epochs: int | None, max_train_seconds: float | None = None) -> BPRConfig:
    """The paper's settings (LightGCN-PyTorch defaults), with the epoch count / time budget given."""
    cfg = BPRConfig(max_train_seconds=max_train_seconds)
    return cfg if epochs is None else replace(cfg, epochs=epochs)


def build_model(split: CFSplit) -> LightGCN:
    return LightGCN(split.n_users, split.n_items, embedding_dim=64, num_layers=3)


def train(dataset: str, *, epochs: int | None, device: str, out: Path, seed: int,
          progress: bool, budget_seconds: float | None = None) -> tuple[Path, EvalReport]:
    path = checkpoint_path(out, dataset)
    return path, run_bpr(MODEL, dataset, build_model, config(epochs, budget_seconds), device=device, seed=seed,
                         progress=progress, path=path)


def evaluate(dataset: str, *, checkpoint: Path | None, device: str, epochs: int | None, seed: int,
             progress: bool, budget_seconds: float | None = None) -> EvalReport:
    """Evaluate a checkpoint (or, without one, train ``epochs`` epochs in memory first)."""
    if checkpoint is None:
        return run_bpr(MODEL, dataset, build_model, config(epochs, budget_seconds), device=device, seed=seed,
                       progress=progress, path=None)
    return evaluate_checkpoint(MODEL, dataset, LightGCN, checkpoint, device=device, seed=seed)
