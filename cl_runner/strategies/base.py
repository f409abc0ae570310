"""The strategy interface: the training hooks of :class:`~cl_runner.training.hooks.StrategyHooks`
(called by the one loop, DESIGN.md principle 1) plus what the runner reads from a strategy
(stats, checkpoints, extra accuracy matrices, parameter cost).

A strategy overrides only the hooks it needs. The loop checks once per task which hooks are
overridden and skips the others, so an unused hook costs nothing in the training step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cl_runner.registry import Registry
from cl_runner.training.hooks import StrategyHooks, TaskContext

__all__ = ["STRATEGIES", "Strategy", "TaskContext"]


class Strategy(StrategyHooks):
    """Base class: plain fine-tuning. Every hook is a no-op; the hooks and their order are
    documented in :class:`~cl_runner.training.hooks.StrategyHooks`.

    After the run the runner reads ``stats()``, ``parameter_cost(model, T)`` and
    ``accuracy_matrices()`` into the run files.
    """

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

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


#: name -> factory(cfg) -> Strategy
STRATEGIES: Registry[Strategy] = Registry("strategy")
