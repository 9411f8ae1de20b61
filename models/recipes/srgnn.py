"""``gnnrec train/eval --model srgnn``: SR-GNN on the SR-GNN benchmark splits.

Hyperparameters are the paper's (Wu et al., AAAI 2019, §4.1): d = 100, one GNN step, Adam with
lr 1e-3 and L2 1e-5, lr × 0.1 every 3 epochs, batch 100, training examples shuffled each epoch.
There is no validation split in the protocol, so nothing is selected on the test set: the
reported metrics are those of the model after the last epoch run (the reference code instead
reports the best epoch on the test set, which flatters it slightly).

Metrics are fractions: ``hr@20`` (SR-GNN's P@20), ``mrr@20`` and ``ndcg@20``.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, replace
from pathlib import Path

import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.data.sessions import SessionSplit
from models.report import EvalReport
from models.srgnn import SRGNN, SessionExamples, collate_padded
from models.training.srgnn import DEFAULT_EPOCHS, TrainConfig, fit
from models.training import (Stopwatch, TopKAccumulator, count_parameters, limit_threads,
                             minibatch_indices, num_batches, progress, seed_everything)

DATASETS = ("diginetica", "yoochoose64")
MODEL = "srgnn"

DEFAULT_CHECKPOINT_DIR = Path("checkpoints")
LOG = logging.getLogger("models.train")


def load_split(dataset: str) -> SessionSplit:
    if dataset == "diginetica":
        from models.data.diginetica import load_diginetica
        return load_diginetica()
    if dataset == "yoochoose64":
        from models.data.yoochoose import load_yoochoose64
        return load_yoochoose64()
    raise ValueError(f"srgnn runs on {', '.join(DATASETS)}, not {dataset!r}")


@torch.no_grad()
def evaluate_model(model: SRGNN, examples: SessionExamples, *, k: int = 20, batch_size: int = 500,
                   device: torch.device = torch.device("cpu"), show_progress: bool = False) -> dict[str, float]:
    """HR@k, MRR@k, NDCG@k (fractions) of ``model`` over all ``examples``, in order."""
    model.eval()
    acc = TopKAccumulator(k)
    batches = minibatch_indices(len(examples), batch_size)
    for index in progress(batches, enabled=show_progress, total=num_batches(len(examples), batch_size),
                          desc="srgnn eval"):
        items, lengths, targets = examples.padded(index)
        acc.update(model.score(collate_padded(items, lengths).to(device)), targets.to(device))
    return acc.result()


def _checkpoint_path(out: Path, dataset: str) -> Path:
    return out if out.suffix == ".pt" else out / f"{MODEL}-{dataset}.pt"


def train(dataset: str, *, epochs: int | None, device: str, out: Path, seed: int,
          progress: bool, budget_seconds: float | None = None) -> tuple[Path, EvalReport]:
    """Train SR-GNN on ``dataset``, save a checkpoint (``out`` is a ``.pt`` file or a directory)
    and evaluate it on the protocol's test set. ``budget_seconds`` caps training time (see
    :func:`fit`); the report's ``epochs`` is the number actually run."""
    if dataset not in DATASETS:
        raise ValueError(f"srgnn runs on {', '.join(DATASETS)}, not {dataset!r}")
    config = TrainConfig(epochs=DEFAULT_EPOCHS if epochs is None else epochs)
    if config.epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {config.epochs}")
    threads = limit_threads(None)
    rng = seed_everything(seed)
    dev = torch.device(device)
    split = load_split(dataset)
    model = SRGNN(split.n_items).to(dev)
    watch = Stopwatch()
    losses = fit(model, SessionExamples.from_sessions(split.train_sessions), config, rng=rng, device=dev,
                 show_progress=progress, watch=watch, budget_seconds=budget_seconds)
    config = replace(config, epochs=len(losses))
    with watch.time("eval"):
        metrics = evaluate_model(model, SessionExamples.from_prefixes(split.test_prefixes, split.test_targets),
                                 k=config.k, batch_size=config.eval_batch_size, device=dev, show_progress=progress)
    extra = {"seconds_per_epoch": watch.mean("epoch"), "epoch_seconds": watch.totals.get("epoch", 0.0),
             "eval_seconds": watch.totals["eval"], "train_loss": losses, "seed": seed, "threads": threads,
             "hyperparameters": model.hparams() | asdict(config), "metric_scale": "fraction",
             "selection": "last epoch (no test-set model selection)"}
    path = _checkpoint_path(out, dataset)
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    version = save_checkpoint(path, model=MODEL, dataset=dataset, hparams=model.hparams(), state_dict=state,
                              extra={"epochs": config.epochs, "metrics": metrics, "device": str(dev)} | extra)
    report = EvalReport(model=MODEL, dataset=dataset, metrics=metrics, train_seconds=watch.totals["epoch"],
                        epochs=config.epochs, params=count_parameters(model), device=str(dev), kind="model",
                        extra=extra | {"checkpoint": str(path), "model_version": version})
    return path, report


def load_model(checkpoint: Path, *, dataset: str | None = None) -> tuple[SRGNN, dict]:
    """Rebuild an SR-GNN from a checkpoint; returns the model (eval mode, CPU) and the payload."""
    payload = load_checkpoint(checkpoint, expect_model=MODEL)
    if dataset is not None and payload["dataset"] != dataset:
        raise ValueError(f"{checkpoint} was trained on {payload['dataset']!r}, not {dataset!r}; "
                         f"pass a checkpoint for {dataset!r}")
    model = SRGNN(**payload["hparams"])
    model.load_state_dict(payload["state_dict"])
    return model.eval(), payload


def evaluate(dataset: str, *, checkpoint: Path | None, device: str, epochs: int | None, seed: int,
             progress: bool, budget_seconds: float | None = None) -> EvalReport:
    """Evaluate a checkpoint on ``dataset``'s test set; with no checkpoint, train one first
    (into ``checkpoints/``) and return that run's report."""
    if checkpoint is None:
        return train(dataset, epochs=epochs, device=device, out=DEFAULT_CHECKPOINT_DIR, seed=seed,
                     progress=progress, budget_seconds=budget_seconds)[1]
    threads = limit_threads(None)
    model, payload = load_model(checkpoint, dataset=dataset)
    split = load_split(dataset)
    if split.n_items != model.n_items:
        raise ValueError(f"{checkpoint} scores {model.n_items} items but {dataset} has {split.n_items}; "
                         f"it was trained on a different version of the data")
    dev = torch.device(device)
    watch = Stopwatch()
    with watch.time("eval"):
        metrics = evaluate_model(model.to(dev), SessionExamples.from_prefixes(split.test_prefixes, split.test_targets),
                                 device=dev, show_progress=progress)
    trained = payload["extra"]
    extra = {key: trained[key] for key in ("seconds_per_epoch", "train_loss", "hyperparameters", "seed",
                                           "selection") if key in trained}
    return EvalReport(model=MODEL, dataset=dataset, metrics=metrics,
                      train_seconds=float(trained.get("epoch_seconds", 0.0)), epochs=int(trained.get("epochs", 0)),
                      params=count_parameters(model), device=str(dev), kind="model",
                      extra=extra | {"checkpoint": str(checkpoint), "model_version": payload["model_version"],
                                     "eval_seconds": watch.totals["eval"], "threads": threads,
                                     "metric_scale": "fraction", "train_device": trained.get("device", "")})
