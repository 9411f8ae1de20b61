"""Prometheus scrapes the real ingest worker under the product's job names and serves its counters back."""
from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stream.brokers.base import free_ports
from stream.events import Interaction
from stream.kafka.producer import EventProducer
from stream.simulator import Simulator, SimulatorSettings
from stream.kafka.topics import TopicSettings, ensure_topics
from tests.integration.conftest import unavailable
from tests.integration.pipeline_support import wait_for, worker_env
from workers.runtime.launch import WorkerProcess, metric_sum

try:  # same two import layouts as conftest.py
    from tests.integration.prom import read_scrape_jobs
except ImportError:
    from prom import read_scrape_jobs

REPO = Path(__file__).resolve().parents[2]
PRODUCT_CONFIG = REPO / "deploy" / "prometheus.yml"

@dataclass(frozen=True)
class ObservedWorker:
    """A running process that serves /metrics: its scrape job, address, and one known sample."""

    job: str
    address: str  # host:port
    metric: str  # full Prometheus name, e.g. a Counter's ``<name>_total``
    expected: float
    labels: str = ""  # extra label matchers, e.g. 'type="interaction"'


@pytest.fixture
def metrics_worker(tmp_path: Path, broker_pool, unique_topics) -> Iterator[ObservedWorker]:
    """The real ingest worker on the embedded broker, after it applied a known number of events."""
    try:
        broker = broker_pool.get("tansu")
    except Exception as exc:  # noqa: BLE001 - the pool reports why
        unavailable(f"tansu broker unavailable: {exc}")
    events = [e for e in Simulator(SimulatorSettings(seed=3)).events(start_ms=int(time.time() * 1000) - 60_000,
                                                                     n=600, step_ms=1)
              if isinstance(e, Interaction)]
    topics = TopicSettings(interactions=unique_topics("interactions"), follows=unique_topics("follows"),
                           next_item=unique_topics("next"), social=unique_topics("social"),
                           dead_letters=unique_topics("dead"), partitions=2)
    asyncio.run(ensure_topics(broker.bootstrap, topics))

    async def produce() -> None:
        producer = EventProducer(broker.bootstrap, topics)
        await producer.start()
        for e in events:
            await producer.send_event(e)
        await producer.flush()
        await producer.stop()

    asyncio.run(produce())
    port = free_ports(1)[0]
    env = worker_env(broker.bootstrap, unique_topics, unique_topics("ingest"), tmp_path / "ingest")
    env["GNNREC_METRICS_PORT"] = str(port)
    env["GNNREC_PARTITIONS"] = "2"
    worker = WorkerProcess("ingest", [], env=env, log_path=tmp_path / "ingest.log").start()
    try:
        worker.wait_ready(120)
        metric = "gnnrec_events_applied_total"
        wait_for(lambda: metric_sum(worker.scrape(), metric, type="interaction") == len(events), 60,
                 "the ingest worker to apply every event")
        yield ObservedWorker("gnnrec-ingest", f"127.0.0.1:{port}", metric, float(len(events)),
                             labels='worker="ingest",type="interaction"')
    finally:
        worker.stop()


def test_product_config_lists_the_four_worker_jobs() -> None:
    """One job per role, a target per compose service (tests/deploy checks them against compose)."""
    jobs = read_scrape_jobs(PRODUCT_CONFIG)
    assert {name: job["targets"] for name, job in jobs.items()} == {
        "gnnrec-ingest": ["ingest:9101"],
        "gnnrec-score": ["score-1:9102", "score-2:9105"],
        "gnnrec-refresh": ["refresh:9103"],
        "gnnrec-train": ["train:9104"],
    }


def test_product_config_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        unavailable("promtool not on PATH (comes with Debian's prometheus; run deploy/test_prereqs.sh)")
    done = subprocess.run([promtool, "check", "config", str(PRODUCT_CONFIG)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_reads_back_worker_counter(metrics_worker: ObservedWorker, prometheus_for) -> None:
    prometheus = prometheus_for({metrics_worker.job: [metrics_worker.address]})
    matchers = ",".join(filter(None, [f'job="{metrics_worker.job}"', metrics_worker.labels]))
    promql = f"{metrics_worker.metric}{{{matchers}}}"
    result = prometheus.wait_for(promql, timeout_s=20)
    assert result, f"no sample for {promql}; targets: {prometheus.targets()}"
    assert len(result) == 1
    sample = result[0]
    assert sample["metric"]["instance"] == metrics_worker.address
    assert float(sample["value"][1]) == metrics_worker.expected
    up = prometheus.query(f'up{{job="{metrics_worker.job}"}}')
    assert [float(s["value"][1]) for s in up] == [1.0]
