"""Checked reading of the shared plain-text dataset files.

Every loader in ``models.data`` reads through these helpers so that a truncated, garbled or
missing file fails the same way: a :class:`FormatError` that names the file, the 1-based line
and what was wrong with it, instead of an ``IndexError`` deep inside a model.
"""
from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

ENV_VAR = "GNNREC_SHARED_DATA"
_REPO = Path(__file__).resolve().parents[2]


class FormatError(ValueError):
    """A dataset file whose content does not match its documented format.

    ``path`` and ``line`` (1-based; 0 when the problem is the file as a whole) locate the
    problem; ``what`` says what was expected.
    """

    def __init__(self, path: Path | str, line: int, what: str) -> None:
        self.path = Path(path)
        self.line = line
        self.what = what
        where = f"{self.path}:{line}" if line > 0 else str(self.path)
        super().__init__(
            f"{where}: {what}. The file is truncated or garbled; restore it from the copy "
            f"described in shared/data/README.md (sha256 listed there)."
        )


class MissingDataError(FileNotFoundError):
    """The shared dataset directory, or a file in it, is not where it should be."""


def shared_data_root() -> Path:
    """The shared dataset directory: ``$GNNREC_SHARED_DATA`` or ``<repo>/../shared/data``."""
    path = Path(os.environ.get(ENV_VAR, _REPO.parent / "shared" / "data"))
    if not (path / "README.md").is_file():
        raise MissingDataError(
            f"shared datasets not found at {path} (no README.md there); set {ENV_VAR} to the "
            f"directory that holds diginetica/, yoochoose/, gowalla_lightgcn/ ..."
        )
    return path


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise MissingDataError(
            f"dataset file {path} is missing; check {ENV_VAR} or the shared/data checkout"
        )
    return path


def iter_text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` with the newline stripped; ``.gz`` files are decompressed.

    Raises :class:`FormatError` when the gzip stream is corrupt or cut short, when the file is
    not UTF-8, or when the last line has no newline (every shared file ends with one, so a
    missing final newline means the copy was cut mid-line).
    """
    require_file(path)
    opener = gzip.open if path.suffix == ".gz" else open
    number = 0
    try:
        with opener(path, "rt", encoding="utf-8", newline="\n") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.endswith("\n"):
                    raise FormatError(path, number, "last line has no newline (file cut mid-line)")
                yield number, raw[:-1].rstrip("\r")
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        # gzip decompresses in blocks, so the damage is at or after this line, not necessarily on it
        raise FormatError(path, number + 1, f"corrupt or truncated gzip stream, detected after line {number} "
                                            f"({exc})") from exc
    except UnicodeDecodeError as exc:
        raise FormatError(path, number + 1, f"not UTF-8 text ({exc.reason})") from exc


def parse_item_ids(path: Path, line: int, text: str, *, min_len: int = 1) -> list[int]:
    """Space-separated positive integer item ids, at least ``min_len`` of them."""
    fields = text.split()
    if len(fields) < min_len:
        raise FormatError(path, line, f"expected at least {min_len} space-separated item ids, got {len(fields)}")
    try:
        ids = [int(f) for f in fields]
    except ValueError:
        raise FormatError(path, line, f"item ids must be integers, got {text[:60]!r}") from None
    if min(ids) < 1:
        raise FormatError(path, line, f"item ids must be >= 1 (0 is padding), got {min(ids)}")
    return ids


def parse_item_id(path: Path, line: int, text: str) -> int:
    ids = parse_item_ids(path, line, text, min_len=1)
    if len(ids) != 1:
        raise FormatError(path, line, f"expected one item id, got {len(ids)}")
    return ids[0]


def read_session_lines(path: Path, *, min_len: int = 2) -> list[list[int]]:
    """One session per line, item ids separated by spaces (``derived/train_sessions.txt.gz``)."""
    sessions = [parse_item_ids(path, n, text, min_len=min_len) for n, text in iter_text_lines(path)]
    if not sessions:
        raise FormatError(path, 0, "file holds no sessions")
    return sessions


def read_prefix_target_lines(path: Path) -> tuple[list[list[int]], list[int]]:
    """``prefix items (space-separated) <TAB> target`` per line (``derived/test_prefix_target.tsv.gz``)."""
    prefixes: list[list[int]] = []
    targets: list[int] = []
    for n, text in iter_text_lines(path):
        parts = text.split("\t")
        if len(parts) != 2:
            raise FormatError(path, n, f"expected 'prefix<TAB>target', got {len(parts)} tab-separated fields")
        prefixes.append(parse_item_ids(path, n, parts[0], min_len=1))
        targets.append(parse_item_id(path, n, parts[1]))
    if not prefixes:
        raise FormatError(path, 0, "file holds no examples")
    return prefixes, targets
