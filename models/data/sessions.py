"""The in-memory form every session-based dataset is loaded into.

Item ids are dense indices ``1..n_items`` (0 is reserved for padding, as in SR-GNN's code),
so ``n_items + 1`` is the size of an item embedding table.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SessionSplit:
    """Training sessions and prefix→target test examples of one next-item benchmark.

    ``train_sessions``: whole training sessions in time order (training examples are their
    prefixes: ``s[:k] -> s[k]`` for k in 1..len(s)-1).
    ``test_prefixes[i] -> test_targets[i]``: the evaluation examples, exactly as the protocol
    defines them. ``train_users`` / ``test_users`` are set for datasets with users (Delicious),
    aligned with ``train_sessions`` / ``test_prefixes``; ``social_edges`` are (follower,
    followee) user-index pairs for social datasets.
    """

    name: str
    n_items: int
    train_sessions: list[list[int]]
    test_prefixes: list[list[int]]
    test_targets: list[int]
    n_users: int = 0
    train_users: list[int] | None = None
    test_users: list[int] | None = None
    social_edges: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.test_prefixes) != len(self.test_targets):
            raise ValueError(
                f"{self.name}: {len(self.test_prefixes)} test prefixes but {len(self.test_targets)} targets"
            )

    def train_examples(self) -> tuple[list[list[int]], list[int]]:
        """SR-GNN's augmentation: every proper prefix of every training session."""
        prefixes: list[list[int]] = []
        targets: list[int] = []
        for s in self.train_sessions:
            for k in range(1, len(s)):
                prefixes.append(s[:k])
                targets.append(s[k])
        return prefixes, targets
