"""Parsing primitives shared by the replay-file readers: errors, counters, line splitting and
dates. Everything here is pure apart from :func:`open_text`; times are int ms since the epoch.
"""
from __future__ import annotations

import gzip
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

from stream.events import Follow, Interaction

Event = Interaction | Follow

DAY_MS = 86_400_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
#: A raw RecSys'15 clicks line (no header): ``session,ISO time,item,category``.
RAW_YOOCHOOSE = re.compile(r"^\d+,\d{4}-\d\d-\d\dT[0-9:.]+Z?,\d+,")


class FormatError(ValueError):
    """A replay file that cannot be parsed: ``str()`` is ``"<file> line <n>: <reason>"``."""

    def __init__(self, path: Path | str, line: int | None, reason: str) -> None:
        self.path = Path(path)
        self.line = line
        self.reason = reason
        where = f"{path} line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")


#: Time values below this many seconds (11.6 days after the epoch) are not Unix times of a
#: public dataset: they are coarse steps (the Ciao/Epinions ``.mat`` layout also ships its
#: time column as steps 1..11) and need an explicit mapping, :attr:`ReadOptions.time_step_ms`.
COARSE_TIME_BELOW_S = 1_000_000


@dataclass(frozen=True)
class ReadOptions:
    """How to read what a file does not say itself.

    ``time_step_ms``: for a time column of coarse steps (see :data:`COARSE_TIME_BELOW_S`), the
    event time of step ``k`` is ``k * time_step_ms`` ms; a file of such steps is refused
    without it, and a file of real times is refused with it.
    """

    time_step_ms: int | None = None

    def __post_init__(self) -> None:
        if self.time_step_ms is not None and self.time_step_ms <= 0:
            raise ValueError(f"time_step_ms must be > 0, got {self.time_step_ms}")


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
    # "first_interaction": follows without a time of their own sit at their source's first
    # interaction and sort before the interactions of that instant; "own": the file dates them
    # and they interleave with the interactions of the same instant.
    follow_times: str = "first_interaction"
    time_steps: int | None = None  # distinct coarse time steps mapped with ReadOptions.time_step_ms


def open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


@lru_cache(maxsize=1 << 16)
def day_name(day: int) -> str:
    return date.fromordinal(_EPOCH_ORDINAL + day).isoformat()


@lru_cache(maxsize=1 << 16)
def date_ms(text: str) -> int:
    return (date.fromisoformat(text).toordinal() - _EPOCH_ORDINAL) * DAY_MS


@lru_cache(maxsize=1 << 16)
def ymd_ms(year: int, month: int, day: int) -> int:
    return (date(year, month, day).toordinal() - _EPOCH_ORDINAL) * DAY_MS


def day_session(user: str, ts: int) -> str:
    return f"{user}@{day_name(ts // DAY_MS)}"


def need_ids(path: Path, line: int, **ids: str) -> None:
    """Every id in these public datasets is a decimal integer: anything else is garbage."""
    for name, value in ids.items():
        if not value.isdigit():
            raise FormatError(path, line, f"{name} must be a non-negative integer, got {value!r}")


def split_rows(path: Path, fh: Iterable[str], sep: str, n_fields: int, start: int) -> Iterator[tuple[int, list[str]]]:
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


def check_header(path: Path, got: str, *expected: str) -> None:
    norm = got.strip().replace(" ", "").lower()
    if norm not in {e.lower() for e in expected}:
        raise FormatError(path, 1, f"expected header {expected[0]!r}, got {got.strip()[:80]!r}")


def keep(stats: ReadStats, ts: int) -> bool:
    if ts < 0:
        stats.dropped_pre_epoch += 1
        return False
    return True
