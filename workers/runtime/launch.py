"""Starting worker processes and reading their /metrics (used by the demo, benchmarks, tests)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families


class WorkerStartError(RuntimeError):
    """A worker process exited or did not become ready; the message carries its log tail."""


class WorkerProcess:
    """One ``gnnrec worker NAME`` subprocess; its stderr goes to ``log_path``."""

    def __init__(self, name: str, args: list[str], *, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.args = args
        self.log_path = log_path
        self.env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.metrics_url: str | None = None
        self._ready = threading.Event()
        self._proc: subprocess.Popen | None = None

    def start(self) -> "WorkerProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "worker", self.name, *self.args],
            stdout=subprocess.PIPE, stderr=log, env=self.env, start_new_session=True)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        return self

    def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        with open(self.log_path, "a", encoding="utf-8") as log:
            for raw in self._proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                log.write(line + "\n")
                log.flush()
                if " metrics http" in line:
                    self.metrics_url = line.split(" metrics ", 1)[1].strip()
                elif line.endswith(" ready"):
                    self._ready.set()

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._ready.wait(0.2):
                return
            if self._proc is not None and self._proc.poll() is not None:
                raise WorkerStartError(
                    f"worker {self.name} exited with code {self._proc.returncode}; log {self.log_path}:\n{self.log_tail()}")
        raise WorkerStartError(f"worker {self.name} not ready after {timeout_s:.0f}s; log {self.log_path}:\n{self.log_tail()}")

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self._proc.returncode

    def kill(self) -> None:
        """Crash the worker (SIGKILL to its whole process group): no shutdown code runs."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(10)

    def scrape(self) -> dict[str, float]:
        """Current sample values keyed ``name{label="v",...}``; {} if not reachable."""
        return scrape(self.metrics_url) if self.metrics_url else {}


def scrape(url: str, timeout_s: float = 2.0) -> dict[str, float]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def metric_sum(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    for key, value in samples.items():
        metric, _, rest = key.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total
