"""GNN mode of `gnnrec worker score`: the trained bundle over the refresh worker's embeddings.

:class:`EmbeddingFollower` follows two things other workers write:

* the **embedding store** (``--embeddings-dir``, written by `gnnrec worker refresh`), opened as
  a RocksDB secondary so it never takes the writer's lock; every ``--embeddings-poll-s`` it
  catches up, and when the store took new commits it reads only the rows those commits wrote
  (``read_changes``, from the store's change log), or every row (``read_all``) at the first
  poll, after a model swap and when it fell behind the kept log. A secondary only moves on
  catch-up, so each poll reads one consistent view. Reading every row at every refresh had
  stalled the event loop 10–70 ms each second with only a few thousand rows;
* the **model dir** (``--model-dir``, written by `gnnrec worker train`): embedding versions are
  ``<model_version>/r<seq>/w<watermark_ms>``, so when the store starts carrying a new model's
  embeddings the follower loads that bundle, builds a new :class:`GnnScorer` *beside* the
  serving one, fills it, and only then replaces it (the hot swap: the event loop never sees a
  half-built scorer, and a missing or unreadable bundle leaves the old one serving).

Under ``--transport kafka`` both are this worker's own copies under its data dir, written by the
mirrors of :mod:`workers.runtime.transport` from the models and embeddings topics, and followed
here exactly as a shared directory and a refresh worker's store are.

Embeddings of a model other than the one serving are never mixed with its weights. Nothing
here raises on a missing, locked or unreadable store or bundle: the worker keeps serving the
baselines (and logs why) until the next poll finds usable data.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from graph_store import GraphStore
from graph_store.embeddings import RocksDBEmbeddingStore
from graph_store.errors import GraphStoreError
from models.live.bundle import BundleError, ModelBundle, load_bundle
from models.live.scorer import GnnScorer, ScorerSettings, social_inputs
from models.live.transition_prior import Successors, session_successors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddingVersion:
    """``<model_version>/r<seq>/w<watermark_ms>`` split into its parts (seq/watermark optional)."""

    raw: str
    model_version: str
    watermark_ms: int | None

    @classmethod
    def parse(cls, raw: str) -> "EmbeddingVersion":
        model, *rest = raw.split("/")
        watermark = None
        for part in rest:
            if part.startswith("w") and part[1:].lstrip("-").isdigit():
                watermark = int(part[1:])
        return cls(raw, model, watermark)


@dataclass
class FollowerStats:
    polls: int = 0
    reloads: int = 0
    full_reads: int = 0  # reloads that read every row (first, after a swap, or behind the log)
    swaps: int = 0
    errors: int = 0
    last_error: str | None = None


class EmbeddingFollower:
    """The serving :class:`GnnScorer`, kept in step with the embedding store and model dir."""

    def __init__(self, model_dir: Path, embeddings_dir: Path, secondary_dir: Path,
                 scorer_settings: ScorerSettings = ScorerSettings()) -> None:
        self.model_dir = model_dir
        self.embeddings_dir = embeddings_dir
        self.secondary_dir = secondary_dir
        self.scorer_settings = scorer_settings
        self.scorer: GnnScorer | None = None
        self.stats = FollowerStats()
        self._store: RocksDBEmbeddingStore | None = None
        self._seq: int | None = None  # the store's commit count the serving scorer holds

    @property
    def model_version(self) -> str | None:
        return None if self.scorer is None else self.scorer.model_version

    @property
    def embedding_version(self) -> str | None:
        return None if self.scorer is None else self.scorer.embedding_version

    @property
    def watermark_ms(self) -> int | None:
        return None if self.scorer is None else self.scorer.watermark_ms

    def model_check(self) -> tuple[bool, str]:
        """Whether a model is serving, for the score worker's /readyz."""
        if self.scorer is not None:
            return True, f"serving model {self.model_version} with embeddings {self.embedding_version}"
        detail = (f"no GNN model serving yet: waiting for embeddings in {self.embeddings_dir} (the refresh "
                  f"worker writes them) of a bundle in {self.model_dir} (the train worker publishes it)")
        if self.stats.last_error is not None:
            detail += f"; last poll failed: {self.stats.last_error}"
        return False, detail

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def poll(self) -> bool:
        """Catch up and apply what changed; True if the serving scorer's rows or model changed."""
        self.stats.polls += 1
        try:
            return self._poll()
        except (GraphStoreError, BundleError, OSError, ValueError) as exc:
            # Derived data from other workers: a bad poll must not stop scoring. Keep serving
            # what we have; the next poll retries (the writer may be mid-restart).
            self.stats.errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("embedding poll failed (serving %s): %s", self.embedding_version, self.stats.last_error)
            return False

    def _open(self) -> RocksDBEmbeddingStore | None:
        if self._store is None:
            if not (self.embeddings_dir / "CURRENT").exists():
                return None  # the refresh worker has not written yet
            self.secondary_dir.mkdir(parents=True, exist_ok=True)
            self._store = RocksDBEmbeddingStore.open_secondary(self.embeddings_dir, self.secondary_dir)
        return self._store

    def _poll(self) -> bool:
        store = self._open()
        if store is None:
            return False
        store.catch_up()
        if self.scorer is not None and store.seq() == self._seq:
            return False
        raw = store.version()
        if raw is None:
            return False
        version = EmbeddingVersion.parse(raw)
        scorer = self.scorer
        if scorer is None or scorer.model_version != version.model_version:
            bundle = self._bundle(version.model_version)
            if bundle is None:
                return False
            scorer = GnnScorer(bundle, self.scorer_settings)
        self._load_rows(scorer, store, version, since=self._seq if scorer is self.scorer else None)
        if scorer is not self.scorer:
            self.scorer = scorer
            self.stats.swaps += 1
            log.info("serving model %s with embeddings %s", scorer.model_version, raw)
        self.stats.reloads += 1
        return True

    def _bundle(self, model_version: str) -> ModelBundle | None:
        """The bundle the embeddings were computed with (``LATEST`` may already be past it)."""
        if not (self.model_dir / f"{model_version}.pt").exists():
            log.warning("embeddings of model %s but no %s/%s.pt yet; serving %s", model_version,
                        self.model_dir, model_version, self.model_version)
            return None
        return load_bundle(self.model_dir, model_version)

    def _load_rows(self, scorer: GnnScorer, store: RocksDBEmbeddingStore, version: EmbeddingVersion,
                   since: int | None) -> None:
        """Rows written since commit ``since`` into ``scorer`` (all rows when None or too far back)."""
        changes = None if since is None else store.read_changes(since)
        if changes is None:
            seq = store.seq()  # before the reads: anything committed during them is read again
            groups = {t: store.read_all(t)[1:] for t in ("item", "user")}
            self.stats.full_reads += 1
        else:
            seq, groups = changes.seq, changes.rows
        for node_type, (ids, matrix) in groups.items():
            if matrix.shape[1] not in (0, scorer.bundle.dim):
                raise ValueError(f"{node_type} embeddings are {matrix.shape[1]}-d, model {scorer.model_version} "
                                 f"is {scorer.bundle.dim}-d: the store at this path belongs to another model")
        for node_type, (ids, matrix) in groups.items():
            scorer.update(node_type, ids, matrix)
        scorer.set_version(version.raw, version.watermark_ms)
        self._seq = seq

    def refresh_prior(self, store: GraphStore, now_ms: int | None) -> None:
        """Recompute the popularity prior from ``store`` after a reload (the embeddings' rhythm)."""
        if self.scorer is not None and now_ms is not None:
            self.scorer.refresh_prior(store, now_ms)

    # ---- recommending ----------------------------------------------------------------------
    def successors(self, store: GraphStore, session_items: list[str], now_ms: int) -> Successors | None:
        """The transition prior's inputs for a session, None when the serving bundle has none."""
        m = 0 if self.scorer is None else self.scorer.transition_successors
        return session_successors(store, session_items, now_ms, m) if m else None

    def recommend_next(self, store: GraphStore, session_id: str, now_ms: int, k: int) -> list[tuple[str, float]] | None:
        """SR-GNN over the session's items (oldest first); None without a scorer or known item."""
        if self.scorer is None:
            return None
        items = store.session_items(session_id)
        return self.scorer.recommend_next(items, k, self.successors(store, items, now_ms))

    def social_inputs(self, store: GraphStore, user_id: str, session_id: str | None, now_ms: int, *,
                      max_followees: int) -> tuple[list[str], list[str]]:
        return social_inputs(store, user_id, session_id, now_ms, max_followees=max_followees,
                             profile_items=self.scorer_settings.profile_items)

    def recommend_social(self, store: GraphStore, user_id: str, session_id: str | None, now_ms: int, *, k: int,
                         max_followees: int) -> list[tuple[str, float]] | None:
        """The social model for a user; their recent items stand in for a missing session."""
        if self.scorer is None or self.scorer.bundle.social is None:
            return None
        followees, items = self.social_inputs(store, user_id, session_id, now_ms, max_followees=max_followees)
        return self.scorer.recommend_social(user_id, followees, items, k)
