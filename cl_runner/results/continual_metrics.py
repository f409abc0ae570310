"""Metrics of continual evaluation: accuracy measured during training, not only at task ends.

De Lange, van de Ven & Tuytelaars, "Continual evaluation for lifelong learning: identifying
the stability gap", ICLR 2023, Section 3 (worst-case metrics). The input is the table that
``continual_eval.csv`` holds: one row per (evaluation point, evaluated task), where an
evaluation point is either periodic (every ``eval.every_steps`` optimizer steps) or the end of
a task (after the strategy's own end-of-task work, e.g. MC-SGD's line phase).

Notation (tasks 1-based, T tasks): ``a(E_i, f_n)`` is the accuracy on task i's evaluation
subset at evaluation point n; ``t_i`` is the end-of-task point of task i.

- minimum accuracy of task i < T: ``min_{n > t_i} a(E_i, f_n)``, over every point after task
  i was learned, up to the end of the run (the paper's min-ACC of one task);
- **average minimum accuracy** ``min-ACC_T = 1/(T-1) sum_{i<T} min_{n > t_i} a(E_i, f_n)``;
- **worst-case accuracy** ``WC-ACC_T = (1/T) a(E_T, f_{t_T}) + (1 - 1/T) min-ACC_T``: the
  current task's accuracy at the end of the run traded off against the previous tasks'
  worst case (the paper's WC-ACC at the last iteration).
- **stability-gap depth** of task k >= 2 (our summary of the paper's figures, not a metric
  the paper defines): the mean over the previous tasks i < k of
  ``a(E_i, f_{t_{k-1}}) - min_{t_{k-1} < n <= t_k} a(E_i, f_n)``, the drop from the end of task
  k-1 to the lowest point while learning task k (percentage points / 100; 0 when the
  accuracy never falls below its value at the task switch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: columns of ``continual_eval.csv``
COLUMNS = ("step", "global_step", "task", "point", "eval_task", "accuracy", "loss")


@dataclass(frozen=True)
class EvalRow:
    """One row of ``continual_eval.csv``.

    Attributes:
        step: optimizer steps into the current task (all its phases), at the point.
        global_step: optimizer steps since the start of the run.
        task: the task being trained (1-based).
        point: ``"step"`` (periodic) or ``"task_end"`` (after the task's training and the
            strategy's end-of-task work).
        eval_task: the task evaluated (1-based, at most ``task``).
        accuracy: fraction correct on ``eval_task``'s evaluation subset.
        loss: mean cross-entropy there (nats).
    """

    step: int
    global_step: int
    task: int
    point: str
    eval_task: int
    accuracy: float
    loss: float


def _end_accuracy(rows: Sequence[EvalRow], task: int, eval_task: int) -> float | None:
    for r in rows:
        if r.task == task and r.point == "task_end" and r.eval_task == eval_task:
            return r.accuracy
    return None


def minimum_accuracies(rows: Sequence[EvalRow], num_tasks: int) -> list[float]:
    """Per task i = 1..T-1: ``min_{n > t_i} a(E_i, f_n)`` (fraction); NaN where no point
    after task i's end evaluated it (a run stopped early)."""
    out = []
    for i in range(1, num_tasks):
        later = [r.accuracy for r in rows if r.eval_task == i and r.task > i]
        out.append(min(later) if later else math.nan)
    return out


def stability_gap_depths(rows: Sequence[EvalRow], num_tasks: int) -> list[float]:
    """Per task k = 2..T: the mean over i < k of the drop ``a(E_i, f_{t_{k-1}}) - min over
    the points of task k of a(E_i, f_n)``, floored at 0 (fraction); NaN where task k or the
    end of task k-1 has no points."""
    out = []
    for k in range(2, num_tasks + 1):
        drops = []
        for i in range(1, k):
            before = _end_accuracy(rows, k - 1, i)
            during = [r.accuracy for r in rows if r.task == k and r.eval_task == i]
            if before is None or not during:
                continue
            drops.append(max(0.0, before - min(during)))
        out.append(sum(drops) / len(drops) if drops else math.nan)
    return out


def continual_metrics(rows: Sequence[EvalRow], num_tasks: int) -> dict[str, object]:
    """The ``summary.json`` fields of continual evaluation.

    Returns:
        ``min_acc`` (min-ACC_T), ``wc_acc`` (WC-ACC_T), ``minimum_accuracy_per_task``
        (length T-1), ``stability_gap_depth_per_task`` (length T-1, tasks 2..T) and
        ``stability_gap_depth`` (their mean). Fractions; NaN when undefined (T = 1, or a run
        that did not reach its last task). See the module docstring for the definitions.

    Raises:
        ValueError: ``num_tasks < 1``.
    """
    if num_tasks < 1:
        raise ValueError(f"num_tasks must be at least 1, got {num_tasks}")
    minima = minimum_accuracies(rows, num_tasks)
    depths = stability_gap_depths(rows, num_tasks)
    min_acc = (sum(minima) / len(minima)) if minima else math.nan
    last = _end_accuracy(rows, num_tasks, num_tasks)
    if last is None:
        wc_acc = math.nan
    elif num_tasks == 1:
        wc_acc = last
    else:
        wc_acc = last / num_tasks + (1 - 1 / num_tasks) * min_acc
    finite = [d for d in depths if not math.isnan(d)]
    return {
        "min_acc": min_acc,
        "wc_acc": wc_acc,
        "minimum_accuracy_per_task": minima,
        "stability_gap_depth_per_task": depths,
        "stability_gap_depth": sum(finite) / len(finite) if finite else math.nan,
    }
