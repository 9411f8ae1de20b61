"""Process-level settings that keep a worker's latency flat on a small shared machine.

Two things measured on a 2-core machine with `gnnrec bench latency` (figures in docs/serving.md):

* **Native BLAS threads.** numpy's OpenBLAS starts one thread per core and they spin after each
  call; in the score worker (a small matrix product per batch) that costs 628 µs of CPU per
  event against 318 µs with one thread, and takes cores from the broker and the other workers. Workers run their
  numeric work on one thread each (torch is set to one thread where it is imported), so
  :func:`limit_native_threads` sets the usual environment switches *before* numpy loads. A
  value already in the environment wins.
* **The cyclic garbage collector.** A worker that replays the log holds millions of long-lived
  objects (its graph store replica, torch's modules). Every full collection walked them all:
  ~250 ms pauses, the worst latencies of the run. :class:`HeapFreezer` moves what exists once
  the worker has caught up with the log into the permanent generation (``gc.freeze``), so later
  collections only walk what is newer. Reference counting still frees frozen objects that are
  dropped; only *cycles* among frozen objects are never collected — the long-lived state has
  none that it drops, and the process memory gauge shows it if that ever changes.
  One freeze is not enough: everything a caught-up worker keeps (new sessions, edges, metric
  children) piles up in the oldest generation, and each automatic full collection walks all of
  it again (in a 100 s run at 2,000 events/s such pauses reach ~90 ms, max 116 ms). So the
  freezer also freezes right after every automatic full collection: what survived one is
  long-lived, and the next walks only what came since (~1.5 s of it; pauses stay at 10-14 ms).
"""
from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable

NATIVE_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def limit_native_threads(threads: int = 1) -> None:
    """Default BLAS/OpenMP pools to ``threads``; call before numpy or torch is imported."""
    for name in NATIVE_THREAD_VARS:
        os.environ.setdefault(name, str(threads))


class HeapFreezer:
    """Freezes the heap when the worker first catches up, then every ``interval_s`` while caught up.

    The first freeze runs a full collection first (once, at the end of the start-up replay), so
    start-up garbage is not kept; later ones collect only the young generations (cheap) before
    freezing. From the first freeze on it also freezes, at the next call, after every full
    collection the interpreter ran by itself (``after_full_collections``; nothing to collect
    first then). ``clock`` is passed in for tests; :meth:`close` unhooks it from the collector.
    """

    def __init__(self, interval_s: float = 600.0, *, clock: Callable[[], float] = time.monotonic,
                 after_full_collections: bool = True) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self.clock = clock
        self.after_full_collections = after_full_collections
        self.freezes = 0
        self._last: float | None = None
        self._full_collected = False
        self._hooked = False

    def _on_gc(self, phase: str, info: dict) -> None:
        # Only a flag here: the freeze itself runs in maybe_freeze, outside the collector.
        if phase == "stop" and info["generation"] == 2:
            self._full_collected = True

    def maybe_freeze(self, caught_up: bool) -> bool:
        """Freeze if due; True when it froze."""
        if not caught_up:
            return False
        now = self.clock()
        if self._full_collected and self._last is not None:
            self._full_collected = False
            gc.freeze()
            self.freezes += 1
            return True
        if self._last is not None and now - self._last < self.interval_s:
            return False
        gc.collect(2 if self._last is None else 1)
        gc.freeze()
        self._last = now
        self.freezes += 1
        self._full_collected = False
        if self.after_full_collections and not self._hooked:
            gc.callbacks.append(self._on_gc)
            self._hooked = True
        return True

    def close(self) -> None:
        if self._hooked:
            gc.callbacks.remove(self._on_gc)
            self._hooked = False
