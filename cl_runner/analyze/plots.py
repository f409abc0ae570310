"""The figures of ``cl-analyze``'s commands (matplotlib, through :mod:`cl_runner.plotting`,
whose conventions docs/plots.md lists): each takes the tidy frame its command writes and
returns the figure."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cl_runner.analysis import lmc
from cl_runner.plotting import figure, legend_outside, strategy_style, styled, wrap_label

#: colours of the comparisons in every plot: the multitask and MC-SGD paths in their
#: strategies' colours of every other figure (:func:`~cl_runner.plotting.strategy_style`)
COLOURS = {"continual": "tab:red", "multitask": strategy_style("multitask")[0],
           "mcsgd": strategy_style("mcsgd")[0], "custom": "tab:purple"}
LINESTYLES = ("-", "--", ":", "-.")


def generic_name(name: str, t: float | None) -> str:
    """``mcsgd/w_hat_5`` -> ``mcsgd/w_hat_t`` when ``t`` = 5 (one legend entry for the path
    of every column); other names as they are."""
    if t is None or t != t:
        return name
    return re.sub(rf"_{int(t)}$", "_t", name)


@styled
def plot_interpolation(curves: pd.DataFrame, task: int, split: str):
    """Loss (top) and accuracy (bottom) against alpha, one column per t (or one for custom
    pairs), one line per path, and dotted the straight line between its end points' losses,
    from which the loss barrier is measured (the title says so); one legend for all panels,
    below them (a path's end named with ``_t``: the column's t)."""
    columns = list(dict.fromkeys(curves["t"].tolist()))
    fig = figure(2.6 * len(columns) + 0.8, 4.6)
    axes = fig.subplots(2, len(columns), squeeze=False, sharex=True)
    run_order: dict[str, list[str]] = {}  # comparison -> runs, for one line style per run
    legend: dict[str, object] = {}  # label -> handle
    for c, t in enumerate(columns):
        custom = t is None or t != t
        part = curves[curves["t"].isna()] if custom else curves[curves["t"] == t]
        for (start, end), path in part.groupby(["start", "end"], sort=False):
            comparison = path["comparison"].iloc[0]
            runs = run_order.setdefault(comparison, [])
            run = end.split("/")[0]
            if run not in runs:
                runs.append(run)
            style = LINESTYLES[runs.index(run) % len(LINESTYLES)]
            colour = COLOURS.get(comparison, "tab:gray")
            line, = axes[0, c].plot(path["alpha"], path["loss"], style, color=colour,
                                    marker=".", markersize=4)
            ends = path.iloc[[0, -1]]  # the straight line the barrier is measured from
            axes[0, c].plot(ends["alpha"], ends["loss"], ":", color=colour, linewidth=0.8,
                            alpha=0.7)
            axes[1, c].plot(path["alpha"], 100 * path["accuracy"], style, color=colour,
                            marker=".", markersize=4)
            label = f"{comparison}: {generic_name(start, t)} → {generic_name(end, t)}"
            legend.setdefault(label, line)
        axes[0, c].set_title("custom paths" if custom else f"t = {int(t)}")
        axes[1, c].set_xlabel("interpolation coefficient α")
        for ax in axes[:, c]:
            ax.grid(True)
    axes[0, 0].set_ylabel(f"task {task} {split} loss\n(cross-entropy, nats)")
    axes[1, 0].set_ylabel(f"task {task} {split} accuracy (%)")
    legend_outside(fig, list(legend.values()), list(legend), where="bottom",
                   ncols=min(len(legend), 2 if len(columns) < 3 else 3), width=44)
    fig.suptitle(wrap_label(f"loss {lmc.BARRIER_DEFINITION} (dotted; barriers_task{task}.csv)",
                            int(14 * (2.6 * len(columns) + 0.8)), max_lines=2))
    return fig


@styled
def plot_plane(grid: pd.DataFrame, points: pd.DataFrame, task: int, t: int):
    """Contour plot of the loss on the plane, with the solutions marked; legend below."""
    from matplotlib.colors import LogNorm

    n = lmc.grid_shape(grid)
    xs = grid["x"].to_numpy().reshape(n, n)
    ys = grid["y"].to_numpy().reshape(n, n)
    zs = grid["loss"].to_numpy().reshape(n, n)
    fig = figure(4.8, 5.0)
    ax = fig.subplots()
    lo, hi = max(float(zs.min()), 1e-4), float(zs.max())
    levels = np.geomspace(lo, max(hi, lo * 1.01), 25)
    cs = ax.contourf(xs, ys, np.clip(zs, lo, None), levels=levels, norm=LogNorm(lo, hi),
                     cmap="viridis")
    ax.contour(xs, ys, np.clip(zs, lo, None), levels=levels[::3], colors="white",
               linewidths=0.4)
    fig.colorbar(cs, ax=ax, label=f"task {task} loss (cross-entropy, log scale)",
                 format="%.3g", shrink=0.9)
    ax.set_aspect("equal", adjustable="box")
    markers = {"w_hat_i": ("o", "tab:red"), "w_hat_t": ("s", "tab:red"),
               "w_star_t": ("*", "tab:blue"), "projected": ("^", "tab:green")}
    handles, labels = [], []
    for p in points.itertuples(index=False):
        marker, colour = markers.get(p.role, ("x", "black"))
        label = p.solution + (f" (projected; {p.distance_to_plane:.2g} off the plane)"
                              if p.role == "projected" else "")
        handle, = ax.plot(p.x, p.y, marker, color=colour, markeredgecolor="white",
                          markersize=10)
        handles.append(handle)
        labels.append(label)
    ax.set_xlabel("e1 (towards w_hat_t), L2 distance")
    ax.set_ylabel("e2, L2 distance")
    ax.set_title(f"task {task} loss on the plane (t = {t})")
    legend_outside(fig, handles, labels, where="bottom", ncols=2, width=34)
    return fig


#: smallest tick-label font (points) of the distance matrix; rows beyond what fits at this
#: size are labelled every k-th
MIN_TICK_FONT = 5.0


@styled
def plot_distances(frame: pd.DataFrame, names: Sequence[str]):
    """Heatmap of the distance matrix. Tick labels at least :data:`MIN_TICK_FONT` points:
    with many solutions every k-th is labelled; white lines separate the runs."""
    n = len(names)
    matrix = frame.pivot(index="a", columns="b", values="distance").loc[names, names]
    size = min(max(4.0, 0.09 * n + 2.5), 10.0)
    fig = figure(size + 1.2, size)
    ax = fig.subplots()
    im = ax.imshow(matrix.to_numpy(), cmap="magma")
    room = 0.8 * size * 72 / max(n, 1)  # points of axis length per row
    fontsize = min(8.0, max(MIN_TICK_FONT, room / 1.25))
    step = max(1, math.ceil(1.25 * fontsize / room))
    shown = list(range(0, n, step))
    ax.set_xticks(shown, [names[i] for i in shown], rotation=90, fontsize=fontsize)
    ax.set_yticks(shown, [names[i] for i in shown], fontsize=fontsize)
    runs = [name.split("/")[0] for name in names]
    for i in range(1, n):
        if runs[i] != runs[i - 1]:
            ax.axhline(i - 0.5, color="white", linewidth=0.8)
            ax.axvline(i - 0.5, color="white", linewidth=0.8)
    fig.colorbar(im, ax=ax, label="L2 distance between weight vectors", shrink=0.8)
    ax.set_title("distances between saved solutions"
                 + (f" (every {step}th labelled)" if step > 1 else ""))
    return fig


@styled
def plot_curvature(eigen: pd.DataFrame, cosines: pd.DataFrame, at: str, task: int):
    """Top eigenvalues (left) and |cosine| between each direction and each top eigenvector
    (right)."""
    fig = figure(9.0, 0.3 * max(len(set(cosines.get("direction", []))), 8) + 1.4)
    left, right = fig.subplots(1, 2, width_ratios=[1, 2])
    left.bar(eigen["rank"], eigen["eigenvalue"], color="tab:gray")
    left.set_xticks(list(eigen["rank"]))
    left.set_xlabel("eigenvalue rank")
    left.set_ylabel(f"Hessian eigenvalue (task {task} training loss)")
    left.set_title(wrap_label(f"top eigenvalues at {at}", 36))
    left.grid(True, axis="y")
    left.set_axisbelow(True)
    if len(cosines):
        table = cosines.pivot(index="direction", columns="rank", values="cosine").abs()
        table = table.loc[list(dict.fromkeys(cosines["direction"]))]
        im = right.imshow(table.to_numpy(), cmap="Blues", vmin=0, vmax=max(
            float(table.to_numpy().max()), 1e-3), aspect="auto")
        right.set_yticks(range(len(table)), [wrap_label(d, 48, 2) for d in table.index],
                         fontsize=7)
        right.set_xticks(range(table.shape[1]), [f"u{r}" for r in table.columns])
        right.set_xlabel("top eigenvector (by rank)")
        fig.colorbar(im, ax=right, label="|cosine|")
        right.set_title("|cos(direction, eigenvector)|")
    else:
        right.axis("off")
    return fig
