"""Starting a worker service inside its faust application, with /metrics, /healthz and /readyz served."""
from __future__ import annotations

import cProfile
import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Protocol

from faust.worker import Worker
from mode import Service

from stream.kafka.faust_app import make_faust_app
from workers.runtime.health import Check, HealthServer, HealthState
from workers.runtime.security import verified_security_blocking
from workers.runtime.settings import StoreBacked

log = logging.getLogger(__name__)


class WorkerLoop(Protocol):
    """What every worker's loop offers the service that runs it."""

    async def start(self) -> None: ...
    async def run_once(self) -> int: ...
    async def stop(self) -> None: ...
    def close(self) -> None: ...
    def readiness(self) -> Mapping[str, Check]: ...


class LoopService(Service):
    """Runs a worker loop inside the faust worker until the worker stops.

    The loop is built in ``on_start`` (so stores open in the worker process, after faust has
    set it up), then ``run_once`` repeats; on shutdown ``stop`` (clients) then ``close``
    (final gauges, stores). Every second the event loop beats ``health`` with the loop's
    readiness checks (before the loop is built, the worker is alive but not ready).
    """

    def __init__(self, build: Callable[[], WorkerLoop], *, max_stall_s: float = 60.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self._build = build
        self.loop_impl: WorkerLoop | None = None
        self.health = HealthState(max_stall_s=max_stall_s)

    async def on_start(self) -> None:
        self.loop_impl = self._build()
        await self.loop_impl.start()

    @Service.task
    async def _consume(self) -> None:
        while not self.should_stop and self.loop_impl is not None:
            await self.loop_impl.run_once()

    @Service.task
    async def _beat(self) -> None:
        # A plain loop, not Service.timer: that logs every late wake-up, and a long batch makes many.
        while not self.should_stop:
            self.health.beat(self.readiness())
            await self.sleep(1.0)

    def readiness(self) -> dict[str, Check] | None:
        if self.loop_impl is None:
            return None
        try:
            return dict(self.loop_impl.readiness())
        except Exception as exc:  # a broken check must not stop the worker; it reports not ready
            log.exception("readiness checks failed")
            return {"readiness": (False, f"the readiness checks raised {type(exc).__name__}: {exc}")}

    async def on_stop(self) -> None:
        if self.loop_impl is not None:
            await self.loop_impl.stop()
            self.loop_impl.close()


def run_faust_worker(name: str, service: LoopService, settings: StoreBacked) -> None:
    """Blocks until SIGINT/SIGTERM; faust stops the service, which closes its store."""
    logging.basicConfig(level=settings.log_level, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    # aiokafka logs every produced message at DEBUG; building those records cost ~5% of the
    # score worker's time even when nothing printed them.
    logging.getLogger("aiokafka").setLevel(max(logging.INFO, logging.getLevelName(settings.log_level)))
    bootstrap = settings.require_bootstrap()
    security = verified_security_blocking(settings)  # a refused password stops the worker here, named
    server = HealthServer(service.health, settings.metrics_host, settings.metrics_port)
    # One line on stdout that launchers (the demo, tests) parse to find the metrics endpoint.
    print(f"gnnrec-{name} metrics http://{settings.metrics_host}:{server.port}/metrics", flush=True)
    app = make_faust_app(f"gnnrec-{name}-app-{settings.group_id}", bootstrap,
                         settings.data_dir / "faust", partitions=settings.partitions, security=security)
    worker = Worker(app, service, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    # GNNREC_PROFILE=<file>: cProfile the whole worker and write the stats there on a clean stop
    # (how the per-event costs in docs/serving.md were found).
    profile_path = os.environ.get("GNNREC_PROFILE")
    profiler = cProfile.Profile() if profile_path else None
    try:
        if profiler is not None:
            profiler.enable()
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    finally:
        server.close()
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(f"{profile_path}.{name}")
    sys.stdout.flush()
