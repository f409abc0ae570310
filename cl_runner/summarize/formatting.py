"""Formatting a summary: ``mean ± std`` cells, Markdown and rich tables (LaTeX: ``latex.py``)."""

from __future__ import annotations

import io
import math
from typing import Any

import pandas as pd
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cl_runner.summarize.aggregation import Summary
from cl_runner.summarize.grouping import group_label
from cl_runner.summarize.runs import METRICS, stores_per_task


def format_cell(mean: float, std: float, metric: str, latex: bool = False) -> str:
    """``mean ± std`` in the metric's unit (accuracy in %, forgetting as a fraction, time in
    s); an undefined std (one seed) is ``n/a``; an undefined mean is ``n/a`` alone."""
    m = METRICS[metric]
    if mean is None or not math.isfinite(mean):
        return "n/a"
    mean_s = f"{m.scale() * mean:.{m.digits()}f}"
    if std is None or not math.isfinite(std):
        return f"${mean_s}$ $\\pm$ n/a" if latex else f"{mean_s} ± n/a"
    std_s = f"{m.scale() * std:.{m.digits()}f}"
    return f"${mean_s} \\pm {std_s}$" if latex else f"{mean_s} ± {std_s}"


def wide_table(summary: Summary, latex: bool = False) -> pd.DataFrame:
    """One row per group: the grouping keys, ``seeds`` (their number) and one formatted
    ``mean ± std`` column per metric, headed by the metric's label. ``task_cost_floats`` of
    a group whose strategy stores nothing per task reads ``none`` (not a count of 0)."""
    rows = []
    for group in summary.groups:
        row: dict[str, Any] = dict(zip(summary.group_keys, group.values, strict=True))
        row["seeds"] = len(group.runs)
        for name in summary.metrics:
            mean, std, _ = group.stats[name]
            label = METRICS[name].latex if latex else METRICS[name].label
            if name == "task_cost_floats" and all(stores_per_task(r) is False
                                                  for r in group.runs):
                row[label] = "none"
            else:
                row[label] = format_cell(mean, std, name, latex=latex)
        rows.append(row)
    return pd.DataFrame(rows)


#: the order of the statuses in :func:`excluded_counts`
STATUS_ORDER = ("interrupted", "running", "incomplete", "failed", "corrupt", "duplicate")


def excluded_counts(summary: Summary) -> str:
    """The runs left out, counted by status: ``2 interrupted, 1 failed``."""
    counts: dict[str, int] = {}
    for record in summary.excluded:
        counts[record.status] = counts.get(record.status, 0) + 1
    order = sorted(counts, key=lambda s: (STATUS_ORDER.index(s) if s in STATUS_ORDER
                                          else len(STATUS_ORDER), s))
    return ", ".join(f"{counts[s]} {s}" for s in order)


def to_markdown(summary: Summary) -> str:
    """A GitHub-flavoured Markdown table, one row per group, then the runs left out."""
    frame = wide_table(summary)
    lines = ["| " + " | ".join(frame.columns) + " |",
             "|" + "|".join("---" if i < len(summary.group_keys) else "---:"
                            for i in range(len(frame.columns))) + "|"]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    lines.append("")
    lines.append("Mean ± sample standard deviation (ddof=1) over seeds; n/a: one seed. "
                 "Accuracy in %, forgetting and backward transfer as fractions, time in seconds.")
    if any(METRICS[m].kind == "floats" for m in summary.metrics):
        lines.append("Floats stored: float32 equivalents (bytes as stored / 4) of what the "
                     "strategy keeps (model, memory, state); none: nothing stored per task; "
                     "each run's summary.json parameter_cost.definition says what is counted.")
    if summary.excluded:
        lines += ["", f"Runs not included ({len(summary.excluded)}: {excluded_counts(summary)}):",
                  ""]
        lines += [f"- `{r.path}`: {r.status}: {r.reason}" for r in summary.excluded]
    return "\n".join(lines) + "\n"


def _table(title: str | None, frame: pd.DataFrame, n_keys: int) -> Table:
    table = Table(title=title)
    for i, column in enumerate(frame.columns):
        table.add_column(escape(str(column)), no_wrap=True,
                         justify="left" if i < n_keys else "right")
    for _, row in frame.iterrows():
        table.add_row(*[escape(str(v)) for v in row])
    return table


def rendered_width(renderable: Any) -> int:
    """The widest line of ``renderable`` laid out without a width limit (columns)."""
    probe = Console(width=100_000, file=io.StringIO(), color_system=None)
    with probe.capture() as capture:
        probe.print(renderable)
    return max((cell_len(line) for line in capture.get().splitlines()), default=0)


def _long_table(title: str, frame: pd.DataFrame, keys: list[str]) -> Table:
    """One row per group (its label and number of seeds, folded when long) and one per
    metric below it."""
    table = Table(title=title, show_header=False)
    table.add_column("group / metric", overflow="fold")
    table.add_column("value", no_wrap=True, justify="right")
    n_keys = len(keys) + 1
    for _, row in frame.iterrows():
        n = row['seeds']
        label = f"{group_label(keys, [str(v) for v in row.iloc[:len(keys)]])} ({n} seed{'s' * (n != 1)})"
        table.add_row(escape(label), "", style="bold")
        for column in frame.columns[n_keys:]:
            table.add_row(escape(f"  {column}"), escape(str(row[column])))
    return table


def summary_tables(summary: Summary, width: int | None = None) -> list[Table]:
    """The summary as rich tables whose every cell is whole within ``width`` columns (None:
    one table, however wide). The metric columns are stacked: as many per table as fit
    beside the grouping columns (repeated in each table); when the grouping columns alone
    leave no room for one metric, a long table (a row per group, then a row per metric)."""
    frame = wide_table(summary)
    n_keys = len(summary.group_keys) + 1  # the grouping keys and the number of seeds
    n_runs = sum(len(g.runs) for g in summary.groups)
    title = f"{n_runs} runs in {len(summary.groups)} groups: mean ± sample std (ddof=1) over seeds"
    whole = _table(title, frame, n_keys)
    if width is None or rendered_width(whole) <= width:
        return [whole]
    keys, metrics = list(frame.columns[:n_keys]), list(frame.columns[n_keys:])
    chunks: list[list[str]] = []
    for column in metrics:
        if chunks and rendered_width(_table(None, frame[keys + chunks[-1] + [column]],
                                            n_keys)) <= width:
            chunks[-1].append(column)
        elif rendered_width(_table(None, frame[keys + [column]], n_keys)) <= width:
            chunks.append([column])
        else:
            return [_long_table(title, frame, summary.group_keys)]
    return [_table(title if i == 0 else f"(continued, {i + 1}/{len(chunks)})",
                   frame[keys + chunk], n_keys) for i, chunk in enumerate(chunks)]


def rich_tables(summary: Summary, width: int | None = None) -> list[Table]:
    """The summary's tables (:func:`summary_tables`, every cell whole within ``width``
    columns) and, when some runs were left out, a table of them with reasons."""
    tables = summary_tables(summary, width)
    if summary.excluded:
        left = Table(title=f"{len(summary.excluded)} runs not included: "
                           f"{excluded_counts(summary)}", title_style="bold red")
        for column in ("run folder", "status", "reason"):
            left.add_column(column, overflow="fold")
        for r in summary.excluded:
            left.add_row(escape(str(r.path)), r.status, escape(r.reason or ""))
        tables.append(left)
    return tables
