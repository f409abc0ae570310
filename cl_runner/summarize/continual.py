"""Continual-evaluation curves of a summary (runs with ``eval.every_steps``; their
``continual_eval.csv``): the per-iteration accuracy of previous tasks across task boundaries,
where the stability gap shows (De Lange et al., ICLR 2023, Fig. 1-2).

The x axis is in tasks: a point at step s of task t (of S_t steps, all phases) sits at
``t - 1 + s / S_t``, so strategies with different batch sizes (different steps per task) line
up at the task boundaries (the integers). Runs of a group share their evaluation points (same
config but the seed), so the mean and sample std over seeds are taken point by point.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cl_runner.plotting import COLUMN_WIDTH, figure, fit_legend, legend_below, save_figure, styled
from cl_runner.results import run_folder
from cl_runner.summarize.aggregation import Group, Summary
from cl_runner.summarize.grouping import slug
from cl_runner.summarize.plots import GroupStyles, figure_title, legend_labels, seeds_note

#: the file a run with continual evaluation leaves (the run folder's manifest)
CONTINUAL_EVAL = run_folder.CONTINUAL_EVAL


def one_point_per_step(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without the periodic (``step``) rows that share their task, step and evaluated
    task with a ``task_end`` row. When ``eval.every_steps`` divides a task's steps, the last
    periodic point and the task end fall on the same step; the task end (measured after the
    strategy's ``after_training``, as the accuracy matrix is) is the one kept."""
    keys = ["task", "step", "eval_task"]
    is_end = (frame.point == "task_end").to_numpy()
    shadowed = pd.MultiIndex.from_frame(frame[keys]).isin(
        pd.MultiIndex.from_frame(frame.loc[is_end, keys])) & ~is_end
    return frame[~shadowed]


def task_position(frame: pd.DataFrame) -> pd.Series:
    """The x position (in tasks) of every row of a ``continual_eval.csv`` frame:
    ``task - 1 + step / steps of that task`` (the step of its ``task_end`` point)."""
    ends = frame[frame.point == "task_end"].groupby("task").step.max()
    return frame.task - 1 + frame.step / frame.task.map(ends)


def group_curves(group: Group) -> pd.DataFrame | None:
    """Mean and sample std over the group's seeds of every (point, evaluated task):
    columns ``x, eval_task, mean, std, n`` (fractions), sorted by ``eval_task`` then ``x``;
    None when no run of the group has a ``continual_eval.csv``. Rows of a task that not
    every run reached (an unfinished run) are left out."""
    frames = []
    for run in group.runs:
        path = Path(run.path) / CONTINUAL_EVAL
        if not path.is_file():
            continue
        frame = one_point_per_step(pd.read_csv(path))
        frame["x"] = task_position(frame).round(9)
        frames.append(frame[["x", "eval_task", "accuracy"]])
    if not frames:
        return None
    stacked = pd.concat(frames, keys=range(len(frames)), names=["run", None])
    stats = stacked.groupby(["eval_task", "x"]).accuracy.agg(["mean", "std", "count"])
    stats = stats[stats["count"] == len(frames)].rename(columns={"count": "n"})
    return stats.reset_index().sort_values(["eval_task", "x"])


#: bins of the fraction of a task in the gap profile
PROFILE_BINS = 20


def run_gap_profile(frame: pd.DataFrame) -> pd.Series:
    """One run's stability-gap profile: for every task k >= 2 and earlier task i, the accuracy
    on i during task k minus its accuracy at the end of task k-1 (fractions), averaged over
    i and k per bin of the fraction of task k done (``PROFILE_BINS`` bins; the task-end point
    is the last bin). Index: the bins' centres in [0, 1]."""
    frame = one_point_per_step(frame)
    ends = frame[frame.point == "task_end"].set_index(["task", "eval_task"]).accuracy
    steps = frame[frame.point == "task_end"].groupby("task").step.max()
    later = frame[(frame.task >= 2) & (frame.eval_task < frame.task)].copy()
    start = [ends.get((t - 1, i)) for t, i in zip(later.task, later.eval_task, strict=True)]
    later["drop"] = later.accuracy.to_numpy() - pd.to_numeric(pd.Series(start)).to_numpy()
    fraction = later.step / later.task.map(steps)
    later["bin"] = ((fraction * PROFILE_BINS).clip(upper=PROFILE_BINS - 1e-9)).astype(int)
    per_task = later.groupby(["task", "bin"]).drop.mean()  # mean over the earlier tasks i
    profile = per_task.groupby("bin").mean()  # mean over the tasks k
    profile.index = (profile.index + 0.5) / PROFILE_BINS
    return profile


def group_gap_profile(group: Group) -> pd.DataFrame | None:
    """Mean and sample std over the group's seeds of :func:`run_gap_profile`: columns
    ``x, mean, std, n``; None without continual evaluation."""
    profiles = [run_gap_profile(pd.read_csv(Path(r.path) / CONTINUAL_EVAL))
                for r in group.runs if (Path(r.path) / CONTINUAL_EVAL).is_file()]
    if not profiles:
        return None
    table = pd.concat(profiles, axis=1)
    return pd.DataFrame({"x": table.index, "mean": table.mean(axis=1).to_numpy(),
                         "std": table.std(axis=1, ddof=1).to_numpy(),
                         "n": table.notna().sum(axis=1).to_numpy()})


def spacing_note(groups: list[Group]) -> str:
    """Where the groups' runs were evaluated (their ``eval.*`` config): e.g. "points every 10
    steps + task ends", "every 640 examples", or both forms when runs differ."""
    spacings = set()
    for g in groups:
        for run in g.runs:
            ev = (run.config or {}).get("eval") or {}
            if ev.get("every_examples") is not None:
                spacings.add(f"{ev['every_examples']} examples")
            elif ev.get("every_steps") is not None:
                spacings.add(f"{ev['every_steps']} steps")
    if not spacings:
        return "points at task ends"
    return f"points every {' / '.join(sorted(spacings))} + task ends"


@styled
def gap_profile_figure(summary: Summary, bench: str, groups: list[Group],
                       width: float = COLUMN_WIDTH):
    """The average stability gap, ``width`` inches: for every task k >= 2, the accuracy on
    each earlier task i while k is learned minus i's accuracy at the end of task k-1 (in
    percentage points: negative = forgotten since the switch, its dip the stability gap),
    averaged over i and k per 5% of task k's steps (:func:`run_gap_profile`)."""
    styles = GroupStyles(summary)
    fig = figure(width, 0.62 * width + 0.3)
    ax = fig.add_subplot()
    handles, shown = [], []
    for g in groups:
        profile = group_gap_profile(g)
        if profile is None:
            continue
        colour, linestyle, marker = styles(g)
        handles.append(_mean_band(ax, profile, colour, linestyle, marker=marker, markersize=3))
        shown.append(g)
    ax.axhline(0, color="0.4", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of the new task's steps done")
    ax.set_ylabel("earlier tasks' accuracy minus\nat the task switch (pp)")
    fig.suptitle(figure_title(f"{bench}: stability gap", width, seeds_note(shown)))
    ax.grid(True, axis="y")
    legend_below(fig, handles, legend_labels(summary, shown), width=width)
    return fit_legend(fig)


def _mean_band(ax, frame: pd.DataFrame, colour: str, linestyle: str, **line_kw):
    """Plot ``frame``'s ``mean`` against ``x`` in percent, with a band of ± one ``std`` when
    every point has 2+ seeds (column ``n``); returns the line."""
    line, = ax.plot(frame.x, 100 * frame["mean"], color=colour, linestyle=linestyle, **line_kw)
    if frame.n.min() > 1:
        ax.fill_between(frame.x, 100 * (frame["mean"] - frame["std"]),
                        100 * (frame["mean"] + frame["std"]), color=colour, alpha=0.15,
                        linewidth=0)
    return line


def _plot_task(ax, curves: pd.DataFrame, task: int, colour: str, linestyle: str):
    """Task ``task``'s curve of :func:`group_curves` output ``curves``."""
    return _mean_band(ax, curves[curves.eval_task == task], colour, linestyle, linewidth=1.0)


def _task_lines(ax, num_tasks: int) -> None:
    """Task switches as light vertical lines; integer ticks (every task up to 10 tasks)."""
    for boundary in range(1, num_tasks):
        ax.axvline(boundary, color="0.75", linewidth=0.6, zorder=0)
    step = max(1, int(np.ceil(num_tasks / 10)))
    ax.set_xticks(range(0, num_tasks + 1, step))


@styled
def first_task_figure(summary: Summary, bench: str, curves: list[tuple[Group, pd.DataFrame]],
                      num_tasks: int, width: float = COLUMN_WIDTH):
    """Task 1's accuracy during the whole run, one line per group (:func:`plot_continual`),
    ``width`` inches; the x label says how the points are spaced."""
    styles = GroupStyles(summary)
    fig = figure(width, 0.62 * width + 0.3)
    ax = fig.add_subplot()
    handles = []
    for g, frame in curves:
        colour, linestyle, _ = styles(g)
        handles.append(_plot_task(ax, frame, 1, colour, linestyle))
    groups = [g for g, _ in curves]
    _task_lines(ax, num_tasks)
    ax.set_xlim(0, num_tasks)
    ax.set_xlabel(f"tasks trained\n({spacing_note(groups)})")
    ax.set_ylabel("accuracy on task 1 (%)")
    fig.suptitle(figure_title(f"{bench}: task 1 during training", width, seeds_note(groups)))
    ax.grid(True, axis="y")
    legend_below(fig, handles, legend_labels(summary, groups), width=width)
    return fit_legend(fig)


@styled
def every_task_figure(summary: Summary, bench: str, curves: list[tuple[Group, pd.DataFrame]],
                      num_tasks: int, width: float = COLUMN_WIDTH):
    """One small panel per evaluated task (its accuracy from the task on), ``width`` inches:
    as many columns of panels as fit (about 1.1 in each)."""
    styles = GroupStyles(summary)
    tasks = sorted({int(t) for _, frame in curves for t in frame.eval_task.unique()})
    cols = max(1, min(len(tasks), int(width // 1.1)))
    rows = int(np.ceil(len(tasks) / cols))
    fig = figure(width, 0.95 * rows + 0.9)
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    handles, labels = [], []
    for i, task in enumerate(tasks):
        ax = axes[i // cols][i % cols]
        for g, frame in curves:
            colour, linestyle, _ = styles(g)
            line = _plot_task(ax, frame, task, colour, linestyle)
            if i == 0:
                handles.append(line)
        _task_lines(ax, num_tasks)
        ax.set_title(f"task {task}", fontsize=8, pad=2)
        ax.set_xlim(0, num_tasks)
        ax.set_ylim(0, 100)
    for j in range(len(tasks), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    groups = [g for g, _ in curves]
    labels = legend_labels(summary, groups)
    for j in range(cols):  # the lowest panel of each column names the x axis
        lowest = max(i for i in range(len(tasks)) if i % cols == j)
        axes[lowest // cols][j].set_xlabel("tasks trained")
    fig.supylabel("accuracy (%)")
    fig.suptitle(figure_title(f"{bench}: each task during training", width, seeds_note(groups)))
    legend_below(fig, handles, labels, width=width, title=spacing_note(groups))
    return fit_legend(fig)


def plot_continual(summary: Summary, folder: Path, width: float = COLUMN_WIDTH) -> list[Path]:
    """Per benchmark whose runs have continual evaluation: ``stability_gap_<benchmark>``
    (task 1's accuracy through the run, one line per group, ± one sample std) and
    ``continual_eval_<benchmark>`` (one panel per task) and ``gap_profile_<benchmark>`` (the
    earlier tasks' change since the task switch along a new task, mean over tasks). PNG and
    PDF; none without runs with ``continual_eval.csv``."""
    written: list[Path] = []
    index = summary.group_keys.index("benchmark") if "benchmark" in summary.group_keys else None
    by_bench: dict[str, list[tuple[Group, pd.DataFrame]]] = {}
    for g in summary.groups:
        curves = group_curves(g)
        if curves is not None:
            bench = g.values[index] if index is not None else "all"
            by_bench.setdefault(bench, []).append((g, curves))
    for bench, curves in by_bench.items():
        num_tasks = int(max(frame.x.max() for _, frame in curves).round())
        written += save_figure(first_task_figure(summary, bench, curves, num_tasks, width),
                               folder / f"stability_gap_{slug(bench)}")
        written += save_figure(every_task_figure(summary, bench, curves, num_tasks, width),
                               folder / f"continual_eval_{slug(bench)}")
        written += save_figure(gap_profile_figure(summary, bench, [g for g, _ in curves],
                                                  width),
                               folder / f"gap_profile_{slug(bench)}")
    return written
