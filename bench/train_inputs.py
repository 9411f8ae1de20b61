"""`python -m bench.train_inputs STORE_DIR HALF_LIFE_MS`: how a training run's input read shares
the train worker's event loop, and what the first (sampled) run costs, printed as JSON.

Reads a RocksDB graph store built elsewhere (for example by replaying a dataset), with
:func:`models.live.train_inputs.read_train_inputs` at the default sample, and reports the read's
seconds, its number of slices and its longest slice (the longest the worker's loop goes without
applying a batch), then trains the sample within ``--budget-s`` and reports the training seconds.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("store", type=Path)
    parser.add_argument("half_life_ms", type=float)
    parser.add_argument("--sample-edges", type=int, default=250_000)
    parser.add_argument("--budget-s", type=float, default=600.0)
    parser.add_argument("--no-train", action="store_true")
    args = parser.parse_args()
    import torch
    torch.set_num_threads(1)
    from graph_store import RocksDBGraphStore, StoreSettings
    from models.live.budget import Deadline
    from models.live.train import LiveTrainConfig, train_from_inputs
    from models.live.train_inputs import read_train_inputs
    store = RocksDBGraphStore(args.store, StoreSettings(half_life_ms=args.half_life_ms))
    cfg = LiveTrainConfig()
    started = last = time.perf_counter()
    longest, slices, inputs = 0.0, 0, None
    for step in read_train_inputs(store, store.watermark_ms(), cfg, max_edges=args.sample_edges or None):
        now = time.perf_counter()
        longest, last, slices = max(longest, now - last), now, slices + 1
        inputs = step if step is not None else inputs
    out = {"read_s": round(time.perf_counter() - started, 3), "slices": slices,
           "longest_slice_ms": round(longest * 1000, 1), "edges": len(inputs.ui[0]),
           "store_edges": inputs.store_ui_edges, "users": len(inputs.user_ids), "items": len(inputs.item_ids),
           "sessions": len(inputs.sessions)}
    store.close()
    if not args.no_train:
        t0 = time.perf_counter()
        bundle = train_from_inputs(inputs, cfg, Deadline.after(args.budget_s))
        out.update(train_s=round(time.perf_counter() - t0, 1), lightgcn_epochs=bundle.info.get("lightgcn_epochs"),
                   prior_refit=bundle.info.get("prior_refit"))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
