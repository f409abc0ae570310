"""Markdown table of supermask runs (SupSup, ImpressLearn) for docs/results/supermasks.md.

    python scripts/supermasks_table.py outputs/supermasks/*_seed1
    python scripts/supermasks_table.py --mean outputs/impresslearn_paper/*   # mean ± std per method

One row per run folder: average accuracy and forgetting with the task given and with the task
inferred, task-inference accuracy after the last task
(accuracy_matrix_task_inference.csv), ImpressLearn's final accuracy on its basis tasks and on its
coefficient tasks separately and on the three tasks right after the basis, the floats stored per
task (summary.json's parameter_cost) and the wall time. Accuracies in %, forgetting as a
fraction; ``-`` where a run has no such figure (no task inference). With ``--mean`` the runs of
one benchmark and method (e.g. the seeds) make one row: mean ± std (n - 1).

Where the matrices are (:func:`given_and_inferred`): on a benchmark that gives no task id at
test time (Rotated/Permuted MNIST) the headline accuracy_matrix.csv is the task-inferred one
and accuracy_matrix_task_il.csv the task-given one; on a task-incremental benchmark the
headline is task-given and accuracy_matrix_task_inferred.csv the task-inferred diagnostic.
Run folders written before 2026-12-06 (the headline was task-given everywhere) are read by
the files they have: accuracy_matrix.csv given, accuracy_matrix_task_inferred.csv inferred.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from cl_runner.results import metrics


def read_matrix(path: Path) -> np.ndarray | None:
    """An accuracy matrix as an array, or None when the run did not write it (no task
    inference)."""
    return pd.read_csv(path, index_col=0).to_numpy() if path.exists() else None


def given_and_inferred(folder: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The task-given and the task-inferred matrix of a run folder (module docstring); the
    inferred one None when the run did not infer tasks."""
    headline = pd.read_csv(folder / "accuracy_matrix.csv", index_col=0).to_numpy()
    task_il = read_matrix(folder / "accuracy_matrix_task_il.csv")
    if task_il is not None:  # the headline is task-inferred (no task id given at test time)
        return task_il, headline
    return headline, read_matrix(folder / "accuracy_matrix_task_inferred.csv")


def row(folder: Path) -> dict[str, object]:
    """One table row for a complete run folder: the labels (benchmark, method) and the numbers
    (None where the run has no such figure)."""
    summary = json.loads((folder / "summary.json").read_text())
    given, inferred = given_and_inferred(folder)
    inference = read_matrix(folder / "accuracy_matrix_task_inference.csv")
    strategy = summary["config"]["strategy"]
    method = strategy["name"]
    basis_acc = coef_acc = next_acc = None
    if method == "impresslearn":
        b = strategy["basis_size"]
        method = f"impresslearn B={b}"
        basis_acc = 100 * given[-1, :b].mean()
        if given.shape[1] > b:
            coef_acc = 100 * given[-1, b:].mean()
            next_acc = 100 * given[-1, b:b + 3].mean()
    cost = summary["parameter_cost"]["task_floats"]
    return {
        "benchmark": summary["benchmark"], "method": method,
        "avg acc, task given (%)": 100 * metrics.average_accuracy(given),
        "forgetting, given": metrics.forgetting(given),
        "avg acc, task inferred (%)": (None if inferred is None
                                       else 100 * metrics.average_accuracy(inferred)),
        "forgetting, inferred": None if inferred is None else metrics.forgetting(inferred),
        "task inference acc (%)": None if inference is None else 100 * np.nanmean(inference[-1]),
        "basis tasks acc (%)": basis_acc, "coefficient tasks acc (%)": coef_acc,
        "tasks B+1..B+3 acc (%)": next_acc,
        "floats per task": " / ".join(f"{c:,.0f}" for c in sorted(set(cost), reverse=True)),
        "mean floats per task": summary["task_cost_floats"],
        "wall time (s)": summary["wall_time_seconds"],
    }


def cell(column: str, values: list[object]) -> str:
    """One table cell of ``column``: a label, ``-``, a number, or mean ± std over several
    runs (3 decimals for forgetting, none for floats and seconds, 2 for percentages)."""
    if isinstance(values[0], str):
        return values[0]
    numbers = [v for v in values if v is not None]
    if not numbers:
        return "-"
    digits = 3 if "forgetting" in column else 0 if ("floats" in column or "(s)" in column) else 2
    mean = float(np.mean(numbers))
    if len(numbers) == 1:
        return f"{mean:,.{digits}f}"
    return f"{mean:,.{digits}f} ± {float(np.std(numbers, ddof=1)):,.{digits}f}"


def main(argv: list[str]) -> int:
    group = "--mean" in argv
    folders = [Path(p) for p in argv if p != "--mean"]
    if not folders:
        print(__doc__)
        return 2
    complete = [f for f in folders if (f / "summary.json").exists()
                and json.loads((f / "summary.json").read_text()).get("status") == "complete"]
    for f in sorted(set(folders) - set(complete)):
        print(f"skipped (not a complete run): {f}", file=sys.stderr)
    folders = complete
    if not folders:
        return 1
    rows = [row(f) for f in folders]
    groups: dict[tuple, list[dict]] = {}
    for r, f in zip(rows, folders, strict=True):
        key = (r["benchmark"], r["method"]) if group else (str(f),)
        groups.setdefault(key, []).append(r)
    header = (["runs"] if group else []) + list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for members in groups.values():
        cells = [cell(k, [m[k] for m in members]) for k in rows[0]]
        print("| " + " | ".join(([str(len(members))] if group else []) + cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
