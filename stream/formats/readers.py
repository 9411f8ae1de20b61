"""One reader per replay format: ``path, stats, options -> events`` in file order (sorting is
the caller's).

The format rules each reader follows are in the :mod:`stream.formats` docstring; malformed
input raises :class:`~stream.formats.parsing.FormatError` naming file and line.
"""
from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from datetime import datetime
from itertools import chain
from pathlib import Path

from stream.events import Follow, Interaction
from stream.formats.parsing import (
    COARSE_TIME_BELOW_S,
    RAW_YOOCHOOSE,
    Event,
    FormatError,
    ReadOptions,
    ReadStats,
    check_header,
    date_ms,
    day_session,
    keep,
    need_ids,
    open_text,
    split_rows,
    ymd_ms,
)


def _read_yoochoose(path: Path, stats: ReadStats, options: ReadOptions) -> list[Event]:
    out: list[Event] = []
    with open_text(path) as fh:
        first = fh.readline()
        raw = bool(RAW_YOOCHOOSE.match(first))
        if raw:  # no header: the first line is data
            rows = split_rows(path, chain([first], fh), ",", 4, 1)
        else:
            check_header(path, first, "SessionId\tItemId\tTime")
            rows = split_rows(path, fh, "\t", 3, 2)
        for lineno, f in rows:
            session, item = f[0], f[2 if raw else 1]
            need_ids(path, lineno, session_id=session, item_id=item)
            ts = _iso_ms(f[1], path, lineno) if raw else _float_s_ms(f[2], path, lineno)
            stats.rows += 1
            if keep(stats, ts):
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


def _read_diginetica(path: Path, stats: ReadStats, options: ReadOptions) -> list[Event]:
    out: list[Event] = []
    with open_text(path) as fh:
        check_header(path, fh.readline(), "session_id;user_id;item_id;timeframe;eventdate",
                      "sessionId;userId;itemId;timeframe;eventdate")
        for lineno, (session, user, item, frame, day) in split_rows(path, fh, ";", 5, 2):
            user = f"s{session}" if user == "NA" else user  # anonymous session: s<session>
            need_ids(path, lineno, session_id=session, item_id=item, user_id=user.removeprefix("s"))
            try:
                ts = date_ms(day) + int(frame)
            except ValueError:
                raise FormatError(path, lineno, f"bad timeframe {frame!r} or eventdate {day!r} "
                                  "(expected integer ms and YYYY-MM-DD)") from None
            stats.rows += 1
            if keep(stats, ts):
                out.append(Interaction(user, item, session, ts, "view"))
    stats.interactions = len(out)
    return out


def _read_movielens(path: Path, stats: ReadStats, options: ReadOptions) -> list[Event]:
    if path.is_dir():
        path = path / "ratings.csv"
    if path.suffix.lower() != ".zip":
        with open_text(path) as fh:
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
    check_header(path, fh.readline(), "userId,movieId,rating,timestamp")
    for lineno, (user, item, rating, stamp) in split_rows(path, fh, ",", 4, 2):
        need_ids(path, lineno, userId=user, movieId=item)
        try:
            weight, ts = float(rating), int(stamp) * 1000
        except ValueError:
            raise FormatError(path, lineno, f"bad rating {rating!r} or timestamp {stamp!r}") from None
        stats.rows += 1
        if keep(stats, ts):
            out.append(Interaction(user, item, day_session(user, ts), ts, "click", weight))
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


def _times_ms(path: Path, column: str, secs, options: ReadOptions, stats: ReadStats) -> list[int]:
    """Event times in ms of a ``.mat`` time column: Unix seconds, or coarse steps mapped by
    ``options.time_step_ms`` (refused without it, so that steps are never read as seconds)."""
    values = [int(v) for v in secs]
    if not values:
        return values
    lo, hi = min(values), max(values)
    if hi < COARSE_TIME_BELOW_S:
        if options.time_step_ms is None:
            steps = len(set(values))
            raise FormatError(path, None, f"the {column} column holds {steps} distinct values from {lo} to {hi}: "
                              "coarse time steps, not Unix seconds (files in the Ciao/Epinions .mat layout "
                              "are published both ways). Pass --time-step-ms MS to place step k at k × MS ms "
                              "of event time, e.g. --time-step-ms 2592000000 for 30-day steps")
        stats.time_steps = len(set(values))
        return [v * options.time_step_ms for v in values]
    if options.time_step_ms is not None:
        raise FormatError(path, None, f"--time-step-ms is for coarse time steps, but the {column} column holds "
                          f"Unix seconds ({lo} .. {hi}); leave it out")
    return [v * 1000 for v in values]


def _interleave_ties(first: list[Event], second: list[Event]) -> list[Event]:
    """Two time-sorted lists merged by ts; at equal ts the two are interleaved in proportion
    (each keeping its own order), so any prefix holds both kinds."""
    out: list[Event] = []
    i = j = 0
    while i < len(first) or j < len(second):
        if j >= len(second) or (i < len(first) and first[i].ts < second[j].ts):
            out.append(first[i])
            i += 1
            continue
        if i >= len(first) or second[j].ts < first[i].ts:
            out.append(second[j])
            j += 1
            continue
        ts = first[i].ts
        a_end, b_end = i, j
        while a_end < len(first) and first[a_end].ts == ts:
            a_end += 1
        while b_end < len(second) and second[b_end].ts == ts:
            b_end += 1
        a, b = first[i:a_end], second[j:b_end]
        # Place the k-th event of each run at its fraction of the run (ties: the second list first).
        merged = sorted([((k + 0.5) / len(a), 1, k) for k in range(len(a))] +
                        [((k + 0.5) / len(b), 0, k) for k in range(len(b))])
        out.extend(a[k] if which else b[k] for _, which, k in merged)
        i, j = a_end, b_end
    return out


def _read_ciao(path: Path, stats: ReadStats, options: ReadOptions) -> list[Event]:
    if path.is_dir():
        path = sorted(path.glob("*rating*.mat"))[0]
    rating = _load_mat(path, "rating", 6)
    rows = rating.tolist()
    times = _times_ms(path, "time", (r[5] for r in rows), options, stats)
    out: list[Event] = []
    first_ts: dict[str, int] = {}
    for row, ((user, item, _cat, value, _helpful, _secs), ts) in enumerate(zip(rows, times), 1):
        stats.rows += 1
        if user < 0 or item < 0:
            raise FormatError(path, None, f"rating row {row}: negative user or product id")
        if not keep(stats, ts):
            continue
        u = str(int(user))
        out.append(Interaction(u, str(int(item)), day_session(u, ts), ts, "click", float(value)))
        if ts < first_ts.get(u, ts + 1):
            first_ts[u] = ts
    stats.interactions = len(out)
    trust = _trust_file(path)
    if trust is None:
        return out
    edges = _load_mat(trust, "trust", 2)
    if edges.shape[1] >= 3:  # the file dates each trust: use it
        follows = [Follow(str(int(src)), str(int(dst)), ts, "follow") for (src, dst), ts
                   in zip(edges[:, :2].tolist(), _times_ms(trust, "third (time)", edges[:, 2].tolist(), options,
                                                           stats))]
        follows = [f for f in follows if keep(stats, f.ts)]
        stats.follows = len(follows)
        stats.follow_times = "own"
        out.sort(key=lambda e: e.ts)
        follows.sort(key=lambda e: e.ts)
        return _interleave_ties(out, follows)
    start = min(first_ts.values(), default=0)
    for src, dst in edges[:, :2].tolist():
        s = str(int(src))
        out.append(Follow(s, str(int(dst)), first_ts.get(s, start), "follow"))
        stats.follows += 1
    return out


def _read_lastfm(path: Path, stats: ReadStats, options: ReadOptions) -> list[Event]:
    folder = path if path.is_dir() else path.parent
    tagged = folder / "user_taggedartists.dat" if path.is_dir() else path
    seen: set[tuple[str, str, int]] = set()
    out: list[Event] = []
    first_ts: dict[str, int] = {}
    with open_text(tagged) as fh:
        check_header(tagged, fh.readline(), "userID\tartistID\ttagID\tday\tmonth\tyear")
        for lineno, (user, artist, tag, day, month, year) in split_rows(tagged, fh, "\t", 6, 2):
            need_ids(tagged, lineno, userID=user, artistID=artist, tagID=tag)
            try:
                ts = ymd_ms(int(year), int(month), int(day))
            except ValueError:
                raise FormatError(tagged, lineno, f"bad date day={day!r} month={month!r} year={year!r}") from None
            stats.rows += 1
            if not keep(stats, ts):
                continue
            if (user, artist, ts) in seen:
                stats.merged_rows += 1
                continue
            seen.add((user, artist, ts))
            out.append(Interaction(user, artist, day_session(user, ts), ts, "click"))
            if ts < first_ts.get(user, ts + 1):
                first_ts[user] = ts
    stats.interactions = len(out)
    friends = folder / "user_friends.dat"
    if friends.exists():
        start = min(first_ts.values(), default=0)
        with open_text(friends) as fh:
            check_header(friends, fh.readline(), "userID\tfriendID")
            for lineno, (src, dst) in split_rows(friends, fh, "\t", 2, 2):
                need_ids(friends, lineno, userID=src, friendID=dst)
                out.append(Follow(src, dst, first_ts.get(src, start), "follow"))
                stats.follows += 1
    return out


READERS: dict[str, Callable[[Path, ReadStats, ReadOptions], list[Event]]] = {
    "yoochoose": _read_yoochoose,
    "diginetica": _read_diginetica,
    "movielens": _read_movielens,
    "ciao": _read_ciao,
    "lastfm": _read_lastfm,
}
