"""GNN scoring over the refresh worker's current embeddings.

:class:`GnnScorer` holds the latest user and item embeddings (upserted as refreshes publish
them) and the bundle's session models. Next-item: the SR-GNN session encoder runs over the
session's items *with the current item embeddings as its item table*, and its session vector
is ranked against every item. Social: the social model's query (session attention, attention
over the user's followees, the user) ranked the same way. Items the bundle never saw rank as
soon as the refresh publishes their embedding.

Scores carry the bundle's popularity prior (``β·log(1 + pop)``, :mod:`models.live.prior`),
set with :meth:`GnnScorer.set_item_prior` at each refresh, and next-item scores the transition
prior (``γ·log(1 + w(last → i))``, :mod:`models.live.transition_prior`) from the successors
the caller read from the store for each request. Ranking is an exact matrix product
up to ``ann_threshold`` items, above it an hnswlib HNSW
index over inner product. hnswlib because it accepts additions *and in-place updates* of
labelled vectors without retraining or rebuilding (an IVF/PQ index in faiss needs training and
remove+add to move a vector), which is what a catalogue refreshed row by row needs; it ships
as a wheel and is in the lockfile. Its top-k is approximate; ``ef`` trades recall for time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from graph_store import GraphStore
from models.social import FriendIndex, SessionBatch
from models.srgnn import collate_sessions
from models.live.bundle import ModelBundle
from models.live.prior import item_log_popularity
from models.live.repeats import exclude_seen_rows
from models.live.transition_prior import Successors, add_transition_bonus


class EmbeddingTable:
    """Growable ``id -> row`` matrix (float32) with in-place row updates."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.ids: list[str] = []
        self.row: dict[str, int] = {}
        self._data = np.zeros((0, dim), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def matrix(self) -> np.ndarray:
        return self._data[:len(self.ids)]

    def upsert(self, ids: list[str], vectors: np.ndarray) -> np.ndarray:
        """Write rows; returns their row numbers (appended ids get new rows)."""
        rows = np.empty(len(ids), dtype=np.int64)
        for k, node_id in enumerate(ids):
            r = self.row.get(node_id)
            if r is None:
                r = self.row[node_id] = len(self.ids)
                self.ids.append(node_id)
            rows[k] = r
        if len(self.ids) > self._data.shape[0]:
            grown = np.zeros((max(2 * self._data.shape[0], len(self.ids), 64), self.dim), dtype=np.float32)
            grown[:self._data.shape[0]] = self._data
            self._data = grown
        self._data[rows] = vectors
        return rows


@dataclass(frozen=True)
class ScorerSettings:
    k: int = 20
    ann_threshold: int = 50_000  # catalogue size above which hnswlib ranks instead of a matmul
    ann_m: int = 16
    ann_ef_construction: int = 200
    ann_ef: int = 100
    # With a popularity prior, the rows of highest prior join the index's candidates: the prior
    # lifts items far from the query, which a shortlist by inner product alone never holds.
    ann_prior_candidates: int = 500
    profile_items: int = 5  # recent items standing in for a session when there is none


class GnnScorer:
    """Ranks items for sessions and users with one bundle over the current embeddings."""

    def __init__(self, bundle: ModelBundle, settings: ScorerSettings = ScorerSettings()) -> None:
        self.settings = settings
        self.bundle = bundle
        self.users = EmbeddingTable(bundle.dim)
        self.items = EmbeddingTable(bundle.dim)
        self.embedding_version: str | None = None
        self.watermark_ms: int | None = None
        self._ann = None
        self._prior = np.zeros(0, dtype=np.float32)  # log(1 + popularity) per item row
        self._scaled: dict[str, np.ndarray] = {}  # β·_prior per model with β > 0
        self._prior_top = np.zeros(0, dtype=np.int64)  # the rows of highest prior (ANN candidates)

    def set_item_prior(self, ids: list[str], values: np.ndarray) -> None:
        """The popularity prior (:mod:`models.live.prior`) of the items ``ids``; items not
        listed (or published later) get 0 until the next call."""
        prior = np.zeros(len(self.items), dtype=np.float32)
        row = self.items.row
        rows = np.fromiter((row.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
        known = rows >= 0
        prior[rows[known]] = np.asarray(values, dtype=np.float32)[known]
        self._set_prior(prior)

    def _set_prior(self, prior: np.ndarray) -> None:
        """``prior`` float32 over the item rows, in row order."""
        self._prior = prior
        # β·prior per model, computed once here rather than for every scored batch.
        self._scaled = {kind: beta * prior for kind in ("next_item", "social")
                        if (beta := self.bundle.prior_weight(kind))}
        m = min(self.settings.ann_prior_candidates, len(prior))
        self._prior_top = (np.argpartition(-prior, m - 1)[:m].astype(np.int64) if 0 < m < len(prior)
                           else np.arange(len(prior), dtype=np.int64))

    def refresh_prior(self, store: GraphStore, now_ms: int) -> None:
        """Recompute the prior of every item from ``store``'s popularity at ``now_ms`` (at each
        refresh); skipped when the bundle fitted no prior weight for either model."""
        if any(self.bundle.prior_weight(kind) for kind in ("next_item", "social")):
            # Read in row order, so no id lookups (a fresh array: ours to keep).
            self._set_prior(item_log_popularity(store, self.items.ids, now_ms))

    def _prior_for(self, kind: str, n: int) -> np.ndarray | None:
        """``β · prior`` over the first ``n`` item rows, or None when the bundle's β is 0."""
        p = self._scaled.get(kind)
        if p is None:
            return None
        if len(p) < n:  # items published since the last refresh have no prior yet
            p = self._scaled[kind] = np.concatenate([p, np.zeros(n - len(p), dtype=np.float32)])
        return p[:n]

    @property
    def model_version(self) -> str:
        return self.bundle.version

    def swap(self, bundle: ModelBundle) -> None:
        """Use another bundle; the embeddings must be republished for it (a rebuild does)."""
        self.bundle = bundle
        self.users, self.items = EmbeddingTable(bundle.dim), EmbeddingTable(bundle.dim)
        self.embedding_version, self.watermark_ms, self._ann = None, None, None
        self._prior = np.zeros(0, dtype=np.float32)
        self._scaled = {}
        self._prior_top = np.zeros(0, dtype=np.int64)

    def update(self, node_type: str, ids: list[str], vectors: np.ndarray) -> None:
        if not ids:
            return
        table = self.users if node_type == "user" else self.items
        rows = table.upsert(ids, vectors)
        if node_type == "item" and self._ann is not None:
            self._ann_add(vectors, rows)

    def set_version(self, embedding_version: str, watermark_ms: int | None) -> None:
        self.embedding_version, self.watermark_ms = embedding_version, watermark_ms

    # ---- ranking ---------------------------------------------------------------------------
    def _ann_add(self, vectors: np.ndarray, rows: np.ndarray) -> None:
        if len(self.items) > self._ann.get_max_elements():
            self._ann.resize_index(max(2 * self._ann.get_max_elements(), len(self.items)))
        self._ann.add_items(vectors, rows)

    def _top_k(self, query: np.ndarray, k: int, kind: str, successors: Successors | None = None,
               seen: list[str] | None = None) -> list[tuple[str, float]]:
        n = len(self.items)
        gamma = self.bundle.transition_weight() if successors else 0.0
        if seen:  # excluded rows never reach the answer, so at most n - |seen| can be given
            seen_rows = {r for i in seen if (r := self.items.row.get(i)) is not None}
            k = min(k, n - len(seen_rows))
        else:
            seen_rows, k = set(), min(k, n)
        if k <= 0:
            return []
        if n > self.settings.ann_threshold:
            if self._ann is None:
                import hnswlib  # only catalogues above the threshold pay for the import

                s = self.settings
                self._ann = hnswlib.Index(space="ip", dim=self.bundle.dim)
                self._ann.init_index(max_elements=2 * n, ef_construction=s.ann_ef_construction, M=s.ann_m)
                self._ann.set_ef(max(s.ann_ef, k))
                self._ann.add_items(self.items.matrix, np.arange(n))
            prior = self._prior_for(kind, n)
            # With a prior the index's candidates are re-ranked: 4k of them by inner product,
            # and the successors the transition prior lifts, scored exactly.
            want = min(n, (k if prior is None and not gamma else 4 * k) + len(seen_rows))
            labels, dist = self._ann.knn_query(query.reshape(1, -1).astype(np.float32), k=want)
            rows, scores = labels[0].astype(np.int64), (1.0 - dist[0]).astype(np.float64)
            if seen_rows:
                keep = np.fromiter((int(r) not in seen_rows for r in rows), dtype=bool, count=len(rows))
                rows, scores = rows[keep], scores[keep]
            extra = []
            if prior is not None:
                extra.append(self._prior_top[self._prior_top < n])
            lifted = {}
            if gamma:
                lifted = {r: w for i, w in successors if (r := self.items.row.get(i)) is not None}
                extra.append(np.fromiter(lifted, dtype=np.int64, count=len(lifted)))
            if extra:
                rows = np.unique(np.concatenate([rows, *extra]))
                if seen_rows:
                    rows = rows[np.fromiter((int(r) not in seen_rows for r in rows), dtype=bool, count=len(rows))]
                scores = (self.items.matrix[rows] @ query).astype(np.float64)
            if gamma:
                scores += gamma * np.log1p(np.array([lifted.get(int(r), 0.0) for r in rows]))
            if prior is not None:
                scores = scores + prior[rows]
            if prior is not None or gamma:
                order = np.lexsort((rows, -scores))[:k]
                rows, scores = rows[order], scores[order]
            return [(self.items.ids[int(r)], float(v)) for r, v in zip(rows[:k], scores[:k])]
        scores = self.items.matrix @ query
        prior = self._prior_for(kind, n)
        if prior is not None:
            scores = scores + prior
        if gamma:
            scores = scores[None, :].copy()
            add_transition_bonus(scores, [successors], self.items.row, gamma)
            scores = scores[0]
        if seen_rows:  # the product (and any sum after it) is a fresh array: ours to change
            scores[np.fromiter(seen_rows, dtype=np.int64, count=len(seen_rows))] = -np.inf
        top = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
        top = top[np.lexsort((top, -scores[top]))]  # score desc, ties by row
        return [(self.items.ids[int(r)], float(scores[r])) for r in top]

    def _top_k_many(self, queries: np.ndarray, k: int, kind: str,
                    successors: list[Successors | None] | None = None,
                    sessions: list[list[str]] | None = None) -> list[list[tuple[str, float]]]:
        """Rank for ``queries [B, d]`` at once: one matrix product (or one ANN batch query),
        plus the popularity prior of ``kind``'s model and, given each query's ``successors``,
        the transition prior; the items of each query's session are left out when the bundle
        fitted that for ``kind`` (:mod:`models.live.repeats`)."""
        n = len(self.items)
        succ = successors if successors is not None else [None] * len(queries)
        seen = sessions if sessions is not None and self.bundle.exclude_seen(kind) else None
        if n > self.settings.ann_threshold or len(queries) == 1:
            return [self._top_k(q, k, kind, s, None if seen is None else seen[b])
                    for b, (q, s) in enumerate(zip(queries, succ))]
        k = min(k, n)
        if k == 0:
            return [[] for _ in queries]
        sc = queries @ self.items.matrix.T
        prior = self._prior_for(kind, n)
        if prior is not None:
            np.add(sc, prior[None, :], out=sc)  # in place: the [B, n] product is ours
        if successors is not None and (gamma := self.bundle.transition_weight()):
            add_transition_bonus(sc, succ, self.items.row, gamma)
        if seen is not None:
            exclude_seen_rows(sc, seen, self.items.row)
        scores = torch.from_numpy(sc)
        values, rows = torch.topk(scores, k, dim=1)
        ids = self.items.ids
        out = [[(ids[r], v) for r, v in zip(rr, vv)] for rr, vv in zip(rows.tolist(), values.tolist())]
        if seen is not None:  # a session holding all but fewer than k items: drop the excluded
            out = [[iv for iv in recs if iv[1] != -math.inf] for recs in out]
        return out

    def _batch_table(self, sessions: list[list[str]]) -> tuple[list[list[int] | None], torch.Tensor]:
        """Every session's known items renumbered over one small table of the batch's items."""
        local: dict[int, int] = {}
        seqs: list[list[int] | None] = []
        for items in sessions:
            rows = [self.items.row[i] for i in items if i in self.items.row]
            seqs.append([local.setdefault(r, len(local) + 1) for r in rows] or None)
        table = np.zeros((len(local) + 1, self.bundle.dim), dtype=np.float32)
        if local:
            table[1:] = self.items.matrix[list(local)]
        return seqs, torch.from_numpy(table)

    def can_answer_next(self, session_items: list[str]) -> bool:
        return any(i in self.items.row for i in session_items)

    def can_answer_social(self, user_id: str, items: list[str]) -> bool:
        return self.bundle.social is not None and user_id in self.users.row and self.can_answer_next(items)

    @property
    def transition_successors(self) -> int:
        """How many successors of a session's last item to pass with a next-item request
        (:func:`models.live.transition_prior.session_successors`); 0 when the bundle has no
        transition prior, and then none need be read."""
        return self.bundle.transition_successors

    @torch.no_grad()
    def recommend_next_many(self, sessions: list[list[str]], k: int | None = None,
                            successors: list[Successors] | None = None) -> list[list[tuple[str, float]] | None]:
        """:meth:`recommend_next` for many sessions in one SR-GNN call and one ranking product;
        ``successors[b]`` are session ``b``'s transition-prior inputs (none: no transition prior)."""
        seqs, table = self._batch_table(sessions)
        ok = [b for b, seq in enumerate(seqs) if seq is not None]
        out: list[list[tuple[str, float]] | None] = [None] * len(sessions)
        if ok:
            batch = collate_sessions([seqs[b] for b in ok])
            queries = self.bundle.srgnn.session_embedding(batch, table).numpy()
            succ = None if successors is None else [successors[b] for b in ok]
            for b, recs in zip(ok, self._top_k_many(queries, k or self.settings.k, "next_item", succ,
                                                    [sessions[b] for b in ok])):
                out[b] = recs
        return out

    @torch.no_grad()
    def recommend_social_many(self, requests: list[tuple[str, list[str], list[str]]],
                              k: int | None = None) -> list[list[tuple[str, float]] | None]:
        """:meth:`recommend_social` for many ``(user, followees, items)`` at once."""
        model = self.bundle.social
        out: list[list[tuple[str, float]] | None] = [None] * len(requests)
        if model is None:
            return out
        seqs, table = self._batch_table([items for _, _, items in requests])
        ok = [b for b, (user, _, _) in enumerate(requests) if seqs[b] is not None and user in self.users.row]
        if not ok:
            return out
        mat, row = self.users.matrix, self.users.row
        user_rows = [row[requests[b][0]] for b in ok]
        friend_rows = [[row[f] for f in requests[b][1] if f in row] for b in ok]
        counts = torch.tensor([len(f) for f in friend_rows], dtype=torch.long)
        flat = [r for f in friend_rows for r in f]
        user_h = torch.from_numpy(np.concatenate([mat[user_rows], mat[flat]]) if flat else mat[user_rows].copy())
        n = user_h.size(0)
        ptr = torch.full((n + 1,), int(counts.sum()), dtype=torch.long)
        ptr[0] = 0
        ptr[1:len(ok) + 1] = counts.cumsum(0)
        friends = FriendIndex(ptr=ptr, followees=torch.arange(len(ok), n, dtype=torch.long))
        batch = SessionBatch.from_lists(list(range(len(ok))), [seqs[b] for b in ok])
        queries = model.query(user_h, table, batch, friends).numpy()
        for b, recs in zip(ok, self._top_k_many(queries, k or self.settings.k, "social", None,
                                                [requests[b][2] for b in ok])):
            out[b] = recs
        return out

    def recommend_next(self, session_items: list[str], k: int | None = None,
                       successors: Successors | None = None) -> list[tuple[str, float]] | None:
        """Top-k next items for a session (oldest item first); None if no item is known yet."""
        return self.recommend_next_many([session_items], k, None if successors is None else [successors])[0]

    def recommend_social(self, user_id: str, followees: list[str], items: list[str],
                         k: int | None = None) -> list[tuple[str, float]] | None:
        """Top-k for a user from the social model: ``items`` is their current session (or recent
        items), ``followees`` whom they follow. None without a social model or known items."""
        return self.recommend_social_many([(user_id, followees, items)], k)[0]


def social_inputs(store: GraphStore, user_id: str, session_id: str | None, now_ms: int, *,
                  max_followees: int | None, profile_items: int) -> tuple[list[str], list[str]]:
    """``(followees, items)`` the social model reads for a user: whom they follow (strongest
    first) and their session's items, or their ``profile_items`` most recent items without one."""
    followees = [n.node_id for n in store.neighbours("user", user_id, "uu", now_ms, k=max_followees)]
    items = store.session_items(session_id) if session_id else []
    if not items:
        recent = store.neighbours("user", user_id, "ui", now_ms, k=profile_items)
        items = [n.node_id for n in reversed(recent)]
    return followees, items
