"""One LightGCN training epoch: ours vs RecBole 1.2.1, on the same Gowalla split, side by side.

RecBole lives in its own cached virtualenv (``~/.cache/gnnrec/recbole-<hash>``, created on
first use with the pins from shared/DEPENDENCIES.md); it is never installed into the project
environment. Our split is written as RecBole atomic files (``gowalla.{train,valid,test}.inter``)
in a temporary folder, RecBole's ``LightGCN`` is trained for one epoch there in a child process,
and ours for one epoch here, with the same settings: embedding 64, 3 layers, batch 2048, Adam
lr 1e-3, L2 1e-4, one uniform negative per training interaction, 1 CPU thread each.

    python -m bench.recbole.lightgcn_speed [--batches N] [--record FILE]   # prints {"ours_epoch_s", "recbole_epoch_s", ...}

Both wall seconds (``*_epoch_s``, ``ratio``) and process CPU seconds (``*_cpu_s``, ``cpu_ratio``)
are reported; see :func:`comparison`.

``--batches N`` times only the first N mini-batches of each (both stop at the same count), so
``*_epoch_s`` is then the time of N batches, not of an epoch (``full_epoch`` says which).
``--record FILE`` also writes the result with its command, for ``gnnrec results``.
The valid/test files hold 1,000 test rows only: they are read, never evaluated.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from models.data.gowalla import CFSplit, load_gowalla
from models.lightgcn import LightGCN
from models.sampling import sample_bpr_triples

PINS = ("recbole==1.2.1", "setuptools<81", "numpy<2", "pandas<3", "scipy<1.13", "torch")
BATCH, LR, REG, DIM, LAYERS = 2048, 1e-3, 1e-4, 64, 3

RECBOLE_CHILD = r'''
import json, sys, time
import torch
torch.set_num_threads(1)
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.general_recommender import LightGCN
from recbole.utils import init_seed

data_path, max_batches = sys.argv[1], int(sys.argv[2])
config = Config(model="LightGCN", dataset="gowalla", config_dict={
    "data_path": data_path, "benchmark_filename": ["train", "valid", "test"],
    "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "load_col": {"inter": ["user_id", "item_id"]},
    "embedding_size": %(dim)d, "n_layers": %(layers)d, "reg_weight": %(reg)r, "learning_rate": %(lr)r,
    "train_batch_size": %(batch)d, "epochs": 1, "use_gpu": False, "device": "cpu", "seed": 2020,
    "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
    "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
    "checkpoint_dir": data_path, "show_progress": False, "state": "WARNING", "worker": 0,
})
init_seed(config["seed"], config["reproducibility"])
dataset = create_dataset(config)
train_data, _, _ = data_preparation(config, dataset)
model = LightGCN(config, train_data.dataset)
optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
model.train()
start, cpu_start, batches = time.perf_counter(), time.process_time(), 0
for interaction in train_data:
    optimizer.zero_grad()
    loss = model.calculate_loss(interaction)
    loss = sum(loss) if isinstance(loss, tuple) else loss
    loss.backward()
    optimizer.step()
    batches += 1
    if max_batches and batches >= max_batches:
        break
print(json.dumps({"epoch_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu_start,
                  "batches": batches,
                  "n_users": dataset.user_num - 1, "n_items": dataset.item_num - 1,
                  "n_train": len(train_data.dataset), "torch": torch.__version__}))
''' % {"dim": DIM, "layers": LAYERS, "reg": REG, "lr": LR, "batch": BATCH}


def recbole_python() -> Path:
    """The cached RecBole virtualenv's interpreter, created (pip install of ``PINS``) on first use."""
    key = hashlib.sha256(("\n".join(PINS) + sys.version).encode()).hexdigest()[:16]
    root = Path.home() / ".cache" / "gnnrec" / f"recbole-{key}"
    python = root / "bin" / "python"
    if not (root / ".installed").exists():
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", "--clear", str(root)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PINS], check=True)
        (root / ".installed").write_text("\n".join(PINS) + "\n")
    return python


def write_atomic_files(split: CFSplit, folder: Path, n_eval_rows: int = 1000) -> None:
    """RecBole ``.inter`` files (tab-separated, typed header) for the train split and a small test sample."""
    folder.mkdir(parents=True, exist_ok=True)
    header = "user_id:token\titem_id:token\n"
    ei = split.train_edge_index.tolist()
    (folder / "gowalla.train.inter").write_text(header + "".join(f"{u}\t{i}\n" for u, i in zip(*ei)))
    users = torch.repeat_interleave(torch.arange(split.n_users), split.test_indptr[1:] - split.test_indptr[:-1])
    rows = "".join(f"{u}\t{i}\n" for u, i in zip(users[:n_eval_rows].tolist(), split.test_items[:n_eval_rows].tolist()))
    for name in ("valid", "test"):
        (folder / f"gowalla.{name}.inter").write_text(header + rows)


def run_recbole_child(python: Path, script: str, tmp: Path, max_batches: int) -> dict[str, Any]:
    """Run ``script`` in RecBole's interpreter (data under ``tmp``); returns its last stdout line as JSON."""
    (tmp / "child.py").write_text(script)
    # PYTHONPATH cleared so the child never imports the project environment's packages
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    proc = subprocess.run([str(python), str(tmp / "child.py"), str(tmp), str(max_batches)], env=env,
                          cwd=tmp, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"RecBole run failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def comparison(model: str, dataset: str, ours: tuple[float, float, int], recbole: dict[str, Any],
               batches_per_epoch: int, batch_size: int) -> dict[str, Any]:
    """The side-by-side record both speed benchmarks print (times in seconds, 1 CPU thread each).

    ``*_cpu_s`` is the process's CPU time over the same span: with one thread it matches wall
    time on an idle machine and, unlike wall time, barely moves when other processes compete
    for the cores, so ``cpu_ratio`` is the figure to trust on a shared machine.
    """
    ours_s, ours_cpu_s, ours_batches = ours
    return {"model": model, "dataset": dataset, "reference": "RecBole 1.2.1",
            "ours_epoch_s": ours_s, "recbole_epoch_s": recbole["epoch_s"], "ratio": recbole["epoch_s"] / ours_s,
            "ours_cpu_s": ours_cpu_s, "recbole_cpu_s": recbole["cpu_s"], "cpu_ratio": recbole["cpu_s"] / ours_cpu_s,
            "ours_batches": ours_batches, "recbole_batches": recbole["batches"],
            "batches_per_epoch": batches_per_epoch, "batch_size": batch_size,
            "full_epoch": ours_batches == batches_per_epoch and recbole["batches"] == batches_per_epoch,
            "ours_s_per_batch": ours_s / ours_batches, "recbole_s_per_batch": recbole["epoch_s"] / recbole["batches"],
            "recbole_counts": {k: v for k, v in recbole.items() if k.startswith("n_")},
            "recbole_torch": recbole["torch"], "ours_torch": torch.__version__, "threads": 1,
            "device": f"cpu ({platform.machine()}, {os.cpu_count()} cores visible)",
            # other processes on a shared machine slow both sides; the load says how busy it was
            "loadavg_1m_at_end": os.getloadavg()[0]}


def record(result: dict[str, Any], path: Path | None, command: str) -> None:
    """Print ``result``; with ``path``, also save it (plus ``command``) for the results page."""
    print(json.dumps(result))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result | {"command": command}, indent=2, sort_keys=True) + "\n")


def batch_args(parser: argparse.ArgumentParser) -> None:
    """``--batches`` and ``--record``, shared by the RecBole speed benchmarks."""
    parser.add_argument("--batches", type=int, default=int(os.environ.get("GNNREC_BENCH_BATCHES", "0")),
                        help="time only the first N batches of each (0: a full epoch) [GNNREC_BENCH_BATCHES]")
    parser.add_argument("--record", type=Path, default=os.environ.get("GNNREC_BENCH_RECORD") or None,
                        help="also write the JSON result to this file [GNNREC_BENCH_RECORD]")


def command_line(script: str, args: argparse.Namespace, *options: str) -> str:
    """The command that reproduces this run, for the saved record."""
    parts = [f"python {script}", *options] + ([f"--batches {args.batches}"] if args.batches else [])
    return " ".join(parts + ([f"--record {args.record}"] if args.record else []))


def time_ours(split: CFSplit, max_batches: int, seed: int = 2020) -> tuple[float, float, int]:
    """Seconds for one epoch (or ``max_batches`` batches) of our LightGCN, sampling included."""
    torch.manual_seed(seed)
    model = LightGCN(split.n_users, split.n_items, DIM, LAYERS)
    adj = model.adjacency(split.train_edge_index)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(seed)
    start, cpu_start, batches = time.perf_counter(), time.process_time(), 0
    users, pos, neg = sample_bpr_triples(split.train_indptr, split.train_edge_index[1], split.n_items,
                                         split.n_train, generator)
    for s in range(0, split.n_train, BATCH):
        loss = model.recommendation_loss(adj, users[s:s + BATCH], pos[s:s + BATCH], neg[s:s + BATCH], REG)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        batches += 1
        if max_batches and batches >= max_batches:
            break
    return time.perf_counter() - start, time.process_time() - cpu_start, batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    batch_args(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    python = recbole_python()
    split = load_gowalla()
    with tempfile.TemporaryDirectory(prefix="gnnrec-recbole-") as tmp:
        write_atomic_files(split, Path(tmp) / "gowalla")
        recbole = run_recbole_child(python, RECBOLE_CHILD, Path(tmp), args.batches)
    ours = time_ours(split, args.batches)
    result = comparison("lightgcn", "gowalla", ours, recbole, -(-split.n_train // BATCH), BATCH)
    record(result, args.record, command_line("bench/recbole/lightgcn_speed.py", args))


if __name__ == "__main__":
    main()
