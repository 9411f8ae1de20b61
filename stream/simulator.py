"""The product's own demo stream: users with category tastes, a homophilous follow graph,
seasonal category popularity, sessions that walk a sparse item Markov chain, and social
influence. Pure: time comes in as arguments, and a seed fixes everything.

The world (tastes, items, transition chain, follow plan) is drawn once from ``seed`` in the
constructor; :meth:`Simulator.events` then replays the stream from the start on every call,
so the same arguments always give the same events.

Generative model, at event slot ``i`` with ``ts = start_ms + i·step_ms``:

* **Social ops.** While planned follow/unfollow ops remain, a slot is one with probability
  ``follow_share``. User ``u`` plans ``Poisson(avg_followees)`` followees; each is, with
  probability ``homophily``, drawn as ``c ~ taste_u`` then ``v ∝ taste_v[c]`` — so
  ``P(v | u) = Σ_c taste_u[c]·taste_v[c] / Σ_w taste_w[c]`` favours similar tastes — and
  uniformly otherwise. A fraction ``unfollow_prob`` of edges is later undone.
* **Sessions.** Otherwise one of ``concurrent_sessions`` open sessions (so users interleave)
  takes a step; a finished one is replaced by a new session of a user drawn by activity
  (log-normal). Its length is geometric with mean ``mean_session_len``. Its first item is,
  with probability ``social_influence``, an item a followee interacted with in the last
  ``influence_window_ms``; else ``c ∝ taste_u[c]·pop_c(ts)`` and an item of ``c`` by its
  Zipf popularity, where ``pop_c(ts) ∝ 1 + drift_strength·sin(2π·t/season_period_ms + φ_c)``
  and ``t = ts − season_start_ms``.
* **Walk.** The next item is drawn from :meth:`Simulator.next_item_distribution`:
  ``markov_strength`` on the item's ``n_next`` preferred successors (weights ∝ 1/(rank+1)),
  the rest on its category's popularity. With ``chain_drift > 0`` each item has a second,
  seasonal set of successors, used with probability
  ``chain_drift·(1 − cos(2π·t/season_period_ms))/2``: none at the start of a season, most at
  its middle — what people click after an item drifts with the season too.
* **Kinds.** ``kind_probs`` over (view, click, cart, purchase); a purchase before any cart in
  the session becomes a click.
* **Bad records.** With probability ``bad_fraction`` a slot yields a :class:`BadRecord`
  instead: raw malformed bytes from :mod:`stream.events.badinput` (80% for the interactions topic,
  20% for follows) with the ``Invalid.reason`` a decoder must give it, so the demo and tests
  can check that bad input becomes dead letters. Clock-dependent samples (future timestamps)
  are left out because a reader's clock is not event time. With ``bad_fraction=0`` (the
  default) only :class:`~stream.events.Interaction` and :class:`~stream.events.Follow` come out.

Ids: users ``u<k>``, items ``i<k>``, sessions ``s<k>`` (k from 0, per :meth:`events` call).
"""
from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate

import numpy as np

from stream.events.badinput import malformed_samples
from stream.events import Follow, Interaction

KINDS: tuple[str, ...] = ("view", "click", "cart", "purchase")
_RECENT_PER_USER = 5


@dataclass(frozen=True, slots=True)
class BadRecord:
    """A deliberately malformed payload: send ``value`` as-is to the ``event`` topic
    (``"interaction"`` or ``"follow"``); its decoder must answer ``Invalid(reason, ...)``."""

    event: str
    reason: str
    value: bytes
    ts: int


def user_id(k: int) -> str:
    return f"u{k}"


def item_id(k: int) -> str:
    return f"i{k}"


def index_of(entity_id: str) -> int:
    """``"u17" -> 17``, ``"i42" -> 42``."""
    return int(entity_id[1:])


@dataclass(frozen=True)
class SimulatorSettings:
    """Knobs of the demo world (see the module docstring for the model they drive).

    No setting depends on the event rate: ``step_ms`` is an argument of
    :meth:`Simulator.events`, and the seasonal and influence clocks run on event time.
    """

    n_users: int = 2000
    n_items: int = 5000
    n_categories: int = 20
    mean_session_len: float = 6.0  # geometric, >= 1
    avg_followees: float = 8.0  # Poisson mean of planned followees per user
    homophily: float = 0.8  # share of followees drawn by taste similarity
    unfollow_prob: float = 0.05  # share of follow edges later undone
    follow_share: float = 0.25  # slots used for social ops while any remain
    social_influence: float = 0.3  # P(session starts from a followee's recent item)
    influence_window_ms: int = 86_400_000
    season_period_ms: int = 7 * 86_400_000
    season_start_ms: int = 0  # event time at which a season starts (phase 0)
    drift_strength: float = 0.6  # in [0, 1]; 0 = no seasonality
    chain_drift: float = 0.0  # in [0, 1]; peak share of walk steps on the seasonal successors
    taste_concentration: float = 0.3  # Dirichlet alpha of user tastes; small = focused
    item_zipf: float = 1.0  # exponent of item popularity within a category
    n_next: int = 3  # preferred successors per item
    markov_strength: float = 0.7  # P(next item is a preferred successor)
    concurrent_sessions: int = 32
    kind_probs: tuple[float, float, float, float] = (0.6, 0.3, 0.07, 0.03)
    seed: int = 0
    bad_fraction: float = 0.0

    def __post_init__(self) -> None:
        for name in ("n_users", "n_items", "n_categories", "n_next", "concurrent_sessions",
                     "season_period_ms", "influence_window_ms"):
            if getattr(self, name) < 1:
                raise ValueError(f"SimulatorSettings.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_users < 2 or self.n_items < self.n_categories:
            raise ValueError(f"SimulatorSettings needs n_users >= 2 and n_items >= n_categories, "
                             f"got {self.n_users} users, {self.n_items} items, {self.n_categories} categories")
        for name in ("homophily", "unfollow_prob", "follow_share", "social_influence",
                     "drift_strength", "markov_strength", "bad_fraction", "chain_drift"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"SimulatorSettings.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.mean_session_len < 1 or self.avg_followees < 0:
            raise ValueError(f"SimulatorSettings.mean_session_len must be >= 1 and avg_followees >= 0, "
                             f"got {self.mean_session_len} and {self.avg_followees}")
        if self.taste_concentration <= 0 or self.item_zipf < 0:
            raise ValueError(f"SimulatorSettings.taste_concentration must be > 0 and item_zipf >= 0, "
                             f"got {self.taste_concentration} and {self.item_zipf}")
        if len(self.kind_probs) != 4 or min(self.kind_probs) < 0 or sum(self.kind_probs) <= 0:
            raise ValueError(f"SimulatorSettings.kind_probs must be 4 non-negative weights for {KINDS}, "
                             f"got {self.kind_probs}")
        if self.seed < 0:
            raise ValueError(f"SimulatorSettings.seed must be >= 0, got {self.seed}")


class _Session:
    __slots__ = ("user", "sid", "item", "left", "carted")

    def __init__(self, user: int, sid: str, item: int, left: int) -> None:
        self.user, self.sid, self.item, self.left, self.carted = user, sid, item, left, False


class Simulator:
    """Deterministic demo-stream generator; ground truth is exposed for tests."""

    def __init__(self, settings: SimulatorSettings | None = None) -> None:
        self.settings = s = settings or SimulatorSettings()
        rng = np.random.default_rng(s.seed)
        C, U, I = s.n_categories, s.n_users, s.n_items
        self.taste = rng.dirichlet(np.full(C, s.taste_concentration), size=U)  # (U, C)
        self.phase = rng.permutation(C) * (2 * math.pi / C)  # (C,)
        self.item_category = rng.permutation(np.arange(I) % C)  # (I,), every category non-empty
        self.item_popularity = np.zeros(I)  # within-category probabilities, (I,)
        self._cat_items: list[list[int]] = []
        self._cat_cum: list[list[float]] = []
        for c in range(C):
            items = np.flatnonzero(self.item_category == c)
            w = 1.0 / (rng.permutation(len(items)) + 1.0) ** s.item_zipf
            self.item_popularity[items] = w / w.sum()
            self._cat_items.append(items.tolist())
            self._cat_cum.append(np.cumsum(w / w.sum()).tolist())
        self.next_items, self.next_weights = self._draw_chain(rng)
        self.follow_plan = self._draw_follow_plan(rng)
        self._taste_rows = self.taste.tolist()
        self._user_cum = list(accumulate(rng.lognormal(0.0, 1.0, U).tolist()))
        self._kind_cum = list(accumulate(p / sum(s.kind_probs) for p in s.kind_probs))
        # Drawn last, and only when used, so that streams without chain drift stay as they were.
        self.seasonal_next_items = None
        if s.chain_drift > 0:
            first = self._next_list
            self.seasonal_next_items, _ = self._draw_chain(rng)
            self._seasonal_list, self._next_list = self._next_list, first

    def __repr__(self) -> str:
        s = self.settings
        return (f"Simulator(users={s.n_users}, items={s.n_items}, categories={s.n_categories}, "
                f"seed={s.seed})")

    # ------------------------------------------------------------------ ground truth

    def category_popularity(self, ts: int) -> np.ndarray:
        """``pop_c(ts) ∝ 1 + drift·sin(2π·(ts − season_start)/period + φ_c)``, normalised. Shape ``(C,)``."""
        s = self.settings
        raw = 1.0 + s.drift_strength * np.sin(2 * math.pi * (ts - s.season_start_ms) / s.season_period_ms + self.phase)
        return raw / raw.sum()

    def seasonal_chain_share(self, ts: int) -> float:
        """Share of Markov steps at ``ts`` that take the seasonal successors (0 without chain drift)."""
        s = self.settings
        return s.chain_drift * (1.0 - math.cos(2 * math.pi * (ts - s.season_start_ms) / s.season_period_ms)) / 2.0

    def next_item_distribution(self, item: int | str, ts: int | None = None) -> np.ndarray:
        """Exact ``P(next item | current item)`` inside a session (at ``ts``, which chain drift
        needs). Shape ``(n_items,)``."""
        k = index_of(item) if isinstance(item, str) else int(item)
        s = self.settings
        if self.seasonal_next_items is not None and ts is None:
            raise ValueError("with chain_drift > 0 the next item depends on the time: pass ts")
        c = self.item_category[k]
        dist = np.where(self.item_category == c, self.item_popularity, 0.0) * (1 - s.markov_strength)
        share = 0.0 if ts is None else self.seasonal_chain_share(ts)
        np.add.at(dist, self.next_items[k], (1 - share) * s.markov_strength * self.next_weights)
        if share:
            np.add.at(dist, self.seasonal_next_items[k], share * s.markov_strength * self.next_weights)
        return dist

    # ------------------------------------------------------------------ the stream

    def events(self, start_ms: int, n: int, step_ms: int) -> Iterator[Interaction | Follow | BadRecord]:
        """``n`` events with ``ts = start_ms + i·step_ms``, replayed from the seed."""
        if n < 0 or step_ms < 0:
            raise ValueError(f"need n >= 0 and step_ms >= 0, got n={n}, step_ms={step_ms}")
        return self._generate(int(start_ms), int(n), int(step_ms))

    def _generate(self, start_ms: int, n: int, step_ms: int) -> Iterator[Interaction | Follow | BadRecord]:
        s = self.settings
        rnd = random.Random(s.seed * 7919 + 17)
        followees: dict[int, dict[int, None]] = {}
        recent: dict[int, deque[tuple[int, int]]] = {}
        slots: list[_Session | None] = [None] * s.concurrent_sessions
        n_sessions, op_pos = 0, 0
        for i in range(n):
            ts = start_ms + i * step_ms
            if s.bad_fraction and rnd.random() < s.bad_fraction:
                yield self._bad_record(rnd, ts)
                continue
            if op_pos < len(self.follow_plan) and rnd.random() < s.follow_share:
                op, src, dst = self.follow_plan[op_pos]
                op_pos += 1
                if op == "follow":
                    followees.setdefault(src, {})[dst] = None
                else:
                    followees.get(src, {}).pop(dst, None)
                yield Follow(user_id(src), user_id(dst), ts, op)
                continue
            k = rnd.randrange(s.concurrent_sessions)
            sess = slots[k]
            if sess is None or sess.left == 0:
                sess = self._start_session(rnd, ts, f"s{n_sessions}", followees, recent)
                n_sessions += 1
                slots[k] = sess
            else:
                sess.item = self._next_item(rnd, sess.item, ts)
            sess.left -= 1
            kind = KINDS[bisect_right(self._kind_cum, rnd.random() * self._kind_cum[-1])]
            if kind == "cart":
                sess.carted = True
            elif kind == "purchase" and not sess.carted:
                kind = "click"
            recent.setdefault(sess.user, deque(maxlen=_RECENT_PER_USER)).append((ts, sess.item))
            yield Interaction(user_id(sess.user), item_id(sess.item), sess.sid, ts, kind)

    def _start_session(self, rnd: random.Random, ts: int, sid: str,
                       followees: dict[int, dict[int, None]],
                       recent: dict[int, deque[tuple[int, int]]]) -> _Session:
        s = self.settings
        user = min(bisect_right(self._user_cum, rnd.random() * self._user_cum[-1]), s.n_users - 1)
        item = None
        if rnd.random() < s.social_influence:
            horizon = ts - s.influence_window_ms
            active = [f for f in followees.get(user, ()) if f in recent and recent[f][-1][0] >= horizon]
            if active:
                seen = [it for t, it in recent[active[rnd.randrange(len(active))]] if t >= horizon]
                item = seen[rnd.randrange(len(seen))]
        if item is None:
            pop = self.category_popularity(ts).tolist()
            cum = list(accumulate(t * p for t, p in zip(self._taste_rows[user], pop)))
            c = min(bisect_right(cum, rnd.random() * cum[-1]), s.n_categories - 1)
            item = self._popular_item(rnd, c)
        p = 1.0 / s.mean_session_len
        length = 1 if p >= 1.0 else 1 + int(math.log(1.0 - rnd.random()) / math.log(1.0 - p))
        return _Session(user, sid, item, length)

    def _popular_item(self, rnd: random.Random, c: int) -> int:
        cum = self._cat_cum[c]
        return self._cat_items[c][min(bisect_right(cum, rnd.random() * cum[-1]), len(cum) - 1)]

    def _next_item(self, rnd: random.Random, item: int, ts: int) -> int:
        if rnd.random() < self.settings.markov_strength:
            chain = self._next_list
            if self.seasonal_next_items is not None and rnd.random() < self.seasonal_chain_share(ts):
                chain = self._seasonal_list
            j = bisect_right(self._next_cum, rnd.random())
            return chain[item][min(j, len(self._next_cum) - 1)]
        return self._popular_item(rnd, int(self.item_category[item]))

    def _bad_record(self, rnd: random.Random, ts: int) -> BadRecord:
        event = "interaction" if rnd.random() < 0.8 else "follow"
        samples = [x for x in malformed_samples(ts, event=event) if x[0] != "future_timestamp"]
        reason, value = samples[rnd.randrange(len(samples))]
        return BadRecord(event, reason, value, ts)

    # ------------------------------------------------------------------ world building

    def _draw_chain(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Each item's preferred successors: distinct other items of its category, drawn
        ∝ popularity without replacement (Gumbel top-k), weighted ∝ 1/(rank+1).
        Shapes: ``(n_items, n)`` and ``(n,)`` with ``n = min(n_next, smallest category - 1)``."""
        s = self.settings
        n = max(1, min(s.n_next, min(len(c) for c in self._cat_items) - 1))
        nxt = np.zeros((s.n_items, n), dtype=np.int64)
        for items in self._cat_items:
            pool = np.asarray(items)
            logp = np.log(self.item_popularity[pool])
            for lo in range(0, len(pool), 512):  # bounded memory for big categories
                rows = np.arange(lo, min(lo + 512, len(pool)))
                keys = logp + rng.gumbel(size=(len(rows), len(pool)))
                if len(pool) > 1:
                    keys[np.arange(len(rows)), rows] = -np.inf  # never its own successor
                top = np.argsort(-keys, axis=1)[:, :n]
                nxt[pool[rows]] = pool[top]
        w = 1.0 / np.arange(1, n + 1)
        w = w / w.sum()
        self._next_list = nxt.tolist()
        self._next_cum = np.cumsum(w).tolist()
        return nxt, w

    def _draw_follow_plan(self, rng: np.random.Generator) -> list[tuple[str, int, int]]:
        """Shuffled (op, src, dst) social ops: homophilous follows and some later unfollows."""
        s = self.settings
        U, C = s.n_users, s.n_categories
        src = np.repeat(np.arange(U), rng.poisson(s.avg_followees, U))
        dst = rng.integers(0, U, len(src))
        similar = rng.random(len(src)) < s.homophily
        cat = (rng.random((len(src), 1)) > np.cumsum(self.taste[src], axis=1)).sum(axis=1)
        cat = np.minimum(cat, C - 1)
        u = rng.random(len(src))
        for c in range(C):
            rows = np.flatnonzero(similar & (cat == c))
            cum = np.cumsum(self.taste[:, c])
            dst[rows] = np.minimum(np.searchsorted(cum, u[rows] * cum[-1], side="right"), U - 1)
        pairs = np.stack([src, dst], axis=1)[src != dst]
        _, first = np.unique(pairs, axis=0, return_index=True)
        pairs = pairs[np.sort(first)]
        keys = rng.random(len(pairs))
        ops = [(float(kf), "follow", int(a), int(b)) for kf, (a, b) in zip(keys, pairs.tolist())]
        undo = np.flatnonzero(rng.random(len(pairs)) < s.unfollow_prob)
        later = keys[undo] + (1.0 - keys[undo]) * rng.random(len(undo))
        ops += [(float(kl), "unfollow", int(pairs[j, 0]), int(pairs[j, 1])) for kl, j in zip(later, undo)]
        ops.sort()
        return [(op, a, b) for _, op, a, b in ops]
