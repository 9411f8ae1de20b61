"""The worker's HTTP endpoint: /metrics, /healthz and /readyz answer by the event loop's last beat; other paths 404."""
from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from graph_store.embeddings import RocksDBEmbeddingStore
from workers.refresh.loop import RefreshLoop
from workers.runtime.health import HealthServer, HealthState, consumer_checks
from workers.runtime.runner import LoopService
from workers.runtime.settings import RefreshSettings, ScoreSettings, TrainSettings
from workers.runtime.stores import open_store
from workers.score.loop import ScoreLoop
from workers.train.loop import TrainLoop


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _get(server: HealthServer, path: str) -> tuple[int, str, bytes]:
    url = f"http://127.0.0.1:{server.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(clock: Clock) -> HealthState:
    return HealthState(max_stall_s=10.0, clock=clock)


@pytest.fixture
def server(state: HealthState) -> Iterator[HealthServer]:
    registry = CollectorRegistry()
    Counter("gnnrec_test_things_total", "Things", registry=registry).inc(3)
    with HealthServer(state, "127.0.0.1", 0, registry) as srv:
        yield srv


def test_metrics_are_the_registry_in_prometheus_text(server: HealthServer) -> None:
    status, content_type, body = _get(server, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    assert "gnnrec_test_things_total 3.0" in body.decode()
    assert _get(server, "/metrics?name[]=x")[0] == 200  # a query string does not change the path


@pytest.mark.parametrize("path", ["/", "/nope", "/metrics/", "/healthz/x", "/ready"])
def test_every_other_path_is_404(server: HealthServer, path: str) -> None:
    status, content_type, body = _get(server, path)
    assert status == 404 and content_type == "application/json"
    assert "/metrics, /healthz and /readyz" in json.loads(body)["error"]


def test_healthz_is_200_while_the_loop_beats_and_503_once_it_stalls(server, state, clock) -> None:
    status, _, body = _get(server, "/healthz")
    assert status == 200 and json.loads(body)["alive"] is True  # start-up counts as alive
    clock.now += 10.5
    status, _, body = _get(server, "/healthz")
    assert status == 503 and json.loads(body) == {"alive": False, "last_beat_s_ago": 10.5, "max_stall_s": 10.0}
    state.beat(None)
    assert _get(server, "/healthz")[0] == 200


def _readyz(server: HealthServer) -> tuple[int, dict]:
    status, content_type, body = _get(server, "/readyz")
    assert content_type == "application/json"
    return status, json.loads(body)


def test_readyz_is_503_until_the_loop_is_built(server) -> None:
    status, body = _readyz(server)
    assert status == 503 and body["ready"] is False and body["failing"] == ["loop"]
    assert "not built" in body["checks"]["loop"]["detail"]


def test_readyz_is_200_with_the_checks_when_all_pass(server, state) -> None:
    state.beat({"assigned": (True, "2 partitions"), "caught_up": (True, "0 records behind")})
    status, body = _readyz(server)
    assert status == 200
    assert body == {"ready": True, "failing": [], "checks": {
        "assigned": {"ok": True, "detail": "2 partitions"}, "caught_up": {"ok": True, "detail": "0 records behind"}}}


def test_readyz_names_the_failing_check(server, state) -> None:
    state.beat({"assigned": (True, "2 partitions"), "model": (False, "no model serving")})
    status, body = _readyz(server)
    assert status == 503 and body["failing"] == ["model"]
    assert body["checks"]["model"] == {"ok": False, "detail": "no model serving"}
    assert body["checks"]["assigned"]["ok"] is True


def test_readyz_is_503_when_the_last_beat_is_stale(server, state, clock) -> None:
    state.beat({"assigned": (True, "2 partitions")})
    clock.now += 11
    status, body = _readyz(server)
    assert status == 503 and body["failing"] == ["alive"]
    assert "11.0s" in body["checks"]["alive"]["detail"]


def test_a_busy_port_says_which_and_what_to_do(server, state) -> None:
    with pytest.raises(OSError, match=f"127.0.0.1:{server.port}.*--metrics-port"):
        HealthServer(state, "127.0.0.1", server.port)


class FakeConsumer:
    """What consumer_checks reads of a BatchConsumer: its topics, assignment and lag."""

    topics = ["interactions", "follows"]

    def __init__(self, assigned: list[tuple[str, int]], lag: dict[tuple[str, int], int]) -> None:
        self._assigned, self._lag = assigned, lag

    def assignment(self) -> list[tuple[str, int]]:
        return self._assigned

    def lag(self) -> dict[tuple[str, int], int]:
        return self._lag


def test_consumer_checks_want_an_assignment() -> None:
    checks = consumer_checks(FakeConsumer([], {}), max_lag=10)
    assert checks["assigned"][0] is False and "interactions, follows" in checks["assigned"][1]
    assert checks["caught_up"][0] is False


def test_consumer_checks_want_every_partitions_lag_known_and_the_sum_in_bound() -> None:
    tps = [("interactions", 0), ("interactions", 1), ("follows", 0)]
    unknown = consumer_checks(FakeConsumer(tps, {tps[0]: 0, tps[1]: 0}), max_lag=10)
    assert unknown["assigned"] == (True, "3 partitions: interactions[0], interactions[1], follows[0]")
    assert unknown["caught_up"] == (False, "no fetch response yet for follows[0]")
    behind = consumer_checks(FakeConsumer(tps, {tps[0]: 4, tps[1]: 7, tps[2]: 0}), max_lag=10)
    assert behind["caught_up"][0] is False and behind["caught_up"][1].startswith("11 records behind")
    assert "interactions[1]=7" in behind["caught_up"][1]
    assert consumer_checks(FakeConsumer(tps, {tps[0]: 4, tps[1]: 6, tps[2]: 0}), max_lag=10)["caught_up"] == (
        True, "10 records behind (ready_max_lag=10)")


def _score_readiness(tmp_path: Path, **kw) -> dict:
    """A ScoreLoop's checks, built (aiokafka wants a running event loop) but never started."""
    settings = ScoreSettings(bootstrap_servers="127.0.0.1:1", data_dir=tmp_path / "score", **kw)

    async def build_and_check() -> dict:
        loop = ScoreLoop(settings, open_store(settings))
        try:
            return loop.readiness()
        finally:
            await loop.stop()  # closes the never-started Kafka clients
            loop.close()
    return asyncio.run(build_and_check())


def test_a_gnn_score_loop_without_a_model_is_not_ready_and_says_where_it_looks(tmp_path: Path) -> None:
    checks = _score_readiness(tmp_path, recommender="gnn", model_dir=tmp_path / "models",
                              embeddings_dir=tmp_path / "emb")
    assert set(checks) == {"assigned", "caught_up", "model"}
    ok, detail = checks["model"]
    assert ok is False and str(tmp_path / "models") in detail and str(tmp_path / "emb") in detail
    assert checks["assigned"][0] is False  # not started: no partitions yet


def test_a_transitions_score_loop_needs_no_model(tmp_path: Path) -> None:
    assert set(_score_readiness(tmp_path, recommender="transitions")) == {"assigned", "caught_up"}


def test_the_refresh_loop_needs_a_model_and_the_train_loop_none(tmp_path: Path) -> None:
    common = {"bootstrap_servers": "127.0.0.1:1", "model_dir": tmp_path / "models"}
    refresh_settings = RefreshSettings(data_dir=tmp_path / "refresh", embeddings_dir=tmp_path / "emb", **common)
    train_settings = TrainSettings(data_dir=tmp_path / "train", **common)

    async def build_and_check() -> tuple[dict, dict]:
        refresh = RefreshLoop(refresh_settings, open_store(refresh_settings), RocksDBEmbeddingStore(tmp_path / "emb"))
        train = TrainLoop(train_settings, open_store(train_settings))
        try:
            return refresh.readiness(), train.readiness()
        finally:
            for loop in (refresh, train):
                await loop.stop()
                loop.close()
    refresh_checks, train_checks = asyncio.run(build_and_check())
    assert set(refresh_checks) == {"assigned", "caught_up", "model"}
    assert refresh_checks["model"][0] is False and str(tmp_path / "models") in refresh_checks["model"][1]
    assert set(train_checks) == {"assigned", "caught_up"}


class BrokenLoop:
    def readiness(self):
        raise KeyError("partition gone")


def test_the_service_reports_a_raising_check_as_not_ready() -> None:
    service = LoopService(lambda: BrokenLoop())  # type: ignore[arg-type, return-value]
    assert service.readiness() is None  # not built yet
    service.loop_impl = BrokenLoop()  # type: ignore[assignment]
    checks = service.readiness()
    assert checks is not None and checks["readiness"][0] is False and "KeyError" in checks["readiness"][1]
