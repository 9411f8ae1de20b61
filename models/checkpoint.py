"""Versioned model checkpoints.

A checkpoint is one ``torch.save`` file holding a plain dict::

    {"format": 1, "model": "lightgcn", "model_version": "lightgcn-20261122T2200Z-3f2a",
     "dataset": "gowalla", "hparams": {...constructor kwargs...}, "state_dict": {...},
     "extra": {...e.g. id maps, epochs, metrics...}}

``hparams`` are the model's typed constructor arguments, so loading rebuilds the model by
calling its class with them, then loads the weights. Loading uses ``weights_only=True``:
a checkpoint holds tensors and plain Python values only.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import torch

FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read as a gnnrec checkpoint."""


def make_version(model: str, state_dict: dict[str, Any], now_s: float | None = None) -> str:
    """A sortable, content-addressed version: ``<model>-<UTC time>-<weights hash>``."""
    h = hashlib.sha1()
    for key in sorted(state_dict):
        value = state_dict[key]
        h.update(key.encode())
        if isinstance(value, torch.Tensor):
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_s if now_s is not None else time.time()))
    return f"{model}-{stamp}-{h.hexdigest()[:8]}"


def save_checkpoint(path: Path, *, model: str, dataset: str, hparams: dict[str, Any],
                    state_dict: dict[str, Any], extra: dict[str, Any] | None = None) -> str:
    """Write a checkpoint atomically (temp file + rename); returns its model_version."""
    version = make_version(model, state_dict)
    payload = {"format": FORMAT, "model": model, "model_version": version, "dataset": dataset,
               "hparams": dict(hparams), "state_dict": state_dict, "extra": dict(extra or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return version


def load_checkpoint(path: Path, *, expect_model: str | None = None) -> dict[str, Any]:
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; train one with `gnnrec train`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad file
        raise CheckpointError(f"checkpoint {path} is not readable ({exc}); re-run `gnnrec train`") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gnnrec checkpoint of format {FORMAT}")
    if expect_model is not None and payload["model"] != expect_model:
        raise CheckpointError(f"{path} holds model {payload['model']!r}, not {expect_model!r}")
    return payload
