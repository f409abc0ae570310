"""SupSup: Supermasks in Superposition (Wortsman et al., NeurIPS 2020, Sections 3-4).

One fixed, randomly initialized network (``model=masked_mlp`` / ``masked_resnet18_reduced``);
task t learns its own supermask: fresh real-valued scores (score slot t-1), the top-k% of
|scores| per layer kept, straight-through gradients (edge-popup). Only the scores of task t
are given to the optimizer, so the fixed weights and every earlier task's mask stay exactly
as they were. With the task given, task t is evaluated with its mask (no forgetting by
construction); without it, with the mask of the task found by one-shot inference
(:mod:`cl_runner.strategies.supermask`).

Stored per task: one binary mask, ``num_weights`` bits (``num_weights / 32`` float32
equivalents in ``summary.json``'s ``parameter_cost``; SupSup stores the masks uncompressed
in its experiments, and so does this count).
"""

from __future__ import annotations

from cl_runner.models.supermask import SupermaskNet
from cl_runner.strategies.base import STRATEGIES, TaskContext
from cl_runner.strategies.schemas import SupSupConfig
from cl_runner.strategies.supermask import (
    SupermaskStrategy,
    supermask_net,
)


@STRATEGIES.register("supsup", config=SupSupConfig)
class SupSup(SupermaskStrategy):
    """SupSup (module docstring). Task 1 trains the network's slot 0; task t >= 2 a new slot
    whose scores are drawn from the run's generator."""

    def before_task(self, ctx: TaskContext) -> None:
        net = supermask_net(ctx.model, self.cfg.name)
        self.slot = 0 if ctx.task == 1 else net.add_slot(ctx.generator)
        net.use_slot(self.slot)
        self.params = net.slot_parameters(self.slot)

    def after_training(self, ctx: TaskContext) -> None:
        net = supermask_net(ctx.model, self.cfg.name)
        self.params = []
        self.learned(ctx, net.slot_masks(self.slot))

    def task_floats(self, model: SupermaskNet, num_tasks: int) -> tuple[list[float], float, str]:
        return ([model.num_weights() / 32] * num_tasks, 0.0,
                "; task_floats: one binary mask per task (num_weights bits = num_weights/32 floats)")
