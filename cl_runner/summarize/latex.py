"""``summary.tex``: the summary as a LaTeX table a paper can take (pandas' ``Styler.to_latex``).

A ``table`` float with a booktabs ``tabular`` (``\\usepackage{booktabs}``; nothing else):
strategies and benchmarks by their display names (``MC-SGD``, ``Rotated MNIST``:
:func:`cl_runner.results.names.display_name`); a grouping column whose value is the same in
every row (the benchmark of a one-benchmark sweep) is left out and named in the caption; each
metric takes two columns, ``r@{}l``, so the means line up on the decimal point and the
``± std`` follows them, shown only where the group has more than one seed and the value
varies; the best mean of each score column (:attr:`Metric.better`) is bold (ties: all); the
caption states the number of seeds (or a column ``n`` gives each group's when they differ).
"""

from __future__ import annotations

import math
import re

import pandas as pd

from cl_runner.results.names import display_name
from cl_runner.summarize.aggregation import Group, Summary
from cl_runner.summarize.runs import METRICS, stores_per_task

#: grouping keys whose values are registered names, shown by their display names
NAMED_KEYS = ("benchmark", "strategy")


def tex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (``rotated_mnist`` ->
    ``rotated\\_mnist``; ``~``, ``^``, ``\\`` as their text commands)."""
    out = re.sub(r"\\", r"\\textbackslash{}", str(text))
    out = re.sub(r"([_%&#${}])", r"\\\1", out)
    return out.replace("~", r"\textasciitilde{}").replace("^", r"\textasciicircum{}")


def _value_text(key: str, value: str) -> str:
    return tex_escape(display_name(value) if key in NAMED_KEYS else value)


def _cells(group: Group, metric: str, best: set[str]) -> tuple[str, str]:
    """The mean and ``± std`` cells of one metric of one group (math mode; the mean bold
    when its shown text is in ``best``)."""
    m = METRICS[metric]
    mean, std, n = group.stats[metric]
    if metric == "task_cost_floats" and all(stores_per_task(r) is False for r in group.runs):
        return "none", ""
    if not math.isfinite(mean):
        return "n/a", ""
    shown = f"{m.scale() * mean:.{m.digits()}f}"
    cell = f"$\\mathbf{{{shown}}}$" if shown in best else f"${shown}$"
    if n > 1 and math.isfinite(std) and std > 1e-9 * max(1.0, abs(mean)):  # not rounding noise
        return cell, f"${{}}\\pm{{}}{m.scale() * std:.{m.digits()}f}$"
    return cell, ""


def _best(summary: Summary, metric: str) -> set[str]:
    """The shown mean(s) of the best group(s) of ``metric`` (empty: not a score, or fewer
    than two groups with a value)."""
    m = METRICS[metric]
    means = [g.stats[metric][0] for g in summary.groups if math.isfinite(g.stats[metric][0])]
    if m.better is None or len(means) < 2:
        return set()
    top = max(means) if m.better == "higher" else min(means)
    shown = f"{m.scale() * top:.{m.digits()}f}"
    return {shown} if len({f"{m.scale() * v:.{m.digits()}f}" for v in means}) > 1 else set()


def to_latex(summary: Summary, label: str = "tab:cl-summary") -> str:
    """The summary as a LaTeX ``table`` (see the module docstring); ``label`` its ``\\label``.

    Returns:
        The LaTeX source, ending in a newline; the caption lists the constant grouping values,
        the seeds, the units and what bold means.
    """
    keys = list(summary.group_keys)
    rows = [dict(zip(keys, g.values, strict=True)) for g in summary.groups]
    constant = [k for k in keys if len(rows) > 1 and len({r[k] for r in rows}) == 1]
    shown_keys = [k for k in keys if k not in constant]
    seeds = sorted({len(g.runs) for g in summary.groups})
    best = {name: _best(summary, name) for name in summary.metrics}
    columns: list[tuple[str, str]] = []
    for key in shown_keys:
        columns.append((tex_escape(key.capitalize() if key in NAMED_KEYS else key), ""))
    if len(seeds) > 1:
        columns.append(("$n$", ""))
    for name in summary.metrics:
        columns += [(METRICS[name].latex, "mean"), (METRICS[name].latex, "std")]
    body = []
    for group, row in zip(summary.groups, rows, strict=True):
        line = [_value_text(k, row[k]) for k in shown_keys]
        if len(seeds) > 1:
            line.append(str(len(group.runs)))
        for name in summary.metrics:
            line += list(_cells(group, name, best[name]))
        body.append(line)
    frame = pd.DataFrame(body, columns=pd.MultiIndex.from_tuples(columns))
    spec = "l" * len(shown_keys) + ("r" if len(seeds) > 1 else "") + "r@{}l" * len(summary.metrics)
    styler = frame.style.hide(axis="index").hide(axis="columns", level=1)
    return styler.to_latex(hrules=True, column_format=spec, multicol_align="c",
                           position_float="centering", label=label,
                           caption=caption(summary, constant, seeds, any(best.values())))


def caption(summary: Summary, constant: list[str], seeds: list[int], bold: bool) -> str:
    """The table's caption: the constant grouping values, the seeds, the units, bold."""
    parts = []
    if constant:
        first = summary.groups[0].values
        parts.append(", ".join(
            _value_text(k, first[summary.group_keys.index(k)]) if k in NAMED_KEYS
            else f"{tex_escape(k)}={tex_escape(first[summary.group_keys.index(k)])}"
            for k in constant) + ".")
    if seeds == [1]:
        parts.append("One seed per row.")
    elif len(seeds) == 1:
        parts.append(f"Mean $\\pm$ sample std (ddof=1) over {seeds[0]} seeds; no $\\pm$: "
                     "the same value for every seed.")
    else:
        parts.append("Mean $\\pm$ sample std (ddof=1) over the $n$ seeds of each row; no "
                     "$\\pm$: one seed, or the same value for every seed.")
    units = []
    if any(METRICS[m].kind == "percent" for m in summary.metrics):
        units.append("accuracy in \\%")
    if any(METRICS[m].kind == "fraction" for m in summary.metrics):
        units.append("forgetting and BWT as fractions")
    if any(METRICS[m].kind == "seconds" for m in summary.metrics):
        units.append("time in seconds")
    if units:
        parts.append(units[0][0].upper() + ", ".join(units)[1:] + ".")
    if bold:
        parts.append("Bold: the best mean of each column.")
    return " ".join(parts)
