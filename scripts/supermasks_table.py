"""Markdown table of supermask runs (SupSup, ImpressLearn) for docs/results/supermasks.md.

    python scripts/supermasks_table.py outputs/supermasks/*_seed1

One row per run folder: average accuracy and forgetting with the task given (accuracy_matrix.csv)
and inferred (accuracy_matrix_task_inferred.csv), task-inference accuracy after the last task
(accuracy_matrix_task_inference.csv), ImpressLearn's final accuracy on its basis tasks and on its
coefficient tasks separately, the floats stored per task (summary.json's parameter_cost) and the
wall time. Accuracies in %, forgetting as a fraction.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from cl_runner.results import metrics


def row(folder: Path) -> dict[str, str]:
    """One table row for a complete run folder."""
    summary = json.loads((folder / "summary.json").read_text())
    given = pd.read_csv(folder / "accuracy_matrix.csv", index_col=0).to_numpy()
    inferred = pd.read_csv(folder / "accuracy_matrix_task_inferred.csv", index_col=0).to_numpy()
    inference = pd.read_csv(folder / "accuracy_matrix_task_inference.csv", index_col=0).to_numpy()
    strategy = summary["config"]["strategy"]
    cost = summary["parameter_cost"]["task_floats"]
    method = strategy["name"]
    basis_acc = coef_acc = "-"
    if method == "impresslearn":
        b = strategy["basis_size"]
        method = f"impresslearn B={b}"
        basis_acc = f"{100 * given[-1, :b].mean():.2f}"
        coef_acc = f"{100 * given[-1, b:].mean():.2f}" if given.shape[1] > b else "-"
    per_task = sorted(set(cost), reverse=True)
    return {
        "benchmark": summary["benchmark"], "method": method,
        "avg acc, task given (%)": f"{100 * metrics.average_accuracy(given):.2f}",
        "forgetting, given": f"{metrics.forgetting(given):.3f}",
        "avg acc, task inferred (%)": f"{100 * metrics.average_accuracy(inferred):.2f}",
        "forgetting, inferred": f"{metrics.forgetting(inferred):.3f}",
        "task inference acc (%)": f"{100 * np.nanmean(inference[-1]):.2f}",
        "basis tasks acc (%)": basis_acc, "coefficient tasks acc (%)": coef_acc,
        "floats per task": " / ".join(f"{c:,.0f}" for c in per_task),
        "mean floats per task": f"{summary['task_cost_floats']:,.0f}",
        "wall time (s)": f"{summary['wall_time_seconds']:.0f}",
    }


def main(argv: list[str]) -> int:
    folders = [Path(p) for p in argv]
    if not folders:
        print(__doc__)
        return 2
    rows = [row(f) for f in folders]
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for r in rows:
        print("| " + " | ".join(r.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
