"""The score worker's pieces that hold no I/O: what one answered event carries, the GNN side
of the scorer, and the trending list built from a store."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from graph_store import GraphStore
from models.live.trending import TrendingTop
from stream.events import Follow, Interaction
from stream.kafka.batch_consumer import RawRecord
from workers.runtime.settings import ScoreSettings

if TYPE_CHECKING:
    from workers.score.gnn import EmbeddingFollower


class Scored(NamedTuple):
    """One recommendation to emit, with what produced it (``recommender``: gnn | transitions).
    A named tuple: the worker builds two per event."""

    user_id: str
    session_id: str | None
    kind: str
    items: list[tuple[str, float]]
    recommender: str
    model_version: str
    embedding_version: str | None = None


@dataclass
class Pending:
    """One applied event awaiting its recommendations (GNN ones are answered per batch)."""

    rec: RawRecord
    event: Interaction | Follow
    outs: list[Scored] = field(default_factory=list)
    next_request: list[str] | None = None
    next_successors: list[tuple[str, float]] | None = None  # the transition prior's inputs
    social_request: tuple[str, list[str], list[str]] | None = None


def make_follower(settings: ScoreSettings) -> "EmbeddingFollower | None":
    """The GNN side of the scorer, or None in ``transitions`` mode (torch is not even imported)."""
    if not settings.use_gnn():
        return None
    import torch

    from workers.score.gnn import EmbeddingFollower
    from models.live.scorer import ScorerSettings
    # One thread: more spin on a loaded machine and slow every per-event call ~10x.
    torch.set_num_threads(1)
    assert settings.model_dir is not None and settings.embeddings_dir is not None  # use_gnn() checked
    return EmbeddingFollower(settings.model_dir, settings.embeddings_dir, settings.data_dir / "embeddings-secondary",
                             ScorerSettings(k=settings.k, ann_threshold=settings.ann_threshold))


def trending_from(store: GraphStore, capacity: int) -> TrendingTop:
    """The trending list of what ``store`` already holds (a store that resumes from its own
    commits replays only the tail of the log)."""
    top = TrendingTop(store.settings.half_life_ms, capacity)
    ids = [nb.node_id for nb in store.item_popularity(store.watermark_ms() or 0, k=capacity)]
    top.update_many((i, w, t) for i, (w, t) in zip(ids, store.item_popularity_state(ids)))
    return top
