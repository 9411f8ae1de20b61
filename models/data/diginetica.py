"""Diginetica (CIKM Cup 2016) in the SR-GNN protocol (Wu et al., AAAI 2019, Table 1).

Read from the plain-text copies in ``<shared>/diginetica/srgnn_protocol/derived/`` (the
pickled originals are never loaded). Item ids in the protocol files are already dense
``1..43097``, so they are kept unchanged: item ``i`` here is item ``i`` in SR-GNN's code.

Counts (shared/data/README.md): 186,670 training sessions → 719,470 training examples,
60,858 test examples, 43,097 items.
"""
from __future__ import annotations

from pathlib import Path

from models.data.io import FormatError, read_prefix_target_lines, read_session_lines, shared_data_root
from models.data.sessions import SessionSplit

SUBDIR = Path("diginetica/srgnn_protocol/derived")
TRAIN_FILE = "train_sessions.txt.gz"
TEST_FILE = "test_prefix_target.tsv.gz"


def load_diginetica(root: Path | None = None) -> SessionSplit:
    """Load the SR-GNN Diginetica split; ``root`` defaults to :func:`shared_data_root`."""
    base = (root if root is not None else shared_data_root()) / SUBDIR
    train_path, test_path = base / TRAIN_FILE, base / TEST_FILE
    train = read_session_lines(train_path)
    prefixes, targets = read_prefix_target_lines(test_path)
    n_items = max(max(max(s) for s in train), max(max(p) for p in prefixes), max(targets))
    n_train_items = len({i for s in train for i in s})
    if n_train_items != n_items:
        # The protocol ids are 1..N with every id seen in training; a gap means a damaged file.
        raise FormatError(train_path, 0, f"expected dense item ids 1..{n_items} in training, found "
                          f"{n_train_items} distinct ids")
    return SessionSplit(name="diginetica", n_items=n_items, train_sessions=train,
                        test_prefixes=prefixes, test_targets=targets)
