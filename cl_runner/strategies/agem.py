"""A-GEM: Averaged Gradient Episodic Memory (Chaudhry, Ranzato, Rohrbach, Elhoseiny,
"Efficient Lifelong Learning with A-GEM", ICLR 2019, Section 4, Eq. 11; docs/papers.md, "A-GEM";
baseline of Mirzadeh et al. 2021, Table 1).

After each task, ``memory_per_class`` random examples of every class of the task are added to
an episodic memory (:class:`~cl_runner.strategies.memory.EpisodicMemory`). While training task
t >= 2, after the backward pass (``after_backward``) a reference gradient g_ref is computed on a
random memory batch of ``memory_batch_size`` examples (the whole memory when it is smaller),
with ``torch.autograd.grad`` so the current ``p.grad`` is not touched, and the step's gradient g
is replaced by

    g - (g . g_ref / g_ref . g_ref) g_ref    if g . g_ref < 0,   else g    (Eq. 11).

The decision is a ``torch.where`` on the dot product: no host sync in the step. How often the
projection happened is accumulated in a device tensor and read once per task.

On task-incremental benchmarks (Split CIFAR-100) each memory example's logits are masked to
the classes of the task it was stored from (:mod:`cl_runner.data.masking`), as the
reference implementation evaluates the memory loss with each example's task id.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cl_runner.data.masking import mask_logits
from cl_runner.strategies.base import STRATEGIES, Strategy, TaskContext, cost
from cl_runner.strategies.memory import EpisodicMemory
from cl_runner.strategies.schemas import AGEMConfig


def project_gradient(g: torch.Tensor, g_ref: torch.Tensor) -> torch.Tensor:
    """A-GEM's projection (Chaudhry et al. 2019, Eq. 11), without host syncs.

    Args:
        g: float ``(P,)`` the proposed gradient. g_ref: float ``(P,)`` the reference gradient.

    Returns:
        ``(P,)``: ``g - (g.g_ref / g_ref.g_ref) g_ref`` when ``g.g_ref < 0``, else ``g``
        (a new tensor in both cases). A zero g_ref leaves g unchanged.
    """
    return g - _coefficient(g @ g_ref, g_ref @ g_ref) * g_ref


def _coefficient(dot: torch.Tensor, ref_sq: torch.Tensor) -> torch.Tensor:
    """``dot / ref_sq`` where ``dot < 0``, else 0 (0-d tensors)."""
    tiny = torch.finfo(dot.dtype).tiny
    return torch.where(dot < 0, dot / ref_sq.clamp_min(tiny), torch.zeros_like(dot))


@STRATEGIES.register("agem", config=AGEMConfig)
class AGEM(Strategy):
    """A-GEM (see the module docstring). ``stats()`` reports the memory size and, per task,
    the fraction of steps whose gradient was projected."""

    #: set again in before_task: the run's generator and the benchmark's input transform
    transient_attributes = ("to_input", "generator")
    own_backward = "its reference gradient (in after_backward) runs"

    def __init__(self, cfg: AGEMConfig) -> None:
        super().__init__(cfg)
        cfg.validate()  # ConfigError on an out-of-range value (checked first by dispatch)
        self.memory = EpisodicMemory()
        self.mem_allowed: torch.Tensor | None = None  # (M, C) bool per memory example, or None
        self.to_input = None
        self.generator: torch.Generator | None = None
        self._projected: torch.Tensor | None = None  # device counter, read once per task
        self._steps = 0
        self.projection_history: list[dict[str, float]] = []

    def before_task(self, ctx: TaskContext) -> None:
        self.to_input = ctx.benchmark.to_input
        self.generator = ctx.generator
        self._projected = torch.zeros((), dtype=torch.int64, device=ctx.device)
        self._steps = 0

    def memory_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """A random memory batch ``(x, y, allowed)`` without replacement; the whole memory
        when it holds at most ``memory_batch_size`` examples."""
        m = len(self.memory)
        x, y, allowed = self.memory.x, self.memory.y, self.mem_allowed
        if m <= self.cfg.memory_batch_size:
            return x, y, allowed
        idx = torch.randperm(m, generator=self.generator)[: self.cfg.memory_batch_size]
        idx = idx.to(y.device)
        return x[idx], y[idx], None if allowed is None else allowed[idx]

    def reference_gradient(self, model: nn.Module, params: list[nn.Parameter]) -> list[torch.Tensor]:
        """g_ref: the gradient of the mean (masked) cross-entropy on a memory batch, one tensor
        per parameter; ``p.grad`` is left as it is."""
        x, y, allowed = self.memory_batch()
        logits = model(self.to_input(x))
        if allowed is not None:
            logits = mask_logits(logits, allowed)
        loss = F.cross_entropy(logits, y)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]

    def after_backward(self, model: nn.Module) -> None:
        if len(self.memory) == 0:  # task 1: nothing to protect
            return
        params = [p for p in model.parameters() if p.requires_grad and p.grad is not None]
        if not params:
            return
        grads = [p.grad for p in params]
        refs = self.reference_gradient(model, params)
        g = torch.cat([t.reshape(-1) for t in grads])
        r = torch.cat([t.reshape(-1) for t in refs])
        dot = g @ r
        coef = _coefficient(dot, r @ r)
        # g <- g - coef * g_ref, in place on every p.grad (coef = 0 when there is no conflict)
        torch._foreach_add_(grads, torch._foreach_mul(refs, -coef))
        self._projected += (dot < 0).to(torch.int64)
        self._steps += 1

    def after_training(self, ctx: TaskContext) -> None:
        if self._projected is not None and self._steps > 0:
            self.projection_history.append({
                "task": ctx.task, "steps": self._steps,
                "projected_fraction": int(self._projected) / self._steps})
        self.memory.add_per_class(ctx.train_x, ctx.train_y, ctx.task, self.cfg.memory_per_class,
                                  ctx.generator)
        masks = ctx.benchmark.class_masks("train")
        self.mem_allowed = None if masks is None else masks[self.memory.task - 1]

    def stats(self) -> dict[str, Any]:
        return {"episodic_memory_size": len(self.memory), "projections": self.projection_history}

    def parameter_cost(self, model: nn.Module, num_tasks: int) -> dict[str, Any]:
        """Task k: its ``memory_per_class`` examples per class in the episodic memory (input
        as stored, label, task id); the per-example class masks are derived from the task
        ids and not counted."""
        return cost(model, self.memory.floats_by_task(num_tasks), 0.0,
                    "task_floats: the episodic memory's examples of task k (input, label, task "
                    "id); state_floats: none")
