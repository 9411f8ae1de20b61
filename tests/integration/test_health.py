"""/healthz, /readyz and 404s of real worker processes on each real broker (Tansu, Apache Kafka).

An ingest worker and a score worker consume a known stream: each becomes ready (200) once it
holds partitions and has caught up with them, is alive, and answers 404 off its three paths. A
score worker in GNN mode with no model published stays not ready, naming the ``model`` check.
"""
from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from stream.kafka.topics import TopicSettings, ensure_topics
from tests.integration.pipeline_support import wait_for, worker_env
from tests.integration.test_live_workers import PARTITIONS, _events, _produce
from workers.runtime.launch import WorkerProcess, metric_sum

pytestmark = pytest.mark.timeout(180)


def _get(worker: WorkerProcess, path: str) -> tuple[int, dict | str]:
    assert worker.metrics_url is not None, f"worker {worker.name} printed no metrics line"
    url = worker.metrics_url.removesuffix("/metrics") + path
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            status, raw, kind = resp.status, resp.read().decode(), resp.headers["Content-Type"]
    except urllib.error.HTTPError as err:
        status, raw, kind = err.code, err.read().decode(), err.headers["Content-Type"]
    return status, json.loads(raw) if kind == "application/json" else raw


def _ready(worker: WorkerProcess):
    status, body = _get(worker, "/readyz")
    return body if status == 200 else None


def test_workers_report_alive_ready_and_unknown_paths(kafka_broker, unique_topics, tmp_path: Path) -> None:
    bootstrap = kafka_broker.bootstrap
    topics = TopicSettings(interactions=unique_topics("interactions"), follows=unique_topics("follows"),
                           next_item=unique_topics("next-item"), social=unique_topics("social"),
                           dead_letters=unique_topics("dead-letters"), partitions=PARTITIONS)
    asyncio.run(ensure_topics(bootstrap, topics))
    events = _events(400, 11, int(time.time() * 1000) - 3_600_000)
    asyncio.run(_produce(bootstrap, topics, events))

    def env(role: str, **extra: str) -> dict[str, str]:
        return {**worker_env(bootstrap, unique_topics, unique_topics(role), tmp_path / role),
                "GNNREC_PARTITIONS": str(PARTITIONS), "GNNREC_READY_MAX_LAG": "0", **extra}

    gnn = {"GNNREC_RECOMMENDER": "gnn", "GNNREC_MODEL_DIR": str(tmp_path / "models"),
           "GNNREC_EMBEDDINGS_DIR": str(tmp_path / "embeddings")}
    workers = {
        "ingest": WorkerProcess("ingest", [], env=env("ingest"), log_path=tmp_path / "logs" / "ingest.log"),
        "score": WorkerProcess("score", [], env=env("score", GNNREC_RECOMMENDER="transitions"),
                               log_path=tmp_path / "logs" / "score.log"),
        "gnn": WorkerProcess("score", [], env=env("score-gnn", **gnn), log_path=tmp_path / "logs" / "score-gnn.log"),
    }
    try:
        for worker in workers.values():  # started together: their start-ups overlap
            worker.start()
        for worker in workers.values():
            worker.wait_ready(120)
        for role in ("ingest", "score"):
            worker = workers[role]
            body = wait_for(lambda: _ready(worker), 60, f"the {role} worker's /readyz to answer 200")
            assert body["ready"] is True and body["failing"] == []
            assert set(body["checks"]) == {"assigned", "caught_up"}
            assert body["checks"]["caught_up"]["detail"].startswith("0 records behind")
            wait_for(lambda: metric_sum(worker.scrape(), "gnnrec_events_applied_total") == len(events), 30,
                     f"the {role} worker applying every event")
            status, live = _get(worker, "/healthz")
            assert status == 200 and live["alive"] is True
            assert _get(worker, "/nope")[0] == 404
            status, text = _get(worker, "/metrics")
            assert status == 200 and "gnnrec_events_applied_total" in text

        gnn_worker = workers["gnn"]

        def only_the_model_fails():
            status, body = _get(gnn_worker, "/readyz")
            return (status, body) if body["failing"] == ["model"] else None

        status, body = wait_for(only_the_model_fails, 60, "the GNN score worker to be caught up but without a model")
        assert status == 503 and body["ready"] is False
        detail = body["checks"]["model"]["detail"]
        assert str(tmp_path / "models") in detail and str(tmp_path / "embeddings") in detail
        assert _get(gnn_worker, "/healthz")[0] == 200
    finally:
        for worker in workers.values():
            worker.stop()
