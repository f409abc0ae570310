"""Plots of a summary (PNG and PDF): accuracy curves, mean accuracy matrices, final accuracy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from cl_runner.plotting import figure as _figure
from cl_runner.plotting import save_figure as _save
from cl_runner.summarize.aggregation import Group, Summary
from cl_runner.summarize.grouping import group_label, slug
from cl_runner.summarize.runs import as_number


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
        vals = pd.Series([as_number(r.summary.get("average_accuracy")) for r in g.runs])
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
