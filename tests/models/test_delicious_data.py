"""The SEFrame Delicious loader: counts from shared/data/README.md §3a and checked parsing."""
from __future__ import annotations

from pathlib import Path

import pytest

from models.data.delicious import load_delicious, load_delicious_valid
from models.data.io import FormatError, MissingDataError
from models.data.sessions import SessionSplit

STATS = "num_users\tnum_items\tmax_len\n4\t6\t50\n"
TRAIN = "sessionId\tuserId\titems\n0\t0\t0,1,2\n1\t1\t3,4\n2\t2\t5,0\n3\t3\t1,2\n"
TEST = "sessionId\tuserId\titems\n4\t1\t2,5,0\n"
VALID = "sessionId\tuserId\titems\n5\t3\t4,3\n"
EDGES = "follower\tfollowee\n0\t1\n1\t0\n2\t3\n3\t2\n"


def write_toy(root: Path, **overrides: str) -> Path:
    folder = root / "delicious_seframe"
    folder.mkdir(parents=True)
    files = {"stats": STATS, "train": TRAIN, "test": TEST, "valid": VALID, "edges": EDGES} | overrides
    for name, text in files.items():
        (folder / f"{name}.txt").write_text(text)
    return folder


@pytest.fixture(scope="module")
def delicious(shared_data: Path) -> SessionSplit:
    return load_delicious(shared_data)


@pytest.mark.data
def test_counts_match_the_readme(delicious: SessionSplit) -> None:
    split = delicious
    assert (split.n_users, split.n_items) == (1313, 5793)
    assert len(split.train_sessions) == 46_046
    assert sum(map(len, split.train_sessions)) == 201_752
    assert len(split.social_edges) == len(set(split.social_edges)) == 9_130
    # One length-1 prefix per test session; prefixes + sessions = clicks.
    assert sum(len(p) == 1 for p in split.test_prefixes) == 7_176
    assert len(split.test_targets) == 32_434 - 7_176
    assert split.train_users is not None and len(split.train_users) == 46_046
    assert split.test_users is not None and len(split.test_users) == len(split.test_prefixes)
    assert {u for e in split.social_edges for u in e} == set(range(1313))
    items = {i for s in split.train_sessions for i in s}
    assert min(items) == 1 and max(items) == 5793 and len(items) == 5793
    assert set(split.train_users) == set(range(1313))


@pytest.mark.data
def test_valid_split_and_first_rows(shared_data: Path, delicious: SessionSplit) -> None:
    valid = load_delicious_valid(shared_data)
    assert sum(len(p) == 1 for p in valid.test_prefixes) == 7_175
    assert len(valid.test_targets) == 32_004 - 7_175
    test = delicious
    # train.txt line 2: "0  0  0,1,2,3"; test.txt line 2: "46046  1162  234,4,386,232" (items shifted +1).
    assert test.train_sessions[0] == [1, 2, 3, 4] and test.train_users is not None and test.train_users[0] == 0
    assert test.test_prefixes[:3] == [[235], [235, 5], [235, 5, 387]]
    assert test.test_targets[:3] == [5, 387, 233]
    assert test.test_users is not None and test.test_users[:3] == [1162] * 3


def test_toy_files_load_with_shifted_items_and_all_prefixes(tmp_path: Path) -> None:
    write_toy(tmp_path)
    split = load_delicious(tmp_path)
    assert split.n_items == 6 and split.n_users == 4
    assert split.train_sessions == [[1, 2, 3], [4, 5], [6, 1], [2, 3]]
    assert split.train_users == [0, 1, 2, 3]
    assert split.test_prefixes == [[3], [3, 6]] and split.test_targets == [6, 1]
    assert split.test_users == [1, 1]
    assert split.social_edges == [(0, 1), (1, 0), (2, 3), (3, 2)]
    valid = load_delicious_valid(tmp_path)
    assert valid.test_prefixes == [[5]] and valid.test_targets == [4] and valid.test_users == [3]


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("train", TRAIN.replace("3\t3\t1,2\n", "3\t3\t1,x\n"), 5),  # garbled item id
        ("train", TRAIN.replace("1\t1\t3,4\n", "1\t1 3,4\n"), 3),  # missing tab
        ("train", TRAIN.replace("2\t2\t5,0\n", "2\t2\t5,6\n"), 4),  # item id >= num_items
        ("train", TRAIN.replace("2\t2\t5,0\n", "2\t9\t5,0\n"), 4),  # user id >= num_users
        ("train", TRAIN.replace("0\t0\t0,1,2\n", "0\t0\t0\n"), 2),  # one-item session
        ("test", TEST.replace("sessionId", "session"), 1),  # wrong header
        ("edges", EDGES + "2\t-1\n", 6),  # negative user id
        ("edges", EDGES.rstrip("\n"), 5),  # last line cut mid-line
        ("train", "sessionId\tuserId\titems\n", 0),  # header only
    ],
)
def test_bad_files_raise_format_error_naming_file_and_line(tmp_path: Path, name: str, text: str, line: int) -> None:
    write_toy(tmp_path, **{name: text})
    with pytest.raises(FormatError) as info:
        load_delicious(tmp_path)
    assert info.value.path.name == f"{name}.txt"
    assert info.value.line == line
    assert f"{name}.txt" in str(info.value)


def test_missing_file_says_where_it_looked(tmp_path: Path) -> None:
    folder = write_toy(tmp_path)
    (folder / "edges.txt").unlink()
    with pytest.raises(MissingDataError, match="edges.txt"):
        load_delicious(tmp_path)
