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
"""

from __future__ import annotations

import enum
import json
import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from cl_runner.options import parse_options
from cl_runner.plotting import figure as _figure
from cl_runner.plotting import save_figure as _save
from cl_runner.results.metrics import average_accuracy_curve
from cl_runner.results.writer import atomic_write_csv, atomic_write_text

SUMMARY = "summary.json"
ACCURACY_MATRIX = "accuracy_matrix.csv"

#: grouping keys that are always used first (unless ``group_by`` is given)
BASE_GROUP_KEYS = ("benchmark", "strategy")
#: override keys never used for grouping: the seed (aggregated over) and keys that do not
#: change the numbers
NOT_GROUPED = ("seed", "progress", "force", "data", "hydra")


@dataclass(frozen=True)
class Metric:
    """How a metric is shown. ``kind``: ``percent`` (stored as a fraction, shown x100),
    ``fraction`` (shown as stored), ``seconds`` or ``floats`` (a count of float32 values)."""

    name: str
    label: str
    latex: str
    kind: str

    def scale(self) -> float:
        return 100.0 if self.kind == "percent" else 1.0

    def digits(self) -> int:
        return {"percent": 2, "fraction": 3, "seconds": 1, "floats": 0}[self.kind]


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("average_accuracy", "avg acc (%)", r"Avg.\ acc.\ (\%)", "percent"),
    Metric("forgetting", "forgetting", "Forgetting", "fraction"),
    Metric("backward_transfer", "BWT", "BWT", "fraction"),
    Metric("learning_accuracy", "learning acc (%)", r"Learn.\ acc.\ (\%)", "percent"),
    Metric("forward_transfer", "FWT", "FWT", "fraction"),
    Metric("wall_time_seconds", "wall time (s)", r"Time (s)", "seconds"),
    # supermask strategies (absent from the others' summary.json, so n/a): average accuracy
    # and forgetting with the task inferred, task-inference accuracy (accuracy_matrix_task_*.csv);
    # every strategy: stored floats per task alone and in all (experiment.parameter_cost_summary)
    Metric("task_inferred_average_accuracy", "avg acc, task inferred (%)",
           r"Avg.\ acc., task inferred (\%)", "percent"),
    Metric("task_inferred_forgetting", "forgetting, task inferred",
           r"Forgetting, task inferred", "fraction"),
    Metric("task_inference_average_accuracy", "task inference acc (%)",
           r"Task inference acc.\ (\%)", "percent"),
    Metric("task_cost_floats", "floats per task", r"Floats per task", "floats"),
    Metric("total_cost_floats", "floats in all", r"Floats in all", "floats"),
)}
DEFAULT_METRICS = ("average_accuracy", "forgetting", "backward_transfer", "learning_accuracy",
                   "wall_time_seconds")


class SummarizeError(Exception):
    """A user error that stops the summary (a path that does not exist, an unknown option)."""


# --------------------------------------------------------------------------- reading runs

@dataclass
class RunRecord:
    """One run folder as read from disk.

    Attributes:
        path: the run folder.
        status: ``complete`` (aggregated), ``failed``, ``incomplete``, ``corrupt`` or
            ``duplicate`` (the last four are listed, never aggregated).
        reason: why the run is not aggregated (None for complete runs).
        summary: the parsed ``summary.json`` (None when missing or unreadable).
        config: the resolved run config (from ``summary.json``, else ``.hydra/config.yaml``).
        overrides: the command-line overrides of the run (``.hydra/overrides.yaml``).
        matrix: the accuracy matrix, shape ``(T, T)``, fractions (complete runs only).
    """

    path: Path
    status: str
    reason: str | None = None
    summary: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    overrides: list[str] = field(default_factory=list)
    matrix: np.ndarray | None = None

    def get(self, name: str) -> Any:
        """A top-level field of the summary, else of the config (``seed``, ``strategy``...)."""
        for source in (self.summary, self.config):
            if isinstance(source, dict) and name in source:
                value = source[name]
                return value.get("name", value) if isinstance(value, dict) else value
        return None


def is_run_folder(path: Path) -> bool:
    """A folder a run wrote into: it holds ``summary.json`` or Hydra's ``.hydra/config.yaml``."""
    return (path / SUMMARY).is_file() or (path / ".hydra" / "config.yaml").is_file()


def find_run_folders(paths: Iterable[str | Path]) -> list[Path]:
    """Every run folder at or under ``paths``, sorted, without repeats.

    Raises:
        SummarizeError: a path does not exist or is not a folder.
    """
    found: set[Path] = set()
    for raw in paths:
        root = Path(raw).expanduser()
        if not root.is_dir():
            raise SummarizeError(f"{root}: no such folder")
        stack = [root.resolve()]
        while stack:
            folder = stack.pop()
            if is_run_folder(folder):
                found.add(folder)
                continue  # a run folder holds no other runs
            try:
                children = sorted(p for p in folder.iterdir()
                                  if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
            stack.extend(children)
    return sorted(found)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None


def _number(value: Any) -> float:
    """``value`` as a float; None (JSON's NaN) -> NaN. Raises ValueError otherwise."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def read_accuracy_matrix(path: Path, num_tasks: int | None = None) -> np.ndarray:
    """Read ``accuracy_matrix.csv`` (index ``after_task_i``, columns ``task_j``, fractions).

    Returns:
        Array of shape ``(rows, T)``; ``rows == T`` for a finished run.

    Raises:
        ValueError: the file is not a numeric table of accuracies in [0, 1], or its number of
            columns differs from ``num_tasks``; the message names the file.
    """
    try:
        frame = pd.read_csv(path, index_col=0)
        values = frame.to_numpy(dtype=np.float64)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"{path}: not a numeric accuracy table ({exc})") from exc
    if values.ndim != 2 or values.shape[1] == 0:
        raise ValueError(f"{path}: empty accuracy table")
    if num_tasks is not None and values.shape[1] != num_tasks:
        raise ValueError(f"{path}: {values.shape[1]} task columns, expected {num_tasks}")
    if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
        raise ValueError(f"{path}: accuracies must be finite fractions in [0, 1]")
    return values


def read_run(path: str | Path) -> RunRecord:
    """Read one run folder; never raises for bad or missing files (they set ``status``).

    The reason of a corrupt run names the file that could not be read and why.
    """
    path = Path(path)
    hydra_config = _read_yaml(path / ".hydra" / "config.yaml")
    overrides = _read_yaml(path / ".hydra" / "overrides.yaml")
    record = RunRecord(path=path, status="incomplete",
                       config=hydra_config if isinstance(hydra_config, dict) else None,
                       overrides=[str(o) for o in overrides] if isinstance(overrides, list) else [])
    summary_path = path / SUMMARY
    if not summary_path.is_file():
        record.reason = f"no {SUMMARY}: the job never started or was stopped before writing it"
        return record
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        record.status, record.reason = "corrupt", f"{summary_path}: unreadable ({exc})"
        return record
    except json.JSONDecodeError as exc:
        record.status, record.reason = "corrupt", f"{summary_path}: malformed JSON ({exc})"
        return record
    if not isinstance(summary, dict):
        record.status, record.reason = "corrupt", f"{summary_path}: not a JSON object"
        return record
    record.summary = summary
    if isinstance(summary.get("config"), dict):
        record.config = summary["config"]
    status = summary.get("status")
    matrix_path = path / ACCURACY_MATRIX
    if status == "failed":
        record.status = "failed"
        record.reason = str(summary.get("error") or "failed (no error message recorded)")
        return record
    if status == "running":
        done = ""
        if matrix_path.is_file():
            try:
                done = f"; {read_accuracy_matrix(matrix_path).shape[0]} of " \
                       f"{summary.get('num_tasks', '?')} tasks in {ACCURACY_MATRIX}"
            except ValueError:
                pass
        record.reason = f"status 'running': interrupted, or still running{done}"
        return record
    if status != "complete":
        record.status, record.reason = "corrupt", f"{summary_path}: unknown status {status!r}"
        return record
    record.status = "corrupt"
    for name in ("average_accuracy", "seed"):
        if name not in summary:
            record.reason = f"{summary_path}: '{name}' missing"
            return record
    for name in METRICS:
        try:
            _number(summary.get(name))
        except ValueError as exc:
            record.reason = f"{summary_path}: '{name}': {exc}"
            return record
    if record.config is None:
        record.reason = f"{summary_path}: no 'config' and no readable .hydra/config.yaml"
        return record
    num_tasks = summary.get("num_tasks")
    try:
        matrix = read_accuracy_matrix(matrix_path, num_tasks if isinstance(num_tasks, int) else None)
    except ValueError as exc:
        record.reason = str(exc)
        return record
    if matrix.shape[0] != matrix.shape[1]:
        record.reason = (f"{matrix_path}: {matrix.shape[0]} rows for {matrix.shape[1]} tasks, "
                         "though summary.json says complete")
        return record
    record.status, record.reason, record.matrix = "complete", None, matrix
    return record


# --------------------------------------------------------------------------- grouping

def override_key(override: str) -> str | None:
    """The config key an override sets (``+a.b=1`` -> ``a.b``), or None for a malformed one."""
    key = override.split("=", 1)[0].lstrip("+~").strip()
    if "@" in key:  # group@package=option: the group
        key = key.split("@", 1)[0]
    return key or None


def config_value(record: RunRecord, key: str) -> Any:
    """The value of a dotted key in the run's config; a config group (``strategy``) gives the
    option's ``name``; None when the run has no such key."""
    node: Any = record.config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return record.get(key) if "." not in key else None
        node = node[part]
    if isinstance(node, dict):
        return node.get("name", json.dumps(node, sort_keys=True))
    return node


def _display(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer():
        return str(value)
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def swept_keys(records: Sequence[RunRecord]) -> list[str]:
    """Keys set on the command line whose value differs between the runs, in order of first
    appearance; never the seed, ``hydra.*`` or keys that do not change results."""
    keys: list[str] = []
    for record in records:
        for override in record.overrides:
            key = override_key(override)
            if key is None or key.split(".")[0] in NOT_GROUPED or key in keys:
                continue
            keys.append(key)
    return [k for k in keys
            if len({_display(config_value(r, k)) for r in records}) > 1]


def default_group_keys(records: Sequence[RunRecord]) -> list[str]:
    """Benchmark, strategy, then every swept key except the seed (see :func:`swept_keys`)."""
    return list(BASE_GROUP_KEYS) + [k for k in swept_keys(records) if k not in BASE_GROUP_KEYS]


def group_label(keys: Sequence[str], values: Sequence[str], skip: Sequence[str] = ()) -> str:
    """``rotated_mnist / naive / optimizer.lr=0.05``: base keys by value, others as key=value."""
    parts = [v if k in BASE_GROUP_KEYS else f"{k}={v}"
             for k, v in zip(keys, values, strict=True) if k not in skip]
    return " / ".join(parts) if parts else "all runs"


def slug(text: str) -> str:
    """A file-name-safe version of a group label."""
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text.replace(" / ", "__")).strip("_") or "all"


# --------------------------------------------------------------------------- aggregation

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
        metrics: names from :data:`METRICS`.

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
    keys = list(group_keys) if group_keys else default_group_keys(complete)
    by_values: dict[tuple[str, ...], list[RunRecord]] = {}
    for record in complete:
        values = tuple(_display(config_value(record, k)) for k in keys)
        by_values.setdefault(values, []).append(record)
    groups: list[Group] = []
    problems: list[str] = []
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
            vals = pd.Series([_number(r.summary.get(name)) for r in group.runs], dtype=float)
            stats = (float(vals.mean()), float(vals.std(ddof=1)), int(vals.notna().sum()))
            group.stats[name] = stats
            rows.append({**dict(zip(keys, group.values, strict=True)), "metric": name,
                         "mean": stats[0], "std": stats[1], "n_seeds": stats[2],
                         "seeds": ";".join(str(s) for s in group.seeds),
                         "unit": METRICS[name].kind if METRICS[name].kind in ("seconds", "floats")
                         else "fraction"})
    table = pd.DataFrame(rows, columns=[*keys, "metric", "mean", "std", "n_seeds", "seeds",
                                        "unit"])
    run_rows = [{"path": str(r.path), "status": r.status, "reason": r.reason or "",
                 "seed": r.get("seed"),
                 **{k: _display(config_value(r, k)) if r.config or r.summary else "-"
                    for k in keys}}
                for r in records]
    runs_frame = pd.DataFrame(run_rows, columns=["path", "status", "reason", "seed", *keys])
    excluded = [r for r in records if r.status != "complete"]
    return Summary(keys, list(metrics), groups, table, runs_frame, excluded, problems)


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


# --------------------------------------------------------------------------- formatting

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
    ``mean ± std`` column per metric, headed by the metric's label."""
    rows = []
    for group in summary.groups:
        row: dict[str, Any] = dict(zip(summary.group_keys, group.values, strict=True))
        row["seeds"] = len(group.runs)
        for name in summary.metrics:
            mean, std, _ = group.stats[name]
            label = METRICS[name].latex if latex else METRICS[name].label
            row[label] = format_cell(mean, std, name, latex=latex)
        rows.append(row)
    return pd.DataFrame(rows)


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
    if summary.excluded:
        lines += ["", f"Runs not included ({len(summary.excluded)}):", ""]
        lines += [f"- `{r.path}`: {r.status}: {r.reason}" for r in summary.excluded]
    return "\n".join(lines) + "\n"


def _tex_escape(text: str) -> str:
    return re.sub(r"([_%&#$])", r"\\\1", str(text))


def to_latex(summary: Summary) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``), one row per group."""
    frame = wide_table(summary, latex=True)
    n_keys = len(summary.group_keys)
    spec = "l" * n_keys + "r" + "c" * len(summary.metrics)
    header = [_tex_escape(k) for k in summary.group_keys] + ["$n$"] + \
             [METRICS[m].latex for m in summary.metrics]
    lines = ["% cl-summarize: mean $\\pm$ sample std (ddof=1) over seeds; n/a: one seed.",
             "% Accuracy in %, forgetting and BWT as fractions. Needs \\usepackage{booktabs}.",
             f"\\begin{{tabular}}{{{spec}}}", "\\toprule", " & ".join(header) + " \\\\",
             "\\midrule"]
    for _, row in frame.iterrows():
        cells = [_tex_escape(v) for v in row.iloc[:n_keys]] + [str(row["seeds"])] + \
                [str(v) for v in row.iloc[n_keys + 1:]]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def rich_tables(summary: Summary) -> list[Table]:
    """The summary table and, when some runs were left out, a table of them with reasons."""
    frame = wide_table(summary)
    n_runs = sum(len(g.runs) for g in summary.groups)
    table = Table(title=f"{n_runs} runs in {len(summary.groups)} groups: mean ± sample std "
                        "(ddof=1) over seeds")
    for i, column in enumerate(frame.columns):
        table.add_column(str(column), no_wrap=True,
                         justify="left" if i < len(summary.group_keys) else "right")
    for _, row in frame.iterrows():
        table.add_row(*[str(v) for v in row])
    tables = [table]
    if summary.excluded:
        left = Table(title=f"{len(summary.excluded)} runs not included", title_style="bold red")
        for column in ("run folder", "status", "reason"):
            left.add_column(column, overflow="fold")
        for r in summary.excluded:
            left.add_row(str(r.path), r.status, r.reason or "")
        tables.append(left)
    return tables


# --------------------------------------------------------------------------- plots

def plot_curves(summary: Summary, folder: Path) -> list[Path]:
    """Per benchmark: average accuracy on the tasks seen so far (%) after each task, one line
    per group (mean over seeds) with a band of ± one sample std. Files
    ``accuracy_curve_<benchmark>.png/.pdf``."""
    written: list[Path] = []
    has_bench = "benchmark" in summary.group_keys
    by_bench: dict[str, list[Group]] = {}
    for g in summary.groups:
        bench = g.values[summary.group_keys.index("benchmark")] if has_bench else "all"
        if g.curve_mean is not None:
            by_bench.setdefault(bench, []).append(g)
    for bench, groups in by_bench.items():
        fig = _figure(6.4, 4.2)
        ax = fig.add_subplot()
        for g in groups:
            x = np.arange(1, len(g.curve_mean) + 1)
            label = group_label(summary.group_keys, g.values, skip=("benchmark",))
            line, = ax.plot(x, 100 * g.curve_mean, marker="o", markersize=3,
                            label=f"{label} (n={len(g.runs)})")
            if g.curve_std is not None and np.all(np.isfinite(g.curve_std)):
                ax.fill_between(x, 100 * (g.curve_mean - g.curve_std),
                                100 * (g.curve_mean + g.curve_std),
                                color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_xlabel("tasks trained")
        ax.set_ylabel("average accuracy on tasks seen (%)")
        ax.set_title(f"{bench}: mean ± sample std over seeds")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        written += _save(fig, folder / f"accuracy_curve_{slug(bench)}")
    return written


def plot_heatmaps(summary: Summary, folder: Path) -> list[Path]:
    """Per group: the mean accuracy matrix (%) as a heatmap, row = after training task i,
    column = evaluated task j, values written in the cells. Files ``heatmap_<group>``."""
    written: list[Path] = []
    for g in summary.groups:
        if g.matrix_mean is None:
            continue
        t = g.matrix_mean.shape[0]
        size = min(3.0 + 0.45 * t, 12.0)
        fig = _figure(size + 1.2, size)
        ax = fig.add_subplot()
        image = ax.imshow(100 * g.matrix_mean, vmin=0, vmax=100, cmap="viridis")
        fig.colorbar(image, ax=ax, label="test accuracy (%)")
        ticks = np.arange(t)
        ax.set_xticks(ticks, [str(j + 1) for j in ticks])
        ax.set_yticks(ticks, [str(i + 1) for i in ticks])
        ax.set_xlabel("evaluated task j")
        ax.set_ylabel("after training task i")
        if t <= 20:
            for i in range(t):
                for j in range(t):
                    v = 100 * g.matrix_mean[i, j]
                    ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7 if t > 10 else 8,
                            color="black" if v > 60 else "white")
        label = group_label(summary.group_keys, g.values)
        ax.set_title(f"{label}: mean accuracy matrix (n={len(g.runs)})", fontsize=9)
        written += _save(fig, folder / f"heatmap_{slug(label)}")
    return written


def plot_final_accuracy(summary: Summary, folder: Path) -> list[Path]:
    """One bar per group: final average accuracy (%), error bar ± one sample std (none for
    one seed). Files ``final_accuracy.png/.pdf``."""
    if not summary.groups:
        return []
    means, stds, labels = [], [], []
    for g in summary.groups:
        vals = pd.Series([_number(r.summary.get("average_accuracy")) for r in g.runs])
        row_mean, row_std = float(vals.mean()), float(vals.std(ddof=1))
        means.append(100 * row_mean)
        stds.append(100 * row_std)  # NaN for one seed: no error bar
        labels.append(group_label(summary.group_keys, g.values).replace(" / ", "\n"))
    fig = _figure(max(4.5, 1.1 * len(labels) + 1.5), 4.2)
    ax = fig.add_subplot()
    x = np.arange(len(labels))
    bars = ax.bar(x, means, yerr=stds, capsize=4, color=[f"C{i % 10}" for i in range(len(x))])
    ax.bar_label(bars, labels=[f"{m:.1f}" + (f" ± {s:.1f}" if math.isfinite(s) else "")
                               for m, s in zip(means, stds, strict=True)],
                 padding=3, fontsize=8)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("final average accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("final average accuracy\n(mean ± sample std over seeds)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, folder / "final_accuracy")


# --------------------------------------------------------------------------- the command

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
    """

    paths: list[str] = field(default_factory=list)
    group_by: list[str] | None = None
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    out: str | None = None
    format: TableFormat = TableFormat.rich
    plots: bool = True


def summarize(paths: Sequence[str | Path], group_by: Sequence[str] | None = None,
              metrics: Sequence[str] = DEFAULT_METRICS, out: str | Path | None = None,
              plots: bool = True) -> Summary:
    """Read every run under ``paths``, aggregate over seeds and write the files and plots.

    Args:
        paths: run folders, sweep folders or any folder above them.
        group_by: grouping keys (default: benchmark, strategy, swept keys except the seed).
        metrics: names from :data:`METRICS`.
        out: output folder (default ``paths[0]/summary`` for one path, else ``outputs/summary``).
        plots: also write the PNG/PDF plots.

    Returns:
        The :class:`Summary`; ``files`` lists what was written.

    Raises:
        SummarizeError: a path that does not exist, no run folder found, an unknown metric.
    """
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
        files += plot_curves(summary, plot_dir)
        files += plot_heatmaps(summary, plot_dir)
        files += plot_final_accuracy(summary, plot_dir)
    summary.files = files
    return summary


USAGE = """usage: cl-summarize PATH [PATH ...] [group_by=[KEY,...]] [metrics=[NAME,...]]
                    [out=DIR] [format=rich|markdown|latex|csv] [plots=true|false]

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
    console, err = Console(), Console(stderr=True)
    if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        console = Console(width=200)
    if not argv or any(a in ("-h", "--help") for a in argv):
        print(USAGE.format(metrics=", ".join(METRICS)))
        return 0 if argv else 2
    try:
        options = parse_args(argv)
        summary = summarize(options.paths, options.group_by, options.metrics, options.out,
                            options.plots)
    except SummarizeError as exc:
        err.print(f"[bold red]cl-summarize:[/] {exc}")
        return 2
    if options.format == TableFormat.rich:
        for table in rich_tables(summary):
            console.print(table)
    else:
        text = {TableFormat.markdown: to_markdown, TableFormat.latex: to_latex,
                TableFormat.csv: lambda s: s.table.to_csv(index=False)}[options.format](summary)
        print(text, end="")
        if options.format != TableFormat.markdown and summary.excluded:
            for table in rich_tables(summary)[1:]:
                err.print(table)
    for problem in summary.problems:
        err.print(f"[yellow]warning:[/] {problem}")
    out_dir = summary.files[0].parent if summary.files else None
    console.print(f"wrote {len(summary.files)} files to {out_dir}")
    if not summary.groups:
        err.print("[bold red]no complete run to summarize[/] (see the runs not included)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
