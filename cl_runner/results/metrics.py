"""Continual-learning metrics as pure functions of the accuracy matrix (docs/papers.md, Metrics).

``a`` is the T x T accuracy matrix: ``a[t, i]`` is the test accuracy (fraction) on task i+1
after training task t+1 (0-based indices here; the papers number tasks from 1). Metrics "after
t tasks" are the metrics of the leading t x t block.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cl_runner.results import class_metrics

Matrix = Sequence[Sequence[float]] | np.ndarray


def _square(a: Matrix) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise ValueError(f"accuracy matrix must be square and non-empty, got shape {arr.shape}")
    return arr


def average_accuracy(a: Matrix) -> float:
    """``A_T = (1/T) sum_i a[T, i]``: mean accuracy on all tasks after the last one."""
    arr = _square(a)
    return float(arr[-1].mean())


def learning_accuracy(a: Matrix) -> float:
    """``(1/T) sum_i a[i, i]``: mean accuracy on each task right after learning it."""
    arr = _square(a)
    return float(np.diag(arr).mean())


def forgetting(a: Matrix) -> float:
    """Average forgetting ``(1/(T-1)) sum_{i<T} (max_{t<T} a[t, i] - a[T, i])``, where the max
    runs over the rows t >= i in which task i had been learned (Chaudhry et al. 2018; docs/papers.md).
    The last task is excluded. A fraction (can be negative). NaN when T = 1 (undefined).

    Raises:
        ValueError: ``a`` is not square.
    """
    arr = _square(a)
    t = arr.shape[0]
    if t == 1:
        return math.nan
    drops = [arr[i:t - 1, i].max() - arr[t - 1, i] for i in range(t - 1)]
    return float(np.mean(drops))


def backward_transfer(a: Matrix) -> float:
    """``BWT = (1/(T-1)) sum_{i<T} (a[T, i] - a[i, i])`` (Lopez-Paz & Ranzato 2017). NaN when T = 1."""
    arr = _square(a)
    t = arr.shape[0]
    if t == 1:
        return math.nan
    return float(np.mean(arr[-1, : t - 1] - np.diag(arr)[: t - 1]))


def forward_transfer(a: Matrix, initial: Sequence[float]) -> float:
    """``FWT = (1/(T-1)) sum_{i>=2} (a[i-1, i] - b_i)`` with ``b_i`` the accuracy of the initial
    (untrained) model on task i (Lopez-Paz & Ranzato 2017). NaN when T = 1.

    Args:
        initial: length-T accuracies before any training.
    """
    arr = _square(a)
    b = np.asarray(initial, dtype=np.float64)
    t = arr.shape[0]
    if b.shape != (t,):
        raise ValueError(f"initial accuracies must have length {t}, got shape {b.shape}")
    if t == 1:
        return math.nan
    return float(np.mean([arr[i - 1, i] - b[i] for i in range(1, t)]))


def average_accuracy_curve(a: Matrix) -> list[float]:
    """``[A_1, ..., A_T]``: average accuracy on tasks 1..t after training task t."""
    arr = _square(a)
    return [float(arr[t, : t + 1].mean()) for t in range(arr.shape[0])]


# --------------------------------------------------------------------------- declarations

#: how a metric's value is stored and shown: ``percent`` (a fraction, shown x100),
#: ``fraction`` (shown as stored), ``seconds``, ``floats`` (a count of float32 values),
#: ``per_second`` (a rate)
KINDS = ("percent", "fraction", "seconds", "floats", "per_second")


@dataclass(frozen=True)
class Metric:
    """The one declaration of a metric: the ``summary.json`` key it is stored under and how
    every reader shows it. ``cl-summarize`` (its columns, ``summary.csv``), the loggers'
    final scalars (``final/<name>``) and ``cl-run``'s end-of-run table are derived from
    :data:`METRICS`, and a metric of the accuracy matrix (``compute`` set) is computed into
    ``summary.json`` by :func:`all_metrics`; so adding a metric is one :func:`declare` call.

    Attributes:
        name: the ``summary.json`` key (the field's standard name).
        label: plain-text column label (cl-summarize's Markdown and terminal tables).
        latex: LaTeX column label.
        kind: one of :data:`KINDS`.
        table: its row label in ``cl-run``'s end-of-run table; None: not shown there.
        compute: for a metric of the accuracy matrix, ``compute(a)`` (or
            ``compute(a, initial)`` when ``needs_initial``) -> float; for ``source =
            "confusion"``, ``compute(confusions (T, C, C), task_of_class (C,))`` -> float
            (:func:`confusion_metrics`); None for a metric whose value another part of the
            run writes (wall time, continual evaluation, the matrices beside the headline,
            parameter cost).
        needs_initial: ``compute`` also takes the untrained model's accuracies (length T).
        default: one of cl-summarize's default columns.
        shown_if: a boolean ``summary.json`` field that must be true for the end-of-run
            table to show the row (``stores_per_task``); None: shown whenever present.
        source: where the value comes from, for the reader (``matrix``, ``run``,
            ``continual``, ``task_il``, ``task_inferred``, ``confusion``, ``cost``).
        better: ``higher`` or ``lower``: which way the metric is better (cl-summarize's LaTeX
            table sets the best of each column in bold); None: not a score (time, cost).
    """

    name: str
    label: str
    latex: str
    kind: str
    table: str | None = None
    compute: Callable[..., float] | None = field(default=None, compare=False)
    needs_initial: bool = False
    default: bool = False
    shown_if: str | None = None
    source: str = "matrix"
    better: str | None = "higher"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.better not in ("higher", "lower", None):
            raise ValueError(f"metric {self.name!r}: better must be 'higher', 'lower' or None")

    def scale(self) -> float:
        """Factor from the stored value to the shown one (100 for ``percent``)."""
        return 100.0 if self.kind == "percent" else 1.0

    def digits(self) -> int:
        """Decimals cl-summarize shows."""
        return {"percent": 2, "fraction": 3, "seconds": 1, "floats": 0, "per_second": 1}[self.kind]

    def format(self, value: float) -> str:
        """The value as the end-of-run table shows it: ``81.25%``, ``0.1234``, ``12.3 s``,
        ``269,322``, ``150.2``."""
        return {"percent": f"{100 * value:.2f}%", "fraction": f"{value:.4f}",
                "seconds": f"{value:.1f} s", "floats": f"{value:,.0f}",
                "per_second": f"{value:.1f}"}[self.kind]


#: every declared metric by name, in the order tables show them
METRICS: dict[str, Metric] = {}


def declare(metric: Metric) -> Metric:
    """Add ``metric`` to :data:`METRICS`.

    Raises:
        ValueError: the name is declared already.
    """
    if metric.name in METRICS:
        raise ValueError(f"metric {metric.name!r} is already declared")
    METRICS[metric.name] = metric
    return metric


for _metric in (
    Metric("average_accuracy", "avg acc (%)", r"Avg.\ acc.\ (\%)", "percent",
           "average accuracy", average_accuracy, default=True),
    Metric("forgetting", "forgetting", "Forgetting", "fraction", "forgetting", forgetting,
           default=True, better="lower"),
    Metric("backward_transfer", "BWT", "BWT", "fraction", "backward transfer",
           backward_transfer, default=True),
    Metric("learning_accuracy", "learning acc (%)", r"Learn.\ acc.\ (\%)", "percent",
           "learning accuracy", learning_accuracy, default=True),
    Metric("forward_transfer", "FWT", "FWT", "fraction", "forward transfer", forward_transfer,
           needs_initial=True),
    # the task-incremental matrix beside a headline that is not task-incremental
    # (accuracy_matrix_task_il.csv: class-incremental benchmarks, the same logits masked to
    # each task's classes; supermask strategies on domain-incremental ones, the task given)
    Metric("task_il_average_accuracy", "avg acc, task-IL (%)", r"Avg.\ acc., task-IL (\%)",
           "percent", "average accuracy, task-incremental", source="task_il"),
    Metric("task_il_forgetting", "forgetting, task-IL", "Forgetting, task-IL", "fraction",
           "forgetting, task-incremental", source="task_il", better="lower"),
    # class-incremental benchmarks, from the confusion counts of every task end
    # (confusion.csv; cl_runner.results.class_metrics gives each one's source)
    Metric("average_incremental_accuracy", "avg incremental acc (%)",
           r"Avg.\ incr.\ acc.\ (\%)", "percent", "average incremental accuracy",
           class_metrics.average_incremental_accuracy, source="confusion"),
    Metric("old_class_accuracy", "old-class acc (%)", r"Old-class acc.\ (\%)", "percent",
           "accuracy on old classes", class_metrics.final_old_class_accuracy,
           source="confusion"),
    Metric("new_class_accuracy", "new-class acc (%)", r"New-class acc.\ (\%)", "percent",
           "accuracy on new classes", class_metrics.final_new_class_accuracy,
           source="confusion"),
    Metric("task_recency_bias", "task-recency bias", "Task-recency bias", "fraction",
           "task-recency bias", class_metrics.final_task_recency_bias, source="confusion",
           better=None),
    # supermask strategies on task-incremental benchmarks (absent elsewhere, so n/a): average
    # accuracy and forgetting with the task inferred (a diagnostic: on the other scenarios it
    # is the headline); task-inference accuracy (accuracy_matrix_task_*.csv)
    Metric("task_inferred_average_accuracy", "avg acc, task inferred (%)",
           r"Avg.\ acc., task inferred (\%)", "percent", "average accuracy, task inferred",
           source="task_inferred"),
    Metric("task_inferred_forgetting", "forgetting, task inferred", r"Forgetting, task inferred",
           "fraction", "forgetting, task inferred", source="task_inferred", better="lower"),
    Metric("task_inference_average_accuracy", "task inference acc (%)",
           r"Task inference acc.\ (\%)", "percent", "task inference accuracy",
           source="task_inferred"),
    # every strategy: float32 equivalents stored per task alone and in all
    # (experiment.parameter_cost_summary)
    Metric("task_cost_floats", "floats stored per task", r"Floats stored per task", "floats",
           "floats stored per task (mean)", shown_if="stores_per_task", source="cost",
           better=None),
    Metric("total_cost_floats", "floats stored in all", r"Floats stored in all", "floats",
           "floats stored in all", source="cost", better=None),
    # continual evaluation (eval.every_steps; cl_runner.results.continual_metrics)
    Metric("min_acc", "min-ACC (%)", r"min-ACC (\%)", "percent", "min-ACC", source="continual"),
    Metric("wc_acc", "WC-ACC (%)", r"WC-ACC (\%)", "percent", "WC-ACC", source="continual"),
    Metric("stability_gap_depth", "gap depth (pp)", r"Gap depth (pp)", "percent",
           "stability gap depth", source="continual", better="lower"),
    Metric("wall_time_seconds", "wall time (s)", r"Time (s)", "seconds", "wall time",
           default=True, source="run", better=None),
    Metric("steps_per_second", "steps/s", r"Steps/s", "per_second", "steps per second",
           source="run", better=None),
):
    declare(_metric)


def all_metrics(a: Matrix, initial: Sequence[float] | None = None) -> dict[str, float]:
    """Every declared metric of the accuracy matrix (:data:`METRICS` entries with a
    ``compute``) for the full matrix, keyed by its name, in declaration order; those that
    need the initial accuracies only when ``initial`` is given."""
    out = {}
    for metric in METRICS.values():
        if metric.source != "matrix" or metric.compute is None or (
                metric.needs_initial and initial is None):
            continue
        out[metric.name] = (metric.compute(a, initial) if metric.needs_initial
                            else metric.compute(a))
    return out


def confusion_metrics(confusions: Sequence[Sequence[Sequence[int]]] | np.ndarray,
                      task_of_class: Sequence[int]) -> dict[str, Any]:
    """Every declared metric of the confusion counts (:data:`METRICS` entries with
    ``source="confusion"``), keyed by name, plus each per-task-end curve of
    :data:`cl_runner.results.class_metrics.CURVES` as ``<name>_per_task``.

    Args:
        confusions: ``(T', C, C)`` counts ``[task end][true][predicted]`` (T' task ends).
        task_of_class: ``(C,)`` the 0-based task of each class (-1: none).

    Returns:
        An empty dict when there are no counts (not a class-incremental run).
    """
    if len(confusions) == 0:
        return {}
    out: dict[str, Any] = {m.name: m.compute(confusions, task_of_class)
                           for m in METRICS.values() if m.source == "confusion" and m.compute}
    for name, curve in class_metrics.CURVES.items():
        out[f"{name}_per_task"] = curve(confusions, task_of_class)
    return out
