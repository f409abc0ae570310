"""``cl-analyze``'s commands over rebuilt runs: :class:`Analysis` (one method per command,
each writing its tables and plots and returning summary tables)."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch
from rich.table import Table

from cl_runner.analysis import lmc
from cl_runner.analysis.lmc import Split
from cl_runner.analysis.runs import AnalysisError, Solutions, build_components, load_solutions
from cl_runner.analyze.options import AnalyzeOptions, Pair
from cl_runner.analyze.plots import plot_curvature, plot_distances, plot_interpolation, plot_plane
from cl_runner.plotting import save_figure
from cl_runner.results.writer import atomic_write_csv


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
        table = Table(title=f"task {task} ({split}) along straight paths: loss "
                            f"{lmc.BARRIER_DEFINITION}; max − mean of ends: the old figure")
        for col, justify in (("comparison", "left"), ("path", "left"), ("barrier", "right"),
                             ("max − mean of ends", "right"),
                             ("loss start/end/max", "right"), ("acc start/end/min (%)", "right")):
            table.add_column(col, justify=justify)
        for row in barriers:
            table.add_row(row["comparison"], f"{row['start']} -> {row['end']}",
                          f"{row['barrier']:.4f}", f"{row['max_minus_end_mean']:.4f}",
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
