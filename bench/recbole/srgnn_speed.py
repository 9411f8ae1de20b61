"""SR-GNN training batches: ours vs RecBole 1.2.1's ``SRGNN``, on the same session split, side by side.

Same harness as ``bench/recbole/lightgcn_speed.py`` (RecBole in its own cached virtualenv, run in a child
process). Our training examples (every proper prefix of every training session, SR-GNN's
augmentation) are written as RecBole benchmark atomic files, one row per example
(``session_id:token``, ``item_id_list:token_seq``, ``item_id:token``), so RecBole trains on exactly
our examples and item vocabulary instead of re-deriving them. Settings are the paper's, as in
``gnnrec train --model srgnn``: embedding 100, one GNN step, cross-entropy over all items,
batch 100, Adam lr 1e-3 with L2 1e-5, 1 CPU thread each. Each side uses its own trainer's
optimiser: ours the fused Adam of ``models.training.srgnn.fit``, RecBole's plain Adam.

    python -m bench.recbole.srgnn_speed --dataset diginetica [--batches N] [--record FILE]

``--batches N`` times only the first N mini-batches of each; ``full_epoch`` says which.

RecBole pads every prefix to the longest one in the whole dataset (``pad_sequence`` over the
field) and builds a dense ``[L, L]`` graph per session in Python, ours pads to the longest in the
batch; so RecBole's cost grows with the dataset's longest prefix (145 items on yoochoose64, 69 on
diginetica). ``--max-len L`` keeps only the last L items of every prefix on both sides, as
RecBole's own augmentation does with its default ``MAX_ITEM_LIST_LENGTH`` of 50.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench.recbole.lightgcn_speed import batch_args, command_line, comparison, record, recbole_python, run_recbole_child

from models.recipes.srgnn import DATASETS, TrainConfig, load_split
from models.srgnn import SRGNN, SessionExamples, collate_padded
from models.training import minibatch_indices, num_batches

CONFIG = TrainConfig()
DIM, STEPS = 100, 1

RECBOLE_CHILD = r'''
import json, sys, time
import torch
torch.set_num_threads(1)
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.sequential_recommender import SRGNN
from recbole.utils import init_seed

data_path, max_batches = sys.argv[1], int(sys.argv[2])
max_len = int(open(data_path + "/max_len").read())
config = Config(model="SRGNN", dataset="sessions", config_dict={
    "data_path": data_path, "benchmark_filename": ["train", "valid", "test"],
    "USER_ID_FIELD": "session_id", "ITEM_ID_FIELD": "item_id", "alias_of_item_id": ["item_id_list"],
    "load_col": {"inter": ["session_id", "item_id_list", "item_id"]}, "MAX_ITEM_LIST_LENGTH": max_len,
    "embedding_size": %(dim)d, "step": %(steps)d, "loss_type": "CE", "learning_rate": %(lr)r,
    "weight_decay": %(l2)r, "train_batch_size": %(batch)d, "epochs": 1, "use_gpu": False, "device": "cpu",
    "seed": 2020, "train_neg_sample_args": None, "eval_args": {"group_by": "user", "order": "TO", "mode": "full"},
    "checkpoint_dir": data_path, "show_progress": False, "state": "WARNING", "worker": 0,
})
init_seed(config["seed"], config["reproducibility"])
dataset = create_dataset(config)
train_data, _, _ = data_preparation(config, dataset)
model = SRGNN(config, train_data.dataset)
optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"], weight_decay=config["weight_decay"])
model.train()
start, cpu_start, batches = time.perf_counter(), time.process_time(), 0
for interaction in train_data:
    optimizer.zero_grad()
    loss = model.calculate_loss(interaction)
    loss.backward()
    optimizer.step()
    batches += 1
    if max_batches and batches >= max_batches:
        break
print(json.dumps({"epoch_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu_start,
                  "batches": batches, "n_items": dataset.item_num - 1,
                  "n_train": len(train_data.dataset), "torch": torch.__version__}))
''' % {"dim": DIM, "steps": STEPS, "lr": CONFIG.lr, "l2": CONFIG.weight_decay, "batch": CONFIG.batch_size}


def write_atomic_files(train: SessionExamples, test: SessionExamples, folder: Path, n_eval_rows: int = 1000) -> None:
    """One ``.inter`` row per prefix→target example; valid/test hold the first ``n_eval_rows`` test
    examples (read, never evaluated)."""
    folder.mkdir(parents=True, exist_ok=True)
    header = "session_id:token\titem_id_list:token_seq\titem_id:token\n"

    def rows(examples: SessionExamples, limit: int) -> str:
        n = min(limit, len(examples))
        return "".join(
            f"{i}\t{' '.join(map(str, examples.flat[examples.starts[i]:examples.starts[i] + examples.lengths[i]]))}"
            f"\t{examples.targets[i]}\n" for i in range(n))

    (folder / "sessions.train.inter").write_text(header + rows(train, len(train)))
    for name in ("valid", "test"):
        (folder / f"sessions.{name}.inter").write_text(header + rows(test, n_eval_rows))
    (folder.parent / "max_len").write_text(str(int(max(train.lengths.max(), test.lengths.max()))))


def truncate(examples: SessionExamples, max_len: int) -> SessionExamples:
    """Every prefix cut to its last ``max_len`` items (targets unchanged); ``max_len`` 0 keeps all."""
    if max_len <= 0:
        return examples
    cut = np.maximum(examples.lengths - max_len, 0)
    return SessionExamples(examples.flat, examples.starts + cut, examples.lengths - cut, examples.targets)


def time_ours(n_items: int, examples: SessionExamples, max_batches: int, seed: int = 2020) -> tuple[float, float, int]:
    """Seconds for one epoch (or ``max_batches`` batches) of our SR-GNN, batching included; the loop
    is :func:`models.training.srgnn.fit`'s, stopped after ``max_batches``."""
    torch.manual_seed(seed)
    model = SRGNN(n_items, DIM, STEPS)
    optimizer = torch.optim.Adam(model.parameters(), lr=CONFIG.lr, weight_decay=CONFIG.weight_decay, fused=True)
    model.train()
    start, cpu_start, batches = time.perf_counter(), time.process_time(), 0
    for index in minibatch_indices(len(examples), CONFIG.batch_size, rng=np.random.default_rng(seed)):
        items, lengths, targets = examples.padded(index)
        loss = model.recommendation_loss(collate_padded(items, lengths), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        batches += 1
        if max_batches and batches >= max_batches:
            break
    return time.perf_counter() - start, time.process_time() - cpu_start, batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=DATASETS, default=os.environ.get("GNNREC_DATASET", "diginetica"),
                        help="session benchmark to time on [GNNREC_DATASET]")
    parser.add_argument("--max-len", type=int, default=int(os.environ.get("GNNREC_BENCH_MAX_LEN", "0")),
                        help="keep only the last L items of every prefix, both sides (0: all) [GNNREC_BENCH_MAX_LEN]")
    batch_args(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    python = recbole_python()
    split = load_split(args.dataset)
    train = truncate(SessionExamples.from_sessions(split.train_sessions), args.max_len)
    test = truncate(SessionExamples.from_prefixes(split.test_prefixes, split.test_targets), args.max_len)
    with tempfile.TemporaryDirectory(prefix="gnnrec-recbole-") as tmp:
        write_atomic_files(train, test, Path(tmp) / "sessions")
        recbole = run_recbole_child(python, RECBOLE_CHILD, Path(tmp), args.batches)
    ours = time_ours(split.n_items, train, args.batches)
    result = comparison("srgnn", args.dataset, ours, recbole, num_batches(len(train), CONFIG.batch_size),
                        CONFIG.batch_size)
    options = [f"--dataset {args.dataset}"] + ([f"--max-len {args.max_len}"] if args.max_len > 0 else [])
    cmd = command_line("bench/recbole/srgnn_speed.py", args, *options)
    # RecBole pads every prefix to this length; items only in the unused test rows are unknown to it
    extra = {"max_prefix_len": int(max(train.lengths.max(), test.lengths.max())), "max_len": args.max_len,
             "ours_counts": {"n_items": split.n_items, "n_train": len(train)}}
    record(result | extra, args.record, cmd)


if __name__ == "__main__":
    main()
