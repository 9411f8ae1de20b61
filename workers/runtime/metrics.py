"""Prometheus metrics of every worker, named by convention (``_total`` counters, ``_seconds``).

All metrics carry a ``worker`` label so several workers in one process (tests, benchmarks)
stay distinguishable; each worker process serves them on its own ``/metrics`` port
(:mod:`workers.runtime.health`).
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

EVENTS_CONSUMED = Counter(
    "gnnrec_events_consumed_total", "Records read from Kafka", ["worker", "topic"])
EVENTS_APPLIED = Counter(
    "gnnrec_events_applied_total", "Events applied to the graph store", ["worker", "type"])
EVENTS_SKIPPED = Counter(
    "gnnrec_events_replayed_skipped_total", "Records skipped because the store already holds them", ["worker"])
DEAD_LETTERS = Counter(
    "gnnrec_dead_letters_total", "Bad records sent to the dead-letter topic", ["worker", "reason"])
DEAD_LETTER_FAILURES = Counter(
    "gnnrec_dead_letter_failures_total",
    "Bad records skipped because no dead letter could be written for them (logged with topic, "
    "partition and offset)", ["worker", "error"])
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
COALESCED = Counter(
    "gnnrec_events_coalesced_total", "Events not answered because a later event of the same session "
    "(next_item) or user (social) in the same batch was answered instead", ["worker", "kind"])
LATENCY = Histogram(
    "gnnrec_event_to_recommendation_seconds",
    "From the event entering Kafka (record timestamp) to its recommendation being sent", ["worker", "kind"],
    buckets=_LATENCY_BUCKETS)
INGEST_PATH = Gauge("gnnrec_ingest_path_info", "The ingest worker's hot path in use (1): store class, and "
                    "fetch = chunks (record batches read by the native kernel) or records (aiokafka's)",
                    ["worker", "store", "fetch"])
STORE_CHECKPOINTS = Counter(
    "gnnrec_store_checkpoints_total", "Scheduled flushes of a store that has no write-ahead log", ["worker"])
STORE_NODES = Gauge("gnnrec_store_nodes", "Nodes in the graph store", ["worker", "type"])
STORE_EDGES = Gauge("gnnrec_store_edges", "Edges in the graph store", ["worker", "type"])
COMMITTED_OFFSET = Gauge(
    "gnnrec_committed_offset", "Next offset stored with the data, per partition", ["worker", "topic", "partition"])


_JOB_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
REFRESH_DIRTY = Gauge("gnnrec_refresh_dirty_nodes", "Dirty nodes taken by the last refresh", ["worker"])
REFRESH_RECOMPUTED = Counter(
    "gnnrec_refresh_recomputed_nodes_total", "Embedding rows recomputed and published", ["worker"])
REFRESH_SECONDS = Histogram(
    "gnnrec_refresh_duration_seconds", "One refresh: recomputation plus the embedding-store write", ["worker"],
    buckets=_JOB_BUCKETS)
REFRESH_RUNS = Counter(
    "gnnrec_refresh_runs_total", "Refreshes written, by kind (local, rebuild, swap)", ["worker", "kind"])
REFRESH_ERRORS = Counter(
    "gnnrec_refresh_errors_total", "Refreshes that failed (logged; the previous version stays served)",
    ["worker", "stage"])
MODEL_VERSION = Gauge(
    "gnnrec_model_version_info", "1 for the model version in use (trainer: last published)", ["worker", "version"])
MODEL_TRAINED_AT = Gauge(
    "gnnrec_model_trained_at_ms", "Event time of the data the model in use was trained on", ["worker"])
EMBEDDING_WATERMARK = Gauge(
    "gnnrec_embedding_version_watermark_ms", "Event-time watermark of the last embeddings written", ["worker"])
TRAIN_RUNS = Counter("gnnrec_train_runs_total", "Training runs, by outcome", ["worker", "outcome"])
TRAIN_SECONDS = Histogram(
    "gnnrec_train_duration_seconds", "One training run, publishing included", ["worker"], buckets=_JOB_BUCKETS)

# The kafka transport (workers/runtime/transport/): bundles and embedding versions on the models
# and embeddings topics. ``topic`` is the role (models | embeddings), not the topic's name.
TOPIC_BLOBS = Counter(
    "gnnrec_topic_blobs_total", "Bundles and embedding versions published to or applied from the models and "
    "embeddings topics (outcome: published, applied, skipped = superseded before it was applied)",
    ["worker", "topic", "outcome"])
TOPIC_ERRORS = Counter(
    "gnnrec_topic_errors_total", "Records or blobs of the models and embeddings topics not used, and failed "
    "publishes (reason: malformed, missing_chunks, checksum, incomplete, gap, publish, apply)",
    ["worker", "topic", "reason"])
TOPIC_CAUGHT_UP = Gauge(
    "gnnrec_topic_caught_up", "1 once a reader of the models/embeddings topic has read it to its end", ["worker", "topic"])


def set_model_version(worker: str, version: str, trained_at_ms: int) -> None:
    """Make ``version`` the only ``gnnrec_model_version_info`` series of ``worker`` set to 1."""
    for labels in list(MODEL_VERSION._metrics):  # drop the previous version's series
        if labels[0] == worker and labels[1] != version:
            MODEL_VERSION.remove(*labels)
    MODEL_VERSION.labels(worker, version).set(1)
    MODEL_TRAINED_AT.labels(worker).set(trained_at_ms)


# GNN scoring: how old the embeddings behind a recommendation are, which versions serve, and
# prequential online quality (see models/live/quality.py) per recommender.
EMBEDDING_STALENESS = Histogram(
    "gnnrec_embedding_staleness_seconds",
    "Request event time minus the watermark of the embedding version that scored it", ["worker"],
    buckets=(0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0))
EMBEDDING_VERSION_INFO = Gauge(
    "gnnrec_embedding_version_info", "1 for the embedding version now serving", ["worker", "embedding_version"])
ONLINE_HIT_RATE = Gauge(
    "gnnrec_online_hit_rate_20", "Share of next-item lists whose session clicked one of their items next",
    ["worker", "recommender"])
ONLINE_MRR = Gauge(
    "gnnrec_online_mrr_20", "Mean reciprocal rank of the next click in the session's last next-item list",
    ["worker", "recommender"])
ONLINE_SCORED = Counter(
    "gnnrec_online_scored_total", "Next-item lists scored against the session's next click", ["worker", "recommender"])
ONLINE_HITS = Counter(
    "gnnrec_online_hits_total", "Next-item lists that held the session's next click", ["worker", "recommender"])
ONLINE_RECIPROCAL_RANK = Counter(
    "gnnrec_online_reciprocal_rank_total", "Sum of 1/rank of the next click (0 on a miss)", ["worker", "recommender"])


def export_consumer_gauges(worker: str, counts, lag: dict, committed: dict) -> None:
    """Store counts, consumer lag and committed offsets: what every consuming worker exports."""
    export_store_counts(worker, counts)
    for (topic, part), n in lag.items():
        CONSUMER_LAG.labels(worker, topic, str(part)).set(n)
    for (topic, part), off in committed.items():
        COMMITTED_OFFSET.labels(worker, topic, str(part)).set(off)


def export_store_counts(worker: str, counts) -> None:
    STORE_NODES.labels(worker, "user").set(counts.users)
    STORE_NODES.labels(worker, "item").set(counts.items)
    STORE_NODES.labels(worker, "session").set(counts.sessions)
    for edge_type, n in counts.edges.items():
        STORE_EDGES.labels(worker, edge_type).set(n)
