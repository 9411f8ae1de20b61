"""The latency bench's percentile and per-window summaries, against sorted-list oracles."""
from __future__ import annotations

import random

from bench.latency import _pct, _windows


def _nearest_rank(data: list[float], q: float) -> float:
    s = sorted(data)
    return round(s[min(len(s) - 1, int(round(q * (len(s) - 1))))], 1)


def test_pct_matches_nearest_rank_and_handles_empty():
    rng = random.Random(3)
    data = [rng.uniform(0, 500) for _ in range(1001)]
    assert _pct(data, 0.5) == _nearest_rank(data, 0.5)
    assert _pct(data, 0.99) == _nearest_rank(data, 0.99)
    assert _pct(data, 1.0) == round(max(data), 1)
    assert _pct([], 0.99) is None


def test_windows_split_by_event_time_and_keep_empty_windows():
    start = 1_000_000.0
    # window 0: latencies 1..100, window 1: none, window 2: 1000..1099
    stamped = [(start + i, float(i + 1)) for i in range(100)]
    stamped += [(start + 20_000 + i, 1000.0 + i) for i in range(100)]
    rng = random.Random(0)
    rng.shuffle(stamped)  # arrival order must not matter
    got = _windows(stamped, start, window_s=10.0)
    assert got == [_nearest_rank([float(i + 1) for i in range(100)], 0.99), None,
                   _nearest_rank([1000.0 + i for i in range(100)], 0.99)]
    assert _windows([], start, 10.0) == []
    assert _windows(stamped, start, 0.0) == []
