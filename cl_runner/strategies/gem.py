"""GEM: Gradient Episodic Memory (Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual
Learning", NeurIPS 2017, Section 3, Eqs. 6-11; reference code facebookresearch/
GradientEpisodicMemory ``model/gem.py``, read for understanding, not copied).

Memory: each task t keeps its own episodic memory M_t of ``memory_per_task`` examples, the last
m examples of its training stream (the authors' ring buffer, filled while the task trains; here
in ``train_batch``, wrapping around, where theirs drops the part of a batch that crosses the end
of the ring). M_t is frozen when task t ends.

Step (task t >= 2), in ``after_backward`` with the current gradient g in ``p.grad``: for every
past task k < t, the gradient g_k of the mean cross-entropy on the whole of M_k (one forward and
backward pass per past task, as the authors: BatchNorm sees each task's memory alone). The
constraints are <g~, g_k> >= 0 (Eq. 7). If every <g, g_k> >= 0, g is kept. Otherwise g is
replaced by the solution of the primal QP (Eq. 8) obtained from its dual (Eq. 10):

    minimize_v  1/2 v^T G G^T v + g^T G^T v   subject to  v >= gamma,
    g~ = G^T v* + g                                                         (Eq. 11)

with G the (t-1, P) matrix of the g_k and gamma = ``margin`` (the authors' ``memory_strength``;
gamma = 0 is the paper's Eq. 10; "adding a small constant gamma to v*" is the end of Sec. 3).
The dual is solved by quadprog (Goldfarb-Idnani dual active set), the solver the authors used:
``quadprog.solve_qp(P, -G g, I, gamma 1)`` with P = G G^T + ``qp_eps`` I.

Host sync: one per step from task 2 on, the algorithm's: the (t-1) dot products <g, g_k> and the
(t-1)^2 Gram matrix G G^T (computed on the device in float64) come to the host together, the
conflict test and the QP run there, and only v* ((t-1) numbers) goes back; the P-sized vectors
never leave the device (the authors copy g and G to NumPy).

Which outputs the memory loss uses: the loop's training masks (``benchmark.class_masks("train")``).
Task-incremental benchmarks mask each memory to the classes of its own task, as the authors'
code does with per-task output offsets on CIFAR-100; class-incremental training with every
output active (``train_mask`` null/false, Split MNIST's default) uses all outputs, as Mammoth's
class-IL GEM (``aimagelab/mammoth models/gem.py``: ``self.loss(self.forward(x), y)``);
``train_mask=true`` on class-IL masks each memory to its own task's classes, like the current
batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import quadprog
import torch
import torch.nn.functional as F
from torch import nn

from cl_runner.data.masking import mask_logits
from cl_runner.strategies.base import STRATEGIES, Strategy, TaskContext, cost
from cl_runner.strategies.memory import EpisodicMemory
from cl_runner.strategies.memory_schemas import GEMConfig
from cl_runner.training.batch import Batch


def solve_dual(dots: np.ndarray, gram: np.ndarray, margin: float, eps: float) -> np.ndarray:
    """v* of GEM's dual QP (Eq. 10 with v >= margin), by quadprog.

    Args:
        dots: float64 ``(K,)``, <g, g_k> for the K past tasks.
        gram: float64 ``(K, K)``, G G^T.
        margin: gamma, the lower bound of every v_k.
        eps: added to the diagonal of G G^T (0: the authors' QP).

    Returns:
        float64 ``(K,)``: argmin_v 1/2 v^T (G G^T + eps I) v + dots^T v s.t. v >= margin.

    Raises:
        ValueError: quadprog's, when G G^T + eps I is not positive definite (raise ``qp_eps``).
    """
    k = len(dots)
    p = 0.5 * (gram + gram.T) + eps * np.eye(k)
    return quadprog.solve_qp(p, -dots, np.eye(k), np.full(k, float(margin)))[0]


def project(g: torch.Tensor, memories: torch.Tensor, margin: float = 0.5,
            eps: float = 0.0) -> torch.Tensor:
    """GEM's projection of one gradient (the authors' ``project2cone2``), for tests and analyses.

    Args:
        g: float ``(P,)`` the proposed gradient.
        memories: float ``(K, P)`` the past tasks' gradients g_k (rows).

    Returns:
        ``(P,)`` float64: ``g`` itself when no <g, g_k> is negative, else G^T v* + g (Eq. 11).
    """
    gd, md = g.double(), memories.double()
    dots = md @ gd
    if not bool((dots < 0).any()):
        return gd.clone()
    v = solve_dual(dots.cpu().numpy(), (md @ md.T).cpu().numpy(), margin, eps)
    return md.T @ torch.from_numpy(v).to(md.device) + gd


@STRATEGIES.register("gem", config=GEMConfig)
class GEM(Strategy):
    """GEM (see the module docstring). ``stats()`` reports the memory size and, per task, the
    fraction of steps whose gradient was projected."""

    #: set again in before_task: the benchmark's input transform and masks, the ring of task t
    transient_attributes = ("to_input", "train_masks", "_ring_x", "_ring_y", "_ring_pos",
                            "_ring_seen", "_projected", "_steps")
    own_backward = "its memory gradients (in after_backward) run"

    def __init__(self, cfg: GEMConfig) -> None:
        super().__init__(cfg)
        cfg.validate()  # ConfigError on an out-of-range value (checked first by dispatch)
        self.memories: list[EpisodicMemory] = []  # M_1 .. M_{t-1}, one per past task
        self.memory_tasks: list[int] = []  # the 1-based task id of each memory
        self.projection_history: list[dict[str, float]] = []
        self.to_input = None
        self.train_masks: torch.Tensor | None = None
        self._ring_x: torch.Tensor | None = None
        self._ring_y: torch.Tensor | None = None
        self._ring_pos = 0
        self._ring_seen = 0
        self._projected = 0
        self._steps = 0

    def before_task(self, ctx: TaskContext) -> None:
        self.to_input = ctx.benchmark.to_input
        self.train_masks = ctx.benchmark.class_masks("train")
        m = self.cfg.memory_per_task
        self._ring_x = torch.empty((m, *ctx.train_x.shape[1:]), dtype=ctx.train_x.dtype,
                                   device=ctx.device)
        self._ring_y = torch.empty(m, dtype=ctx.train_y.dtype, device=ctx.device)
        self._ring_pos = self._ring_seen = 0
        self._projected = self._steps = 0

    def train_batch(self, batch: Batch) -> Batch:
        """Write the stream batch into task t's ring (the last m examples seen); the batch
        itself is unchanged. Slice copies, no index tensors, no sync."""
        x, y = batch.x[: batch.num_current], batch.y[: batch.num_current]
        m, b = self.cfg.memory_per_task, len(y)
        if b >= m:  # only the batch's last m examples survive
            x, y, b = x[b - m:], y[b - m:], m
        first = min(b, m - self._ring_pos)
        end = self._ring_pos + first
        self._ring_x[self._ring_pos:end] = x[:first]
        self._ring_y[self._ring_pos:end] = y[:first]
        if first < b:  # wrap around
            self._ring_x[: b - first] = x[first:]
            self._ring_y[: b - first] = y[first:]
        self._ring_pos = (self._ring_pos + b) % m
        self._ring_seen += b
        return batch

    def memory_gradients(self, model: nn.Module, params: list[nn.Parameter]) -> torch.Tensor:
        """G: float ``(K, P)``, row k the gradient of the mean (masked) cross-entropy on the
        whole memory of past task k+1 with respect to ``params`` (flattened, in order);
        ``p.grad`` is left as it is."""
        rows = []
        for mem, task in zip(self.memories, self.memory_tasks, strict=True):
            logits = model(self.to_input(mem.x))
            if self.train_masks is not None:
                logits = mask_logits(logits, self.train_masks[task - 1])
            grads = torch.autograd.grad(F.cross_entropy(logits, mem.y), params,
                                        allow_unused=True)
            rows.append(torch.cat([(torch.zeros_like(p) if gr is None else gr).reshape(-1)
                                   for p, gr in zip(params, grads, strict=True)]))
        return torch.stack(rows)

    def after_backward(self, model: nn.Module) -> None:
        if not self.memories:  # task 1: nothing to protect
            return
        params = [p for p in model.parameters() if p.grad is not None]
        grads = [p.grad for p in params]
        g = torch.cat([t.reshape(-1) for t in grads]).double()
        mem = self.memory_gradients(model, params).double()
        k = len(self.memories)
        # the algorithm's one host sync: <g, g_k> and G G^T together
        host = torch.cat([mem @ g, (mem @ mem.T).reshape(-1)]).cpu().numpy()
        self._steps += 1
        dots = host[:k]
        if not (dots < 0).any():
            return
        try:
            v = solve_dual(dots, host[k:].reshape(k, k), self.cfg.margin, self.cfg.qp_eps)
        except ValueError as exc:
            raise ValueError(f"GEM's dual QP failed ({exc}): G G^T is singular; set "
                             f"strategy.qp_eps > 0 (now {self.cfg.qp_eps})") from exc
        new = (mem.T @ torch.from_numpy(v).to(mem.device) + g).to(grads[0].dtype)
        torch._foreach_copy_(grads, [t.view_as(p) for t, p in zip(
            new.split([p.numel() for p in params]), grads, strict=True)])
        self._projected += 1

    def after_training(self, ctx: TaskContext) -> None:
        if self._steps:
            self.projection_history.append({
                "task": ctx.task, "steps": self._steps,
                "projected_fraction": self._projected / self._steps})
        held = min(self._ring_seen, self.cfg.memory_per_task)
        mem = EpisodicMemory()
        if held:
            mem.add(self._ring_x[:held], self._ring_y[:held], ctx.task)
            self.memories.append(mem)
            self.memory_tasks.append(ctx.task)
        self._ring_x = self._ring_y = None

    def stats(self) -> dict[str, Any]:
        return {"episodic_memory_size": sum(len(m) for m in self.memories),
                "projections": self.projection_history}

    def parameter_cost(self, model: nn.Module, num_tasks: int) -> dict[str, Any]:
        """Task k: its ``memory_per_task`` examples (input as stored, label, task id)."""
        per_task = [0.0] * num_tasks
        for mem in self.memories:
            per_task = [a + b for a, b in zip(per_task, mem.floats_by_task(num_tasks),
                                              strict=True)]
        return cost(model, per_task, 0.0,
                    "task_floats: the episodic memory of task k (input, label, task id); "
                    "state_floats: none")
