"""``cl-analyze``'s options (``key=value``, validated against :class:`AnalyzeOptions`) and
the paths it compares (:class:`Pair`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cl_runner.analysis.hessian import EigenMethod
from cl_runner.analysis.lmc import BatchNormMode, Split

COMMANDS = ("interpolate", "plane", "distances", "curvature")


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
        """``"start -> end"``, as the tables and plots show the path."""
        return f"{self.start} -> {self.end}"
