"""Plots of a summary (PNG and PDF): accuracy curves, mean accuracy matrices, final accuracy.

Every figure follows :mod:`cl_runner.plotting` (docs/plots.md): legends outside the axes,
long group labels wrapped, one colour per strategy in every figure of a summary (line style
and marker tell apart groups of one strategy), a band or error bar only where there are two
seeds or more, and the number of seeds said in the title or the legend.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cl_runner.plotting import figure, legend_outside, save_figure, styled, wrap_label
from cl_runner.summarize.aggregation import Group, Summary
from cl_runner.summarize.grouping import BASE_GROUP_KEYS, group_label, slug
from cl_runner.summarize.runs import metric_value

LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")


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


class GroupStyles:
    """Colour, line style and marker of each group of a summary: one colour per strategy
    (tab10, by sorted strategy name; by group when there is no strategy key), then one
    line style and marker per group of that strategy (in summary order)."""

    def __init__(self, summary: Summary) -> None:
        keys = summary.group_keys
        index = keys.index("strategy") if "strategy" in keys else None
        colour_of = [g.values[index] if index is not None else g.values for g in summary.groups]
        names = sorted(set(colour_of), key=str)
        self._style: dict[tuple[str, ...], tuple[str, str, str]] = {}
        variants: dict[object, list[tuple[str, ...]]] = {}
        for g, name in zip(summary.groups, colour_of, strict=True):
            rest = tuple(v for k, v in zip(keys, g.values, strict=True)
                         if k not in ("benchmark", "strategy"))
            seen = variants.setdefault(name, [])
            if rest not in seen:
                seen.append(rest)
            i = seen.index(rest)
            self._style[g.values] = (f"C{names.index(name) % 10}", LINESTYLES[i % len(LINESTYLES)],
                                     MARKERS[i % len(MARKERS)])

    def __call__(self, group: Group) -> tuple[str, str, str]:
        """``(colour, linestyle, marker)`` of ``group``."""
        return self._style[group.values]


def _seeds_note(groups: list[Group]) -> str:
    counts = sorted({len(g.runs) for g in groups})
    if counts == [1]:
        return "one seed per group"
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"mean ± sample std over {n} seeds"


@styled
def curves_figure(summary: Summary, bench: str, groups: list[Group]):
    """The figure of :func:`plot_curves` for one benchmark's ``groups``."""
    styles = GroupStyles(summary)
    fig = figure(6.4, 3.6)
    ax = fig.add_subplot()
    handles, labels = [], []
    for g in groups:
        colour, linestyle, marker = styles(g)
        x = np.arange(1, len(g.curve_mean) + 1)
        line, = ax.plot(x, 100 * g.curve_mean, color=colour, linestyle=linestyle, marker=marker,
                        markersize=3.5)
        if len(g.runs) > 1 and g.curve_std is not None and np.all(np.isfinite(g.curve_std)):
            ax.fill_between(x, 100 * (g.curve_mean - g.curve_std),
                            100 * (g.curve_mean + g.curve_std),
                            color=colour, alpha=0.15, linewidth=0)
        handles.append(line)
        labels.append(short_label(summary.group_keys, g.values, skip=("benchmark",))
                      + f" (n={len(g.runs)})")
    ax.set_xlabel("tasks trained")
    ax.set_ylabel("average accuracy on tasks seen (%)")
    ax.set_title(f"{bench}: {_seeds_note(groups)}")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(True)
    legend_outside(fig, handles, labels, where="right")
    return fig


def plot_curves(summary: Summary, folder: Path) -> list[Path]:
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
        written += save_figure(curves_figure(summary, bench, groups),
                               folder / f"accuracy_curve_{slug(bench)}")
    return written


@styled
def heatmap_figure(summary: Summary, g: Group):
    """The figure of :func:`plot_heatmaps` for one group."""
    t = g.matrix_mean.shape[0]
    size = min(2.6 + 0.4 * t, 12.0)
    fig = figure(size + 1.0, size)
    ax = fig.add_subplot()
    image = ax.imshow(100 * g.matrix_mean, vmin=0, vmax=100, cmap="viridis")
    fig.colorbar(image, ax=ax, label="test accuracy (%)", shrink=0.9)
    ticks = np.arange(t)
    step = max(1, math.ceil(t / 20))  # at most 20 tick labels per axis
    ax.set_xticks(ticks[::step], [str(j + 1) for j in ticks[::step]])
    ax.set_yticks(ticks[::step], [str(i + 1) for i in ticks[::step]])
    ax.set_xlabel("evaluated task j")
    ax.set_ylabel("after training task i")
    if t <= 20:
        for i in range(t):
            for j in range(t):
                v = 100 * g.matrix_mean[i, j]
                if math.isfinite(v):
                    ax.text(j, i, f"{v:.0f}", ha="center", va="center",
                            fontsize=6 if t > 10 else 8, color="black" if v > 60 else "white")
    label = wrap_label(group_label(summary.group_keys, g.values), width=int(9 * size))
    seeds = "1 seed" if len(g.runs) == 1 else f"mean over {len(g.runs)} seeds"
    blank = ", blank: not evaluated" if np.isnan(g.matrix_mean).any() else ""
    ax.set_title(f"{label}\naccuracy matrix (%), {seeds}{blank}")
    return fig


def plot_heatmaps(summary: Summary, folder: Path) -> list[Path]:
    """Per group: the mean accuracy matrix (%) as a heatmap, row = after training task i,
    column = evaluated task j, values written in the cells (up to 20 tasks). Files
    ``heatmap_<group>``."""
    written: list[Path] = []
    for g in summary.groups:
        if g.matrix_mean is not None:
            written += save_figure(heatmap_figure(summary, g),
                                   folder / f"heatmap_{slug(group_label(summary.group_keys, g.values))}")
    return written


@styled
def final_accuracy_figure(summary: Summary):
    """The figure of :func:`plot_final_accuracy`: horizontal bars (labels read
    horizontally, however many groups), one panel per benchmark."""
    styles = GroupStyles(summary)
    has_bench = "benchmark" in summary.group_keys
    panels: dict[str, list[Group]] = {}
    for g in summary.groups:
        bench = g.values[summary.group_keys.index("benchmark")] if has_bench else ""
        panels.setdefault(bench, []).append(g)
    labels = {g.values: wrap_label(short_label(summary.group_keys, g.values, skip=("benchmark",))
                                   + f" (n={len(g.runs)})") for g in summary.groups}
    lines = max(label.count("\n") + 1 for label in labels.values())
    row = max(0.3, 0.15 * lines + 0.08)  # inches per bar: room for its label's lines
    rows = [len(groups) for groups in panels.values()]
    fig = figure(6.0, 0.9 * len(rows) + row * sum(rows) + 0.4)
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
    fig.suptitle(f"final average accuracy: {_seeds_note(summary.groups)}")
    return fig


def plot_final_accuracy(summary: Summary, folder: Path) -> list[Path]:
    """One bar per group: final average accuracy (%), error bar ± one sample std (none for
    one seed). Files ``final_accuracy.png/.pdf``."""
    if not summary.groups:
        return []
    return save_figure(final_accuracy_figure(summary), folder / "final_accuracy")
