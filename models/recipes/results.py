"""Render ``docs/RESULTS.md`` from saved :class:`~models.report.EvalReport` JSON files.

Every row of a table is one saved report (written by ``EvalReport.save(dir, command)``), so it
carries the exact command, the device and the number of epochs behind it; published numbers sit
beside them, converted to fractions (SR-GNN's "P@20 = 50.73" is ``hr@20 = 0.5073``). Under each
table one line says whether our best model beats our best baseline on the dataset's primary
metric.

Metric keys of the form ``task/metric`` (the inductive split's ``new_users/recall@20``, with
``new_users_pop/...`` for popularity on the same task) get their own table, one row per (report,
task). Files named ``speed-*.json`` are not EvalReports but side-by-side timings written by
``bench/recbole_*speed.py --record``; they fill the "Training speed vs RecBole" section.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.recipes.registry import DATASETS as REGISTRY_DATASETS


@dataclass(frozen=True)
class PublishedResult:
    """A number from a paper or reference repository (metrics as fractions)."""

    name: str
    metrics: dict[str, float]
    source: str


PUBLISHED: dict[str, list[PublishedResult]] = {
    "diginetica": [PublishedResult("SR-GNN (paper)", {"hr@20": 0.5073, "mrr@20": 0.1759},
                                   "Wu et al., AAAI 2019, Table 3 (P@20 50.73, MRR@20 17.59)")],
    "yoochoose64": [PublishedResult("SR-GNN (paper)", {"hr@20": 0.7057, "mrr@20": 0.3094},
                                    "Wu et al., AAAI 2019, Table 3 (P@20 70.57, MRR@20 30.94)")],
    "gowalla": [
        PublishedResult("LightGCN (paper)", {"recall@20": 0.1830, "ndcg@20": 0.1554},
                        "He et al., SIGIR 2020 (value from the brief; table not found to verify)"),
        PublishedResult("LightGCN (reproduction)", {"recall@20": 0.1824, "ndcg@20": 0.1547},
                        "gusye1234/LightGCN-PyTorch README, 3 layers, seed 2020"),
        PublishedResult("NGCF (paper)", {"recall@20": 0.1570, "ndcg@20": 0.1327}, "Wang et al., SIGIR 2019"),
        PublishedResult("EASE (BARS)", {"recall@20": 0.1765, "ndcg@20": 0.1467}, "BARS benchmark, gowalla_x0"),
        PublishedResult("ItemKNN (BARS)", {"recall@20": 0.1570, "ndcg@20": 0.1214}, "BARS benchmark, gowalla_x0"),
    ],
}

PRIMARY: dict[str, str] = {"gowalla": "recall@20", "gowalla_inductive": "recall@20"}  # others: hr@20
SECONDARY: dict[str, str] = {"gowalla": "ndcg@20", "gowalla_inductive": "ndcg@20"}  # others: mrr@20
CF_COLUMNS = ("recall@20", "ndcg@20", "hr@20")
COLUMNS: dict[str, tuple[str, ...]] = {"gowalla": CF_COLUMNS, "gowalla_inductive": CF_COLUMNS}
SESSION_COLUMNS = ("hr@20", "mrr@20", "ndcg@20")
REQUIRED = ("model", "dataset", "metrics", "kind", "epochs", "device", "train_seconds", "command")
SPEED_PREFIX = "speed-"
SPEED_REQUIRED = ("model", "dataset", "reference", "ours_epoch_s", "recbole_epoch_s", "ratio", "ours_batches",
                  "recbole_batches", "batches_per_epoch", "full_epoch", "threads", "device", "command")
POP_SUFFIX = "_pop"  # a task's popularity reference: ``new_users_pop`` beside ``new_users``


class ReportFileError(ValueError):
    """A file in the report directory that is not a saved EvalReport."""


def load_reports(report_dir: Path) -> list[dict[str, Any]]:
    """Every ``*.json`` report in ``report_dir``, sorted by (dataset, kind, model)."""
    if not report_dir.is_dir():
        raise FileNotFoundError(f"report directory {report_dir} does not exist; run `gnnrec eval ... --json` "
                                f"and save reports there first")
    paths = [p for p in sorted(report_dir.glob("*.json")) if not p.name.startswith(SPEED_PREFIX)]
    reports = [_read(path, REQUIRED, "save reports with EvalReport.save(dir, command)") for path in paths]
    return sorted(reports, key=lambda r: (r["dataset"], r["kind"], r["model"]))


def load_speed_records(report_dir: Path) -> list[dict[str, Any]]:
    """Every ``speed-*.json`` timing in ``report_dir`` (written by ``bench/recbole_*speed.py --record``)."""
    paths = sorted(report_dir.glob(f"{SPEED_PREFIX}*.json"))
    return [_read(path, SPEED_REQUIRED, "write it with `python -m bench.recbole.lightgcn_speed --record FILE`")
            for path in paths]


def _read(path: Path, required: tuple[str, ...], fix: str) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReportFileError(f"{path} is not valid JSON ({exc}); delete it or re-run its command") from exc
    missing = [key for key in required if not isinstance(record, dict) or key not in record]
    if missing:
        raise ReportFileError(f"{path} lacks {', '.join(missing)}; {fix}")
    return dict(record) | {"_file": path.name}


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _time(report: dict[str, Any]) -> str:
    seconds = float(report.get("train_seconds", 0.0))
    per_epoch = report.get("extra", {}).get("seconds_per_epoch")
    if report["kind"] == "baseline":
        evaluation = report.get("extra", {}).get("eval_seconds")
        return f"{seconds:.1f} s fit" + (f" + {evaluation:.0f} s eval" if evaluation is not None else "")
    text = f"{seconds / 60:.1f} min"
    return text + (f" ({per_epoch:.0f} s/epoch)" if per_epoch else "")


def _table(dataset: str, reports: list[dict[str, Any]], published: list[PublishedResult]) -> list[str]:
    columns = COLUMNS.get(dataset, SESSION_COLUMNS)
    head = ["row", "kind", *columns, "epochs", "train time", "device", "command"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(reports, key=lambda r: -float(r["metrics"].get(PRIMARY.get(dataset, "hr@20"), -1.0))):
        metrics = [_fmt(r["metrics"].get(c)) for c in columns]
        lines.append("| " + " | ".join([f"**{r['model']}**" if r["kind"] == "model" else r["model"], r["kind"],
                                         *metrics, str(r["epochs"]), _time(r), _cell(str(r["device"])),
                                         f"`{_cell(str(r['command']))}`"]) + " |")
    for p in published:
        metrics = [_fmt(p.metrics.get(c)) for c in columns]
        lines.append("| " + " | ".join([p.name, "published", *metrics, "–", "–", "–", _cell(p.source)]) + " |")
    notes = [f"Run note ({r['model']}, {r['epochs']} epochs, {r['device']}): {r['extra']['run_note']}"
             for r in reports if r.get("extra", {}).get("run_note")]
    return lines + ([""] + notes if notes else [])


def _tasks(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{"new_users": {"recall@20": ...}, ...}`` from the report's ``task/metric`` keys."""
    tasks: dict[str, dict[str, float]] = {}
    for key, value in report["metrics"].items():
        task, sep, metric = key.partition("/")
        if sep:
            tasks.setdefault(task, {})[metric] = float(value)
    return tasks


def _task_table(dataset: str, reports: list[dict[str, Any]]) -> list[str]:
    """One row per (report, task), a task's popularity reference right under it; empty if no task metrics."""
    columns = COLUMNS.get(dataset, SESSION_COLUMNS)
    head = ["row", "task", *columns, "epochs", "command"]
    rows = []
    for r in reports:
        tasks = _tasks(r)
        for task in sorted(tasks, key=lambda t: (t.removesuffix(POP_SUFFIX), t.endswith(POP_SUFFIX))):
            is_pop = task.endswith(POP_SUFFIX)
            name = f"pop (same task, {r['model']} run)" if is_pop else f"**{r['model']}**"
            metrics = [_fmt(tasks[task].get(c)) for c in columns]
            rows.append("| " + " | ".join([name, task.removesuffix(POP_SUFFIX), *metrics, str(r["epochs"]),
                                             f"`{_cell(str(r['command']))}`"]) + " |")
    if not rows:
        return []
    # run notes are printed under the dataset's main table
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *rows]


def task_verdict(dataset: str, reports: list[dict[str, Any]]) -> str:
    """Per task with a popularity twin: does the model beat popularity on the primary metric?"""
    metric = PRIMARY.get(dataset, "hr@20")
    parts = []
    for r in reports:
        tasks = _tasks(r)
        for task in sorted(t for t in tasks if not t.endswith(POP_SUFFIX) and t + POP_SUFFIX in tasks):
            m, p = tasks[task].get(metric), tasks[task + POP_SUFFIX].get(metric)
            if m is not None and p is not None:
                word = "beats" if m > p else "does **not** beat"
                parts.append(f"on {task}, `{r['model']}` ({metric} {m:.4f}) {word} popularity ({p:.4f})")
    return f"**{dataset}** by task: " + "; ".join(parts) + "." if parts else ""


def _best(reports: list[dict[str, Any]], kind: str, metric: str) -> dict[str, Any] | None:
    ranked = [r for r in reports if r["kind"] == kind and metric in r["metrics"]]
    return max(ranked, key=lambda r: r["metrics"][metric]) if ranked else None


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


def verdict(dataset: str, reports: list[dict[str, Any]]) -> str:
    """Does our best model beat our best baseline on the primary metric (and on the secondary)?"""
    metric = PRIMARY.get(dataset, "hr@20")
    model, baseline = _best(reports, "model", metric), _best(reports, "baseline", metric)
    if model is None or baseline is None:
        missing = "model" if model is None else "baseline"
        return f"**{dataset}**: no {missing} report yet, so no verdict."
    m, b = model["metrics"][metric], baseline["metrics"][metric]
    word = "beats" if m > b else "does **not** beat"
    line = (f"**{dataset}**: our best model `{model['model']}` ({metric} {m:.4f}, {_epochs(model['epochs'])}) "
            f"{word} the best baseline `{baseline['model']}` ({metric} {b:.4f}); difference {m - b:+.4f}.")
    second = SECONDARY.get(dataset, "mrr@20")
    model2, baseline2 = _best(reports, "model", second), _best(reports, "baseline", second)
    if model2 is not None and baseline2 is not None:
        m2, b2 = model2["metrics"][second], baseline2["metrics"][second]
        line += (f" On {second}: `{model2['model']}` {m2:.4f} vs `{baseline2['model']}` {b2:.4f} "
                 f"({'model ahead' if m2 > b2 else 'baseline ahead'}).")
    return line


def render_results(report_dir: Path, published: dict[str, list[PublishedResult]]) -> str:
    """Markdown for ``docs/RESULTS.md``: one table and one verdict line per dataset."""
    reports = load_reports(report_dir)
    names = {r["dataset"] for r in reports} | set(published)
    order = [d for d in REGISTRY_DATASETS if d in names] + sorted(names - set(REGISTRY_DATASETS))
    out = ["# Results", "",
           f"Generated by `gnnrec results` from the reports in `{report_dir}`; do not edit by hand. "
           "Metrics are **fractions** (SR-GNN's P@20 = 50.73 % is hr@20 = 0.5073). hr@20 is the share of test "
           "examples whose target is in the top 20; mrr@20 and ndcg@20 use the target's rank. Each row's "
           "command reproduces it; `epochs` is the number actually run.", ""]
    for dataset in order:
        rows = [r for r in reports if r["dataset"] == dataset]
        out += [f"## {dataset}", "", *_table(dataset, rows, published.get(dataset, [])), ""]
        task_table = _task_table(dataset, rows)
        if task_table:
            out += [f"### {dataset}: metrics by task", "", *task_table, "", task_verdict(dataset, rows), ""]
        else:
            out += [verdict(dataset, rows), ""]
    speed = load_speed_records(report_dir)
    if speed:
        out += speed_section(speed)
    return "\n".join(out)


def speed_section(records: list[dict[str, Any]]) -> list[str]:
    """"Training speed vs RecBole": one row per saved timing, saying how many batches were timed."""
    head = ["model", "dataset", "timed", "ours wall (s)", "RecBole wall (s)", "wall: RecBole / ours",
            "ours CPU (s)", "RecBole CPU (s)", "CPU: RecBole / ours", "threads", "device", "command"]
    lines = ["## Training speed vs RecBole", "",
             "Same split, same hyperparameters, one CPU thread each, RecBole 1.2.1 in its own virtualenv "
             "(see the bench script's docstring); a ratio above 1 means ours is faster. Where `timed` is not a "
             "full epoch, the times are those of the first N mini-batches only, not of an epoch. CPU seconds "
             "are each process's own CPU time over the timed span: the machine was shared with other work "
             "(`load`: 1-minute load average when the run ended), which stretches wall time far more than "
             "CPU time. For SR-GNN, RecBole pads every prefix to the longest in the dataset (`prefixes ≤ L`) and "
             "ours to the longest in the batch; `(cut)` rows keep only the last L items of every prefix on both "
             "sides (`--max-len`), as RecBole's default `MAX_ITEM_LIST_LENGTH` of 50 does.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        timed = ("full epoch" if r["full_epoch"] else
                 f"{r['ours_batches']} of {r['batches_per_epoch']} batches")
        if "batch_size" in r:
            timed += f" (batch {r['batch_size']})"
        if r.get("max_prefix_len"):
            timed += f"; prefixes ≤ {r['max_prefix_len']} items" + (" (cut)" if r.get("max_len") else "")
        cpu = ([f"{r['ours_cpu_s']:.1f}", f"{r['recbole_cpu_s']:.1f}", f"{r['cpu_ratio']:.2f}×"]
               if "cpu_ratio" in r else ["–", "–", "–"])
        device = str(r["device"]) + (f", load {r['loadavg_1m_at_end']:.1f}" if "loadavg_1m_at_end" in r else "")
        lines.append("| " + " | ".join([r["model"], r["dataset"], timed, f"{r['ours_epoch_s']:.1f}",
                                         f"{r['recbole_epoch_s']:.1f}", f"{r['ratio']:.2f}×", *cpu,
                                         str(r["threads"]), _cell(device), f"`{_cell(str(r['command']))}`"]) + " |")
    return lines + [""]


def write_results(report_dir: Path, out_path: Path,
                  published: dict[str, list[PublishedResult]] | None = None) -> Path:
    text = render_results(report_dir, PUBLISHED if published is None else published)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text)
    return out_path
