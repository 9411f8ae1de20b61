"""Node and edge types, settings and the small value types that the store returns.

Edge types (directed; ``*_rev`` and ``iu`` are reverse indexes kept in the same commit):

=========  ===========  ===========  =============================================
edge type  source type  target type  meaning
=========  ===========  ===========  =============================================
``ui``     user         item         user interacted with item (decayed sum of kinds)
``iu``     item         user         reverse of ``ui``, same weight
``ii``     item         item         transition: previous item of a session -> item
``ii_rev`` item         item         reverse of ``ii``
``uu``     user         user         src follows dst (weight 1 at the follow time)
``uu_rev`` user         user         reverse of ``uu`` (followers)
=========  ===========  ===========  =============================================
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from graph_store.errors import UnknownTypeError

__all__ = [
    "ApplyStats",
    "DEFAULT_KIND_WEIGHTS",
    "EDGE_TYPES",
    "FORWARD_EDGE_TYPES",
    "NODE_TYPES",
    "Neighbour",
    "SessionState",
    "StoreCounts",
    "StoreSettings",
    "TopicPartition",
    "check_edge_type",
    "check_node_type",
]

TopicPartition = tuple[str, int]

NODE_TYPES: tuple[str, ...] = ("user", "item", "session")

#: edge type -> (source node type, target node type, forward edge type it mirrors)
EDGE_TYPES: Mapping[str, tuple[str, str, str]] = MappingProxyType(
    {
        "ui": ("user", "item", "ui"),
        "iu": ("item", "user", "ui"),
        "ii": ("item", "item", "ii"),
        "ii_rev": ("item", "item", "ii"),
        "uu": ("user", "user", "uu"),
        "uu_rev": ("user", "user", "uu"),
    }
)
FORWARD_EDGE_TYPES: tuple[str, ...] = ("ui", "ii", "uu")
REVERSE_OF: Mapping[str, str] = MappingProxyType({"ui": "iu", "ii": "ii_rev", "uu": "uu_rev"})

DEFAULT_KIND_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"view": 1.0, "click": 1.0, "cart": 2.0, "purchase": 4.0}
)


def check_node_type(node_type: str) -> None:
    if node_type not in NODE_TYPES:
        raise UnknownTypeError(f"unknown node type {node_type!r}; expected one of {NODE_TYPES}")


def check_edge_type(edge_type: str, node_type: str | None = None) -> None:
    """Raise unless ``edge_type`` exists and (when given) starts at ``node_type``."""
    if edge_type not in EDGE_TYPES:
        raise UnknownTypeError(
            f"unknown edge type {edge_type!r}; expected one of {tuple(EDGE_TYPES)}"
        )
    if node_type is not None:
        check_node_type(node_type)
        src = EDGE_TYPES[edge_type][0]
        if src != node_type:
            raise UnknownTypeError(
                f"edge type {edge_type!r} starts at {src!r} nodes, not {node_type!r}"
            )


@dataclass(frozen=True)
class StoreSettings:
    """Meaning of the stored weights.

    Args:
        half_life_ms: half-life of every edge weight and item popularity, in event-time ms
            (``math.inf``: no decay). Persisted; a RocksDB store refuses to reopen with another.
        kind_weights: increment of an interaction of each kind when the event carries no
            ``weight`` (default view 1, click 1, cart 2, purchase 4). The keys are the accepted kinds.
        session_history: how many of a session's last items are kept (``session_items``).
    """

    half_life_ms: float = 7 * 86_400_000
    kind_weights: Mapping[str, float] = field(default_factory=lambda: DEFAULT_KIND_WEIGHTS)
    session_history: int = 20

    def __post_init__(self) -> None:
        hl = self.half_life_ms
        if isinstance(hl, bool) or not isinstance(hl, (int, float)) or math.isnan(hl) or hl <= 0:
            raise ValueError(
                f"StoreSettings.half_life_ms must be a positive number of ms or math.inf, got {hl!r}"
            )
        weights = dict(self.kind_weights)
        if not weights:
            raise ValueError("StoreSettings.kind_weights must name at least one interaction kind")
        for kind, w in weights.items():
            if not isinstance(kind, str) or isinstance(w, bool) or not isinstance(w, (int, float)):
                raise ValueError(f"StoreSettings.kind_weights[{kind!r}] must map str -> number")
            if not math.isfinite(w) or w < 0:
                raise ValueError(
                    f"StoreSettings.kind_weights[{kind!r}] must be finite and >= 0, got {w!r}"
                )
        object.__setattr__(
            self, "kind_weights", MappingProxyType({k: float(v) for k, v in weights.items()})
        )
        if isinstance(self.session_history, bool) or not isinstance(self.session_history, int) or not (
            1 <= self.session_history <= 65_535
        ):
            raise ValueError(
                f"StoreSettings.session_history must be an int in [1, 65535], got {self.session_history!r}"
            )

    def __hash__(self) -> int:
        return hash((self.half_life_ms, tuple(sorted(self.kind_weights.items())), self.session_history))


class Neighbour(NamedTuple):
    """One neighbour and its decayed weight. A named tuple rather than a frozen dataclass: the
    scorer builds a few dozen per event, and a tuple is built ~4x faster."""

    node_id: str
    weight: float


@dataclass(frozen=True)
class StoreCounts:
    """Totals of the store. ``edges`` counts forward edges only (keys ``ui``, ``ii``, ``uu``);
    ``follows``/``unfollows`` count the follow operations that took effect."""

    users: int
    items: int
    sessions: int
    edges: dict[str, int]
    interactions: int
    follows: int
    unfollows: int


@dataclass(frozen=True)
class ApplyStats:
    """What one ``apply_many`` did. ``interactions + follows + skipped == len(events)``.

    ``follows`` counts follow/unfollow operations that took effect; ``skipped`` those that did
    not (older than the edge, or unfollow of an absent edge: typically replays).
    ``new_nodes`` counts first-seen nodes of all types; ``touched_edges`` the distinct forward
    edges (ui, ii, uu) written or removed.
    """

    interactions: int
    follows: int
    skipped: int
    new_nodes: int
    touched_edges: int


class SessionState(NamedTuple):
    """A session's running state; ``items`` holds the last ``session_history`` items, oldest first.

    ``user_id`` is the user of the session's latest event. A named tuple, not a dataclass:
    the ingest path builds one per touched session per batch.
    """

    user_id: str
    items: tuple[str, ...]
    last_ts: int
    count: int

    @property
    def last_item(self) -> str:
        return self.items[-1]
