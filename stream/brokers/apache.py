"""Apache Kafka 4.x from Maven Central: a single-node KRaft broker+controller on loopback.

The jars of ``org.apache.kafka:kafka_2.13:<version>`` and its runtime dependencies (plus
``slf4j-simple`` so the broker logs to its log file) are copied by Maven into
``<cache>/kafka-<version>/lib`` once, under a file lock so parallel test processes resolve it
once. Each start formats fresh KRaft storage in a temporary directory (random cluster id,
static single-voter quorum) that is removed on stop.

Command line::

    python -m stream.brokers.apache --resolve           # fill the jar cache (make test does this)
    python -m stream.brokers.apache --start             # start, print timings, stop
"""
from __future__ import annotations

import argparse
import base64
import fcntl
import hashlib
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

DEFAULT_KAFKA_VERSION = "4.1.2"  # on Maven Central: repo1.maven.org/maven2/org/apache/kafka/kafka_2.13/
SLF4J_VERSION = "1.7.36"  # the slf4j-api version kafka_2.13 4.1.x depends on
DEPENDENCY_PLUGIN = "3.8.1"
HOST = "127.0.0.1"
CENTRAL = "https://repo1.maven.org/maven2/org/apache/kafka/kafka_2.13/"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>gnnrec</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{version}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId>
      <version>{slf4j}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId>
      <version>{slf4j}</version></dependency>
  </dependencies>
  <build><plugins><plugin>
    <groupId>org.apache.maven.plugins</groupId><artifactId>maven-dependency-plugin</artifactId>
    <version>{plugin}</version>
  </plugin></plugins></build>
</project>
"""

_SERVER_PROPERTIES = """process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{controller_port}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data_dir}
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


def kafka_cache_dir(version: str = DEFAULT_KAFKA_VERSION) -> Path:
    """``$GNNREC_KAFKA_CACHE/kafka-<version>``; the parent defaults to ``~/.cache/gnnrec``."""
    parent = os.environ.get("GNNREC_KAFKA_CACHE") or Path.home() / ".cache" / "gnnrec"
    return Path(parent) / f"kafka-{version}"


def _find_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None and name == "java" and os.environ.get("JAVA_HOME"):
        candidate = Path(os.environ["JAVA_HOME"]) / "bin" / "java"
        path = str(candidate) if candidate.is_file() else None
    if path is None:
        raise BrokerUnavailable(f"`{name}` is not on PATH; {hint}")
    return path


def resolve_kafka(version: str = DEFAULT_KAFKA_VERSION, cache_dir: Path | None = None) -> Path:
    """Return the directory holding Kafka's runtime jars, resolving them with Maven if needed.

    Safe to call from parallel processes: the first takes ``<cache_dir>/.lock`` and resolves,
    the others wait and then find the finished ``lib/.complete`` marker.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else kafka_cache_dir(version)
    cache_dir.mkdir(parents=True, exist_ok=True)
    pom = _POM.format(version=version, slf4j=SLF4J_VERSION, plugin=DEPENDENCY_PLUGIN)
    stamp = hashlib.sha256(pom.encode()).hexdigest()
    lib, marker = cache_dir / "lib", cache_dir / "lib" / ".complete"
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text().strip() == stamp:
            return lib
        mvn = _find_tool("mvn", "install Maven (`apt-get install maven`) or pre-fill the jar cache")
        (cache_dir / "pom.xml").write_text(pom)
        staging = cache_dir / "lib.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            mvn, "-B", "-q", "--no-transfer-progress", "-f", str(cache_dir / "pom.xml"),
            f"org.apache.maven.plugins:maven-dependency-plugin:{DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired as exc:
            raise BrokerUnavailable(f"Maven took over 900 s resolving Kafka {version}: {cmd}") from exc
        main_jar = staging / f"kafka_2.13-{version}.jar"
        if done.returncode != 0 or not main_jar.is_file():
            output = (done.stdout + done.stderr)[-6000:]
            raise BrokerUnavailable(
                f"Maven could not resolve org.apache.kafka:kafka_2.13:{version} (exit "
                f"{done.returncode}; command: {' '.join(cmd)}). Check that the version exists at "
                f"{CENTRAL} and that Maven Central (or a mirror in ~/.m2/settings.xml) is "
                f"reachable. Maven output:\n{output}"
            )
        shutil.rmtree(lib, ignore_errors=True)
        staging.rename(lib)
        marker.write_text(stamp + "\n")
        return lib


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


def _format_storage(java: str, classpath: str, properties: Path, log_path: Path) -> None:
    cid = cluster_id()
    cmd = [
        # A short-lived tool: C1-only JIT and serial GC start it about twice as fast.
        java, "-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
        "-cp", classpath, "kafka.tools.StorageTool",
        "format", "-t", cid, "-c", str(properties),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    with open(log_path, "a") as fh:
        fh.write(done.stdout + done.stderr)
    if done.returncode != 0:
        raise BrokerUnavailable(
            f"formatting KRaft storage failed (exit {done.returncode}; command: {' '.join(cmd)}). "
            f"Java output:\n{(done.stdout + done.stderr)[-6000:]}"
        )


def start_apache_kafka(
    *,
    version: str = DEFAULT_KAFKA_VERSION,
    cache_dir: Path | None = None,
    port: int | None = None,
    log_path: Path | None = None,
    ready_timeout_s: float = 90,
) -> BrokerHandle:
    """Start a single-node Apache Kafka (KRaft, broker+controller) on loopback.

    Topics default to 4 partitions; internal topics use replication 1; group rebalances start
    without delay. ``log_path`` defaults to a file inside the temporary data directory, which
    is removed on stop.
    """
    lib = resolve_kafka(version, cache_dir)
    java = _find_tool("java", "install a Java 17+ runtime (`apt-get install openjdk-17-jre-headless`)")
    ports = free_ports(3)
    port = port if port is not None else ports[0]
    controller_port = next(p for p in ports if p != port)
    work = Path(tempfile.mkdtemp(prefix=f"gnnrec-kafka-{version}-"))
    try:
        properties = work / "server.properties"
        properties.write_text(
            _SERVER_PROPERTIES.format(
                host=HOST, port=port, controller_port=controller_port, data_dir=work / "data"
            )
        )
        log_path = Path(log_path) if log_path is not None else work / "server.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        classpath = f"{lib}/*"
        _format_storage(java, classpath, properties, log_path)
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
    wait_until_ready(proc, HOST, port, ready_timeout_s, what=f"Apache Kafka {version} on port {port}")
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
