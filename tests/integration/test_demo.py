"""`gnnrec demo --file`: the whole pipeline on a user's own file, as a newcomer runs it.

The command starts the embedded broker itself (no ``KAFKA_BOOTSTRAP_SERVERS``), every worker,
replays the file and prints its summary. The file is written here in the YooChoose layout
(``SessionId ItemId Time``, Unix seconds) from simulator sessions, so the test needs no
shared data; the oracle is the file itself (every event ingested, every interaction answered).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from stream.events import Interaction
from stream.simulator import Simulator, SimulatorSettings


def _write_yoochoose(path: Path, n: int) -> int:
    # The layout's ids are integers: the simulator's ids lose their letter prefix.
    events = [e for e in Simulator(SimulatorSettings(seed=3)).events(1_600_000_000_000, 2 * n, 250)
              if isinstance(e, Interaction)][:n]
    lines = ["SessionId\tItemId\tTime"] + [f"{e.session_id[1:]}\t{e.item_id[1:]}\t{e.ts / 1000:.3f}" for e in events]
    path.write_text("\n".join(lines) + "\n")
    return len(events)


def test_demo_replays_a_users_file_through_every_worker(tmp_path: Path) -> None:
    clicks = tmp_path / "my-clicks.tsv"
    n = _write_yoochoose(clicks, 4000)
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    out = subprocess.run(
        [sys.executable, "-m", "workers.cli", "demo", "--file", str(clicks), "--rate", "4000",
         "--warmup-events", "2500", "--warmup-timeout-s", "150", "--data-dir", str(tmp_path / "demo"), "--json"],
        capture_output=True, text=True, timeout=280, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["source"] == str(clicks)
    assert summary["events_produced"] == summary["events_ingested"] == n
    assert summary["malformed_sent"] == summary["dead_letters"] == 0  # a user's file gets no injected garbage
    # Every click answered once, or coalesced: a later click of its session in the same batch was answered.
    assert summary["recommendations"]["next_item"] + summary["coalesced"]["next_item"] == n
    assert summary["gnn_recommendations"] > 0, "the first model never served"
    assert summary["model_version"].startswith("live-") and summary["embedding_version"].startswith(
        summary["model_version"])
    assert summary["latency_ms"]["p99"] is not None


def test_demo_refuses_a_file_it_cannot_read_before_starting_anything(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n")
    out = subprocess.run([sys.executable, "-m", "workers.cli", "demo", "--file", str(bad), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "unrecognised header" in out.stderr and "--format" in out.stderr
