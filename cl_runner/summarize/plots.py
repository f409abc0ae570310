"""Plots of a summary (PNG and PDF): accuracy curves, mean accuracy matrices, final accuracy.

Every figure follows :mod:`cl_runner.plotting` (docs/plots.md): ``width`` inches wide
(default :data:`~cl_runner.plotting.COLUMN_WIDTH`, one column of a paper), legends below the
axes and never taller than them, long group labels wrapped, each strategy's own colour and
marker in every figure of every summary (:func:`~cl_runner.plotting.strategy_style`; line
style tells apart groups of one strategy), a band or error bar only where there are two
seeds or more, and "mean ± std over n seeds" said only where n > 1.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cl_runner.plotting import (
    COLUMN_WIDTH,
    figure,
    fit_legend,
    legend_below,
    save_figure,
    strategy_style,
    styled,
    title_width,
    wrap_label,
)
from cl_runner.summarize.aggregation import Group, Summary
from cl_runner.summarize.grouping import BASE_GROUP_KEYS, group_label, slug
from cl_runner.summarize.runs import metric_value

LINESTYLES = ("-", "--", ":", "-.")


def short_label(keys: list[str], values: tuple[str, ...], skip: tuple[str, ...] = ()) -> str:
    """A group's label for a plot: :func:`group_label` with each swept key shortened to its
    last component (``optimizer.lr=0.05`` -> ``lr=0.05``) unless two keys would then read
    the same. A swept key whose value is ``-`` (null, or a key the group's strategy does not
    have, e.g. ``continual_start`` of naive) is left out."""
    kept = [(k, v) for k, v in zip(keys, values, strict=True)
            if k not in skip and not (v == "-" and k not in BASE_GROUP_KEYS)]
    lasts = [k.rsplit(".", 1)[-1] for k, _ in kept]
    parts = [v if k in BASE_GROUP_KEYS
             else f"{last if lasts.count(last) == 1 else k}={v}"
             for (k, v), last in zip(kept, lasts, strict=True)]
    return " / ".join(parts) if parts else "all runs"


def group_strategy(summary: Summary, group: Group) -> str | None:
    """The strategy of ``group``: its ``strategy`` grouping value, else the one strategy of its
    runs (None when they have several or none)."""
    if "strategy" in summary.group_keys:
        return group.values[summary.group_keys.index("strategy")]
    names = {r.get("strategy") for r in group.runs}
    return names.pop() if len(names) == 1 else None


class GroupStyles:
    """Colour, line style and marker of each group of a summary: the colour and marker of
    its strategy (:func:`~cl_runner.plotting.strategy_style`: the same in every summary,
    whatever else is plotted), then one line style per group of that strategy (in summary
    order: e.g. two learning rates of one strategy)."""

    def __init__(self, summary: Summary) -> None:
        keys = summary.group_keys
        self._style: dict[tuple[str, ...], tuple[str, str, str]] = {}
        variants: dict[object, list[tuple[str, ...]]] = {}
        for g in summary.groups:
            name = group_strategy(summary, g)
            rest = tuple(v for k, v in zip(keys, g.values, strict=True)
                         if k not in ("benchmark", "strategy"))
            seen = variants.setdefault(name, [])
            if rest not in seen:
                seen.append(rest)
            colour, marker = strategy_style(name)
            self._style[g.values] = (colour, LINESTYLES[seen.index(rest) % len(LINESTYLES)],
                                     marker)

    def __call__(self, group: Group) -> tuple[str, str, str]:
        """``(colour, linestyle, marker)`` of ``group``."""
        return self._style[group.values]


def seeds_note(groups: list[Group]) -> str:
    """What a figure's numbers are: "mean ± std over n seeds" only when every group has
    n > 1 seeds, "n = 1-3 seeds per group" when the counts differ, "one seed" otherwise."""
    counts = sorted({len(g.runs) for g in groups})
    if counts == [1]:
        return "one seed"
    if counts[0] > 1:
        n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        return f"mean ± std over {n} seeds"
    return f"mean over {counts[0]}-{counts[-1]} seeds (± std where n > 1)"


def legend_labels(summary: Summary, groups: list[Group], seeds: bool = True) -> list[str]:
    """The groups' legend entries: :func:`short_label` without the benchmark, and ``(n=k)``
    when the groups' numbers of seeds differ."""
    show = seeds and len({len(g.runs) for g in groups}) > 1
    return [short_label(summary.group_keys, g.values, skip=("benchmark",))
            + (f" (n={len(g.runs)})" if show else "") for g in groups]


def figure_title(text: str, width: float, note: str | None = None) -> str:
    """``text`` wrapped to title lines of ``width`` inches (9 pt), then ``note`` (what the
    numbers are: :func:`seeds_note`) after a comma, or on a line of its own when it does not
    fit."""
    chars = title_width(width)
    title = wrap_label(text, chars, max_lines=2)
    if note is None:
        return title
    last = title.rsplit("\n", 1)[-1]
    return f"{title}, {note}" if len(last) + 2 + len(note) <= chars else f"{title}\n{note}"


@styled
def curves_figure(summary: Summary, bench: str, groups: list[Group],
                  width: float = COLUMN_WIDTH):
    """The figure of :func:`plot_curves` for one benchmark's ``groups``, ``width`` inches."""
    styles = GroupStyles(summary)
    fig = figure(width, 0.62 * width + 0.3)
    ax = fig.add_subplot()
    handles = []
    for g in groups:
        colour, linestyle, marker = styles(g)
        x = np.arange(1, len(g.curve_mean) + 1)
        line, = ax.plot(x, 100 * g.curve_mean, color=colour, linestyle=linestyle, marker=marker,
                        markersize=3.5, linewidth=1.2)
        if len(g.runs) > 1 and g.curve_std is not None and np.all(np.isfinite(g.curve_std)):
            ax.fill_between(x, 100 * (g.curve_mean - g.curve_std),
                            100 * (g.curve_mean + g.curve_std),
                            color=colour, alpha=0.15, linewidth=0)
        handles.append(line)
    ax.set_xlabel("tasks trained")
    ax.set_ylabel("average accuracy\non tasks seen (%)")
    fig.suptitle(figure_title(f"{bench}: average accuracy", width, seeds_note(groups)))
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(True)
    legend_below(fig, handles, legend_labels(summary, groups), width=width)
    return fit_legend(fig)


def plot_curves(summary: Summary, folder: Path, width: float = COLUMN_WIDTH) -> list[Path]:
    """Per benchmark: average accuracy on the tasks seen so far (%) after each task, one line
    per group (mean over seeds) with a band of ± one sample std (groups of 2+ seeds).
    Files ``accuracy_curve_<benchmark>.png/.pdf``."""
    written: list[Path] = []
    has_bench = "benchmark" in summary.group_keys
    by_bench: dict[str, list[Group]] = {}
    for g in summary.groups:
        bench = g.values[summary.group_keys.index("benchmark")] if has_bench else "all"
        if g.curve_mean is not None:
            by_bench.setdefault(bench, []).append(g)
    for bench, groups in by_bench.items():
        written += save_figure(curves_figure(summary, bench, groups, width),
                               folder / f"accuracy_curve_{slug(bench)}")
    return written


@styled
def heatmap_figure(summary: Summary, g: Group, width: float = COLUMN_WIDTH):
    """The figure of :func:`plot_heatmaps` for one group, ``width`` inches: the numbers (%)
    in the cells while a cell is at least 0.18 in wide (up to about 14 tasks at column width)."""
    t = g.matrix_mean.shape[0]
    fig = figure(width, 0.88 * width + 0.35)
    ax = fig.add_subplot()
    image = ax.imshow(100 * g.matrix_mean, vmin=0, vmax=100, cmap="viridis")
    fig.colorbar(image, ax=ax, label="test accuracy (%)", shrink=0.9)
    ticks = np.arange(t)
    step = max(1, math.ceil(t / 10))  # at most 10 tick labels per axis
    ax.set_xticks(ticks[::step], [str(j + 1) for j in ticks[::step]])
    ax.set_yticks(ticks[::step], [str(i + 1) for i in ticks[::step]])
    ax.set_xlabel("evaluated task j")
    ax.set_ylabel("after training task i")
    cell = 0.72 * width / t  # inches per cell (the colour bar takes the rest)
    if cell >= 0.18:
        size = 8 if cell >= 0.3 else 7 if cell >= 0.24 else 6
        for i in range(t):
            for j in range(t):
                v = 100 * g.matrix_mean[i, j]
                if math.isfinite(v):
                    ax.text(j, i, f"{v:.0f}", ha="center", va="center",
                            fontsize=size, color="black" if v > 60 else "white")
    seeds = "one seed" if len(g.runs) == 1 else f"mean over {len(g.runs)} seeds"
    blank = ", blank: not evaluated" if np.isnan(g.matrix_mean).any() else ""
    fig.suptitle(figure_title(short_label(summary.group_keys, g.values), width)
                 + f"\naccuracy matrix (%), {seeds}{blank}")
    return fig


def plot_heatmaps(summary: Summary, folder: Path, width: float = COLUMN_WIDTH) -> list[Path]:
    """Per group: the mean accuracy matrix (%) as a heatmap, row = after training task i,
    column = evaluated task j, values written in the cells (up to 20 tasks). Files
    ``heatmap_<group>``."""
    written: list[Path] = []
    for g in summary.groups:
        if g.matrix_mean is not None:
            written += save_figure(heatmap_figure(summary, g, width),
                                   folder / f"heatmap_{slug(group_label(summary.group_keys, g.values))}")
    return written


@styled
def final_accuracy_figure(summary: Summary, width: float = COLUMN_WIDTH):
    """The figure of :func:`plot_final_accuracy`, ``width`` inches: horizontal bars (labels
    read horizontally, however many groups), one panel per benchmark."""
    styles = GroupStyles(summary)
    has_bench = "benchmark" in summary.group_keys
    panels: dict[str, list[Group]] = {}
    for g in summary.groups:
        bench = g.values[summary.group_keys.index("benchmark")] if has_bench else ""
        panels.setdefault(bench, []).append(g)
    chars = max(12, min(28, int(0.36 * width / 0.062)))  # the labels take about a third
    labels = dict(zip((g.values for g in summary.groups),
                      (wrap_label(label, chars) for label in legend_labels(summary,
                                                                           summary.groups)),
                      strict=True))
    lines = max(label.count("\n") + 1 for label in labels.values())
    row = max(0.3, 0.15 * lines + 0.08)  # inches per bar: room for its label's lines
    rows = [len(groups) for groups in panels.values()]
    fig = figure(width, 0.9 * len(rows) + row * sum(rows) + 0.4)
    axes = fig.subplots(len(rows), 1, sharex=True, height_ratios=rows, squeeze=False)[:, 0]
    for ax, (bench, groups) in zip(axes, panels.items(), strict=True):
        means, stds = [], []
        for g in groups:
            vals = np.array([metric_value(r, "average_accuracy") for r in g.runs], dtype=float)
            means.append(100 * float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan)
            stds.append(100 * float(np.nanstd(vals, ddof=1)) if np.isfinite(vals).sum() > 1
                        else math.nan)
        y = np.arange(len(groups))
        colours = [styles(g)[0] for g in groups]
        ax.barh(y, means, color=colours, height=0.7)
        has_std = [i for i, s in enumerate(stds) if math.isfinite(s)]  # 2+ seeds
        if has_std:
            ax.errorbar([means[i] for i in has_std], y[has_std], xerr=[stds[i] for i in has_std],
                        fmt="none", ecolor="black", elinewidth=1, capsize=3)
        for yi, m, s in zip(y, means, stds, strict=True):
            if math.isfinite(m):
                text = f"{m:.1f}" + (f" ± {s:.1f}" if math.isfinite(s) else "")
                ax.text(m + (s if math.isfinite(s) else 0) + 1.5, yi, text, va="center",
                        fontsize=8)
        ax.set_yticks(y, [labels[g.values] for g in groups])
        ax.invert_yaxis()  # first group on top, as in the table
        ax.set_xlim(0, 120)
        ax.set_xticks(range(0, 101, 20))
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(True, axis="x")
        ax.set_axisbelow(True)
        if bench:
            ax.set_title(bench, loc="left")
    axes[-1].set_xlabel("final average accuracy (%)")
    fig.suptitle(figure_title("final average accuracy", width, seeds_note(summary.groups)))
    return fig


def plot_final_accuracy(summary: Summary, folder: Path,
                        width: float = COLUMN_WIDTH) -> list[Path]:
    """One bar per group: final average accuracy (%), error bar ± one sample std (none for
    one seed). Files ``final_accuracy.png/.pdf``."""
    if not summary.groups:
        return []
    return save_figure(final_accuracy_figure(summary, width), folder / "final_accuracy")
