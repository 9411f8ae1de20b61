"""Dataset names → one time-ordered event stream for the prequential replay.

Each name maps to a reader over ``shared/data`` (or the simulator) and says what a scored
event asks a system for (``task``):

==================  =========  ==============================================================
name                task       stream
==================  =========  ==============================================================
yoochoose-100k      next_item  session-rec's 100k YooChoose clicks: ``train_full`` then
                               ``test`` (the test file starts after the train file ends)
diginetica-sample   next_item  the raw Diginetica sample (``sample_train-item-views.csv``)
movielens-small     next_item  ml-latest-small ratings, session = the user's history
ciao                social     Ciao ratings + trust follows, session = the user's history
sim-drift           next_item  the simulator with full-strength seasonal drift of category
                               popularity and of item successors, one season per stream,
                               session = the user's history
==================  =========  ==============================================================

Sessions. YooChoose and Diginetica carry real sessions and keep them. MovieLens and Ciao have
none; the reader's default (one session per user-day) leaves almost every Ciao "session" one
rating long, so nothing would be scored there, and we rename every session to the user id:
the user's whole history is the session, and a scored event is any rating after the user's
first. The simulator's sessions are real, but its seasonal popularity only moves the *first*
item of a session, and a first click is never scored inside its own session; keying sessions
by user scores those clicks too. The scenario also turns each item's successors over to a
second, seasonal set as the season advances (``chain_drift``; none at the stream's start, all
of them mid-season): with one fixed Markov chain most scored clicks would never drift and decay
could only lose counts, while this is the drift a decaying graph is for.

``limit`` keeps the first ``limit`` events in time order (after merging files), so a limited
stream is a prefix of the full one.

A user's own file (:func:`load_file`, ``gnnrec eval --stream --file PATH``) is read by
:func:`stream.formats.read_events` in any supported format and treated like the built-in
dataset of its format: formats that carry sessions keep them, the others key sessions by user,
and a file with follows asks for social recommendations.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from stream.events import Follow, Interaction
from stream.formats import read_events
from stream.simulator import Simulator, SimulatorSettings
from models.recipes.stream_eval.names import DATASETS

Event = Interaction | Follow
Task = Literal["next_item", "social"]

DAY_MS = 86_400_000
MINUTE_MS = 60_000


@dataclass(frozen=True)
class SimDriftSettings:
    """The ``sim-drift`` scenario: one full seasonal cycle over the stream.

    Args:
        events: stream length (before ``limit``).
        step_ms: event-time gap between consecutive events.
        start_ms: timestamp of the first event (fixed so runs are reproducible).
        drift_strength: seasonal amplitude in [0, 1]; 1 lets a category's popularity swing
            from 0 to twice its mean.
        chain_drift: peak share of walk steps that take the items' seasonal successors
            (:class:`stream.simulator.SimulatorSettings`); 0 keeps one fixed chain.
        seasons_per_stream: how many seasonal periods the stream covers; 1 means the
            categories that lead at the start are at their trough mid-stream.
        seed: simulator seed.
    """

    events: int = 60_000
    step_ms: int = MINUTE_MS
    start_ms: int = 1_700_000_000_000
    drift_strength: float = 1.0
    chain_drift: float = 1.0
    seasons_per_stream: float = 1.0
    seed: int = 11

    def simulator_settings(self) -> SimulatorSettings:
        period = max(1, round(self.events * self.step_ms / self.seasons_per_stream))
        return SimulatorSettings(drift_strength=self.drift_strength, chain_drift=self.chain_drift,
                                 season_period_ms=period, season_start_ms=self.start_ms, seed=self.seed)


@dataclass(frozen=True)
class StreamDataset:
    """A named, time-ordered event stream and what its scored events ask for."""

    name: str
    events: list[Event]
    task: Task
    session_key: Literal["dataset", "user"]

    @property
    def has_follows(self) -> bool:
        return any(isinstance(e, Follow) for e in self.events)

    def __repr__(self) -> str:
        return f"StreamDataset({self.name!r}, events={len(self.events)}, task={self.task!r})"


def _merge_sorted(streams: Iterable[Iterable[Event]]) -> list[Event]:
    """One time-ordered list; at equal ts follows come first, then earlier streams first
    (the stable sort keeps the order of the concatenation), as :func:`read_events` does."""
    events = [e for s in streams for e in s]
    events.sort(key=lambda e: (e.ts, 0 if isinstance(e, Follow) else 1))
    return events


def _by_user(events: Iterable[Event]) -> list[Event]:
    return [replace(e, session_id=e.user_id) if isinstance(e, Interaction) else e for e in events]


def _yoochoose(root: Path) -> list[Event]:
    folder = root / "yoochoose" / "sessionrec_100k"
    return _merge_sorted([read_events(folder / "yoochoose-clicks-100k_train_full.txt", "yoochoose"),
                          read_events(folder / "yoochoose-clicks-100k_test.txt", "yoochoose")])


def _diginetica(root: Path) -> list[Event]:
    return list(read_events(root / "diginetica" / "raw_sample" / "sample_train-item-views.csv", "diginetica"))


def _movielens(root: Path) -> list[Event]:
    return _by_user(read_events(root / "movielens" / "ml-latest-small.zip", "movielens"))


def _ciao(root: Path) -> list[Event]:
    # The reader finds ciao_trust.mat beside the ratings and places each follow at its
    # source user's first rating.
    return _by_user(read_events(root / "ciao_epinions" / "ciao_rating_with_timestamp.mat", "ciao"))


def simulate_drift(settings: SimDriftSettings, limit: int | None = None) -> list[Event]:
    n = settings.events if limit is None else min(limit, settings.events)
    sim = Simulator(settings.simulator_settings())
    events = sim.events(settings.start_ms, n, settings.step_ms)
    return _by_user(e for e in events if isinstance(e, (Interaction, Follow)))


_READERS: dict[str, tuple[Callable[[Path], list[Event]], Task, Literal["dataset", "user"]]] = {
    "yoochoose-100k": (_yoochoose, "next_item", "dataset"),
    "diginetica-sample": (_diginetica, "next_item", "dataset"),
    "movielens-small": (_movielens, "next_item", "user"),
    "ciao": (_ciao, "social", "user"),
}
if set(DATASETS) != {*_READERS, "sim-drift"}:
    raise ImportError("models.recipes.stream_eval.names.DATASETS and the readers here disagree")


#: Formats whose files carry real sessions (the others are keyed by user, as above).
SESSION_FORMATS = ("yoochoose", "diginetica")


def load_file(path: Path, fmt: str | None = None, *, limit: int | None = None,
              time_step_ms: int | None = None) -> StreamDataset:
    """The first ``limit`` events of a user's file (format ``fmt``, or detected), as a stream."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    reader = read_events(Path(path), fmt, limit=limit, time_step_ms=time_step_ms)
    events = list(reader)
    key: Literal["dataset", "user"] = "dataset" if reader.stats.fmt in SESSION_FORMATS else "user"
    if key == "user":
        events = _by_user(events)
    task: Task = "social" if any(isinstance(e, Follow) for e in events) else "next_item"
    return StreamDataset(f"{Path(path).name} ({reader.stats.fmt})", events, task, key)


def load_dataset(name: str, *, data_dir: Path | None = None, limit: int | None = None,
                 sim: SimDriftSettings | None = None) -> StreamDataset:
    """The first ``limit`` events (all if None) of dataset ``name``, in non-decreasing ts.

    ``data_dir`` is the shared dataset folder (default: ``$GNNREC_SHARED_DATA`` or
    ``<repo>/../shared/data``); ``sim-drift`` needs none and uses ``sim`` (default
    :class:`SimDriftSettings`).
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    if name == "sim-drift":
        return StreamDataset(name, simulate_drift(sim or SimDriftSettings(), limit), "next_item", "user")
    if name not in _READERS:
        raise ValueError(f"unknown stream dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if data_dir is None:
        from models.data.io import shared_data_root  # raises with a fix when the folder is absent
        data_dir = shared_data_root()
    reader, task, key = _READERS[name]
    events = reader(Path(data_dir))
    return StreamDataset(name, events if limit is None else events[:limit], task, key)
