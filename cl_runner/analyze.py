"""``cl-analyze``: linear-mode-connectivity analyses over run folders saved with
``checkpoints.enabled=true`` (Mirzadeh et al., ICLR 2021; PAPERS.md, "Linear mode
connectivity analyses").

    cl-analyze interpolate RUN [RUN ...] [i=1] [t=[5,10,20]] [points=21] [task=1]
    cl-analyze interpolate RUN ... pairs=[mcsgd/w_hat_1:multitask/w_star_5]
    cl-analyze plane RUN ... [i=1] [t=[20]] [grid=21]
    cl-analyze distances RUN ...
    cl-analyze curvature RUN ... [at=mcsgd/w_hat_1] [task=1] [k=5] [method=lanczos]

Arguments: a command, run folders of one benchmark, model and seed (e.g. a naive, a multitask
and an MC-SGD run), and options in ``key=value`` form (validated against
:class:`AnalyzeOptions`; no argparse in the project). Solutions are named ``LABEL/NAME``: the
label of a run is its strategy's name (``labels=[...]`` to choose), the name one of its
checkpoints (``init``, ``w_hat_3``, ``w_bar_3``, ``w_star_3``); a bare name is accepted when
only one run has it.

The paper's comparisons (``interpolate`` without ``pairs``; also the directions of
``curvature``), for i and each t: ``w_hat_i -> w_hat_t`` in every run with continual minima
(continual), and from the start run's ``w_hat_i`` (``start=LABEL``; default: the first run
given that has ``w_hat``) to every multitask run's ``w_star_t`` (multitask) and every MC-SGD
run's ``w_bar_t`` (mcsgd). The task evaluated is ``task`` (default i). The loss barrier of a
path is its maximum loss minus the mean of its end points' losses.

Files (folder ``out``, default ``<first run>/analysis``), each table a tidy CSV and each plot a
PNG and a PDF: ``interpolate_task{task}.csv`` (``comparison, start, end, t, task, split,
alpha, loss, accuracy``), ``barriers_task{task}.csv``, ``interpolate_task{task}.png``;
``plane_task{task}_t{t}.csv`` (``x, y, loss, accuracy``), ``plane_points_task{task}_t{t}.csv``,
``plane_task{task}_t{t}.png``; ``distances.csv`` (``a, b, distance``), ``distances.png``;
``curvature_eigen_{at}_task{task}.csv``, ``curvature_cosines_{at}_task{task}.csv``,
``curvature_{at}_task{task}.png``.

Data: the runs' benchmark is rebuilt from their saved config (same seed, same transforms), from
``data_root`` (default ``CL_RUNNER_DATA``, else the runs' ``data.root``). Losses and
accuracies are measured in eval mode (no dropout); BatchNorm as :mod:`cl_runner.analysis.lmc`
describes (``batchnorm=recompute|interpolate``).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cl_runner.analysis import lmc
from cl_runner.analysis.hessian import EigenMethod
from cl_runner.analysis.lmc import BatchNormMode, Split
from cl_runner.analysis.runs import AnalysisError, Solutions, build_components, load_solutions
from cl_runner.errors import CLRunnerError
from cl_runner.options import parse_options
from cl_runner.plotting import figure, save_figure
from cl_runner.results.writer import atomic_write_csv

COMMANDS = ("interpolate", "plane", "distances", "curvature")
#: colours of the comparisons in every plot
COLOURS = {"continual": "tab:red", "multitask": "tab:blue", "mcsgd": "tab:green",
           "custom": "tab:purple"}
LINESTYLES = ("-", "--", ":", "-.")


@dataclass
class AnalyzeOptions:
    """``cl-analyze`` options (``key=value``).

    Attributes:
        paths: run folders (also given as bare arguments).
        labels: one label per run folder (default: the strategy names).
        out: output folder (default ``<first run>/analysis``).
        data_root: datasets folder (default ``CL_RUNNER_DATA``, else the runs' ``data.root``).
        device: ``cpu``, ``cuda`` or ``auto``.
        num_threads: CPU threads for PyTorch (null = PyTorch's default).
        i: the earlier task of the paper's comparisons (paths start at ``w_hat_i``).
        t: the later tasks (default: the last task of the runs).
        task: the task whose loss is measured (default ``i``).
        start: label of the run whose ``w_hat_i`` starts the multitask and MC-SGD paths.
        pairs: explicit paths ``A:B`` (solution names) instead of the paper's comparisons.
        points: points along each path, end points included.
        split: evaluate on the task's ``test`` (default) or ``train`` data.
        max_examples: evaluate on a fixed random subset of this many examples (null = all).
        eval_batch_size: examples per forward pass.
        batchnorm: ``recompute`` or ``interpolate`` running statistics (models with them).
        bn_batches: training batches (of 128) used to recompute BatchNorm statistics.
        grid: points per axis of the ``plane`` grid.
        margin: the plane grid extends this fraction of the points' span beyond them.
        at: the solution ``curvature`` is measured at (default: the start run's ``w_hat_i``).
        k: number of top Hessian eigenvalues.
        method: ``lanczos`` (largest algebraic) or ``power`` (largest magnitude).
        iterations: Lanczos steps, or power-iteration steps per eigenvalue.
        batches: training batches of the task in the curvature loss.
        batch_size: their size.
        seed: for every random subset the analyses draw.
        plots: write the plots.
    """

    paths: list[str] = field(default_factory=list)
    labels: list[str] | None = None
    out: str | None = None
    data_root: str | None = None
    device: str = "cpu"
    num_threads: int | None = None
    i: int = 1
    t: list[int] | None = None
    task: int | None = None
    start: str | None = None
    pairs: list[str] = field(default_factory=list)
    points: int = 21
    split: Split = Split.test
    max_examples: int | None = None
    eval_batch_size: int = 1000
    batchnorm: BatchNormMode = BatchNormMode.recompute
    bn_batches: int = 10
    grid: int = 21
    margin: float = 0.25
    at: str | None = None
    k: int = 5
    method: EigenMethod = EigenMethod.lanczos
    iterations: int = 50
    batches: int = 4
    batch_size: int = 256
    seed: int = 0
    plots: bool = True


@dataclass
class Pair:
    """One straight path: ``start -> end`` (qualified names), its comparison kind and t."""

    comparison: str
    start: str
    end: str
    t: int | None

    @property
    def label(self) -> str:
        return f"{self.start} -> {self.end}"


class Analysis:
    """The runs, their rebuilt benchmark and model, and the options of one invocation."""

    def __init__(self, options: AnalyzeOptions) -> None:
        self.options = options
        if not options.paths:
            raise AnalysisError("no run folder given")
        self.solutions: Solutions = load_solutions(options.paths, options.labels)
        device = options.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.benchmark, self.model = build_components(self.solutions, self.device,
                                                      options.data_root)
        self.num_tasks = self.benchmark.num_tasks
        self.out = Path(options.out) if options.out else Path(options.paths[0]) / "analysis"
        self.files: list[Path] = []

    # ------------------------------------------------------------------ helpers
    @property
    def ts(self) -> list[int]:
        return list(self.options.t) if self.options.t else [self.num_tasks]

    @property
    def task(self) -> int:
        return self.options.task if self.options.task is not None else self.options.i

    def vector(self, ref: str) -> torch.Tensor:
        """The flat parameter vector of solution ``ref``."""
        return lmc.param_vector(self.model, self.solutions.state(ref))

    def start_run(self):
        """The run whose ``w_hat_i`` starts the multitask and MC-SGD paths."""
        if self.options.start is not None:
            return self.solutions.by_label(self.options.start)
        runs = self.solutions.with_kind("w_hat")
        if not runs:
            raise AnalysisError("no run saved continual minima (w_hat_*): the paper's "
                                "comparisons start at w_hat_i; give pairs=[A:B] instead")
        return runs[0]

    def paper_pairs(self) -> list[Pair]:
        """The paper's comparisons for i and every t (module docstring)."""
        i, sol = self.options.i, self.solutions
        start = self.start_run()
        if i not in start.tasks("w_hat"):
            raise AnalysisError(f"run {start.label!r} has no w_hat_{i}")
        origin = f"{start.label}/w_hat_{i}"
        pairs = []
        for t in self.ts:
            for run in sol.with_kind("w_hat"):
                if i in run.tasks("w_hat") and t in run.tasks("w_hat") and t != i:
                    pairs.append(Pair("continual", f"{run.label}/w_hat_{i}",
                                      f"{run.label}/w_hat_{t}", t))
            for kind, comparison in (("w_star", "multitask"), ("w_bar", "mcsgd")):
                for run in sol.with_kind(kind):
                    if t in run.tasks(kind):
                        pairs.append(Pair(comparison, origin, f"{run.label}/{kind}_{t}", t))
        if not pairs:
            raise AnalysisError(f"no saved solution at t in {self.ts} to compare with {origin}")
        return pairs

    def pairs(self) -> list[Pair]:
        """``pairs=[A:B,...]`` when given, else :meth:`paper_pairs`."""
        if not self.options.pairs:
            return self.paper_pairs()
        out = []
        for text in self.options.pairs:
            if text.count(":") != 1:
                raise AnalysisError(f"pairs: {text!r} is not of the form A:B")
            a, b = text.split(":")
            out.append(Pair("custom", self.solutions.qualified(a), self.solutions.qualified(b),
                            None))
        return out

    def evaluator(self) -> lmc.PointEvaluator:
        o = self.options
        if o.points < 2 or o.grid < 2:
            raise AnalysisError("points and grid must be >= 2")
        return lmc.PointEvaluator(self.model, self.benchmark, self.task, o.split,
                                  o.max_examples, o.eval_batch_size, o.batchnorm,
                                  o.bn_batches, seed=o.seed)

    def write_csv(self, name: str, frame: pd.DataFrame) -> None:
        self.files.append(atomic_write_csv(self.out / name, frame))

    def save(self, fig, stem: str) -> None:
        if self.options.plots:
            self.files += save_figure(fig, self.out / stem)

    # ------------------------------------------------------------------ commands
    def interpolate(self) -> list[Table]:
        """Loss and accuracy along every path; barriers."""
        evaluator, task, split = self.evaluator(), self.task, Split(self.options.split).value
        curves, barriers = [], []
        for pair in self.pairs():
            curve = lmc.interpolate(evaluator, self.solutions.state(pair.start),
                                    self.solutions.state(pair.end), self.options.points)
            curve.insert(0, "split", split)
            curve.insert(0, "task", task)
            for col, value in (("t", pair.t), ("end", pair.end), ("start", pair.start),
                               ("comparison", pair.comparison)):
                curve.insert(0, col, value)
            curves.append(curve)
            barriers.append({"comparison": pair.comparison, "start": pair.start,
                             "end": pair.end, "t": pair.t, "task": task, "split": split,
                             **lmc.barrier(curve)})
        curves_frame = pd.concat(curves, ignore_index=True)
        barrier_frame = pd.DataFrame(barriers)
        self.write_csv(f"interpolate_task{task}.csv", curves_frame)
        self.write_csv(f"barriers_task{task}.csv", barrier_frame)
        if self.options.plots:
            self.save(plot_interpolation(curves_frame, task, split),
                      f"interpolate_task{task}")
        table = Table(title=f"task {task} ({split}) along straight paths: loss barrier = max "
                            f"loss - mean of the end points")
        for col, justify in (("comparison", "left"), ("path", "left"), ("barrier", "right"),
                             ("loss start/end/max", "right"), ("acc start/end/min (%)", "right")):
            table.add_column(col, justify=justify)
        for row in barriers:
            table.add_row(row["comparison"], f"{row['start']} -> {row['end']}",
                          f"{row['barrier']:.4f}",
                          f"{row['loss_start']:.3f} / {row['loss_end']:.3f} / {row['loss_max']:.3f}",
                          f"{100 * row['accuracy_start']:.1f} / {100 * row['accuracy_end']:.1f} / "
                          f"{100 * row['accuracy_min']:.1f}")
        return [table]

    def plane(self) -> list[Table]:
        """Loss of ``task`` on the plane through w_hat_i, w_hat_t and w_star_t."""
        i, task = self.options.i, self.task
        start = self.start_run()
        stars = self.solutions.with_kind("w_star")
        if not stars:
            raise AnalysisError("plane needs a multitask run (w_star_* checkpoints)")
        evaluator = self.evaluator()
        tables = []
        for t in self.ts:
            names = {"w_hat_i": f"{start.label}/w_hat_{i}", "w_hat_t": f"{start.label}/w_hat_{t}",
                     "w_star_t": f"{stars[0].label}/w_star_{t}"}
            anchors = {k: self.vector(v) for k, v in names.items()}
            basis = lmc.PlaneBasis.through(*anchors.values())
            extra = {}
            for run in self.solutions.with_kind("w_bar"):
                if t in run.tasks("w_bar"):
                    extra[f"{run.label}/w_bar_{t}"] = self.vector(f"{run.label}/w_bar_{t}")
            buffers = lmc.float_buffers(self.solutions.state(names["w_hat_i"]), self.model)
            started = time.perf_counter()
            grid = lmc.plane_grid(evaluator, basis, list(anchors.values()), self.options.grid,
                                  self.options.margin, buffers)
            seconds = time.perf_counter() - started
            points = []
            for role, (name, vec) in [*zip(names, zip(names.values(), anchors.values(),
                                                          strict=True), strict=True),
                                      *[("projected", item) for item in extra.items()]]:
                x, y, dist = basis.coordinates(vec)
                loss, acc = evaluator(vec, lmc.float_buffers(self.solutions.state(name),
                                                             self.model))
                points.append({"role": role, "solution": name, "x": x, "y": y,
                               "distance_to_plane": dist, "loss": loss, "accuracy": acc})
            points_frame = pd.DataFrame(points)
            stem = f"plane_task{task}_t{t}"
            self.write_csv(f"{stem}.csv", grid)
            self.write_csv(f"plane_points_task{task}_t{t}.csv", points_frame)
            if self.options.plots:
                self.save(plot_plane(grid, points_frame, task, t), stem)
            table = Table(title=f"plane through {', '.join(names.values())}: task {task} loss "
                                f"({self.options.grid}x{self.options.grid} grid, {seconds:.0f}s)")
            for col in ("solution", "x", "y", "off-plane", "loss", "acc (%)"):
                table.add_column(col, justify="left" if col == "solution" else "right")
            for p in points:
                table.add_row(p["solution"], f"{p['x']:.2f}", f"{p['y']:.2f}",
                              f"{p['distance_to_plane']:.2f}", f"{p['loss']:.3f}",
                              f"{100 * p['accuracy']:.1f}")
            table.add_row("grid min / max", "", "", "", f"{grid['loss'].min():.3f} / "
                          f"{grid['loss'].max():.3f}", "")
            tables.append(table)
        return tables

    def distances(self) -> list[Table]:
        """L2 distances between all saved solutions."""
        names = self.solutions.all_names()
        frame = lmc.distance_matrix({n: self.vector(n) for n in names})
        self.write_csv("distances.csv", frame)
        if self.options.plots:
            self.save(plot_distances(frame, names), "distances")
        table = Table(title=f"L2 distances between {len(names)} solutions (all in distances.csv)")
        table.add_column("path")
        table.add_column("distance", justify="right")
        lookup = {(a, b): d for a, b, d in frame.itertuples(index=False)}
        try:
            shown = self.paper_pairs()
        except AnalysisError:
            shown = []
        for pair in shown:
            table.add_row(f"{pair.comparison}: {pair.label}",
                          f"{lookup[(pair.start, pair.end)]:.3f}")
        return [table]

    def curvature(self) -> list[Table]:
        """Top-k Hessian eigenvalues at ``at`` and cosines with the paper's directions."""
        o, task = self.options, self.task
        at = (self.solutions.qualified(o.at) if o.at
              else f"{self.start_run().label}/w_hat_{o.i}")
        origin = self.vector(at)
        try:
            pairs = self.paper_pairs()
        except AnalysisError:
            pairs = []
        directions = {f"{p.comparison}: {p.end} - {at}": self.vector(p.end) - origin
                      for p in pairs if p.start == at and p.end != at}
        started = time.perf_counter()
        eigen, cosines = lmc.curvature(self.model, self.benchmark, task,
                                       self.solutions.state(at), directions, o.k, o.method,
                                       o.iterations, o.batches, o.batch_size, o.seed)
        seconds = time.perf_counter() - started
        slug = at.replace("/", "_")
        eigen.insert(0, "task", task)
        eigen.insert(0, "at", at)
        self.write_csv(f"curvature_eigen_{slug}_task{task}.csv", eigen)
        self.write_csv(f"curvature_cosines_{slug}_task{task}.csv", cosines)
        if self.options.plots:
            self.save(plot_curvature(eigen, cosines, at, task), f"curvature_{slug}_task{task}")
        table = Table(title=f"Hessian of task {task}'s training loss at {at} ({o.batches} x "
                            f"{o.batch_size} examples, {o.method.value}, {seconds:.0f}s)")
        table.add_column("rank / direction")
        table.add_column("eigenvalue | max |cos| with top-k", justify="right")
        table.add_column("curvature along direction", justify="right")
        for row in eigen.itertuples(index=False):
            table.add_row(f"lambda_{row.rank}", f"{row.eigenvalue:.4g}", "")
        for name, group in cosines.groupby("direction", sort=False):
            table.add_row(name, f"{group['cosine'].abs().max():.3f}",
                          f"{group['rayleigh'].iloc[0]:.4g}")
        return [table]


# ---------------------------------------------------------------------------- plots

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


# ---------------------------------------------------------------------------- entry point

USAGE = """usage: cl-analyze COMMAND RUN_DIR [RUN_DIR ...] [key=value ...]

commands: interpolate | plane | distances | curvature
Linear-mode-connectivity analyses over run folders of one benchmark and seed saved with
checkpoints.enabled=true (details: README, "Linear mode connectivity", and cl_runner/analyze.py).
options: {options}
"""


def run_command(command: str, options: AnalyzeOptions) -> tuple[list[Table], Analysis]:
    """Run one command; returns its summary tables and the :class:`Analysis` (its ``files``
    list what was written).

    Raises:
        AnalysisError: unknown command, bad options, runs that do not fit together.
    """
    if command not in COMMANDS:
        raise AnalysisError(f"unknown command {command!r}; commands: {', '.join(COMMANDS)}")
    if options.num_threads is not None:
        torch.set_num_threads(options.num_threads)
    analysis = Analysis(options)
    tables = getattr(analysis, command)()
    return tables, analysis


def main(argv: Sequence[str] | None = None) -> int:
    """``cl-analyze``: returns the exit status (0 done, 2 a user error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    console, err = Console(), Console(stderr=True)
    if not console.is_terminal:
        console = Console(width=200)
    if not argv or any(a in ("-h", "--help") for a in argv):
        print(USAGE.format(options=", ".join(f for f in AnalyzeOptions.__dataclass_fields__
                                             if f != "paths")))
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        options = parse_options(rest, AnalyzeOptions, AnalysisError)
        started = time.perf_counter()
        tables, analysis = run_command(command, options)
    except (CLRunnerError, FileNotFoundError, ValueError) as exc:
        err.print(f"[bold red]cl-analyze:[/] {escape(str(exc))}")
        return 2
    for table in tables:
        console.print(table)
    for problem in analysis.solutions.problems:
        err.print(f"[yellow]warning:[/] {escape(str(problem))}")
    console.print(f"wrote {len(analysis.files)} files to {escape(str(analysis.out))} "
                  f"({math.ceil(time.perf_counter() - started)}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
