"""``gnnrec train/eval --model ngcf``: NGCF on the LightGCN/NGCF Gowalla split.

Settings of the NGCF reference run for Gowalla (``NGCF/README.md``): embedding 64, layers
[64, 64, 64], Adam lr 1e-4, batch 1024, L2 1e-5, message dropout 0.1, 400 epochs. Node
dropout (0.1 there) is off here. Sampling, BPR loop and full-ranking evaluation are shared with
LightGCN (:mod:`models.recipes.lightgcn`).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from models.data.gowalla import CFSplit
from models.recipes.lightgcn import BPRConfig, checkpoint_path, evaluate_checkpoint, run_bpr
from models.ngcf import NGCF
from models.report import EvalReport

DATASETS = ("gowalla",)
MODEL = "ngcf"


def config(epochs: int | None, max_train_seconds: float | None = None) -> BPRConfig:
    cfg = BPRConfig(lr=1e-4, batch_size=1024, reg_weight=1e-5, epochs=400, max_train_seconds=max_train_seconds)
    return cfg if epochs is None else replace(cfg, epochs=epochs)


def build_model(split: CFSplit) -> NGCF:
    return NGCF(split.n_users, split.n_items, embedding_dim=64, layer_sizes=(64, 64, 64), message_dropout=0.1)


def train(dataset: str, *, epochs: int | None, device: str, out: Path, seed: int,
          progress: bool, budget_seconds: float | None = None) -> tuple[Path, EvalReport]:
    path = checkpoint_path(out, dataset, MODEL)
    return path, run_bpr(MODEL, dataset, build_model, config(epochs, budget_seconds), device=device, seed=seed,
                         progress=progress, path=path)


def evaluate(dataset: str, *, checkpoint: Path | None, device: str, epochs: int | None, seed: int,
             progress: bool, budget_seconds: float | None = None) -> EvalReport:
    """Evaluate a checkpoint (or, without one, train ``epochs`` epochs in memory first)."""
    if checkpoint is None:
        return run_bpr(MODEL, dataset, build_model, config(epochs, budget_seconds), device=device, seed=seed,
                       progress=progress, path=None)
    return evaluate_checkpoint(MODEL, dataset, NGCF, checkpoint, device=device, seed=seed)
