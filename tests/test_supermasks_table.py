"""scripts/supermasks_table.py, which makes the tables of docs/results/supermasks.md: numbers
against hand-computed values, the mean ± std of --mean, runs without task inference."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "supermasks_table.py"


def load_script():
    spec = importlib.util.spec_from_file_location("supermasks_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_run(folder: Path, last_row: list[float], status: str = "complete") -> Path:
    """An ImpressLearn run of 4 tasks, B = 1, task given only."""
    folder.mkdir(parents=True)
    rows = [[0.9, 0.5, 0.4, 0.3], [0.9, 0.8, 0.5, 0.4], [0.9, 0.8, 0.7, 0.5], last_row]
    frame = pd.DataFrame(rows, columns=[f"task_{i}" for i in range(1, 5)],
                         index=[f"after_task_{i}" for i in range(1, 5)])
    frame.to_csv(folder / "accuracy_matrix.csv")
    (folder / "summary.json").write_text(json.dumps({
        "status": status, "benchmark": "rotated_mnist",
        "config": {"strategy": {"name": "impresslearn", "basis_size": 1}},
        "parameter_cost": {"task_floats": [100.0, 3.0, 3.0, 3.0]},
        "task_cost_floats": 27.25, "wall_time_seconds": 10.0}))
    return folder


def test_rows_and_mean_over_seeds(tmp_path, capsys):
    script = load_script()
    a = fake_run(tmp_path / "s1", [0.9, 0.8, 0.7, 0.6])
    b = fake_run(tmp_path / "s2", [0.9, 0.6, 0.5, 0.4])
    fake_run(tmp_path / "running", [0.0] * 4, status="running")
    row = script.row(a)
    assert abs(row["avg acc, task given (%)"] - 75.0) < 1e-9  # (90 + 80 + 70 + 60) / 4
    assert abs(row["basis tasks acc (%)"] - 90.0) < 1e-9
    assert abs(row["coefficient tasks acc (%)"] - 70.0) < 1e-9  # tasks 2..4
    assert row["avg acc, task inferred (%)"] is None and row["task inference acc (%)"] is None
    assert script.main(["--mean", str(a), str(b), str(tmp_path / "running")]) == 0
    out, err = capsys.readouterr()
    last = out.strip().splitlines()[-1].split(" | ")
    # seeds 1 and 2: average accuracy 75 and 60 -> 67.50 ± 10.61 (std with n - 1)
    assert last[0] == "| 2" and "67.50 ± 10.61" in last and "-" in last
    assert "running" in err


def test_a_run_with_the_task_inferred_headline_is_read_from_its_files(tmp_path):
    """Since the scenario decides the headline, a SupSup run on Rotated MNIST writes the
    task-inferred matrix as accuracy_matrix.csv and the task-given one beside it as
    accuracy_matrix_task_il.csv: the table's 'task given' and 'task inferred' columns keep
    their meaning."""
    script = load_script()
    folder = fake_run(tmp_path / "new", [0.5, 0.5, 0.5, 0.5])  # the headline: task inferred
    given = pd.DataFrame([[0.9] * 4] * 4, columns=[f"task_{i}" for i in range(1, 5)],
                         index=[f"after_task_{i}" for i in range(1, 5)])
    given.to_csv(folder / "accuracy_matrix_task_il.csv")
    row = script.row(folder)
    assert abs(row["avg acc, task given (%)"] - 90.0) < 1e-9
    assert abs(row["avg acc, task inferred (%)"] - 50.0) < 1e-9
