"""Replay public recommender datasets as one time-ordered stream of typed events.

``read_events(path)`` detects the format, parses the whole file (the files we replay are a few
MB), sorts it by event time and yields :class:`~stream.events.Interaction` and
:class:`~stream.events.Follow` records. At equal timestamps follows come first (so an edge
exists before the interaction that may use it) and file order is kept otherwise.

Formats (the names ``gnnrec produce --format`` takes), and the events they give:

- ``yoochoose``: session-rec TSV ``SessionId ItemId Time`` (Unix s, float) or the raw RecSys'15
  clicks CSV ``session,ISO time,item,category`` → clicks.
- ``diginetica``: ``train-item-views.csv`` (``;``) → views; ts = eventdate 00:00 UTC +
  timeframe ms; user = userId, or ``s<session>`` when ``NA``.
- ``movielens``: ``ratings.csv`` or ``ml-latest-small.zip`` → clicks with weight = rating.
- ``ciao``: ``*rating*.mat`` ``['rating']`` (user, item, category, rating, helpfulness, time s)
  → clicks with weight = rating; a sibling ``*trust*.mat`` ``['trust']`` → follows.
- ``lastfm``: hetrec2011 folder or ``user_taggedartists.dat`` → one click per (user, artist,
  date), however many tags; ``user_friends.dat`` beside it → follows.

Sessions: yoochoose and diginetica carry their own; elsewhere a session is one user's UTC day,
``"<user>@YYYY-MM-DD"``. Anonymous yoochoose sessions use the session id as user id. Datasets
without follow times place a follow at its source user's first kept interaction (the dataset
start if that user has none).

Timestamps are int ms since the Unix epoch. A record that would get ts < 0 (Last.fm holds
tagging dates back to 1956) is dropped and counted in ``ReadStats.dropped_pre_epoch``; any
other date, however odd (Last.fm's 1979), is kept and sorted into place. A truncated or garbled
line raises :class:`FormatError` naming the file, the line and what was wrong.
"""
from __future__ import annotations

import gzip
import io
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from itertools import chain
from pathlib import Path

from stream.events import Follow, Interaction

Event = Interaction | Follow

FORMATS: tuple[str, ...] = ("yoochoose", "diginetica", "movielens", "ciao", "lastfm")
DAY_MS = 86_400_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_RAW_YOOCHOOSE = re.compile(r"^\d+,\d{4}-\d\d-\d\dT[0-9:.]+Z?,\d+,")


class FormatError(ValueError):
    """A replay file that cannot be parsed: ``str()`` is ``"<file> line <n>: <reason>"``."""

    def __init__(self, path: Path | str, line: int | None, reason: str) -> None:
        self.path = Path(path)
        self.line = line
        self.reason = reason
        where = f"{path} line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")


@dataclass
class ReadStats:
    """What a reader found. ``rows`` counts interaction rows read (not headers, not follow
    rows): ``rows == interactions + merged_rows + dropped_pre_epoch``. ``follows`` counts
    follow edges read. ``yielded`` grows as the caller iterates."""

    path: Path
    fmt: str
    rows: int = 0
    interactions: int = 0
    follows: int = 0
    merged_rows: int = 0  # Last.fm: extra tag rows of one (user, artist, date)
    dropped_pre_epoch: int = 0
    yielded: int = 0


class EventReader(Iterator[Event]):
    """Iterator over a parsed, time-sorted replay file; ``stats`` describes what was read.

    Parsing happens in the constructor, so a :class:`FormatError` surfaces before the first
    event is produced anywhere.
    """

    def __init__(self, path: Path, fmt: str | None = None, *, limit: int | None = None) -> None:
        path = Path(path)
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}")
        if not path.exists():
            raise FileNotFoundError(f"replay file {path} does not exist")
        fmt = detect_format(path) if fmt is None else fmt
        if fmt not in _READERS:
            raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        self.stats = ReadStats(path=path, fmt=fmt)
        events = _READERS[fmt](path, self.stats)
        events.sort(key=_sort_key)  # stable: file order survives at equal keys
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


def read_events(path: Path, fmt: str | None = None, *, limit: int | None = None) -> EventReader:
    """Events of a replay file in non-decreasing ``ts`` order (at most ``limit`` of them).

    ``fmt`` is one of :data:`FORMATS`; ``None`` detects it with :func:`detect_format`.
    """
    return EventReader(path, fmt, limit=limit)


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
    with _open_text(path) as fh:
        first = fh.readline().strip()
    header = first.replace(" ", "").lower()
    if header.startswith("sessionid\titemid\ttime") or _RAW_YOOCHOOSE.match(first):
        return "yoochoose"
    if header.startswith(("session_id;user_id;item_id", "sessionid;userid;itemid")):
        return "diginetica"
    if header.startswith("userid,movieid,rating,timestamp"):
        return "movielens"
    if header.startswith("userid\tartistid\ttagid"):
        return "lastfm"
    raise FormatError(path, 1, f"unrecognised header {first[:80]!r}; pass --format one of "
                      f"{', '.join(FORMATS)}")


# ----------------------------------------------------------------------------- helpers


def _sort_key(event: Event) -> tuple[int, int]:
    return (event.ts, 0 if isinstance(event, Follow) else 1)


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


@lru_cache(maxsize=1 << 16)
def _day_name(day: int) -> str:
    return date.fromordinal(_EPOCH_ORDINAL + day).isoformat()


@lru_cache(maxsize=1 << 16)
def _date_ms(text: str) -> int:
    return (date.fromisoformat(text).toordinal() - _EPOCH_ORDINAL) * DAY_MS


@lru_cache(maxsize=1 << 16)
def _ymd_ms(year: int, month: int, day: int) -> int:
    return (date(year, month, day).toordinal() - _EPOCH_ORDINAL) * DAY_MS


def _day_session(user: str, ts: int) -> str:
    return f"{user}@{_day_name(ts // DAY_MS)}"


def _need_ids(path: Path, line: int, **ids: str) -> None:
    """Every id in these public datasets is a decimal integer: anything else is garbage."""
    for name, value in ids.items():
        if not value.isdigit():
            raise FormatError(path, line, f"{name} must be a non-negative integer, got {value!r}")


def _rows(path: Path, fh: Iterable[str], sep: str, n_fields: int, start: int) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank line; ``start`` is the first line's number."""
    name = {"\t": "tab", ";": "semicolon", ",": "comma"}[sep]
    for lineno, raw in enumerate(fh, start):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        fields = line.split(sep)
        if len(fields) != n_fields:
            raise FormatError(path, lineno, f"expected {n_fields} {name}-separated fields, "
                              f"got {len(fields)}")
        yield lineno, fields


def _check_header(path: Path, got: str, *expected: str) -> None:
    norm = got.strip().replace(" ", "").lower()
    if norm not in {e.lower() for e in expected}:
        raise FormatError(path, 1, f"expected header {expected[0]!r}, got {got.strip()[:80]!r}")


def _keep(stats: ReadStats, ts: int) -> bool:
    if ts < 0:
        stats.dropped_pre_epoch += 1
        return False
    return True


# ----------------------------------------------------------------------------- readers


def _read_yoochoose(path: Path, stats: ReadStats) -> list[Event]:
    out: list[Event] = []
    with _open_text(path) as fh:
        first = fh.readline()
        raw = bool(_RAW_YOOCHOOSE.match(first))
        if raw:  # no header: the first line is data
            rows = _rows(path, chain([first], fh), ",", 4, 1)
        else:
            _check_header(path, first, "SessionId\tItemId\tTime")
            rows = _rows(path, fh, "\t", 3, 2)
        for lineno, f in rows:
            session, item = f[0], f[2 if raw else 1]
            _need_ids(path, lineno, session_id=session, item_id=item)
            ts = _iso_ms(f[1], path, lineno) if raw else _float_s_ms(f[2], path, lineno)
            stats.rows += 1
            if _keep(stats, ts):
                out.append(Interaction(session, item, session, ts, "click"))
    stats.interactions = len(out)
    return out


def _iso_ms(text: str, path: Path, line: int) -> int:
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise FormatError(path, line, f"bad ISO timestamp {text!r}") from None
    if stamp.tzinfo is None:
        raise FormatError(path, line, f"timestamp {text!r} has no zone (expected ...Z)")
    return round(stamp.timestamp() * 1000)


def _float_s_ms(text: str, path: Path, line: int) -> int:
    try:
        return round(float(text) * 1000)
    except (ValueError, OverflowError):  # garbage, nan, inf
        raise FormatError(path, line, f"time must be Unix seconds, got {text!r}") from None


def _read_diginetica(path: Path, stats: ReadStats) -> list[Event]:
    out: list[Event] = []
    with _open_text(path) as fh:
        _check_header(path, fh.readline(), "session_id;user_id;item_id;timeframe;eventdate",
                      "sessionId;userId;itemId;timeframe;eventdate")
        for lineno, (session, user, item, frame, day) in _rows(path, fh, ";", 5, 2):
            user = f"s{session}" if user == "NA" else user  # anonymous session: s<session>
            _need_ids(path, lineno, session_id=session, item_id=item, user_id=user.removeprefix("s"))
            try:
                ts = _date_ms(day) + int(frame)
            except ValueError:
                raise FormatError(path, lineno, f"bad timeframe {frame!r} or eventdate {day!r} "
                                  "(expected integer ms and YYYY-MM-DD)") from None
            stats.rows += 1
            if _keep(stats, ts):
                out.append(Interaction(user, item, session, ts, "view"))
    stats.interactions = len(out)
    return out


def _read_movielens(path: Path, stats: ReadStats) -> list[Event]:
    if path.is_dir():
        path = path / "ratings.csv"
    if path.suffix.lower() != ".zip":
        with _open_text(path) as fh:
            return _parse_ratings_csv(path, fh, stats)
    try:
        with zipfile.ZipFile(path) as zf:
            members = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == "ratings.csv"]
            if len(members) != 1:
                raise FormatError(path, None, f"expected one ratings.csv in the archive, found {len(members)}")
            with zf.open(members[0]) as raw:
                text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
                return _parse_ratings_csv(Path(f"{path}!{members[0]}"), text, stats)
    except zipfile.BadZipFile as exc:
        raise FormatError(path, None, f"not a readable zip archive ({exc})") from None


def _parse_ratings_csv(path: Path, fh: io.TextIOBase, stats: ReadStats) -> list[Event]:
    out: list[Event] = []
    _check_header(path, fh.readline(), "userId,movieId,rating,timestamp")
    for lineno, (user, item, rating, stamp) in _rows(path, fh, ",", 4, 2):
        _need_ids(path, lineno, userId=user, movieId=item)
        try:
            weight, ts = float(rating), int(stamp) * 1000
        except ValueError:
            raise FormatError(path, lineno, f"bad rating {rating!r} or timestamp {stamp!r}") from None
        stats.rows += 1
        if _keep(stats, ts):
            out.append(Interaction(user, item, _day_session(user, ts), ts, "click", weight))
    stats.interactions = len(out)
    return out


def _load_mat(path: Path, key: str, min_cols: int):  # -> numpy array (n, >= min_cols)
    import scipy.io

    try:
        data = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises several unrelated types for a damaged file
        raise FormatError(path, None, f"not a readable MATLAB .mat file ({type(exc).__name__}: {exc})") from None
    if key not in data:
        found = sorted(k for k in data if not k.startswith("__"))
        raise FormatError(path, None, f"no {key!r} matrix (found {found})")
    mat = data[key]
    if mat.ndim != 2 or mat.shape[1] < min_cols:
        raise FormatError(path, None, f"{key!r} must have >= {min_cols} columns, got shape {mat.shape}")
    return mat


def _trust_file(ratings: Path) -> Path | None:
    candidates = sorted(p for p in ratings.parent.glob("*trust*.mat") if p != ratings)
    if len(candidates) > 1:  # e.g. ciao_trust.mat and epinions_trust.mat side by side
        prefix = ratings.name.split("_")[0].lower()
        candidates = [p for p in candidates if p.name.lower().startswith(prefix)]
    if len(candidates) > 1:
        raise FormatError(ratings, None, f"several trust files beside it ({[p.name for p in candidates]}); "
                          "keep one per folder")
    return candidates[0] if candidates else None


def _read_ciao(path: Path, stats: ReadStats) -> list[Event]:
    if path.is_dir():
        path = sorted(path.glob("*rating*.mat"))[0]
    rating = _load_mat(path, "rating", 6)
    out: list[Event] = []
    first_ts: dict[str, int] = {}
    for row, (user, item, _cat, value, _helpful, secs) in enumerate(rating.tolist(), 1):
        stats.rows += 1
        ts = int(secs) * 1000
        if user < 0 or item < 0:
            raise FormatError(path, None, f"rating row {row}: negative user or product id")
        if not _keep(stats, ts):
            continue
        u = str(int(user))
        out.append(Interaction(u, str(int(item)), _day_session(u, ts), ts, "click", float(value)))
        if ts < first_ts.get(u, ts + 1):
            first_ts[u] = ts
    stats.interactions = len(out)
    trust = _trust_file(path)
    if trust is not None:
        start = min(first_ts.values(), default=0)
        for src, dst in _load_mat(trust, "trust", 2)[:, :2].tolist():
            s = str(int(src))
            out.append(Follow(s, str(int(dst)), first_ts.get(s, start), "follow"))
            stats.follows += 1
    return out


def _read_lastfm(path: Path, stats: ReadStats) -> list[Event]:
    folder = path if path.is_dir() else path.parent
    tagged = folder / "user_taggedartists.dat" if path.is_dir() else path
    seen: set[tuple[str, str, int]] = set()
    out: list[Event] = []
    first_ts: dict[str, int] = {}
    with _open_text(tagged) as fh:
        _check_header(tagged, fh.readline(), "userID\tartistID\ttagID\tday\tmonth\tyear")
        for lineno, (user, artist, tag, day, month, year) in _rows(tagged, fh, "\t", 6, 2):
            _need_ids(tagged, lineno, userID=user, artistID=artist, tagID=tag)
            try:
                ts = _ymd_ms(int(year), int(month), int(day))
            except ValueError:
                raise FormatError(tagged, lineno, f"bad date day={day!r} month={month!r} year={year!r}") from None
            stats.rows += 1
            if not _keep(stats, ts):
                continue
            if (user, artist, ts) in seen:
                stats.merged_rows += 1
                continue
            seen.add((user, artist, ts))
            out.append(Interaction(user, artist, _day_session(user, ts), ts, "click"))
            if ts < first_ts.get(user, ts + 1):
                first_ts[user] = ts
    stats.interactions = len(out)
    friends = folder / "user_friends.dat"
    if friends.exists():
        start = min(first_ts.values(), default=0)
        with _open_text(friends) as fh:
            _check_header(friends, fh.readline(), "userID\tfriendID")
            for lineno, (src, dst) in _rows(friends, fh, "\t", 2, 2):
                _need_ids(friends, lineno, userID=src, friendID=dst)
                out.append(Follow(src, dst, first_ts.get(src, start), "follow"))
                stats.follows += 1
    return out


_READERS: dict[str, Callable[[Path, ReadStats], list[Event]]] = {
    "yoochoose": _read_yoochoose,
    "diginetica": _read_diginetica,
    "movielens": _read_movielens,
    "ciao": _read_ciao,
    "lastfm": _read_lastfm,
}
