"""Prometheus scrapes a gnnrec worker under the product's job names and serves its counters back.

``metrics_worker`` is the process under observation; today a stand-in that exposes one
prometheus_client Counter, later the real ingest worker (swap the fixture, keep the test).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stream.brokers.base import ManagedProcess, free_ports, tail

try:  # same two import layouts as conftest.py
    from tests.integration.prom import read_scrape_jobs
except ImportError:
    from prom import read_scrape_jobs

REPO = Path(__file__).resolve().parents[2]
PRODUCT_CONFIG = REPO / "deploy" / "prometheus.yml"

_STAND_IN = """
import sys, time
from prometheus_client import Counter, start_http_server
events = Counter("gnnrec_test_events", "Events seen by the stand-in worker")
events.inc(42)
start_http_server(int(sys.argv[1]), addr="127.0.0.1")
while True:
    time.sleep(3600)
"""


@dataclass(frozen=True)
class ObservedWorker:
    """A running process that serves /metrics: its scrape job, address, and one known sample."""

    job: str
    address: str  # host:port
    metric: str  # full Prometheus name, e.g. a Counter's ``<name>_total``
    expected: float


def _wait_for_metrics(address: str, metric: str, proc: ManagedProcess, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"http://{address}/metrics", timeout=2) as resp:
                if metric in resp.read().decode():
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"worker at {address} never served {metric}; log:\n{tail(proc.log_path)}")


@pytest.fixture
def metrics_worker(tmp_path: Path) -> Iterator[ObservedWorker]:
    port = free_ports(1)[0]
    proc = ManagedProcess([sys.executable, "-c", _STAND_IN, str(port)], tmp_path / "worker.log")
    try:
        worker = ObservedWorker("gnnrec-ingest", f"127.0.0.1:{port}", "gnnrec_test_events_total", 42.0)
        _wait_for_metrics(worker.address, worker.metric, proc)
        yield worker
    finally:
        proc.stop()


def test_product_config_lists_the_four_worker_jobs() -> None:
    jobs = read_scrape_jobs(PRODUCT_CONFIG)
    assert {name: job["targets"] for name, job in jobs.items()} == {
        "gnnrec-ingest": ["127.0.0.1:9101"],
        "gnnrec-score": ["127.0.0.1:9102"],
        "gnnrec-refresh": ["127.0.0.1:9103"],
        "gnnrec-train": ["127.0.0.1:9104"],
    }


def test_product_config_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not on PATH (comes with Debian's prometheus; run deploy/test_prereqs.sh)")
    done = subprocess.run([promtool, "check", "config", str(PRODUCT_CONFIG)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_reads_back_worker_counter(metrics_worker: ObservedWorker, prometheus_for) -> None:
    prometheus = prometheus_for({metrics_worker.job: [metrics_worker.address]})
    promql = f'{metrics_worker.metric}{{job="{metrics_worker.job}"}}'
    result = prometheus.wait_for(promql, timeout_s=20)
    assert result, f"no sample for {promql}; targets: {prometheus.targets()}"
    assert len(result) == 1
    sample = result[0]
    assert sample["metric"]["instance"] == metrics_worker.address
    assert float(sample["value"][1]) == metrics_worker.expected
    up = prometheus.query(f'up{{job="{metrics_worker.job}"}}')
    assert [float(s["value"][1]) for s in up] == [1.0]
