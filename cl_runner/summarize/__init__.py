"""``cl-summarize``: many run folders -> tables (terminal, CSV, Markdown, LaTeX) and plots.

    cl-summarize outputs/multirun/2026-11-23/10-00-00
    cl-summarize outputs/multirun/A outputs/multirun/B group_by=[benchmark,strategy,optimizer.lr]
    cl-summarize PATH metrics=[average_accuracy,forgetting] out=paper/ format=latex plots=false

Arguments are paths, and options in the ``key=value`` syntax of ``cl-run`` (there is no
argparse in the project; options are validated against :class:`SummarizeOptions`).

What it does:

1. Finds every run folder under the paths: a folder holding ``summary.json`` or Hydra's
   ``.hydra/`` (single runs and sweep sub-folders alike).
2. Reads each run. Complete runs (``status: complete``, readable ``accuracy_matrix.csv``)
   are aggregated; failed, interrupted and unreadable ones are listed with the reason and
   never averaged in. A second complete run of the same group and seed (the same sweep
   summarized twice) is listed as a duplicate and not counted twice.
3. Groups runs by benchmark, strategy and every key swept on the command line (a key in
   ``.hydra/overrides.yaml`` whose value differs between runs), except the seed.
4. Per group and metric: mean, sample standard deviation over seeds (``ddof=1``; undefined,
   shown ``n/a``, for one seed) and the number of seeds.

Files written to the output folder (default ``PATH/summary`` for one path, else
``outputs/summary``): ``summary.csv`` (tidy, one row per group and metric; accuracies as
fractions, wall time in seconds), ``summary.md`` and ``summary.tex`` (accuracy in %,
forgetting and backward transfer as fractions, as in the MC-SGD paper), ``runs.csv`` (every
run folder found, its status and reason), ``matrices/<group>_mean.csv`` and ``_std.csv``
(the aggregated accuracy matrix, fractions), and ``plots/`` (PNG and PDF):
``accuracy_curve_<benchmark>``, ``heatmap_<group>`` and ``final_accuracy``.

The package follows those steps: :mod:`.runs` (reading run folders), :mod:`.grouping`,
:mod:`.aggregation`, :mod:`.formatting` (the tables), :mod:`.plots`, and :mod:`.command` (the
options, :func:`summarize` and :func:`main`, the ``cl-summarize`` entry point).
"""

from __future__ import annotations

from cl_runner.summarize.aggregation import Group, Summary, aggregate
from cl_runner.summarize.command import (
    USAGE,
    SummarizeOptions,
    TableFormat,
    main,
    parse_args,
    summarize,
)
from cl_runner.summarize.formatting import (
    format_cell,
    rich_tables,
    to_markdown,
    wide_table,
)
from cl_runner.summarize.grouping import (
    BASE_GROUP_KEYS,
    NOT_GROUPED,
    config_value,
    default_group_keys,
    group_label,
    override_key,
    slug,
    swept_keys,
)
from cl_runner.summarize.latex import to_latex
from cl_runner.summarize.plots import plot_curves, plot_final_accuracy, plot_heatmaps
from cl_runner.summarize.runs import (
    ACCURACY_MATRIX,
    DEFAULT_METRICS,
    METRICS,
    SUMMARY,
    Metric,
    RunRecord,
    SummarizeError,
    find_run_folders,
    is_run_folder,
    read_accuracy_matrix,
    read_run,
)

__all__ = [
    "ACCURACY_MATRIX", "BASE_GROUP_KEYS", "DEFAULT_METRICS", "METRICS", "NOT_GROUPED", "SUMMARY",
    "USAGE", "Group", "Metric", "RunRecord", "SummarizeError", "SummarizeOptions", "Summary",
    "TableFormat", "aggregate", "config_value", "default_group_keys", "find_run_folders",
    "format_cell", "group_label", "is_run_folder", "main", "override_key", "parse_args",
    "plot_curves", "plot_final_accuracy", "plot_heatmaps", "read_accuracy_matrix", "read_run",
    "rich_tables", "slug", "summarize", "swept_keys", "to_latex", "to_markdown", "wide_table",
]
