"""Integration fixtures: real brokers (Tansu and Apache Kafka), unique topic names, Prometheus.

Every test under this directory is marked ``integration``. A broker that cannot be started
skips its tests with the reason, except when ``GNNREC_REQUIRE_BROKERS=1`` (CI), where it is a
test error. Each kind of broker is started at most once per session and stopped at its end;
a kind that failed to start is not retried (the first error is reported for every test).
"""
from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from stream.brokers import BrokerHandle, BrokerUnavailable, start_apache_kafka, start_tansu

try:  # tests/ as a package, or run with the repository root on sys.path
    from tests.integration import prom
except ImportError:  # rootdir-style import: pytest puts this directory on sys.path
    import prom

REQUIRE_ENV = "GNNREC_REQUIRE_BROKERS"
BROKER_KINDS = ("tansu", "apache")
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def brokers_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip() == "1"


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason``, or fail the test (an error in setup) when brokers are required."""
    if brokers_required():
        pytest.fail(f"{reason} [{REQUIRE_ENV}=1, so this is an error, not a skip]", pytrace=False)
    pytest.skip(reason)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselection, so `-m "not integration"` sees it
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


class BrokerPool:
    """Starts each broker kind on first use, remembers failures, stops everything at the end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._handles: dict[str, BrokerHandle] = {}
        self._errors: dict[str, BrokerUnavailable] = {}

    def get(self, kind: str) -> BrokerHandle:
        if kind in self._errors:
            raise self._errors[kind]
        if kind not in self._handles:
            try:
                self._handles[kind] = self._start(kind)
            except BrokerUnavailable as exc:
                self._errors[kind] = exc
                raise
        return self._handles[kind]

    def _start(self, kind: str) -> BrokerHandle:
        if kind == "tansu":
            return start_tansu(log_path=self.log_dir / "tansu.log")
        if kind == "apache":
            return start_apache_kafka(log_path=self.log_dir / "apache-kafka.log")
        raise ValueError(f"unknown broker kind {kind!r}; expected one of {BROKER_KINDS}")

    def stop_all(self) -> None:
        for handle in self._handles.values():
            handle.stop()
        self._handles.clear()


@pytest.fixture(scope="session")
def broker_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerPool]:
    pool = BrokerPool(tmp_path_factory.mktemp("broker-logs"))
    yield pool
    pool.stop_all()


@pytest.fixture(scope="session", params=BROKER_KINDS, ids=list(BROKER_KINDS))
def kafka_broker(request: pytest.FixtureRequest, broker_pool: BrokerPool) -> BrokerHandle:
    """A running broker of each kind in turn (logs under pytest's basetemp/broker-logs*)."""
    try:
        return broker_pool.get(request.param)
    except BrokerUnavailable as exc:
        unavailable(f"{request.param} broker unavailable: {exc}")


@dataclass(frozen=True)
class TopicNames:
    """Per-test topic names: ``unique_topics("events")`` -> ``"<test>-<8 hex>-events"``.

    Only ``[a-z0-9-]`` in the prefix: Kafka treats ``.`` and ``_`` as colliding in metric names.
    """

    prefix: str

    def __call__(self, name: str) -> str:
        return f"{self.prefix}-{name}"


@pytest.fixture
def unique_topics(request: pytest.FixtureRequest) -> TopicNames:
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60]
    return TopicNames(f"{base}-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Callable[[dict[str, list[str]]], prom.PromHandle]]:
    """Factory: ``prometheus_for({"gnnrec-ingest": ["127.0.0.1:PORT"]})`` starts Prometheus on
    the product's deploy/prometheus.yml with those targets (1 s scrapes); stopped after the test."""
    started: list[prom.PromHandle] = []

    def start(targets: dict[str, list[str]]) -> prom.PromHandle:
        try:
            handle = prom.start_prometheus(
                REPO / "deploy" / "prometheus.yml", targets, tmp_path / f"prom{len(started)}"
            )
        except prom.PrometheusUnavailable as exc:
            unavailable(str(exc))
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()
