"""The class-IL results tables (scripts/class_il_report.py): mean ± sample std over the complete
seeds of a cell, the task-IL column from the same runs, the gap to the paper's number."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import class_il_report  # noqa: E402


def _summary(folder: Path, status: str = "complete", **values) -> None:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"status": status, **values}))


def test_a_row_is_the_mean_and_sample_std_of_the_complete_seeds(tmp_path):
    cell = tmp_path / "seq_mnist" / "er_b200"
    _summary(cell / "seed1", average_accuracy=0.80, task_il_average_accuracy=0.97,
             forgetting=0.20, wall_time_seconds=10.0)
    _summary(cell / "seed2", average_accuracy=0.82, task_il_average_accuracy=0.99,
             forgetting=0.22, wall_time_seconds=20.0)
    _summary(cell / "seed3", status="running", average_accuracy=0.10, forgetting=0.9,
             wall_time_seconds=1.0)  # not complete: left out
    old = tmp_path / "seq_mnist" / "naive"  # runs from before the task-IL matrix existed
    _summary(old / "seed1", average_accuracy=0.19, forgetting=0.99, wall_time_seconds=5.0)
    table, flagged = class_il_report.grid_table(
        tmp_path, "seq_mnist", [("er_b200", "seq_mnist_er_b200", []),
                                ("naive", "seq_mnist_naive", []),
                                ("der_b500", "seq_mnist_der_b500", [])])
    rows = {line.split(" (")[0].strip("| "): line for line in table.splitlines()[2:]}
    # mean 81.00, sample std sqrt(((0.8-0.81)^2 + (0.82-0.81)^2) / 1) = 0.01414 -> 1.41 points
    assert "| 2 | 81.00 ± 1.41 | 98.00 ± 1.41 | 0.210 ± 0.014 | 80.43 |" in rows["er_b200"]
    assert rows["er_b200"].endswith("| +0.57 | 15 |")  # 81.00 - 80.43; mean wall 15 s
    assert "| 1 | 19.00 | – | 0.990 | 19.60 |" in rows["naive"]  # one seed: no std
    assert "| 0 | not run |" in rows["der_b500"]
    assert flagged == []
    _summary(tmp_path / "seq_mnist" / "lwf" / "seed1", average_accuracy=0.10, forgetting=1.0,
             wall_time_seconds=1.0)
    _, flagged = class_il_report.grid_table(tmp_path, "seq_mnist", [("lwf", "seq_mnist_lwf", [])])
    assert flagged == ["lwf"]  # 10.00 against 19.62: over 2 points
