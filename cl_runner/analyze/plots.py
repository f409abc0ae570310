"""The figures of ``cl-analyze``'s commands (matplotlib, through :mod:`cl_runner.plotting`):
each takes the tidy frame its command writes and returns the figure."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cl_runner.analysis import lmc
from cl_runner.plotting import figure

#: colours of the comparisons in every plot
COLOURS = {"continual": "tab:red", "multitask": "tab:blue", "mcsgd": "tab:green",
           "custom": "tab:purple"}
LINESTYLES = ("-", "--", ":", "-.")


def plot_interpolation(curves: pd.DataFrame, task: int, split: str):
    """Loss (top) and accuracy (bottom) against alpha, one column per t (or one for custom
    pairs), one line per path."""
    columns = list(dict.fromkeys(curves["t"].tolist()))
    fig = figure(3.2 * len(columns) + 0.6, 5.0)
    axes = fig.subplots(2, len(columns), squeeze=False, sharex=True)
    run_order: dict[str, list[str]] = {}  # comparison -> runs, for one line style per run
    for c, t in enumerate(columns):
        part = curves[curves["t"].isna()] if t is None or t != t else curves[curves["t"] == t]
        for (start, end), path in part.groupby(["start", "end"], sort=False):
            comparison = path["comparison"].iloc[0]
            runs = run_order.setdefault(comparison, [])
            run = end.split("/")[0]
            if run not in runs:
                runs.append(run)
            style = LINESTYLES[runs.index(run) % len(LINESTYLES)]
            colour = COLOURS.get(comparison, "tab:gray")
            label = f"{start} -> {end}"
            axes[0, c].plot(path["alpha"], path["loss"], style, color=colour, label=label,
                            marker=".")
            axes[1, c].plot(path["alpha"], 100 * path["accuracy"], style, color=colour,
                            marker=".")
        title = "custom paths" if t is None or t != t else f"t = {int(t)}"
        axes[0, c].set_title(title)
        axes[1, c].set_xlabel("alpha (interpolation)")
        axes[0, c].legend(fontsize=6)
    axes[0, 0].set_ylabel(f"task {task} {split} loss")
    axes[1, 0].set_ylabel(f"task {task} {split} accuracy (%)")
    return fig


def plot_plane(grid: pd.DataFrame, points: pd.DataFrame, task: int, t: int):
    """Contour plot of the loss on the plane, with the solutions marked."""
    from matplotlib.colors import LogNorm

    n = lmc.grid_shape(grid)
    xs = grid["x"].to_numpy().reshape(n, n)
    ys = grid["y"].to_numpy().reshape(n, n)
    zs = grid["loss"].to_numpy().reshape(n, n)
    fig = figure(5.6, 4.6)
    ax = fig.subplots()
    lo, hi = max(float(zs.min()), 1e-4), float(zs.max())
    levels = np.geomspace(lo, max(hi, lo * 1.01), 25)
    cs = ax.contourf(xs, ys, np.clip(zs, lo, None), levels=levels, norm=LogNorm(lo, hi),
                     cmap="viridis")
    ax.contour(xs, ys, np.clip(zs, lo, None), levels=levels[::3], colors="white",
               linewidths=0.4)
    fig.colorbar(cs, ax=ax, label=f"task {task} loss (log scale)", format="%.3g")
    ax.set_aspect("equal", adjustable="box")
    markers = {"w_hat_i": ("o", "tab:red"), "w_hat_t": ("s", "tab:red"),
               "w_star_t": ("*", "tab:blue"), "projected": ("^", "tab:green")}
    for p in points.itertuples(index=False):
        marker, colour = markers.get(p.role, ("x", "black"))
        label = p.solution + (f" (projected, {p.distance_to_plane:.1f} off)"
                              if p.role == "projected" else "")
        ax.plot(p.x, p.y, marker, color=colour, markeredgecolor="white", markersize=10,
                label=label)
    ax.set_xlabel("e1 (towards w_hat_t), L2 units")
    ax.set_ylabel("e2, L2 units")
    ax.set_title(f"task {task} loss on the plane (t = {t})")
    ax.legend(fontsize=6, loc="best")
    return fig


def plot_distances(frame: pd.DataFrame, names: Sequence[str]):
    """Heatmap of the distance matrix."""
    n = len(names)
    matrix = frame.pivot(index="a", columns="b", values="distance").loc[names, names]
    size = min(max(4.0, 0.16 * n + 2), 16.0)
    fig = figure(size + 1.0, size)
    ax = fig.subplots()
    im = ax.imshow(matrix.to_numpy(), cmap="magma")
    fontsize = max(3, min(8, int(400 / max(n, 1))))
    ax.set_xticks(range(n), names, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(n), names, fontsize=fontsize)
    fig.colorbar(im, ax=ax, label="L2 distance")
    ax.set_title("distances between saved solutions")
    return fig


def plot_curvature(eigen: pd.DataFrame, cosines: pd.DataFrame, at: str, task: int):
    """Top eigenvalues (left) and |cosine| between each direction and each top eigenvector
    (right)."""
    fig = figure(10.0, 4.0)
    left, right = fig.subplots(1, 2, width_ratios=[1, 2])
    left.bar(eigen["rank"], eigen["eigenvalue"], color="tab:gray")
    left.set_xlabel("rank")
    left.set_ylabel("Hessian eigenvalue")
    left.set_title(f"task {task} at {at}", fontsize=9)
    if len(cosines):
        table = cosines.pivot(index="direction", columns="rank", values="cosine").abs()
        table = table.loc[list(dict.fromkeys(cosines["direction"]))]
        im = right.imshow(table.to_numpy(), cmap="Blues", vmin=0, vmax=max(
            float(table.to_numpy().max()), 1e-3), aspect="auto")
        right.set_yticks(range(len(table)), table.index, fontsize=6)
        right.set_xticks(range(table.shape[1]), [f"u_{r}" for r in table.columns])
        fig.colorbar(im, ax=right, label="|cosine|")
        right.set_title("|cos(direction, top eigenvector)|", fontsize=9)
    else:
        right.axis("off")
    return fig

