"""deploy/ checked without a container engine: compose against the CLI, the settings, Prometheus,
Grafana provisioning and the image.

No engine runs here or in CI, so what can be checked from the files is: every role runs, each
``gnnrec`` command parses with the real parser and its environment loads into the real settings
(every ``GNNREC_*`` variable a field of them), host ports do not collide, each worker's metrics
port is the one published and the one Prometheus scrapes under the role's job, every volume is
declared and every worker's data volume is its own, Grafana's provider points at the mounted
dashboards and the datasource the dashboards name, and every metric the dashboards query is one
``workers.runtime.metrics`` exports. ``promtool check config`` runs on deploy/prometheus.yml in
tests/integration/test_prometheus.py.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shlex
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

import yaml

from stream.brokers.jars import DEFAULT_KAFKA_VERSION
from workers.cli import build_parser
from workers.cli.worker import ROLES
from workers.runtime import metrics  # noqa: F401 - registers the metrics the dashboards query
from workers.runtime.settings import SettingsError, WorkerSettings, env_names, settings_from_args

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
REPO = DEPLOY.parent


def _load(path: Path):
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def services() -> dict[str, dict]:
    return _load(DEPLOY / "compose.yaml")["services"]


def _argv(service: dict) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else list(command)


def _gnnrec(services: dict[str, dict]) -> dict[str, dict]:
    return {name: s for name, s in services.items() if _argv(s)[:1] == ["gnnrec"]}


def _workers(services: dict[str, dict]) -> dict[str, str]:
    """Worker service → its role."""
    return {name: _argv(s)[2] for name, s in _gnnrec(services).items() if _argv(s)[1] == "worker"}


def _settings_class(argv: list[str]):
    return ROLES[argv[2]][0] if argv[1] == "worker" else WorkerSettings


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _metrics_port(service: dict, role: str) -> int:
    return int(_env(service).get("GNNREC_METRICS_PORT", ROLES[role][0].model_fields["metrics_port"].default))


def _mounts(service: dict) -> dict[str, str]:
    """Mount target → source (a named volume, or a path relative to deploy/)."""
    out = {}
    for spec in service.get("volumes", []):
        source, target = spec.split(":")[:2]
        out[target] = source
    return out


def test_compose_runs_every_role_with_several_score_workers(services) -> None:
    roles = list(_workers(services).values())
    assert set(roles) == set(ROLES), f"worker roles in compose: {sorted(roles)}"
    assert roles.count("score") >= 2
    assert any(_argv(s)[1:] == ["topics"] for s in _gnnrec(services).values()), "no service runs `gnnrec topics`"
    assert services["kafka"]["image"] == f"apache/kafka:{DEFAULT_KAFKA_VERSION}", \
        "compose should run the Kafka version the integration tests run (stream/brokers/jars.py)"
    assert {"prometheus", "grafana"} <= set(services)


def test_every_gnnrec_command_parses_and_its_environment_loads_into_its_settings(services, monkeypatch) -> None:
    parser = build_parser()
    for name, service in _gnnrec(services).items():
        argv = _argv(service)
        try:
            args = parser.parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"service {name}: `{' '.join(argv)}` is not a valid gnnrec command (argparse said why above)")
        cls = _settings_class(argv)
        known = {env for field in cls.model_fields for env in env_names(cls, field)}
        unknown = sorted(k for k in _env(service) if k.startswith(("GNNREC_", "KAFKA_")) and k not in known)
        assert not unknown, f"service {name}: {unknown} are not settings of {cls.__name__} (workers/runtime/settings.py)"
        with monkeypatch.context() as env:
            for key in [k for k in os.environ if k.startswith(("GNNREC_", "KAFKA_"))]:
                env.delenv(key)
            for key, value in _env(service).items():
                env.setenv(key, value)
            try:
                settings = settings_from_args(cls, args)
            except SettingsError as exc:
                pytest.fail(f"service {name}: its environment is not valid {cls.__name__}: {exc}")
        if argv[1] == "worker":
            assert settings.metrics_host == "0.0.0.0", f"service {name}: metrics only on loopback, unreachable"


def test_workers_reach_the_kafka_service_with_replication_it_can_hold(services) -> None:
    kafka = _env(services["kafka"])
    brokers = len(kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","))
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"].split("@")[0] == kafka["KAFKA_NODE_ID"]
    cid = kafka["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cid + "==")) == 16 and len(cid) == 22, "CLUSTER_ID must be a KRaft id"
    advertised = {url.split("://")[1] for url in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
        assert int(kafka[key]) <= brokers, f"{key} exceeds the {brokers} broker(s)"
    for name, service in _gnnrec(services).items():
        env = _env(service)
        assert set(env["KAFKA_BOOTSTRAP_SERVERS"].split(",")) <= advertised, f"service {name}: bootstrap"
        assert int(env.get("GNNREC_REPLICATION_FACTOR", 1)) <= brokers, f"service {name}: replication factor"
        assert "topics" in service.get("depends_on", {}) or _argv(service)[1:] == ["topics"], \
            f"service {name} starts before the topics exist"


def test_published_ports_are_distinct_and_each_worker_publishes_its_metrics_port(services) -> None:
    host_ports = [p.split(":")[0] for s in services.values() for p in s.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), f"host ports collide: {sorted(host_ports)}"
    for name, role in _workers(services).items():
        port = _metrics_port(services[name], role)
        assert f"{port}:{port}" in services[name].get("ports", []), f"service {name}: metrics port {port} unpublished"


def test_prometheus_scrapes_every_worker_service_under_its_role(services) -> None:
    assert _mounts(services["prometheus"]).get("/etc/prometheus/prometheus.yml") == "./prometheus.yml"
    config = _load(DEPLOY / "prometheus.yml")
    scraped = {(job["job_name"], target) for job in config["scrape_configs"]
               for static in job.get("static_configs", []) for target in static["targets"]}
    expected = {(f"gnnrec-{role}", f"{name}:{_metrics_port(services[name], role)}")
                for name, role in _workers(services).items()}
    assert scraped == expected, f"missing targets {sorted(expected - scraped)}, stale {sorted(scraped - expected)}"


def test_volumes_are_declared_and_each_worker_keeps_its_data_in_its_own(services) -> None:
    declared = set(_load(DEPLOY / "compose.yaml").get("volumes") or {})
    used: dict[str, list[str]] = {}
    for name, service in services.items():
        for target, source in _mounts(service).items():
            if source.startswith((".", "/")):
                assert (DEPLOY / source).exists(), f"service {name}: bind-mounted {source} does not exist"
            else:
                used.setdefault(source, []).append(name)
    assert set(used) == declared, f"undeclared {sorted(set(used) - declared)}, unused {sorted(declared - set(used))}"
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for name, role in _workers(services).items():
        env, mounts = _env(services[name]), _mounts(services[name])
        data = mounts.get(env["GNNREC_DATA_DIR"])
        assert data is not None and used[data] == [name], f"service {name}: data dir not on a volume of its own"
        for key in ("GNNREC_DATA_DIR", "GNNREC_MODEL_DIR", "GNNREC_EMBEDDINGS_DIR"):
            if key in env:
                assert env[key] in mounts, f"service {name}: {key}={env[key]} is not on a volume"
                assert env[key] in dockerfile, f"the image does not create {env[key]} for its user"
    # Nothing is shared but Kafka: no worker mounts another's volume, and none reads a model or
    # embedding directory (bundles and embeddings travel on topics).
    for name in _workers(services):
        env = _env(services[name])
        assert "GNNREC_MODEL_DIR" not in env and "GNNREC_EMBEDDINGS_DIR" not in env, name
        assert all(len(users) == 1 for vol, users in used.items() if name in users), name


def test_dockerfile_copies_only_what_exists() -> None:
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), f"Dockerfile copies {source}, which is not in the repository"


def _dashboards() -> list[Path]:
    found = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
    assert found, "no dashboard JSON in deploy/grafana/dashboards"
    return found


def _panel_datasources(node) -> list[dict]:
    if isinstance(node, dict):
        own = [node["datasource"]] if isinstance(node.get("datasource"), dict) else []
        return own + [d for v in node.values() for d in _panel_datasources(v)]
    if isinstance(node, list):
        return [d for v in node for d in _panel_datasources(v)]
    return []


def test_grafana_provisions_the_datasource_and_the_dashboards_compose_mounts(services) -> None:
    mounts = _mounts(services["grafana"])
    assert mounts.get("/etc/grafana/provisioning") == "./grafana/provisioning"
    providers = _load(DEPLOY / "grafana" / "provisioning" / "dashboards" / "gnnrec.yml")["providers"]
    for provider in providers:
        assert mounts.get(provider["options"]["path"]) == "./grafana/dashboards", \
            f"dashboard provider {provider['name']} reads a directory compose does not mount the dashboards on"
    sources = _load(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    by_uid = {s["uid"]: s for s in sources}
    prometheus_port = services["prometheus"]["ports"][0].split(":")[1]
    assert by_uid["prometheus"]["url"] == f"http://prometheus:{prometheus_port}"
    for path in _dashboards():
        for ds in _panel_datasources(json.loads(path.read_text())):
            assert ds["uid"] in by_uid and by_uid[ds["uid"]]["type"] == ds["type"], \
                f"{path.name} names datasource {ds}, which is not provisioned"


def _exported_samples() -> set[str]:
    """Sample names the gnnrec metrics expose (counters ``_total``, histograms ``_bucket`` ...)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",),
                "info": ("_info",), "summary": ("", "_count", "_sum")}
    return {family.name + suffix for family in REGISTRY.collect() if family.name.startswith("gnnrec_")
            for suffix in suffixes.get(family.type, ("",))}


def test_every_metric_a_dashboard_queries_is_exported() -> None:
    exported = _exported_samples()
    assert "gnnrec_events_applied_total" in exported
    for path in _dashboards():
        exprs = re.findall(r'"expr":\s*"((?:[^"\\]|\\.)*)"', path.read_text())
        assert exprs, f"{path.name} has no PromQL expressions"
        unknown = sorted({m for e in exprs for m in re.findall(r"\bgnnrec_\w+", e)} - exported)
        assert not unknown, f"{path.name} queries {unknown}, which workers/runtime/metrics.py does not export"
