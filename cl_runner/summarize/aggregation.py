"""Aggregation over seeds: mean, sample std (ddof=1) and count per group and metric."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cl_runner.results.metrics import average_accuracy_curve
from cl_runner.summarize.grouping import (
    config_value,
    default_group_keys,
    differing_result_keys,
    display_value,
    group_label,
)
from cl_runner.summarize.runs import (
    CONTINUAL_METRICS,
    DEFAULT_METRICS,
    METRICS,
    RunRecord,
    SummarizeError,
    metric_value,
    stores_per_task,
)


@dataclass
class Group:
    """Runs that differ only in their seed, and their aggregates.

    Attributes:
        values: the group's value of each grouping key (strings).
        runs: the complete runs, sorted by seed.
        matrix_mean, matrix_std: the accuracy matrix averaged over seeds and its sample std
            (``ddof=1``, NaN for one seed), shape ``(T, T)``, fractions; None when the runs'
            matrices differ in shape (reported in ``problems``).
        curve_mean, curve_std: ``A_t`` (average accuracy on tasks 1..t after task t), shape
            ``(T,)``, fractions.
        stats: metric name -> ``(mean, std, n)``: the mean, the sample std (ddof=1; NaN for
            fewer than two values) and the number of runs with a value for the metric.
    """

    values: tuple[str, ...]
    runs: list[RunRecord]
    stats: dict[str, tuple[float, float, int]] = field(default_factory=dict)
    matrix_mean: np.ndarray | None = None
    matrix_std: np.ndarray | None = None
    curve_mean: np.ndarray | None = None
    curve_std: np.ndarray | None = None

    @property
    def seeds(self) -> list[Any]:
        return [r.get("seed") for r in self.runs]


@dataclass
class Summary:
    """What :func:`summarize` computed and wrote.

    Attributes:
        group_keys: the grouping keys, in column order.
        metrics: the metric names aggregated.
        groups: one per distinct combination of grouping values, sorted.
        table: tidy frame, one row per group and metric: the grouping keys, ``metric``,
            ``mean``, ``std`` (sample std, ddof=1; NaN for one seed), ``n_seeds`` (runs with
            a value for the metric), ``seeds``, ``unit``. Accuracies are fractions.
        runs: one row per run folder found: ``path, status, reason, seed`` and the keys.
        excluded: the runs not aggregated (failed, incomplete, corrupt, duplicate).
        problems: messages about groups whose matrices could not be aggregated.
        files: every file written.
    """

    group_keys: list[str]
    metrics: list[str]
    groups: list[Group]
    table: pd.DataFrame
    runs: pd.DataFrame
    excluded: list[RunRecord]
    problems: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def _sort_key(values: Sequence[str]) -> tuple:
    out = []
    for v in values:
        try:
            out.append((0, float(v), ""))
        except ValueError:
            out.append((1, 0.0, v))
    return tuple(out)


def aggregate(records: Sequence[RunRecord], group_keys: Sequence[str] | None = None,
              metrics: Sequence[str] = DEFAULT_METRICS) -> Summary:
    """Group the complete runs and compute mean, sample std (ddof=1) and count over seeds.

    Args:
        records: runs as read by :func:`read_run` (any status; only complete ones count).
        group_keys: dotted config keys to group by; default :func:`default_group_keys`.
        metrics: names from :data:`METRICS`. With the default, ``task_cost_floats`` and
            ``total_cost_floats`` are added when some run's strategy stores something per
            task (an episodic memory, EWC's Fisher, a mask): the columns then compare
            strategies; otherwise they are left out. Likewise ``min_acc``, ``wc_acc`` and
            ``stability_gap_depth`` when some run has continual evaluation.

    Returns:
        A :class:`Summary` (no files written).

    Raises:
        SummarizeError: an unknown metric name.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise SummarizeError(f"unknown metric(s) {', '.join(unknown)}; "
                             f"choose from {', '.join(METRICS)}")
    complete = [r for r in records if r.status == "complete"]
    if tuple(metrics) == DEFAULT_METRICS:
        if any(r.summary and "min_acc" in r.summary for r in complete):
            metrics = (*metrics, *CONTINUAL_METRICS)
        if any(stores_per_task(r) for r in complete):
            metrics = (*metrics, "task_cost_floats", "total_cost_floats")
    keys = list(group_keys) if group_keys else default_group_keys(complete)
    problems: list[str] = []
    by_values = _group(complete, keys, problems)
    groups: list[Group] = []
    for values in sorted(by_values, key=_sort_key):
        runs: list[RunRecord] = []
        seen: dict[str, RunRecord] = {}
        for record in sorted(by_values[values], key=lambda r: (str(r.get("seed")), str(r.path))):
            seed = str(record.get("seed"))
            if seed in seen:
                record.status = "duplicate"
                record.reason = f"same group and seed {seed} as {seen[seed].path}; counted once"
                continue
            seen[seed] = record
            runs.append(record)
        groups.append(_aggregate_group(values, runs, keys, problems))
    rows = []
    for group in groups:
        for name in metrics:
            vals = pd.Series([metric_value(r, name) for r in group.runs], dtype=float)
            stats = (float(vals.mean()), float(vals.std(ddof=1)), int(vals.notna().sum()))
            group.stats[name] = stats
            rows.append({**dict(zip(keys, group.values, strict=True)), "metric": name,
                         "mean": stats[0], "std": stats[1], "n_seeds": stats[2],
                         "seeds": ";".join(str(s) for s in group.seeds),
                         "unit": METRICS[name].kind if METRICS[name].kind != "percent"
                         else "fraction"})
    table = pd.DataFrame(rows, columns=[*keys, "metric", "mean", "std", "n_seeds", "seeds",
                                        "unit"])
    run_rows = [{"path": str(r.path), "status": r.status, "reason": r.reason or "",
                 "seed": r.get("seed"),
                 **{k: display_value(config_value(r, k)) if r.config or r.summary else "-"
                    for k in keys}}
                for r in records]
    runs_frame = pd.DataFrame(run_rows, columns=["path", "status", "reason", "seed", *keys])
    excluded = [r for r in records if r.status != "complete"]
    return Summary(keys, list(metrics), groups, table, runs_frame, excluded, problems)


def _group(records: Sequence[RunRecord], keys: list[str],
           problems: list[str]) -> dict[tuple[str, ...], list[RunRecord]]:
    """The runs by their values of ``keys``. Runs of one group must be the same experiment:
    when some differ in a key that changes results (``benchmark.num_tasks``...), that key is
    added to ``keys`` (and ``problems`` says so), so no run is merged with, or counted as a
    duplicate of, another experiment."""
    while True:
        by_values: dict[tuple[str, ...], list[RunRecord]] = {}
        for record in records:
            values = tuple(display_value(config_value(record, k)) for k in keys)
            by_values.setdefault(values, []).append(record)
        extra: list[str] = []
        for runs in by_values.values():
            extra += [k for k in differing_result_keys(runs) if k not in keys + extra]
        if not extra:
            return by_values
        problems.append(f"grouped by {', '.join(extra)} too: runs of a group differed in "
                        f"{'it' if len(extra) == 1 else 'them'}")
        keys += extra


def _aggregate_group(values: tuple[str, ...], runs: list[RunRecord], keys: Sequence[str],
                     problems: list[str]) -> Group:
    group = Group(values=values, runs=runs)
    shapes = {r.matrix.shape for r in runs if r.matrix is not None}
    if len(shapes) != 1:
        problems.append(f"{group_label(keys, values)}: accuracy matrices of different shapes "
                        f"{sorted(shapes)}; add the differing key to group_by")
        return group
    stack = np.stack([r.matrix for r in runs])  # (seeds, T, T)
    curves = np.stack([np.asarray(average_accuracy_curve(m)) for m in stack])
    group.matrix_mean = stack.mean(axis=0)
    group.curve_mean = curves.mean(axis=0)
    if len(runs) > 1:
        group.matrix_std, group.curve_std = stack.std(axis=0, ddof=1), curves.std(axis=0, ddof=1)
    else:
        group.matrix_std = np.full_like(group.matrix_mean, np.nan)
        group.curve_std = np.full_like(group.curve_mean, np.nan)
    return group
