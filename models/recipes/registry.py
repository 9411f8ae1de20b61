"""Names on the ``gnnrec train/eval`` command line → the experiment modules that implement them.

Each model module in ``models/recipes/`` exposes::

    DATASETS: tuple[str, ...]
    def train(dataset: str, *, epochs: int | None, device: str, out: Path, seed: int,
              progress: bool) -> tuple[Path, EvalReport]
    def evaluate(dataset: str, *, checkpoint: Path | None, device: str, epochs: int | None,
                 seed: int, progress: bool) -> EvalReport

and each baseline module in ``models/baselines/`` exposes::

    DATASETS: tuple[str, ...]
    def evaluate(dataset: str, *, seed: int) -> EvalReport

Imports are lazy so ``gnnrec --help`` does not pay for torch.
"""
from __future__ import annotations

import importlib
from types import ModuleType

MODELS: dict[str, str] = {
    "srgnn": "models.recipes.srgnn",
    "lightgcn": "models.recipes.lightgcn",
    "ngcf": "models.recipes.ngcf",
    "sage": "models.recipes.sage",
    "social": "models.recipes.social",
}

BASELINES: dict[str, str] = {
    "pop": "models.baselines.pop",
    "itemknn": "models.baselines.itemknn",
    "ease": "models.baselines.ease",
    "transitions": "models.baselines.transitions",
    "sknn": "models.baselines.sknn",
    "vsknn": "models.baselines.vsknn",
}

DATASETS = ("diginetica", "yoochoose64", "gowalla", "delicious", "gowalla_inductive")


class UnknownNameError(ValueError):
    """A model, baseline or dataset name that is not registered."""


def _load(table: dict[str, str], name: str, what: str) -> ModuleType:
    if name not in table:
        raise UnknownNameError(f"unknown {what} {name!r}; choose one of: {', '.join(sorted(table))}")
    return importlib.import_module(table[name])


def model_module(name: str) -> ModuleType:
    return _load(MODELS, name, "model")


def baseline_module(name: str) -> ModuleType:
    return _load(BASELINES, name, "baseline")


def check_dataset(module: ModuleType, name: str, dataset: str) -> None:
    supported = getattr(module, "DATASETS", ())
    if dataset not in supported:
        raise UnknownNameError(
            f"{name!r} does not run on dataset {dataset!r}; it supports: {', '.join(supported)}"
        )
