"""Delicious as preprocessed by SEFrame (Chen & Wong, WSDM 2021): sessions with users + a follow graph.

Files under ``<shared>/delicious_seframe/`` (TSV, one header line each)::

    train.txt / valid.txt / test.txt   sessionId  userId  items      (items: "3,17,4")
    edges.txt                          follower   followee
    stats.txt                          num_users  num_items  max_len

In the files users are ``0..num_users-1`` and items ``0..num_items-1``. Here items are shifted
by one to the dense range ``1..n_items`` of :class:`~models.data.sessions.SessionSplit`
(0 is padding); users keep their indices.

Evaluation protocol (read from SEFrame's ``run.py`` and ``srs/utils/data/load.py``:
``AugmentedDataset(df_test)`` with ``create_index``): every proper prefix of every test
session predicts its next item, ``s[:k] -> s[k]`` for ``k = 1..len(s)-1``, ranked against all
items (no exclusion of items already in the prefix). That gives 32,434 − 7,176 = 25,258 test
examples and 32,004 − 7,175 = 24,829 validation examples. ``valid.txt`` is for early stopping
and tuning only; :func:`load_delicious_valid` returns it in the test slot.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.data.io import FormatError, iter_text_lines, shared_data_root
from models.data.sessions import SessionSplit

SUBDIR = "delicious_seframe"
SESSION_HEADER = ("sessionId", "userId", "items")
EDGE_HEADER = ("follower", "followee")
STATS_HEADER = ("num_users", "num_items", "max_len")


@dataclass(frozen=True)
class SessionRow:
    """One line of a SEFrame session file, ids as in the file (items 0-based)."""

    session_id: int
    user: int
    items: list[int]


def _int(text: str, path: Path, line_no: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise FormatError(path, line_no, f"{what} {text!r} is not an integer") from None
    if value < 0:
        raise FormatError(path, line_no, f"{what} {value} is negative")
    return value


def _rows(path: Path, header: tuple[str, ...]) -> list[tuple[int, list[str]]]:
    """(line number, fields) of a TSV file after checking its header and field count."""
    out: list[tuple[int, list[str]]] = []
    for line_no, line in iter_text_lines(path):
        fields = line.split("\t")
        if line_no == 1:
            if tuple(fields) != header:
                expected = "\t".join(header)
                raise FormatError(path, 1, f"expected header {expected!r}, got {line!r}")
            continue
        if len(fields) != len(header):
            raise FormatError(path, line_no, f"expected {len(header)} tab-separated fields, got {len(fields)}")
        out.append((line_no, fields))
    if not out:
        raise FormatError(path, 0, "no data lines after the header")
    return out


def read_stats(path: Path) -> tuple[int, int, int]:
    """``(num_users, num_items, max_len)`` from ``stats.txt``."""
    rows = _rows(path, STATS_HEADER)
    if len(rows) != 1:
        raise FormatError(path, 0, f"expected exactly one data line, got {len(rows)}")
    line_no, fields = rows[0]
    users, items, max_len = (_int(f, path, line_no, name) for f, name in zip(fields, STATS_HEADER))
    return users, items, max_len


def read_sessions(path: Path, n_users: int, n_items: int) -> list[SessionRow]:
    """Parse a session file, checking ids against the ranges in ``stats.txt``."""
    sessions: list[SessionRow] = []
    for line_no, (sid, uid, items_text) in _rows(path, SESSION_HEADER):
        user = _int(uid, path, line_no, "userId")
        if user >= n_users:
            raise FormatError(path, line_no, f"userId {user} >= num_users {n_users} in stats.txt")
        items = [_int(t, path, line_no, "item id") for t in items_text.split(",")]
        bad = [i for i in items if i >= n_items]
        if bad:
            raise FormatError(path, line_no, f"item id {bad[0]} >= num_items {n_items} in stats.txt")
        if len(items) < 2:
            raise FormatError(path, line_no, f"session has {len(items)} item(s); SEFrame keeps >= 2")
        sessions.append(SessionRow(_int(sid, path, line_no, "sessionId"), user, items))
    return sessions


def read_edges(path: Path, n_users: int) -> list[tuple[int, int]]:
    """(follower, followee) pairs, in file order."""
    edges: list[tuple[int, int]] = []
    for line_no, fields in _rows(path, EDGE_HEADER):
        follower, followee = (_int(f, path, line_no, name) for f, name in zip(fields, EDGE_HEADER))
        if max(follower, followee) >= n_users:
            raise FormatError(path, line_no, f"user {max(follower, followee)} >= num_users {n_users}")
        edges.append((follower, followee))
    return edges


def prefix_examples(rows: list[SessionRow]) -> tuple[list[list[int]], list[int], list[int]]:
    """SEFrame's evaluation examples: ``(prefixes, targets, users)``, items already 1-based."""
    prefixes: list[list[int]] = []
    targets: list[int] = []
    users: list[int] = []
    for row in rows:
        items = [i + 1 for i in row.items]
        for k in range(1, len(items)):
            prefixes.append(items[:k])
            targets.append(items[k])
            users.append(row.user)
    return prefixes, targets, users


def _load(root: Path | None, eval_file: str, name: str) -> SessionSplit:
    folder = (Path(root) if root is not None else shared_data_root()) / SUBDIR
    n_users, n_items, _ = read_stats(folder / "stats.txt")
    train = read_sessions(folder / "train.txt", n_users, n_items)
    held_out = read_sessions(folder / eval_file, n_users, n_items)
    prefixes, targets, users = prefix_examples(held_out)
    return SessionSplit(
        name=name,
        n_items=n_items,
        train_sessions=[[i + 1 for i in row.items] for row in train],
        test_prefixes=prefixes,
        test_targets=targets,
        n_users=n_users,
        train_users=[row.user for row in train],
        test_users=users,
        social_edges=read_edges(folder / "edges.txt", n_users),
    )


def load_delicious(root: Path | None = None) -> SessionSplit:
    """Train sessions from ``train.txt``; test examples = every prefix of every ``test.txt`` session.

    ``root`` is the shared data folder (default: :func:`models.data.io.shared_data_root`).
    """
    return _load(root, "test.txt", "delicious")


def load_delicious_valid(root: Path | None = None) -> SessionSplit:
    """Same training data, with ``valid.txt`` prefixes in the test slot (early stopping/tuning)."""
    return _load(root, "valid.txt", "delicious-valid")
