"""YooChoose 1/64 (RecSys Challenge 2015) in the SR-GNN protocol (Wu et al., AAAI 2019).

Read from the plain-text copies in ``<shared>/yoochoose/srgnn_protocol_1_64/derived/``.

**Item ids are remapped.** The protocol files use sparse ids up to 37,483 (SR-GNN's code sizes
its table at ``n_node=37484``) with 17,745 distinct ids over train ∪ test. We map them to dense
``1..17745`` in increasing order of the original id, over train ∪ test, so the catalogue (and
the score vector) covers every item that occurs anywhere. The 369 items that occur only in the
test set stay in the catalogue: their embeddings are never trained, and the 412 test examples
whose target is such an item are still counted (as misses, practically), exactly as in SR-GNN's
evaluation, which scores all ``n_node`` rows. The README's 16,766 items (paper) versus our
17,745 is a difference in counting, not in the split: train/test/click counts match Table 1.

Counts: 116,167 training sessions → 369,859 training examples; 55,898 test examples.
"""
from __future__ import annotations

from pathlib import Path

from models.data.io import read_prefix_target_lines, read_session_lines, shared_data_root
from models.data.sessions import SessionSplit

SUBDIR = Path("yoochoose/srgnn_protocol_1_64/derived")
TRAIN_FILE = "train_sessions.txt.gz"
TEST_FILE = "test_prefix_target.tsv.gz"


def dense_item_map(*groups: list[list[int]]) -> dict[int, int]:
    """Original id → dense id ``1..n``, assigned in increasing order of the original id."""
    seen: set[int] = set()
    for sessions in groups:
        for s in sessions:
            seen.update(s)
    return {orig: new for new, orig in enumerate(sorted(seen), start=1)}


def load_yoochoose64(root: Path | None = None) -> SessionSplit:
    """Load the SR-GNN YooChoose 1/64 split with dense item ids (see the module docstring)."""
    base = (root if root is not None else shared_data_root()) / SUBDIR
    train = read_session_lines(base / TRAIN_FILE)
    prefixes, targets = read_prefix_target_lines(base / TEST_FILE)
    mapping = dense_item_map(train, prefixes, [targets])
    remap = mapping.__getitem__
    return SessionSplit(
        name="yoochoose64",
        n_items=len(mapping),
        train_sessions=[list(map(remap, s)) for s in train],
        test_prefixes=[list(map(remap, p)) for p in prefixes],
        test_targets=list(map(remap, targets)),
    )
