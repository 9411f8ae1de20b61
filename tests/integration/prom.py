"""Run a real Prometheus (Debian's ``prometheus`` binary) against the product's scrape config.

``start_prometheus`` keeps the jobs of ``deploy/prometheus.yml`` (names, ``metrics_path``,
``scheme``) but points them at the test's targets and scrapes every second. The test config is
written as JSON, which Prometheus reads as YAML, so no YAML library is needed; the product file
is read with a small line parser that accepts the layout used in ``deploy/prometheus.yml``.
"""
from __future__ import annotations

import json
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.brokers.base import ManagedProcess, free_ports, tail

_JOB = re.compile(r"^\s*-\s*job_name:\s*['\"]?([A-Za-z0-9_.:-]+)['\"]?\s*(#.*)?$")
_JOB_KEY = re.compile(r"^\s+(metrics_path|scheme):\s*['\"]?([^'\"#\s]+)['\"]?\s*(#.*)?$")
_TARGET = re.compile(r"['\"]?([A-Za-z0-9_.-]+:\d+)['\"]?")


class PrometheusUnavailable(RuntimeError):
    """The ``prometheus`` binary is missing or did not become ready."""


def read_scrape_jobs(config_path: Path) -> dict[str, dict[str, Any]]:
    """Jobs of a Prometheus config, in file order: ``{job_name: {"metrics_path": ..., "targets": [...]}}``.

    Only the subset we write is understood: one ``- job_name:`` line per job, optional
    ``metrics_path``/``scheme`` keys, and ``targets: [...]`` flow lists on one line.
    """
    jobs: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in Path(config_path).read_text().splitlines():
        if match := _JOB.match(line):
            current = jobs.setdefault(match.group(1), {"targets": []})
        elif current is not None and (match := _JOB_KEY.match(line)):
            current[match.group(1)] = match.group(2)
        elif current is not None and "targets:" in line:
            current["targets"].extend(_TARGET.findall(line.split("targets:", 1)[1]))
    if not jobs:
        raise ValueError(f"no `- job_name:` entries found in {config_path}")
    return jobs


def render_test_config(
    jobs: dict[str, dict[str, Any]], targets: dict[str, list[str]], scrape_interval: str
) -> dict[str, Any]:
    """A Prometheus config with ``jobs`` kept and ``targets`` substituted (jobs not in
    ``targets`` get none)."""
    unknown = sorted(set(targets) - set(jobs))
    if unknown:
        raise ValueError(
            f"jobs {unknown} are not in the product scrape config (it has {sorted(jobs)}); "
            "add them to deploy/prometheus.yml or fix the job name"
        )
    scrape_configs = []
    for name, job in jobs.items():
        entry: dict[str, Any] = {"job_name": name}
        for key in ("metrics_path", "scheme"):
            if key in job:
                entry[key] = job[key]
        if targets.get(name):
            entry["static_configs"] = [{"targets": list(targets[name])}]
        scrape_configs.append(entry)
    interval = {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval}
    return {"global": {**interval, "evaluation_interval": scrape_interval}, "scrape_configs": scrape_configs}


@dataclass
class PromHandle:
    url: str
    process: ManagedProcess

    def stop(self, timeout_s: float = 5.0) -> None:
        self.process.stop(timeout_s)

    def query(self, promql: str) -> list[dict[str, Any]]:
        return query(self.url, promql)

    def wait_for(self, promql: str, timeout_s: float = 20.0) -> list[dict[str, Any]]:
        """Poll ``promql`` until it returns a non-empty vector (scrapes are asynchronous)."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(promql)
            if result or time.monotonic() >= deadline:
                return result
            time.sleep(0.25)

    def targets(self) -> list[dict[str, Any]]:
        """Active targets with their health and last scrape error (useful in failure messages)."""
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=5) as resp:
            return json.load(resp)["data"]["activeTargets"]


def query(url: str, promql: str) -> list[dict[str, Any]]:
    """Instant query through ``/api/v1/query``; returns ``data.result``."""
    full = f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        with urllib.request.urlopen(full, timeout=5) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as exc:  # 400 carries the PromQL error in its body
        raise ValueError(f"Prometheus rejected {promql!r}: {exc.read().decode(errors='replace')}") from exc
    if body.get("status") != "success":
        raise ValueError(f"Prometheus query {promql!r} failed: {body}")
    return body["data"]["result"]


def start_prometheus(
    config_src: Path, targets: dict[str, list[str]], tmp: Path, scrape_interval: str = "1s",
    ready_timeout_s: float = 30.0,
) -> PromHandle:
    """Start Prometheus on a free loopback port with ``config_src``'s jobs aimed at ``targets``."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise PrometheusUnavailable(
            "the `prometheus` binary is not on PATH; run `bash deploy/test_prereqs.sh` "
            "(installs Debian's prometheus package) or `apt-get install prometheus`"
        )
    tmp.mkdir(parents=True, exist_ok=True)
    config = render_test_config(read_scrape_jobs(config_src), targets, scrape_interval)
    config_path = tmp / "prometheus.json.yml"
    config_path.write_text(json.dumps(config, indent=2))
    port = free_ports(1)[0]
    cmd = [
        binary, f"--config.file={config_path}", f"--storage.tsdb.path={tmp / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    proc = ManagedProcess(cmd, tmp / "prometheus.log", cwd=tmp)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout_s
    last_error = "no attempt yet"
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:
                if resp.status == 200:
                    return PromHandle(url=url, process=proc)
        except OSError as exc:
            last_error = str(exc)
        time.sleep(0.1)
    code = proc.popen.poll()
    proc.stop(2.0)
    raise PrometheusUnavailable(
        f"prometheus did not become ready at {url} (exit status {code}, last error: {last_error}); "
        f"config {config_path}. Log tail:\n{tail(tmp / 'prometheus.log')}"
    )
