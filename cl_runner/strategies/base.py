"""The strategy interface: hooks called by the one training loop (DESIGN.md, principle 1).

A strategy overrides only the hooks it needs. The loop checks once per task which hooks are
overridden and skips the others, so an unused hook costs nothing in the training step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cl_runner.data.benchmark import Benchmark
from cl_runner.registry import Registry


@dataclass
class TaskContext:
    """What a strategy sees at a task boundary.

    Attributes:
        task: 1-based task id.
        train_x: the task's training inputs, uint8 ``(N, *input_shape)`` on ``device``.
        train_y: int64 ``(N,)``.
        model: the network being trained (the strategy may read or overwrite its weights).
        benchmark: the task sequence (``to_input`` turns stored batches into model inputs).
        device: where model and data live.
        generator: the run's CPU random generator (seeded), for every random choice a
            strategy makes (memory selection, subsets, shuffles).
    """

    task: int
    train_x: torch.Tensor
    train_y: torch.Tensor
    model: nn.Module
    benchmark: Benchmark
    device: torch.device
    generator: torch.Generator


class Strategy:
    """Base class: plain fine-tuning. Every hook is a no-op.

    Hooks, in the order the loop calls them for task t:
        ``before_task(ctx)`` -> ``task_data(ctx)`` (the task's training set)
        -> optimizer over ``trainable_parameters(model)`` -> per step:
        ``train_batch(x, y)`` -> loss = CE + ``penalty(model)`` -> backward
        -> ``after_backward(model)`` -> optimizer step -> ``after_step(model)``
        -> ``after_task(ctx)`` -> evaluation of all tasks with the model as left by ``after_task``
        (``eval_task(model, j)`` before scoring task j, when overridden).

    After the run the runner reads ``stats()``, ``parameter_cost(model, T)`` and
    ``accuracy_matrices()`` into the run files.
    """

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def before_task(self, ctx: TaskContext) -> None:
        """Called before the first training step of a task."""

    def task_data(self, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor]:
        """The training set of task ``ctx.task``, called once per task after ``before_task``:
        ``(x uint8 (N, *input_shape), y int64 (N,))`` on ``ctx.device``. The loop shuffles and
        batches it (its size sets the number of steps). Default: the task's own data
        (``ctx.train_x``, ``ctx.train_y``); multitask returns the union of tasks 1..t. On
        task-incremental benchmarks a strategy overriding it has each example masked to the
        task owning its label, as with ``train_batch``.
        """
        return ctx.train_x, ctx.train_y

    def train_batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the batch to train on (e.g. the current batch plus a replay batch).

        Args: x uint8 ``(B, *input_shape)``, y int64 ``(B,)``. Returns the same kinds of tensors.
        """
        return x, y

    def trainable_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """The parameters the optimizer of the current task updates, asked once per task after
        ``task_data``. Default: all of ``model.parameters()``; supermask strategies return the
        current task's scores or coefficients only (or parameter-group dicts, as
        ``torch.optim`` optimizers accept, to give them their own learning rate)."""
        return list(model.parameters())

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """An extra scalar loss term added to the cross-entropy (e.g. EWC), or None."""
        return None

    def after_backward(self, model: nn.Module) -> None:
        """Called with the gradients in ``p.grad``, before the optimizer step (projection)."""

    def after_step(self, model: nn.Module) -> None:
        """Called after every optimizer step."""

    def after_task(self, ctx: TaskContext) -> None:
        """Called after the last training step of a task, before evaluation."""

    def eval_task(self, model: nn.Module, task: int) -> None:
        """Called by the evaluation before it scores task ``task`` (1-based), including the
        evaluation before any training; only when overridden (supermask strategies switch the
        model to the task's mask here)."""

    def stats(self) -> dict[str, Any]:
        """Strategy-specific figures for ``summary.json`` (JSON-serializable)."""
        return {}

    def solutions(self, model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
        """The weight vectors the task just finished produced, by kind, for checkpoints.

        Called after evaluation of each task, only when ``checkpoints.enabled`` (not a training
        hook: the loop never calls it). Kinds follow PAPERS.md's notation: ``w_hat``
        (continual minimum), ``w_bar`` (MC-SGD solution), ``w_star`` (multitask minimum).

        Returns:
            kind -> ``state_dict`` (name -> tensor, as ``model.state_dict()``). Default:
            ``{"w_hat": model.state_dict()}``: the evaluated model is the continual minimum.
        """
        return {"w_hat": model.state_dict()}

    def accuracy_matrices(self) -> dict[str, list[list[float]]]:
        """Further accuracy matrices the strategy measured, ``name -> rows so far`` (same
        layout as the loop's; NaN where not evaluated). The runner writes each as
        ``accuracy_matrix_<name>.csv`` after every task and its metrics into ``summary.json``
        under ``<name>``. Default: none."""
        return {}

    def parameter_cost(self, model: nn.Module, num_tasks: int) -> dict[str, Any]:
        """What the strategy stores to solve the task sequence, in float32-equivalents (a bit
        counts 1/32), for ``summary.json``.

        Default (one shared network): ``shared_floats`` = the number of model parameters,
        ``task_floats`` = 0 for every task (nothing is stored per task). Episodic memories
        and strategy state outside the model (EWC's Fisher, MC-SGD's anchors) are not counted.

        Returns:
            ``{"shared_floats": int, "task_floats": [float] * num_tasks, "definition": str}``.
        """
        return {"shared_floats": sum(p.numel() for p in model.parameters()),
                "task_floats": [0.0] * num_tasks,
                "definition": "shared_floats: model parameters (float32), shared by all tasks; "
                              "task_floats: nothing stored per task"}

    def overrides(self, hook: str) -> bool:
        """True when this strategy's class overrides ``hook`` of :class:`Strategy`."""
        return getattr(type(self), hook) is not getattr(Strategy, hook)


#: name -> factory(cfg) -> Strategy
STRATEGIES: Registry[Strategy] = Registry("strategy")
