"""Every worker's HTTP endpoint: ``/metrics``, ``/healthz``, ``/readyz``; any other path is 404.

* ``/metrics``: the Prometheus text exposition of the process's registry.
* ``/healthz``: 200 while the worker's event loop runs, 503 once it has not run for
  ``alive_max_stall_s`` (an orchestrator restarts a worker whose loop is stuck).
* ``/readyz``: 200 when every readiness check of the worker's loop passes, else 503; the JSON
  body names each check with its detail, and ``failing`` lists those that did not pass.

The HTTP thread never calls into the worker: the event loop publishes its state through
:meth:`HealthState.beat` (the runner beats every second with the loop's ``readiness()``), and
the server answers from the last beat. So nothing is read while the event loop mutates it, and a
blocked event loop shows as a stale beat instead of a server that goes on answering "fine".
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

if TYPE_CHECKING:
    from stream.kafka.batch_consumer import BatchConsumer

log = logging.getLogger(__name__)

Check = tuple[bool, str]
"""One readiness check: (passed, what it found, in words an operator can act on)."""

JSON = "application/json"


class HealthState:
    """The last beat of the worker's event loop and the readiness checks it carried."""

    def __init__(self, *, max_stall_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        if max_stall_s <= 0:
            raise ValueError(f"max_stall_s must be positive, got {max_stall_s}")
        self.max_stall_s = max_stall_s
        self.clock = clock
        self._lock = threading.Lock()
        self._beat_at = clock()  # start-up counts as alive until the bound passes
        self._checks: dict[str, Check] | None = None  # None: the loop is not built yet

    def beat(self, checks: Mapping[str, Check] | None) -> None:
        """Called on the event loop: it is alive now, and ``checks`` is its readiness."""
        snapshot = None if checks is None else {name: (bool(ok), str(detail)) for name, (ok, detail) in checks.items()}
        with self._lock:
            self._beat_at = self.clock()
            self._checks = snapshot

    def liveness(self) -> tuple[bool, dict]:
        with self._lock:
            age = self.clock() - self._beat_at
        alive = age <= self.max_stall_s
        return alive, {"alive": alive, "last_beat_s_ago": round(age, 3), "max_stall_s": self.max_stall_s}

    def readiness(self) -> tuple[bool, dict]:
        alive, live = self.liveness()
        with self._lock:
            checks = None if self._checks is None else dict(self._checks)
        if checks is None:
            checks = {"loop": (False, "the worker is starting: its loop is not built yet")}
        if not alive:
            checks["alive"] = (False, f"the event loop has not run for {live['last_beat_s_ago']:.1f}s "
                                      f"(alive_max_stall_s={self.max_stall_s:g}); these checks are from then")
        failing = sorted(name for name, (ok, _) in checks.items() if not ok)
        body = {"ready": not failing, "failing": failing,
                "checks": {name: {"ok": ok, "detail": detail} for name, (ok, detail) in sorted(checks.items())}}
        return not failing, body


class HealthServer:
    """A threaded HTTP server on ``host:port`` (0 = any free port), serving in a daemon thread."""

    def __init__(self, state: HealthState, host: str = "127.0.0.1", port: int = 0,
                 registry: CollectorRegistry = REGISTRY) -> None:
        self.state = state
        self.registry = registry
        try:
            self._httpd = ThreadingHTTPServer((host, port), _Handler)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot serve /metrics, /healthz and /readyz on {host}:{port}: "
                                     f"{exc.strerror} (another worker on that port? pass --metrics-port, "
                                     "or 0 for any free port)") from exc
        self._httpd.daemon_threads = True
        self._httpd.health = self  # type: ignore[attr-defined]  # how the handler finds us
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="gnnrec-health", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> "HealthServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    server_version = "gnnrec"

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        health: HealthServer = self.server.health  # type: ignore[attr-defined]
        path = urlsplit(self.path).path
        if path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(health.registry))
        elif path == "/healthz":
            alive, body = health.state.liveness()
            self._send(200 if alive else 503, JSON, json.dumps(body).encode())
        elif path == "/readyz":
            ready, body = health.state.readiness()
            self._send(200 if ready else 503, JSON, json.dumps(body).encode())
        else:
            body = {"error": f"no such path {path!r}; this worker serves /metrics, /healthz and /readyz"}
            self._send(404, JSON, json.dumps(body).encode())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        # Prometheus scrapes every few seconds: one stderr line per request would drown the log.
        log.debug("%s " + format, self.address_string(), *args)


def consumer_checks(consumer: "BatchConsumer", max_lag: int) -> dict[str, Check]:
    """``assigned`` (the group gave this member partitions) and ``caught_up`` (every assigned
    partition's lag is known from a fetch response, and their sum is at most ``max_lag``)."""
    assigned = consumer.assignment()
    topics = ", ".join(consumer.topics)
    if not assigned:
        reason = (f"no partition of {topics} assigned yet (the group is still joining, or it has more "
                  "members than partitions)")
        return {"assigned": (False, reason), "caught_up": (False, "nothing assigned to catch up with")}
    checks: dict[str, Check] = {"assigned": (True, f"{len(assigned)} partitions: " + _partitions(assigned))}
    lag = consumer.lag()
    unknown = [tp for tp in assigned if tp not in lag]
    behind = sum(lag.get(tp, 0) for tp in assigned)
    if unknown:
        checks["caught_up"] = (False, "no fetch response yet for " + _partitions(unknown))
    elif behind > max_lag:
        worst = sorted(assigned, key=lambda tp: -lag[tp])[:3]
        checks["caught_up"] = (False, f"{behind} records behind (ready_max_lag={max_lag}); most behind: "
                                      + ", ".join(f"{t}[{p}]={lag[(t, p)]}" for t, p in worst))
    else:
        checks["caught_up"] = (True, f"{behind} records behind (ready_max_lag={max_lag})")
    return checks


def _partitions(tps) -> str:
    return ", ".join(f"{t}[{p}]" for t, p in tps)
