"""One training run in a child process, so the train worker's event loop never waits for torch.

The worker reads the run's inputs from its replica (:mod:`models.live.train_inputs`), writes
them to ``<work_dir>/inputs.pkl`` and starts a child (``spawn``: a fresh interpreter, no copy of
the replica's memory, and every byte the training allocated returns to the system when the child
exits). The child trains within the budget (:func:`models.live.train.train_from_inputs`),
:func:`~models.live.bundle.publish`\\ es the bundle into the model directory (the atomic
``LATEST`` rename is the swap; the models-topic publisher sends it from there) and writes what
happened to ``<work_dir>/result.json``; the worker polls :meth:`TrainProcess.poll` on each turn
of its loop. A child that runs past the budget plus a grace period is killed: the previous
bundle stays published.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import pickle
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from models.live.train_inputs import TrainInputs

log = logging.getLogger(__name__)

# A child past its budget gets this much more (the last epoch, the save) before it is killed.
GRACE_S = 30.0


@dataclass(frozen=True)
class TrainOutcome:
    """How a run ended: ``status`` published | skipped | error | timeout, with the bundle's
    version and event time when published, the child's seconds, and a reason otherwise."""

    status: str
    seconds: float
    version: str | None = None
    trained_at_ms: int | None = None
    reason: str = ""
    info: dict | None = None


def _child(inputs_path: str, model_dir: str, cfg, budget_s: float | None, result_path: str,
           hold: str | None) -> None:
    """The child's body: train, publish, report (never raises: the report says what broke)."""
    from workers.runtime.process_tuning import limit_native_threads
    limit_native_threads(cfg.threads)
    started = time.monotonic()
    if hold is not None:  # tests: keep the run open until told to go on
        while not Path(hold).exists() and time.monotonic() - started < 120:
            time.sleep(0.02)
    from models.live.budget import Deadline
    from models.live.bundle import publish
    from models.live.train import NotEnoughDataError, train_from_inputs
    result: dict = {}
    try:
        with open(inputs_path, "rb") as f:
            inputs = pickle.load(f)
        bundle = train_from_inputs(inputs, cfg, Deadline.after(budget_s))
        publish(bundle, Path(model_dir))
        info = {k: v for k, v in bundle.info.items() if isinstance(v, (int, float, str, bool))}
        result = dict(status="published", version=bundle.version, trained_at_ms=bundle.trained_at_ms, info=info)
    except NotEnoughDataError as exc:
        result = dict(status="skipped", reason=str(exc))
    except Exception as exc:  # reported to the worker, which logs and counts it
        import traceback
        traceback.print_exc(file=sys.stderr)
        result = dict(status="error", reason=f"{type(exc).__name__}: {exc}")
    result["seconds"] = time.monotonic() - started
    tmp = Path(result_path + ".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, result_path)


class TrainProcess:
    """A started run (module docstring); :meth:`poll` until it returns the outcome."""

    def __init__(self, inputs: TrainInputs, model_dir: Path, cfg, *, budget_s: float | None, work_dir: Path,
                 hold: Path | None = None, grace_s: float = GRACE_S, clock=time.monotonic) -> None:
        work_dir.mkdir(parents=True, exist_ok=True)
        self.inputs_path, self.result_path = work_dir / "inputs.pkl", work_dir / "result.json"
        self.result_path.unlink(missing_ok=True)
        tmp = work_dir / "inputs.pkl.tmp"
        with open(tmp, "wb") as f:
            pickle.dump(inputs, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, self.inputs_path)
        self.budget_s, self.grace_s, self.clock = budget_s, grace_s, clock
        self.started = clock()
        ctx = multiprocessing.get_context("spawn")
        self.process = ctx.Process(
            target=_child, name="gnnrec-train-run", daemon=True,
            args=(str(self.inputs_path), str(model_dir), cfg, budget_s, str(self.result_path),
                  None if hold is None else str(hold)))
        self.process.start()
        self.outcome: TrainOutcome | None = None

    @property
    def elapsed_s(self) -> float:
        return self.clock() - self.started

    def overdue(self) -> bool:
        return self.budget_s is not None and self.elapsed_s > self.budget_s + max(self.grace_s, 0.25 * self.budget_s)

    def poll(self) -> TrainOutcome | None:
        """The outcome once the child has ended (killing it when overdue); None while it runs."""
        if self.outcome is not None:
            return self.outcome
        if self.process.exitcode is None:
            if not self.overdue():
                return None
            log.error("training run over its budget (%.0f s after %s s); killing it", self.elapsed_s, self.budget_s)
            self.kill()
            self.outcome = TrainOutcome("timeout", self.elapsed_s, reason=f"over the {self.budget_s} s budget")
            return self.outcome
        self.process.join()
        try:
            result = json.loads(self.result_path.read_text())
            self.outcome = TrainOutcome(result["status"], float(result["seconds"]), result.get("version"),
                                        result.get("trained_at_ms"), result.get("reason", ""), result.get("info"))
        except (OSError, ValueError, KeyError) as exc:
            self.outcome = TrainOutcome("error", self.elapsed_s,
                                        reason=f"the run exited with code {self.process.exitcode} and no report ({exc})")
        self.inputs_path.unlink(missing_ok=True)
        return self.outcome

    def kill(self) -> None:
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join(5)
        self.inputs_path.unlink(missing_ok=True)

    def wait(self, timeout_s: float | None = None) -> TrainOutcome | None:
        """Block until the child ends (the worker's stop; tests)."""
        self.process.join(timeout_s)
        return self.poll()
