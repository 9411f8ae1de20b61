"""Prometheus metrics of every worker, named by convention (``_total`` counters, ``_seconds``).

All metrics carry a ``worker`` label so several workers in one process (tests, benchmarks)
stay distinguishable; each worker process serves them on its own ``/metrics`` port.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

EVENTS_CONSUMED = Counter(
    "gnnrec_events_consumed_total", "Records read from Kafka", ["worker", "topic"])
EVENTS_APPLIED = Counter(
    "gnnrec_events_applied_total", "Events applied to the graph store", ["worker", "type"])
EVENTS_SKIPPED = Counter(
    "gnnrec_events_replayed_skipped_total", "Records skipped because the store already holds them", ["worker"])
DEAD_LETTERS = Counter(
    "gnnrec_dead_letters_total", "Bad records sent to the dead-letter topic", ["worker", "reason"])
REJECTED = Counter(
    "gnnrec_events_rejected_total",
    "Bad records a non-ingest worker skipped (the ingest worker dead-letters them)", ["worker", "reason"])
BATCH_APPLY_SECONDS = Histogram(
    "gnnrec_batch_apply_duration_seconds", "Time to decode, apply and commit one batch", ["worker"],
    buckets=_LATENCY_BUCKETS)
BATCH_SIZE = Histogram(
    "gnnrec_batch_records", "Records per consumed batch", ["worker"],
    buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000))
CONSUMER_LAG = Gauge(
    "gnnrec_consumer_lag", "High watermark minus position, per partition", ["worker", "topic", "partition"])
RECOMMENDATIONS = Counter(
    "gnnrec_recommendations_emitted_total", "Recommendations produced", ["worker", "kind"])
LATENCY = Histogram(
    "gnnrec_event_to_recommendation_seconds",
    "From the event entering Kafka (record timestamp) to its recommendation being sent", ["worker", "kind"],
    buckets=_LATENCY_BUCKETS)
STORE_NODES = Gauge("gnnrec_store_nodes", "Nodes in the graph store", ["worker", "type"])
STORE_EDGES = Gauge("gnnrec_store_edges", "Edges in the graph store", ["worker", "type"])
COMMITTED_OFFSET = Gauge(
    "gnnrec_committed_offset", "Next offset stored with the data, per partition", ["worker", "topic", "partition"])


def serve_metrics(port: int, host: str = "127.0.0.1") -> int:
    """Start the /metrics HTTP endpoint; returns the bound port (useful when port=0)."""
    server, _thread = start_http_server(port, addr=host)
    return int(server.server_address[1])


def export_store_counts(worker: str, counts) -> None:
    STORE_NODES.labels(worker, "user").set(counts.users)
    STORE_NODES.labels(worker, "item").set(counts.items)
    STORE_NODES.labels(worker, "session").set(counts.sessions)
    for edge_type, n in counts.edges.items():
        STORE_EDGES.labels(worker, edge_type).set(n)
