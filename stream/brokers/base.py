"""Broker handles and the process plumbing shared by every launcher.

A launcher returns a :class:`BrokerHandle`: a bootstrap address plus a way to stop what was
started. Processes are started in their own session (so a terminal's Ctrl-C reaches the test
runner first and the runner stops them in order), are killed when the Python process that
started them dies (``PR_SET_PDEATHSIG`` on Linux, from the main thread), and are stopped at
interpreter exit (``atexit``), so a crashed test run leaves no broker behind.
"""
from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stream.brokers.probe import fetch_metadata

_PR_SET_PDEATHSIG = 1


class BrokerUnavailable(RuntimeError):
    """A broker could not be started or reached; the message says why and how to fix it."""


@dataclass(eq=False)
class BrokerHandle:
    """A running (or external) Kafka-compatible broker.

    ``name`` is one of ``"tansu"``, ``"apache"``, ``"testcontainers"``, ``"external"``;
    ``bootstrap`` is a ``host:port`` list for ``bootstrap_servers``; ``pid`` is the broker
    process we started (None for external or containerised brokers). ``stop()`` is idempotent.
    """

    name: str
    bootstrap: str
    pid: int | None = None
    _stopper: Callable[[float], None] | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self._stopper is not None:
            _LIVE[id(self)] = self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the broker: SIGTERM, wait up to ``timeout_s``, then SIGKILL."""
        if self._stopped:
            return
        self._stopped = True
        _LIVE.pop(id(self), None)
        if self._stopper is not None:
            self._stopper(timeout_s)

    @property
    def stopped(self) -> bool:
        return self._stopped

    def __enter__(self) -> BrokerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_LIVE: dict[int, BrokerHandle] = {}


@atexit.register
def _stop_all_live() -> None:
    for handle in list(_LIVE.values()):
        try:
            handle.stop(timeout_s=2.0)
        except Exception as exc:  # at exit, report and carry on stopping the others
            print(f"gnnrec: could not stop {handle!r}: {exc}", file=sys.stderr)


def free_ports(n: int = 1, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports that were free on ``host`` a moment ago (held open together)."""
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _death_signal_preexec() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGKILL when this process dies.

    The kernel ties the signal to the *thread* that forked, so it is only armed from the main
    thread; a broker started from a worker thread relies on ``atexit`` alone.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not in the child
    except (OSError, AttributeError):
        return None

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return arm


def tail(path: Path | None, n_chars: int = 4000) -> str:
    """The last ``n_chars`` of a log file, or a note that there is none."""
    if path is None or not path.exists():
        return "(no log)"
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - n_chars))
        return fh.read().decode("utf-8", "replace")


class ManagedProcess:
    """A child process with its log file and scratch paths, stopped with escalation."""

    def __init__(
        self,
        cmd: Sequence[str],
        log_path: Path,
        *,
        cleanup: Sequence[Path] = (),
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.cmd = list(cmd)
        self.log_path = log_path
        self.cleanup = list(cleanup)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        try:
            self.popen = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_death_signal_preexec(),
                env=env,
                cwd=cwd,
            )
        except OSError:
            self._log.close()
            raise

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM the process group, wait ``timeout_s``, then SIGKILL; remove scratch paths."""
        try:
            if self.popen.poll() is None:
                self._signal(signal.SIGTERM)
                try:
                    self.popen.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    self._signal(signal.SIGKILL)
                    self.popen.wait(timeout=10)
        finally:
            self._log.close()
            for path in self.cleanup:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the process group at once (a crash: no shutdown hook runs); scratch paths stay."""
        if self.popen.poll() is None:
            self._signal(signal.SIGKILL)
            self.popen.wait(timeout=10)
        self._log.close()

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)  # its own session: pgid == pid
        except ProcessLookupError:
            pass


def wait_until_ready(
    proc: ManagedProcess, host: str, port: int, ready_timeout_s: float, what: str, *, min_brokers: int = 1
) -> float:
    """Poll a Metadata request until it lists ``min_brokers`` brokers; return the seconds it took.

    Raises :class:`BrokerUnavailable` (after stopping ``proc``) when the process exits or the
    deadline passes, with the last probe error and the tail of the process log.
    """
    start = time.monotonic()
    deadline = start + ready_timeout_s
    delay, last_error = 0.02, "no attempt yet"
    while True:
        code = proc.popen.poll()
        if code is not None:
            proc.stop(0)
            raise BrokerUnavailable(
                f"{what} exited with status {code} before it was ready "
                f"(command: {' '.join(proc.cmd)}). Log tail:\n{tail(proc.log_path)}"
            )
        try:
            reply = fetch_metadata(host, port, timeout_s=min(2.0, ready_timeout_s))
            if len(reply.brokers) >= min_brokers:
                return time.monotonic() - start
            last_error = f"Metadata listed {len(reply.brokers)} of {min_brokers} brokers"
        except OSError as exc:  # ProbeError is an OSError too
            last_error = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            log_tail = tail(proc.log_path)
            proc.stop(2.0)
            raise BrokerUnavailable(
                f"{what} did not answer a Metadata request at {host}:{port} within "
                f"{ready_timeout_s:.0f} s (last error: {last_error}); raise ready_timeout_s on a "
                f"loaded machine. Log tail:\n{log_tail}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
