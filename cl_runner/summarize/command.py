"""The ``cl-summarize`` command: options, :func:`summarize` (read, aggregate, write) and
:func:`main`."""

from __future__ import annotations

import enum
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.markup import escape

from cl_runner.console import console as make_console
from cl_runner.options import parse_options
from cl_runner.plotting import COLUMN_WIDTH
from cl_runner.results.writer import atomic_write_csv, atomic_write_text
from cl_runner.summarize.aggregation import Summary, aggregate
from cl_runner.summarize.confusion import plot_confusion
from cl_runner.summarize.continual import plot_continual
from cl_runner.summarize.formatting import rich_tables, to_markdown
from cl_runner.summarize.grouping import group_label, slug
from cl_runner.summarize.latex import to_latex
from cl_runner.summarize.plots import plot_curves, plot_final_accuracy, plot_heatmaps
from cl_runner.summarize.runs import (
    DEFAULT_METRICS,
    METRICS,
    SUMMARY,
    SummarizeError,
    find_run_folders,
    read_run,
)


class TableFormat(str, enum.Enum):
    """What ``cl-summarize`` prints (every file is written whatever the choice)."""

    rich = "rich"
    markdown = "markdown"
    latex = "latex"
    csv = "csv"


@dataclass
class SummarizeOptions:
    """``cl-summarize`` options (``key=value`` on the command line).

    Attributes:
        paths: run or sweep folders (also given as bare arguments).
        group_by: grouping keys (dotted config keys; ``strategy`` means the strategy's name);
            null = benchmark, strategy and every swept key except the seed.
        metrics: metrics to aggregate (see :data:`METRICS`).
        out: output folder; null = ``PATH/summary`` for one path, else ``outputs/summary``.
        format: the table printed: rich, markdown, latex or csv.
        plots: write the plots.
        figure_width: the plots' width in inches (default 3.3: one column of a two-column
            paper, fonts at 8-9 pt when placed at 100%; e.g. 7 for both columns).
    """

    paths: list[str] = field(default_factory=list)
    group_by: list[str] | None = None
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    out: str | None = None
    format: TableFormat = TableFormat.rich
    plots: bool = True
    figure_width: float = COLUMN_WIDTH


def summarize(paths: Sequence[str | Path], group_by: Sequence[str] | None = None,
              metrics: Sequence[str] = DEFAULT_METRICS, out: str | Path | None = None,
              plots: bool = True, figure_width: float = COLUMN_WIDTH) -> Summary:
    """Read every run under ``paths``, aggregate over seeds and write the files and plots.

    Args:
        paths: run folders, sweep folders or any folder above them.
        group_by: grouping keys (default: benchmark, strategy, swept keys except the seed).
        metrics: names from :data:`METRICS`.
        out: output folder (default ``paths[0]/summary`` for one path, else ``outputs/summary``).
        plots: also write the PNG/PDF plots.
        figure_width: the plots' width in inches.

    Returns:
        The :class:`Summary`; ``files`` lists what was written.

    Raises:
        SummarizeError: a path that does not exist, no run folder found, an unknown metric,
            a ``figure_width`` outside 1.5-20 inches.
    """
    if not 1.5 <= figure_width <= 20:
        raise SummarizeError(f"figure_width={figure_width}: give a width in inches between "
                             f"1.5 and 20 (3.3 = one column of a two-column paper)")
    if not paths:
        raise SummarizeError("no path given: cl-summarize PATH [PATH ...]")
    folders = find_run_folders(paths)
    if not folders:
        raise SummarizeError(f"no run folder (a folder with {SUMMARY} or .hydra/) under "
                             f"{', '.join(map(str, paths))}")
    records = [read_run(f) for f in folders]
    summary = aggregate(records, group_by, metrics)
    out_dir = Path(out) if out else (Path(paths[0]) / "summary" if len(paths) == 1
                                     else Path("outputs") / "summary")
    files = [
        atomic_write_csv(out_dir / "summary.csv", summary.table),
        atomic_write_csv(out_dir / "runs.csv", summary.runs),
        atomic_write_text(out_dir / "summary.md", to_markdown(summary)),
        atomic_write_text(out_dir / "summary.tex", to_latex(summary)),
    ]
    for g in summary.groups:
        if g.matrix_mean is None:
            continue
        t = g.matrix_mean.shape[0]
        index = pd.Index([f"after_task_{i}" for i in range(1, t + 1)], name="train_task")
        columns = [f"task_{j}" for j in range(1, t + 1)]
        name = slug(group_label(summary.group_keys, g.values))
        for kind, arr in (("mean", g.matrix_mean), ("std", g.matrix_std)):
            files.append(atomic_write_csv(out_dir / "matrices" / f"{name}_{kind}.csv",
                                          pd.DataFrame(arr, index=index, columns=columns),
                                          index=True))
    if plots and summary.groups:
        plot_dir = out_dir / "plots"
        files += plot_curves(summary, plot_dir, figure_width)
        files += plot_heatmaps(summary, plot_dir, figure_width)
        files += plot_final_accuracy(summary, plot_dir, figure_width)
        files += plot_continual(summary, plot_dir, figure_width)
        files += plot_confusion(summary, plot_dir, figure_width)
    summary.files = files
    return summary


USAGE = """usage: cl-summarize PATH [PATH ...] [group_by=[KEY,...]] [metrics=[NAME,...]]
                    [out=DIR] [format=rich|markdown|latex|csv] [plots=true|false]
                    [figure_width=3.3]

Summarize run and sweep folders written by cl-run: mean ± sample std (ddof=1) over seeds per
benchmark, strategy and swept key; writes summary.csv/.md/.tex, runs.csv, matrices/, plots/.
metrics: {metrics}
"""


def parse_args(argv: Sequence[str]) -> SummarizeOptions:
    """Split ``argv`` into paths and ``key=value`` options and validate the options.

    Raises:
        SummarizeError: an unknown option or a value of the wrong type (the message names it).
    """
    return parse_options(argv, SummarizeOptions, SummarizeError)


def main(argv: Sequence[str] | None = None) -> int:
    """``cl-summarize``: print the table and write the files; returns the exit status
    (0 done, possibly with runs left out and listed; 1 no complete run; 2 a user error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # off a terminal: tables up to 200 columns (metric columns stacked to fit), text (paths)
    # never wrapped, no colour codes
    console, err = make_console(), make_console(stderr=True)
    if not argv or any(a in ("-h", "--help") for a in argv):
        print(USAGE.format(metrics=", ".join(METRICS)))
        return 0 if argv else 2
    try:
        options = parse_args(argv)
        summary = summarize(options.paths, options.group_by, options.metrics, options.out,
                            options.plots, options.figure_width)
    except SummarizeError as exc:
        err.print(f"[bold red]cl-summarize:[/] {escape(str(exc))}")
        return 2
    if options.format == TableFormat.rich:  # every number whole: columns stacked to fit
        for table in rich_tables(summary, width=console.width):
            console.print(table)
    else:
        text = {TableFormat.markdown: to_markdown, TableFormat.latex: to_latex,
                TableFormat.csv: lambda s: s.table.to_csv(index=False)}[options.format](summary)
        print(text, end="")
        if options.format != TableFormat.markdown and summary.excluded:
            err.print(rich_tables(summary)[-1])  # the runs left out
    for problem in summary.problems:
        err.print(f"[yellow]warning:[/] {escape(problem)}")
    out_dir = summary.files[0].parent if summary.files else None
    console.print(f"wrote {len(summary.files)} files to {escape(str(out_dir))}")
    if not summary.groups:
        err.print("[bold red]no complete run to summarize[/] (see the runs not included)")
        return 1
    return 0
