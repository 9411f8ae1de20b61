"""A replicated Apache Kafka cluster on loopback: ``n`` KRaft nodes, each broker and controller.

The jars and Java are those of :mod:`stream.brokers.apache`. Every node is formatted with one
cluster id and lists all nodes as controller quorum voters (a static quorum), so the cluster
keeps a controller majority and an in-sync majority of every partition while one node of three
is down. Topics default to replication 3 with ``min.insync.replicas=2``, and so do the internal
topics (consumer offsets, transaction state): a producer with ``acks=all`` then has every
acknowledged record on two nodes at least, and keeps producing with one node stopped.

Each node's data directory survives :meth:`ClusterHandle.stop_node`, so
:meth:`ClusterHandle.start_node` brings the same node back (same id, ports and log) to catch
up from the others; :meth:`ClusterHandle.stop` stops every node and removes the data.

Command line::

    python -m stream.brokers.cluster      # start 3 nodes, stop and restart one, print timings
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from stream.brokers.apache import HOST, cluster_id, format_storage
from stream.brokers.base import BrokerHandle, BrokerUnavailable, ManagedProcess, free_ports, wait_until_ready
from stream.brokers.jars import DEFAULT_KAFKA_VERSION, resolve_kafka
from stream.brokers.java import find_java

__all__ = ["ClusterHandle", "start_apache_cluster"]

_NODE_PROPERTIES = """process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data_dir}
num.partitions=4
auto.create.topics.enable=true
default.replication.factor={replication}
min.insync.replicas={min_isr}
unclean.leader.election.enable=false
offsets.topic.replication.factor={replication}
offsets.topic.num.partitions=4
transaction.state.log.replication.factor={replication}
transaction.state.log.min.isr={min_isr}
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor={replication}
share.coordinator.state.topic.min.isr={min_isr}
group.initial.rebalance.delay.ms=0
# A node that stops heartbeating is fenced after 3 s (default 9 s), so its partitions get a new
# leader while producers are still retrying (aiokafka gives up after 40 s).
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
"""

# Three JVMs share the machine with the workers under test: a small heap, the serial collector
# and C1-only compilation keep each node near 300 MB resident and start it about twice as fast;
# test traffic needs none of the server compiler's throughput.
_JVM_OPTIONS = ("-Xms64m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
                "-Dorg.slf4j.simpleLogger.showDateTime=true",
                "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS")


@dataclass
class _Node:
    node_id: int
    port: int
    controller_port: int
    properties: Path
    log_path: Path
    cmd: list[str]
    proc: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


@dataclass(eq=False)
class ClusterHandle(BrokerHandle):
    """A running cluster: ``bootstrap`` names every node; ``nodes`` their ``host:port`` in id order
    (node ``i`` has the Kafka ``node.id`` ``i + 1``).

    ``stop_node(i)`` / ``start_node(i)`` take node ``i`` (0-based) down and back; ``stop()``
    kills all and removes the data directories.
    """

    _nodes: list[_Node] = field(default_factory=list, repr=False)
    _work: Path | None = field(default=None, repr=False)
    ready_timeout_s: float = 90.0

    def __post_init__(self) -> None:
        self._stopper = self._stop_all
        super().__post_init__()

    @property
    def nodes(self) -> list[str]:
        return [node.address for node in self._nodes]

    def running(self, i: int) -> bool:
        proc = self._node(i).proc
        return proc is not None and proc.popen.poll() is None

    def stop_node(self, i: int, *, kill: bool = False, timeout_s: float = 15.0) -> None:
        """Stop node ``i``: a controlled shutdown (SIGTERM; leadership moves first), or with
        ``kill`` a crash (SIGKILL: the others fence it after ``broker.session.timeout.ms``)."""
        node = self._node(i)
        if node.proc is None:
            return
        if kill:
            node.proc.kill()
        else:
            node.proc.stop(timeout_s)
        node.proc = None

    def start_node(self, i: int) -> float:
        """Start node ``i`` again on its own data; returns the seconds until it listed every node."""
        node = self._node(i)
        if node.proc is not None:
            raise BrokerUnavailable(f"node {i} of the cluster at {self.bootstrap} is running; stop_node({i}) first")
        node.proc = ManagedProcess(node.cmd, node.log_path)
        return wait_until_ready(node.proc, HOST, node.port, self.ready_timeout_s,
                                what=f"Kafka cluster node {node.node_id} on port {node.port}",
                                min_brokers=len(self._nodes))

    def _node(self, i: int) -> _Node:
        if not 0 <= i < len(self._nodes):
            raise IndexError(f"the cluster has nodes 0..{len(self._nodes) - 1}, not {i}")
        return self._nodes[i]

    def _stop_all(self, timeout_s: float) -> None:
        # SIGKILL, not a controlled shutdown: the data goes with the nodes, and the last nodes
        # of a stopping cluster would wait out ``timeout_s`` for a controller quorum that is gone.
        try:
            for node in self._nodes:
                if node.proc is not None:
                    node.proc.kill()
                    node.proc = None
        finally:
            if self._work is not None:
                shutil.rmtree(self._work, ignore_errors=True)


def start_apache_cluster(
    n: int = 3,
    *,
    min_insync_replicas: int | None = None,
    version: str = DEFAULT_KAFKA_VERSION,
    cache_dir: Path | None = None,
    log_dir: Path | None = None,
    ready_timeout_s: float = 90.0,
) -> ClusterHandle:
    """Start ``n`` combined broker+controller nodes on loopback and wait until each lists all ``n``.

    Default topic and internal-topic replication is ``n``; ``min_insync_replicas`` defaults to a
    majority (2 of 3). Node logs go to ``log_dir/kafka-node-<id>.log`` (default: inside the
    temporary data directory, removed on stop).
    """
    if n < 1:
        raise ValueError(f"a cluster needs at least one node, got n={n}")
    min_isr = min_insync_replicas if min_insync_replicas is not None else n // 2 + 1
    if not 1 <= min_isr <= n:
        raise ValueError(f"min_insync_replicas must be between 1 and n={n}, got {min_isr}")
    lib = resolve_kafka(version, cache_dir)
    java = find_java()
    ports = free_ports(2 * n)
    work = Path(tempfile.mkdtemp(prefix=f"gnnrec-kafka-cluster-{version}-"))
    log_dir = Path(log_dir) if log_dir is not None else work
    classpath = f"{lib}/*"
    voters = ",".join(f"{k + 1}@{HOST}:{ports[n + k]}" for k in range(n))
    nodes = []
    handle: ClusterHandle | None = None
    try:
        for k in range(n):
            node_dir = work / f"node-{k + 1}"
            node_dir.mkdir()
            properties = node_dir / "server.properties"
            properties.write_text(_NODE_PROPERTIES.format(
                node_id=k + 1, voters=voters, host=HOST, port=ports[k], controller_port=ports[n + k],
                data_dir=node_dir / "data", replication=n, min_isr=min_isr))
            cmd = [java, *_JVM_OPTIONS, "-cp", classpath, "kafka.Kafka", str(properties)]
            nodes.append(_Node(k + 1, ports[k], ports[n + k], properties, log_dir / f"kafka-node-{k + 1}.log", cmd))
        cid = cluster_id()
        with ThreadPoolExecutor(max_workers=n) as pool:  # each format is a JVM start: overlap them
            for done in [pool.submit(format_storage, java, classpath, node.properties, node.log_path, None, cid)
                         for node in nodes]:
                done.result()
        # Started from this thread (not the pool's) so each node dies with the test process.
        for node in nodes:
            node.proc = ManagedProcess(node.cmd, node.log_path)
        handle = ClusterHandle(name="apache-cluster", bootstrap=",".join(node.address for node in nodes),
                               _nodes=nodes, _work=work, ready_timeout_s=ready_timeout_s)
        for node in nodes:
            wait_until_ready(node.proc, HOST, node.port, ready_timeout_s,
                             what=f"Kafka cluster node {node.node_id} of {n} on port {node.port}", min_brokers=n)
    except BaseException:
        if handle is not None:
            handle.stop(2.0)
        else:
            for node in nodes:
                if node.proc is not None:
                    node.proc.stop(2.0)
            shutil.rmtree(work, ignore_errors=True)
        raise
    return handle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.brokers.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        t0 = time.monotonic()
        with start_apache_cluster(args.nodes) as cluster:
            print(f"{args.nodes} nodes ready at {cluster.bootstrap} in {time.monotonic() - t0:.1f} s")
            t0 = time.monotonic()
            cluster.stop_node(0, kill=True)
            print(f"node 1 killed; restarted and listing every node in {cluster.start_node(0):.1f} s "
                  f"({time.monotonic() - t0:.1f} s in all)")
    except BrokerUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
