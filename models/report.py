"""The one result record every training/evaluation path returns.

``gnnrec eval --json`` prints :meth:`EvalReport.to_dict`; ``docs/RESULTS.md`` is rendered from
saved reports, so a row in that table always carries the command, device and epochs behind it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class EvalReport:
    model: str  # model or baseline name as typed on the CLI
    dataset: str
    metrics: dict[str, float]  # keys like "recall@20", "ndcg@20", "hr@20", "mrr@20"
    train_seconds: float
    epochs: int  # epochs actually run (0 for training-free baselines)
    params: int  # trainable parameters (0 for baselines)
    device: str
    kind: str = "model"  # "model" or "baseline"
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. seconds per epoch, hyperparameters

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def save(self, directory: Path, command: str) -> Path:
        """Write this report with the command that produced it; returns the file written."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.dataset}__{self.kind}__{self.model}.json"
        record = self.to_dict() | {"command": command}
        path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        return path
