"""A metric is one declaration (:data:`cl_runner.results.metrics.METRICS`): ``summary.json``,
``cl-summarize``, the loggers' final scalars and ``cl-run``'s end-of-run table all follow it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from cl_runner import run as api_run
from cl_runner.cli import summary_table
from cl_runner.loggers import final_scalars
from cl_runner.results import metrics
from cl_runner.summarize import METRICS as SUMMARIZE_METRICS
from cl_runner.summarize import summarize
from cl_runner.summarize.runs import DEFAULT_METRICS


def last_task_accuracy(a) -> float:
    """The accuracy on the last task right after learning it (a test metric)."""
    return float(np.asarray(a, dtype=float)[-1, -1])


NEW = metrics.Metric("last_task_accuracy", "last task acc (%)", r"Last task acc.\ (\%)",
                     "percent", "last task accuracy", last_task_accuracy)


def table_text(summary: dict) -> str:
    console = Console(width=200, record=True)
    console.print(summary_table(summary))
    return console.export_text()


def test_one_declaration_reaches_the_summary_summarize_the_loggers_and_the_table(
        tmp_path, mnist_small_test_set, monkeypatch):
    monkeypatch.setitem(metrics.METRICS, NEW.name, NEW)  # the one line a new metric takes
    run_dir = tmp_path / "run"
    result = api_run(["strategy=naive", "benchmark.num_tasks=2",
                      "benchmark.train_samples_per_task=200", "progress=false",
                      "hardware.num_threads=1"], out_dir=run_dir)
    matrix = pd.read_csv(run_dir / "accuracy_matrix.csv", index_col=0).to_numpy()
    # 1. summary.json: computed from the accuracy matrix
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["last_task_accuracy"] == pytest.approx(matrix[-1, -1])
    assert result.summary["last_task_accuracy"] == summary["last_task_accuracy"]
    # 2. cl-summarize: a metric it knows, aggregated and labelled as declared
    out = summarize([tmp_path], metrics=["average_accuracy", NEW.name], out=tmp_path / "s",
                    plots=False)
    assert NEW.name in SUMMARIZE_METRICS and out.metrics == ["average_accuracy", NEW.name]
    csv = pd.read_csv(tmp_path / "s" / "summary.csv")
    row = csv[csv["metric"] == NEW.name].iloc[0]
    assert row["mean"] == pytest.approx(matrix[-1, -1])
    assert "last task acc (%)" in (tmp_path / "s" / "summary.md").read_text()
    # 3. the loggers' final scalars
    assert final_scalars(summary)["final/last_task_accuracy"] == pytest.approx(matrix[-1, -1])
    # 4. the end-of-run table, formatted by its kind
    assert "last task accuracy" in table_text(summary)
    assert f"{100 * matrix[-1, -1]:.2f}%" in table_text(summary)


def test_the_readers_are_derived_from_the_declarations():
    assert SUMMARIZE_METRICS is metrics.METRICS
    assert DEFAULT_METRICS == ("average_accuracy", "forgetting", "backward_transfer",
                               "learning_accuracy", "wall_time_seconds")
    summary = {"strategy": "naive", "benchmark": "b", "num_tasks": 2, "seed": 1,
               **{name: 0.5 for name in metrics.METRICS}, "stores_per_task": True}
    assert set(final_scalars(summary)) == {f"final/{n}" for n in metrics.METRICS}
    text = table_text(summary)
    assert all(m.table in text for m in metrics.METRICS.values() if m.table)
    assert set(metrics.all_metrics([[1.0]], [0.1])) == {
        m.name for m in metrics.METRICS.values() if m.compute is not None and m.source == "matrix"}
    assert set(metrics.confusion_metrics([[[1]]], [0])) >= {
        m.name for m in metrics.METRICS.values() if m.compute is not None and m.source == "confusion"}


def test_a_metric_is_declared_once():
    with pytest.raises(ValueError, match="already declared"):
        metrics.declare(metrics.Metric("forgetting", "f", "f", "fraction"))
    with pytest.raises(ValueError, match="kind must be one of"):
        metrics.Metric("x", "x", "x", "percentage")
