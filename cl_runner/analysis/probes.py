"""Training-time diagnostics ("probes") measured at task boundaries, written to
``diagnostics.csv`` in the run folder. A probe only reads the model: it runs in eval mode (no
dropout, so it draws nothing from the global random state), passes parameters through
``torch.func.functional_call`` (the model's tensors and ``.grad`` are untouched), and draws its
examples with a generator of its own, so a run with probes trains exactly like one without.

Gradient conflict (``probes=[gradient_conflict]``), after Dherin, "Implicit biases in
multitask and continual learning from a backward error analysis perspective" (arXiv
2311.00235; docs/papers.md, "Implicit-bias diagnostics"): for task t >= 2 let A be the loss on the
previous tasks 1..t-1 and B the loss of the new task t (mean cross-entropy on a fixed sample of
each task's training data, ``probe.gradient_conflict.examples_per_task`` examples per task,
drawn once when the task starts). With gradients g_A, g_B and Hessians H_A, H_B it logs

- ``grad_dot`` = <g_A, g_B> and ``grad_cosine``: gradient alignment (the conflict term of
  multitask training);
- ``grad_norm_sq_a`` = |g_A|^2, ``grad_norm_sq_b`` = |g_B|^2: the flatness terms;
- ``lie_bracket_norm`` = |H_B g_A - H_A g_B|: the conflict term of continual training
  (two Hessian-vector products);

at ``task_start`` (the weights task t starts from) and/or ``task_end`` (the weights evaluated
after task t). Cost per measurement: 2 gradients and 2 Hessian-vector products, i.e. about
6 forward-backward passes over the (t-1) * k examples of A and 6 over the k of B
(k = examples_per_task). Measured for the MLP 784-256-256-10, k = 256, one thread of a shared
2-core CPU under heavy load (load average ~9; ``gradient_conflict`` timed directly): 0.13 s
at t = 2, 0.53 s at t = 10, 1.0 s at t = 20, so with both points ~2 x 10 s over a 20-task
run; memory: k examples of every task kept (uint8, 200 kB per MNIST task). Nothing is
computed, stored or checked when ``probes`` is empty. BatchNorm layers are in eval mode: with
running statistics they use them; without (the authors' reduced ResNet-18) each chunk of
``chunk_size`` examples is normalized with its own statistics, so on such models the values
depend on ``chunk_size``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from cl_runner.analysis.hessian import lie_bracket, model_objective
from cl_runner.config import GradientConflictConfig, Probe, ProbePoint, ProbeSettings
from cl_runner.data.benchmark import Benchmark
from cl_runner.errors import ConfigError
from cl_runner.results.run_folder import DIAGNOSTICS
from cl_runner.results.writer import atomic_write_csv
from cl_runner.training.hooks import RunnerHook, TaskContext

COLUMNS = ["probe", "task", "point", "examples_a", "examples_b", "loss_a", "loss_b",
           "grad_dot", "grad_cosine", "grad_norm_sq_a", "grad_norm_sq_b", "lie_bracket_norm",
           "seconds"]


def gradient_conflict(model: nn.Module, data_a: tuple, data_b: tuple, to_input,
                      chunk_size: int = 1024) -> dict[str, float]:
    """Gradient alignment, flatness terms and Lie-bracket norm between two losses at the
    model's current parameters (see the module docstring; Dherin, arXiv 2311.00235).

    Args:
        data_a, data_b: ``(x, y, allowed)``: stored inputs ``(N, ...)``, int64 labels ``(N,)``
            and the task-incremental mask (None, ``(C,)`` or ``(N, C)``) of loss A and B.
        to_input: the benchmark's stored-batch -> model-input function.

    Returns:
        ``loss_a, loss_b`` (nats), ``grad_dot, grad_cosine, grad_norm_sq_a, grad_norm_sq_b,
        lie_bracket_norm`` as floats. The model is evaluated in eval mode (restored after).
    """
    was_training = model.training
    model.eval()
    try:
        params = tuple(p.detach() for p in model.parameters())
        loss_a = model_objective(model, *data_a[:2], to_input=to_input, allowed=data_a[2],
                                 chunk_size=chunk_size)
        loss_b = model_objective(model, *data_b[:2], to_input=to_input, allowed=data_b[2],
                                 chunk_size=chunk_size)
        g_a, g_b = loss_a.gradient(params), loss_b.gradient(params)
        bracket = lie_bracket(loss_a, loss_b, params, g_a, g_b)
        dot = sum((x * y).sum() for x, y in zip(g_a, g_b, strict=True))
        na = sum((x * x).sum() for x in g_a)
        nb = sum((x * x).sum() for x in g_b)
        values = torch.stack([loss_a.value(params), loss_b.value(params), dot,
                              dot / (na.sqrt() * nb.sqrt()).clamp(min=1e-30), na, nb,
                              sum((x * x).sum() for x in bracket).sqrt()]).tolist()
    finally:
        model.train(was_training)
    keys = ("loss_a", "loss_b", "grad_dot", "grad_cosine", "grad_norm_sq_a", "grad_norm_sq_b",
            "lie_bracket_norm")
    return dict(zip(keys, values, strict=True))


class GradientConflictProbe:
    """Keeps a fixed sample of each task's training data and measures
    :func:`gradient_conflict` between tasks 1..t-1 (A) and task t (B) at the chosen points.

    Args:
        cfg: its settings.
        benchmark: the run's benchmark (``to_input`` and task-incremental masks).
        seed: the run seed; the probe's own generator is seeded from it.

    Raises:
        ConfigError: ``examples_per_task`` or ``chunk_size`` below 1.
    """

    name = Probe.gradient_conflict.value

    def __init__(self, cfg: GradientConflictConfig, benchmark: Benchmark, seed: int) -> None:
        for key in ("examples_per_task", "chunk_size"):
            if getattr(cfg, key) < 1:
                raise ConfigError(f"probe.gradient_conflict.{key} must be >= 1, got "
                                  f"{getattr(cfg, key)}")
        self.cfg = cfg
        self.at = {ProbePoint(p) for p in cfg.at}
        self.to_input = benchmark.to_input
        self.masks = benchmark.class_masks("train")
        self.generator = torch.Generator().manual_seed(seed * 1_000_003 + 7)
        self.samples: list[tuple[torch.Tensor, torch.Tensor]] = []  # task t-1 -> (x, y)

    def _data(self, tasks: Sequence[int]) -> tuple:
        x = torch.cat([self.samples[t - 1][0] for t in tasks])
        y = torch.cat([self.samples[t - 1][1] for t in tasks])
        allowed = None
        if self.masks is not None:
            owner = torch.cat([torch.full((len(self.samples[t - 1][1]),), t - 1,
                                          device=self.masks.device) for t in tasks])
            allowed = self.masks[owner]
        return x, y, allowed

    def measure(self, model: nn.Module, task: int, point: ProbePoint) -> dict[str, Any]:
        """One row of ``diagnostics.csv`` for ``task`` (>= 2) at ``point``."""
        started = time.perf_counter()
        data_a, data_b = self._data(range(1, task)), self._data([task])
        row = gradient_conflict(model, data_a, data_b, self.to_input, self.cfg.chunk_size)
        return {"probe": self.name, "task": task, "point": point.value,
                "examples_a": len(data_a[1]), "examples_b": len(data_b[1]), **row,
                "seconds": time.perf_counter() - started}

    def task_start(self, ctx: TaskContext) -> list[dict[str, Any]]:
        """Draw task t's sample; measure at ``task_start`` when t >= 2."""
        n = len(ctx.train_y)
        pick = torch.randperm(n, generator=self.generator)[: self.cfg.examples_per_task]
        pick = pick.to(ctx.train_y.device)
        del self.samples[ctx.task - 1 :]
        self.samples.append((ctx.train_x[pick].clone(), ctx.train_y[pick].clone()))
        if ctx.task < 2 or ProbePoint.task_start not in self.at:
            return []
        return [self.measure(ctx.model, ctx.task, ProbePoint.task_start)]

    def task_end(self, task: int, model: nn.Module) -> list[dict[str, Any]]:
        """Measure at ``task_end`` when t >= 2."""
        if task < 2 or ProbePoint.task_end not in self.at:
            return []
        return [self.measure(model, task, ProbePoint.task_end)]


PROBES = {Probe.gradient_conflict: GradientConflictProbe}


class ProbeSet(RunnerHook):
    """The probes listed in the run config, a runner hook measuring at task boundaries
    (``before_task``: after the strategy's ``before_task``; ``after_evaluation``: after the
    evaluation); rewrites ``diagnostics.csv`` (columns :data:`COLUMNS`, one row per probe, task
    and point) atomically after every measurement.

    Args:
        model: the network of the run (read, never changed).
    """

    FILE = DIAGNOSTICS

    def __init__(self, names: Sequence[Probe], settings: ProbeSettings, benchmark: Benchmark,
                 seed: int, path: str | Path, model: nn.Module | None = None) -> None:
        self.probes = [PROBES[Probe(n)](getattr(settings, Probe(n).value), benchmark, seed)
                       for n in dict.fromkeys(names)]
        self.path = Path(path)
        self.model = model
        self.rows: list[dict[str, Any]] = []

    def before_task(self, ctx: TaskContext) -> None:
        self.task_start(ctx)

    def state_dict(self) -> dict[str, Any]:
        """The rows so far and each probe's generator state and kept samples (resume)."""
        return {"rows": self.rows,
                "probes": [{"generator": p.generator.get_state(), "samples": p.samples}
                           for p in self.probes]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = list(state["rows"])
        for probe, saved in zip(self.probes, state["probes"], strict=True):
            probe.generator.set_state(saved["generator"])
            probe.samples = list(saved["samples"])

    def after_evaluation(self, task: int, result: Any) -> None:
        self.task_end(task, self.model)

    def _add(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.rows += rows
            atomic_write_csv(self.path, pd.DataFrame(self.rows, columns=COLUMNS))

    def task_start(self, ctx: TaskContext) -> None:
        """Called by the loop after the strategy's ``before_task``."""
        for probe in self.probes:
            self._add(probe.task_start(ctx))

    def task_end(self, task: int, model: nn.Module) -> None:
        """Called after the task's evaluation."""
        for probe in self.probes:
            self._add(probe.task_end(task, model))
