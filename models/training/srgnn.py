"""SR-GNN's optimisation loop: the one the offline recipe and the live trainer both run."""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from models.srgnn import SRGNN, SessionExamples, collate_padded
from models.training import Stopwatch, minibatch_indices, num_batches, progress

MODEL = "srgnn"
DEFAULT_EPOCHS = 30  # the reference code's default (its early stopping needs the test set)
LOG = logging.getLogger("models.train")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (the model's own are its constructor arguments)."""

    epochs: int = DEFAULT_EPOCHS
    batch_size: int = 100
    lr: float = 1e-3
    weight_decay: float = 1e-5
    lr_decay: float = 0.1
    lr_decay_step: int = 3
    eval_batch_size: int = 500
    k: int = 20


def fit(model: SRGNN, examples: SessionExamples, config: TrainConfig, *, rng: np.random.Generator,
        device: torch.device, show_progress: bool, watch: Stopwatch,
        budget_seconds: float | None = None) -> list[float]:
    """Train in place for ``config.epochs``; returns the mean training loss of each epoch.

    With ``budget_seconds``, no epoch is started that would (at the mean epoch time so far) end
    past the budget, so fewer epochs may run; ``len(result)`` says how many. The schedule depends
    only on the epoch number, so the same seed with ``epochs=len(result)`` repeats the run.
    """
    # fused Adam is the same update as Adam(weight_decay=L2) and ~10x faster on CPU for the table
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                 fused=device.type in ("cpu", "cuda"))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_decay_step, gamma=config.lr_decay)
    losses: list[float] = []
    total = num_batches(len(examples), config.batch_size)
    for epoch in range(config.epochs):
        model.train()
        # summed on the device: a .item() per batch would make the GPU wait for the host each step
        loss_sum, seen = torch.zeros((), device=device), 0
        with watch.time("epoch"):
            batches = minibatch_indices(len(examples), config.batch_size, rng=rng)
            for index in progress(batches, enabled=show_progress, total=total, desc=f"srgnn epoch {epoch + 1}"):
                items, lengths, targets = examples.padded(index)
                batch = collate_padded(items, lengths).to(device)
                loss = model.recommendation_loss(batch, targets.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach() * len(index)
                seen += len(index)
            scheduler.step()
        epoch_loss = float(loss_sum) / max(seen, 1)
        if not math.isfinite(epoch_loss):
            raise FloatingPointError(f"srgnn training loss became {epoch_loss} in epoch {epoch + 1}; "
                                     f"lower the learning rate")
        losses.append(epoch_loss)
        # one line per epoch, so a long (e.g. remote GPU) run shows where it is
        LOG.info(json.dumps({"model": MODEL, "epoch": epoch + 1, "loss": epoch_loss,
                             "train_seconds": watch.totals["epoch"]}))
        if budget_seconds is not None and watch.totals["epoch"] + watch.mean("epoch") > budget_seconds:
            break
    return losses
