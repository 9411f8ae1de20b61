"""Session loaders (Diginetica, YooChoose 1/64) against the counts in shared/data/README.md, and
the checked text reading in models/data/io.py against damaged files."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from models.data import diginetica, io, yoochoose
from models.data.io import FormatError, MissingDataError


@pytest.mark.data
def test_diginetica_matches_readme_counts(shared_data: Path) -> None:
    split = diginetica.load_diginetica(shared_data)
    prefixes, targets = split.train_examples()
    assert split.n_items == 43_097
    assert len(split.train_sessions) == 186_670
    assert sum(map(len, split.train_sessions)) == 906_140
    assert len(prefixes) == len(targets) == 719_470
    assert len(split.test_targets) == len(split.test_prefixes) == 60_858
    # ids are the protocol's own dense 1..43097
    assert {i for s in split.train_sessions for i in s} == set(range(1, 43_098))
    assert split.test_prefixes[0] == [21553, 20071, 8762, 21566, 6381] and split.test_targets[0] == 21566


@pytest.mark.data
def test_yoochoose64_matches_readme_counts_and_is_dense(shared_data: Path) -> None:
    split = yoochoose.load_yoochoose64(shared_data)
    prefixes, _ = split.train_examples()
    assert len(split.train_sessions) == 116_167
    assert sum(map(len, split.train_sessions)) == 486_026
    assert len(prefixes) == 369_859
    assert len(split.test_targets) == 55_898
    assert split.n_items == 17_745  # distinct ids over train ∪ test (max original id 37,483)
    train_items = {i for s in split.train_sessions for i in s}
    every = train_items | {i for p in split.test_prefixes for i in p} | set(split.test_targets)
    assert every == set(range(1, 17_746))
    assert len(train_items) == 17_376
    assert sum(t not in train_items for t in split.test_targets) == 412
    # first test line is "33611 37169 6409 <TAB> 33128": the remap keeps the order of original ids
    first = split.test_prefixes[0]
    assert first[1] > first[0] > first[2] and split.test_targets[0] < first[0]


def test_dense_item_map_keeps_id_order() -> None:
    assert yoochoose.dense_item_map([[37, 5]], [[5, 1000]]) == {5: 1, 37: 2, 1000: 3}


def _write_gz(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as handle:
        handle.write(text)
    return path


def _fake_root(tmp_path: Path, train: str, test: str, subdir: Path = diginetica.SUBDIR) -> Path:
    _write_gz(tmp_path / subdir / diginetica.TRAIN_FILE, train)
    _write_gz(tmp_path / subdir / diginetica.TEST_FILE, test)
    return tmp_path


def test_small_valid_files_load(tmp_path: Path) -> None:
    root = _fake_root(tmp_path, "1 2\n3 1 2\n", "1\t2\n3 1\t3\n", yoochoose.SUBDIR)
    split = yoochoose.load_yoochoose64(root)
    assert split.n_items == 3 and split.train_sessions == [[1, 2], [3, 1, 2]]
    assert split.test_prefixes == [[1], [3, 1]] and split.test_targets == [2, 3]


@pytest.mark.parametrize(("train", "test", "bad_file", "line", "what"), [
    ("1 2\n2 x 3\n", "1\t2\n", diginetica.TRAIN_FILE, 2, "integers"),
    ("1 2\n3\n", "1\t2\n", diginetica.TRAIN_FILE, 2, "at least 2"),
    ("1 2\n0 3\n", "1\t2\n", diginetica.TRAIN_FILE, 2, ">= 1"),
    ("1 2 3\n", "1\t2\n2 3\n", diginetica.TEST_FILE, 2, "TAB"),
    ("1 2 3\n", "1\t2\n2\t3 1\n", diginetica.TEST_FILE, 2, "one item id"),
    ("1 2 3\n", "1\t2\n1 2\t3", diginetica.TEST_FILE, 2, "no newline"),
])
def test_garbled_lines_name_file_and_line(tmp_path: Path, train: str, test: str, bad_file: str, line: int,
                                          what: str) -> None:
    root = _fake_root(tmp_path, train, test)
    with pytest.raises(FormatError, match=what) as info:
        diginetica.load_diginetica(root)
    assert info.value.path.name == bad_file and info.value.line == line
    assert f"{bad_file}:{line}" in str(info.value)


def test_truncated_gzip_is_a_format_error(tmp_path: Path) -> None:
    root = _fake_root(tmp_path, "".join(f"{i} {i + 1}\n" for i in range(1, 5000)), "1\t2\n")
    path = root / diginetica.SUBDIR / diginetica.TRAIN_FILE
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(FormatError, match="truncated gzip") as info:
        diginetica.load_diginetica(root)
    assert info.value.path == path and info.value.line > 1


def test_non_dense_diginetica_ids_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="dense item ids"):
        diginetica.load_diginetica(_fake_root(tmp_path, "1 5\n", "1\t5\n"))


def test_missing_files_and_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingDataError, match="missing"):
        diginetica.load_diginetica(tmp_path)
    monkeypatch.setenv(io.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(MissingDataError, match=io.ENV_VAR):
        io.shared_data_root()
    (tmp_path / "README.md").write_text("x")
    monkeypatch.setenv(io.ENV_VAR, str(tmp_path))
    assert io.shared_data_root() == tmp_path
