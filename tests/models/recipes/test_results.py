"""docs/RESULTS.md rendering from saved EvalReport files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.report import EvalReport
from models.recipes.results import PUBLISHED, PublishedResult, ReportFileError, render_results, verdict, write_results


def _report(model: str, kind: str, hr: float, dataset: str = "diginetica", epochs: int = 0) -> EvalReport:
    return EvalReport(model=model, dataset=dataset, metrics={"hr@20": hr, "mrr@20": hr / 3, "ndcg@20": hr / 2},
                      train_seconds=120.0, epochs=epochs, params=10 if kind == "model" else 0, device="cpu",
                      kind=kind, extra={"seconds_per_epoch": 60.0} if kind == "model" else {})


def test_render_tables_commands_and_verdicts(tmp_path: Path) -> None:
    _report("srgnn", "model", 0.45, epochs=2).save(tmp_path, "gnnrec train --model srgnn --epochs 2 | tee x")
    _report("vsknn", "baseline", 0.48).save(tmp_path, "gnnrec eval --baseline vsknn --dataset diginetica --json")
    _report("pop", "baseline", 0.01, dataset="yoochoose64").save(tmp_path, "gnnrec eval --baseline pop")
    text = render_results(tmp_path, PUBLISHED)
    lines = text.splitlines()
    assert lines.index("## diginetica") < lines.index("## yoochoose64") < lines.index("## gowalla")
    srgnn_row = next(line for line in lines if line.startswith("| **srgnn**"))
    assert "0.4500" in srgnn_row and "0.1500" in srgnn_row and "| 2 |" in srgnn_row
    assert "2.0 min (60 s/epoch)" in srgnn_row
    assert "| 120.0 s fit |" in text  # baselines without eval_seconds in extra
    assert "`gnnrec train --model srgnn --epochs 2 \\| tee x`" in srgnn_row  # pipe escaped for markdown
    # rows sorted by hr@20: the baseline at 0.48 comes before the model at 0.45
    assert text.index("| vsknn |") < text.index("| **srgnn**")
    assert "| SR-GNN (paper) | published | 0.5073 | 0.1759 | – |" in text
    assert "our best model `srgnn` (hr@20 0.4500, 2 epochs) does **not** beat the best baseline `vsknn` " \
           "(hr@20 0.4800); difference -0.0300. On mrr@20: `srgnn` 0.1500 vs `vsknn` 0.1600 (baseline ahead)." in text
    assert "**yoochoose64**: no model report yet" in text
    assert "| LightGCN (reproduction) | published | 0.1824 | 0.1547 |" in text


def test_verdict_when_model_wins() -> None:
    reports = [_report(m, k, hr).to_dict() | {"command": "c"} for m, k, hr in
               [("srgnn", "model", 0.5), ("sknn", "baseline", 0.4), ("pop", "baseline", 0.1)]]
    assert verdict("diginetica", reports).startswith("**diginetica**: our best model `srgnn` (hr@20 0.5000, 0 epochs) "
                                                     "beats the best baseline `sknn` (hr@20 0.4000)")


def test_gowalla_uses_recall_as_primary(tmp_path: Path) -> None:
    EvalReport(model="lightgcn", dataset="gowalla", metrics={"recall@20": 0.17, "ndcg@20": 0.14}, train_seconds=1.0,
               epochs=5, params=1, device="cpu").save(tmp_path, "a")
    EvalReport(model="pop", dataset="gowalla", metrics={"recall@20": 0.04, "ndcg@20": 0.03}, train_seconds=0.0,
               epochs=0, params=0, device="cpu", kind="baseline").save(tmp_path, "b")
    text = render_results(tmp_path, {"gowalla": [PublishedResult("X", {"recall@20": 0.2}, "paper")]})
    assert "| row | kind | recall@20 | ndcg@20 | hr@20 |" in text
    assert "(recall@20 0.1700, 5 epochs) beats the best baseline `pop` (recall@20 0.0400); difference +0.1300. " \
           "On ndcg@20: `lightgcn` 0.1400 vs `pop` 0.0300 (model ahead)." in text


def test_bad_report_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ReportFileError, match="broken.json"):
        render_results(tmp_path, {})
    (tmp_path / "broken.json").write_text('{"model": "x"}')
    with pytest.raises(ReportFileError, match="lacks dataset"):
        render_results(tmp_path, {})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        render_results(tmp_path / "none", {})


def test_write_results(tmp_path: Path) -> None:
    _report("srgnn", "model", 0.3).save(tmp_path / "r", "cmd")
    out = write_results(tmp_path / "r", tmp_path / "docs" / "RESULTS.md")
    assert out.read_text().startswith("# Results") and "## diginetica" in out.read_text()


def test_task_metrics_get_their_own_table_and_verdict(tmp_path: Path) -> None:
    metrics = {"new_users/recall@20": 0.12, "new_users_pop/recall@20": 0.04, "new_users/ndcg@20": 0.09,
               "new_items/recall@20": 0.05, "new_items_pop/recall@20": 0.08}
    EvalReport(model="sage", dataset="gowalla_inductive", metrics=metrics, train_seconds=60.0, epochs=2, params=1,
               device="cpu", extra={"run_note": "new_users: held-out users"}).save(tmp_path, "gnnrec train --x")
    text = render_results(tmp_path, {})
    lines = text.splitlines()
    assert "### gowalla_inductive: metrics by task" in lines
    header = lines.index("### gowalla_inductive: metrics by task") + 2
    assert lines[header] == "| row | task | recall@20 | ndcg@20 | hr@20 | epochs | command |"
    # each task's model row, then its popularity reference on the same task
    assert lines[header + 2:header + 6] == [
        "| **sage** | new_items | 0.0500 | – | – | 2 | `gnnrec train --x` |",
        "| pop (same task, sage run) | new_items | 0.0800 | – | – | 2 | `gnnrec train --x` |",
        "| **sage** | new_users | 0.1200 | 0.0900 | – | 2 | `gnnrec train --x` |",
        "| pop (same task, sage run) | new_users | 0.0400 | – | – | 2 | `gnnrec train --x` |",
    ]
    assert "Run note (sage, 2 epochs, cpu): new_users: held-out users" in text  # once, under the main table
    assert text.count("Run note") == 1
    assert ("**gowalla_inductive** by task: on new_items, `sage` (recall@20 0.0500) does **not** beat popularity "
            "(0.0800); on new_users, `sage` (recall@20 0.1200) beats popularity (0.0400).") in text
    assert "no model report yet" not in text  # the plain verdict does not apply to task metrics


def _speed(**overrides: object) -> dict[str, object]:
    return {"model": "lightgcn", "dataset": "gowalla", "reference": "RecBole 1.2.1", "ours_epoch_s": 30.0,
            "recbole_epoch_s": 75.0, "ratio": 2.5, "ours_cpu_s": 20.0, "recbole_cpu_s": 60.0, "cpu_ratio": 3.0,
            "ours_batches": 100, "recbole_batches": 100,
            "batches_per_epoch": 396, "batch_size": 2048, "full_epoch": False, "threads": 1, "device": "cpu",
            "loadavg_1m_at_end": 1.25, "command": "python -m bench.recbole.lightgcn_speed --batches 100"} | overrides


def test_speed_records_render_with_batch_count(tmp_path: Path) -> None:
    _report("srgnn", "model", 0.3).save(tmp_path, "cmd")
    (tmp_path / "speed-lightgcn-gowalla-recbole.json").write_text(json.dumps(_speed()))
    (tmp_path / "speed-full.json").write_text(json.dumps(_speed(model="x", ours_batches=396, recbole_batches=396,
                                                                full_epoch=True)))
    text = render_results(tmp_path, {})
    assert "## Training speed vs RecBole" in text
    assert ("| lightgcn | gowalla | 100 of 396 batches (batch 2048) | 30.0 | 75.0 | 2.50× | 20.0 | 60.0 | 3.00× | 1 | "
            "cpu, load 1.2 | `python -m bench.recbole.lightgcn_speed --batches 100` |") in text
    assert "| x | gowalla | full epoch (batch 2048) |" in text
    (tmp_path / "speed-srgnn.json").write_text(json.dumps(_speed(model="srgnn", max_prefix_len=50, max_len=50)))
    assert "| srgnn | gowalla | 100 of 396 batches (batch 2048); prefixes ≤ 50 items (cut) |" in render_results(tmp_path, {})
    assert "first N mini-batches only" in text
    # the speed files are not EvalReports: they do not appear as dataset rows
    assert text.count("## gowalla") == 0


def test_bad_speed_record_is_named(tmp_path: Path) -> None:
    (tmp_path / "speed-bad.json").write_text(json.dumps({"model": "x"}))
    with pytest.raises(ReportFileError, match="speed-bad.json lacks dataset"):
        render_results(tmp_path, {})
