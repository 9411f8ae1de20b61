"""The faust application every gnnrec worker runs inside.

Settings follow what was measured on the embedded Tansu broker (../shared/DEPENDENCIES.md):
a 6 s group session timeout (Tansu holds a JoinGroup for half of it), no exactly-once
processing (no transactions), and no table changelogs — our state lives in the graph store,
whose WriteBatch carries the consumed offsets.
"""
from __future__ import annotations

from pathlib import Path

import faust

from stream.kafka.security import PLAINTEXT, KafkaSecurity


def make_faust_app(app_id: str, bootstrap: str, datadir: Path, *, partitions: int = 4,
                   security: KafkaSecurity = PLAINTEXT) -> faust.App:
    """A faust App configured for gnnrec workers (broker and its TLS/SASL, data dir, short session timeouts)."""
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        broker_credentials=security.faust_credentials(),
        datadir=str(datadir),
        # faust's own aiohttp web server is off; each worker serves Prometheus /metrics instead.
        web_enabled=False,
        broker_session_timeout=6,
        broker_heartbeat_interval=2,
        topic_partitions=partitions,
        topic_replication_factor=1,
        producer_linger_ms=5,
        processing_guarantee="at_least_once",
        autodiscover=False,
    )
    # The workers consume with their own clients (stream/kafka/batch_consumer.py), so faust starts
    # only its producer: no consumer group and no leader-election topic, which faust would
    # otherwise re-declare ~45 s after start through the controller broker, its Conductor
    # crashing the worker (NodeNotReadyError) were that broker down then.
    app.producer_only = True
    return app
