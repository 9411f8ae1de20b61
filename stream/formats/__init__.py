"""Replay public recommender datasets as one time-ordered stream of typed events.

``read_events(path)`` detects the format, parses the whole file (the files we replay are a few
MB), sorts it by event time and yields :class:`~stream.events.Interaction` and
:class:`~stream.events.Follow` records. At equal timestamps follows placed at their source's
first interaction come first (so the edge exists before the interaction that may use it);
follows the file dates itself are interleaved in proportion with the interactions of the same
instant, so any prefix (``limit``) holds both kinds; file order is kept otherwise.

Formats (the names ``gnnrec produce --format`` takes), and the events they give:

- ``yoochoose``: session-rec TSV ``SessionId ItemId Time`` (Unix s, float) or the raw RecSys'15
  clicks CSV ``session,ISO time,item,category`` → clicks.
- ``diginetica``: ``train-item-views.csv`` (``;``) → views; ts = eventdate 00:00 UTC +
  timeframe ms; user = userId, or ``s<session>`` when ``NA``.
- ``movielens``: ``ratings.csv`` or ``ml-latest-small.zip`` → clicks with weight = rating.
- ``ciao``: ``*rating*.mat`` ``['rating']`` (user, item, category, rating, helpfulness, time)
  → clicks with weight = rating; a sibling ``*trust*.mat`` ``['trust']`` (src, dst[, time]) →
  follows, at the file's time where it has a third column. The layout is published with the
  time in Unix seconds and also in a few coarse steps (1..11): steps are refused unless
  ``time_step_ms`` (``--time-step-ms``) says how long a step is, never read as seconds.
- ``lastfm``: hetrec2011 folder or ``user_taggedartists.dat`` → one click per (user, artist,
  date), however many tags; ``user_friends.dat`` beside it → follows.

Sessions: yoochoose and diginetica carry their own; elsewhere a session is one user's UTC day,
``"<user>@YYYY-MM-DD"``. Anonymous yoochoose sessions use the session id as user id. Files
without follow times place a follow at its source user's first kept interaction (the dataset
start if that user has none).

Timestamps are int ms since the Unix epoch. A record that would get ts < 0 (Last.fm holds
tagging dates back to 1956) is dropped and counted in ``ReadStats.dropped_pre_epoch``; any
other date, however odd (Last.fm's 1979), is kept and sorted into place. A truncated or garbled
line raises :class:`FormatError` naming the file, the line and what was wrong.

This module detects the format and sorts; the per-format readers are in
:mod:`stream.formats.readers` and the shared parsing primitives (``FormatError``, ``ReadStats``,
line splitting, dates) in :mod:`stream.formats.parsing`, re-exported here.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from stream.events import Follow
from stream.formats.parsing import DAY_MS, RAW_YOOCHOOSE, Event, FormatError, ReadOptions, ReadStats, open_text
from stream.formats.readers import READERS

__all__ = ["DAY_MS", "FORMATS", "Event", "EventReader", "FormatError", "ReadOptions", "ReadStats", "detect_format",
           "read_events"]

FORMATS: tuple[str, ...] = ("yoochoose", "diginetica", "movielens", "ciao", "lastfm")


class EventReader(Iterator[Event]):
    """Iterator over a parsed, time-sorted replay file; ``stats`` describes what was read.

    Parsing happens in the constructor, so a :class:`FormatError` surfaces before the first
    event is produced anywhere.
    """

    def __init__(self, path: Path, fmt: str | None = None, *, limit: int | None = None,
                 options: ReadOptions = ReadOptions()) -> None:
        path = Path(path)
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}")
        if not path.exists():
            raise FileNotFoundError(f"replay file {path} does not exist")
        fmt = detect_format(path) if fmt is None else fmt
        if fmt not in READERS:
            raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        if options.time_step_ms is not None and fmt != "ciao":
            raise ValueError(f"--time-step-ms maps coarse time steps (the ciao .mat layout); {fmt} files carry "
                             "real times: leave it out")
        self.stats = ReadStats(path=path, fmt=fmt)
        events = READERS[fmt](path, self.stats, options)
        # Stable: file order survives at equal keys (a reader that dates its follows has
        # already interleaved them with the interactions of the same instant).
        events.sort(key=_sort_key if self.stats.follow_times == "first_interaction" else _ts)
        self._events = events if limit is None else events[:limit]
        self._pos = 0

    def __len__(self) -> int:
        return len(self._events) - self._pos

    def __next__(self) -> Event:
        if self._pos >= len(self._events):
            raise StopIteration
        event = self._events[self._pos]
        self._pos += 1
        self.stats.yielded += 1
        return event


def read_events(path: Path, fmt: str | None = None, *, limit: int | None = None,
                time_step_ms: int | None = None) -> EventReader:
    """Events of a replay file in non-decreasing ``ts`` order (at most ``limit`` of them).

    ``fmt`` is one of :data:`FORMATS`; ``None`` detects it with :func:`detect_format`.
    ``time_step_ms`` maps a time column of coarse steps (:class:`ReadOptions`).
    """
    return EventReader(path, fmt, limit=limit, options=ReadOptions(time_step_ms=time_step_ms))


def detect_format(path: Path) -> str:
    """Name of the format of ``path`` (a file, a ``.zip``/``.mat``, or a dataset folder)."""
    path = Path(path)
    if path.is_dir():
        if (path / "user_taggedartists.dat").exists():
            return "lastfm"
        if (path / "ratings.csv").exists():
            return "movielens"
        if any(path.glob("*rating*.mat")):
            return "ciao"
        raise FormatError(path, None, "folder holds no user_taggedartists.dat, ratings.csv or "
                          "*rating*.mat; pass the data file itself and --format")
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return "movielens"
    if suffix == ".mat":
        return "ciao"
    with open_text(path) as fh:
        first = fh.readline().strip()
    header = first.replace(" ", "").lower()
    if header.startswith("sessionid\titemid\ttime") or RAW_YOOCHOOSE.match(first):
        return "yoochoose"
    if header.startswith(("session_id;user_id;item_id", "sessionid;userid;itemid")):
        return "diginetica"
    if header.startswith("userid,movieid,rating,timestamp"):
        return "movielens"
    if header.startswith("userid\tartistid\ttagid"):
        return "lastfm"
    raise FormatError(path, 1, f"unrecognised header {first[:80]!r}; pass --format one of "
                      f"{', '.join(FORMATS)}")


def _ts(event: Event) -> int:
    return event.ts


def _sort_key(event: Event) -> tuple[int, int]:
    return (event.ts, 0 if isinstance(event, Follow) else 1)
