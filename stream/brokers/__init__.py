"""Kafka-compatible brokers for development, tests and benchmarks.

``start_apache_kafka`` fetches Apache Kafka 4.x from Maven Central (a pinned jar list) and runs
a single-node KRaft broker: the embedded default (compaction, transactions, correct end
offsets, every client); ``start_apache_cluster`` runs three such nodes as one replicated cluster
(replication 3, ``min.insync.replicas=2``), nodes stopped and restarted one at a time. ``start_tansu`` runs the Tansu binary (milliseconds to start, in
memory; ``GNNREC_EMBEDDED_BROKER=tansu``); ``start_testcontainers_kafka`` needs a Docker engine;
``start_embedded`` starts the default and ``broker_from_env_or_embedded`` honours
``KAFKA_BOOTSTRAP_SERVERS``. Each returns a :class:`BrokerHandle` whose ``stop()`` leaves no
process behind. Brokers are plaintext on loopback, except an Apache Kafka started with a
:class:`SaslSslListener` (TLS and SASL for its clients, as tests of secure connections need).

Names are imported lazily so ``python -m stream.brokers.apache`` runs its module only once.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BrokerHandle": "stream.brokers.base",
    "BrokerUnavailable": "stream.brokers.base",
    "ClusterHandle": "stream.brokers.cluster",
    "DEFAULT_KAFKA_VERSION": "stream.brokers.apache",
    "kafka_cache_dir": "stream.brokers.jars",
    "resolve_kafka": "stream.brokers.jars",
    "start_apache_kafka": "stream.brokers.apache",
    "start_apache_cluster": "stream.brokers.cluster",
    "start_testcontainers_kafka": "stream.brokers.containers",
    "broker_from_env_or_embedded": "stream.brokers.env",
    "embedded_kind": "stream.brokers.env",
    "start_embedded": "stream.brokers.env",
    "find_java": "stream.brokers.java",
    "find_keytool": "stream.brokers.java",
    "SaslSslListener": "stream.brokers.sasl_ssl",
    "start_tansu": "stream.brokers.tansu",
    "tansu_binary": "stream.brokers.tansu",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stream.brokers' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
