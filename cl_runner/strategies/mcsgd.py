"""MC-SGD: Mode Connectivity SGD (Mirzadeh et al., "Linear Mode Connectivity in Multitask and
Continual Learning", ICLR 2021, Section 4 and Algorithm 1; docs/papers.md, "MC-SGD").

Per task t:
  1. continual phase (the loop's plain SGD) gives ``w_hat_t``, starting from ``w_hat_{t-1}``
     (``continual_start=w_hat``, the authors' code) or ``w_bar_{t-1}`` (``w_bar``, CL-Gym);
  2. line phase (t >= 2), in ``after_training``: start at
     ``w = w_bar_{t-1} + beta * (w_hat_t - w_bar_{t-1})`` and minimize
         sum_{alpha in {0, 1/K, ..., 1}} L_mem(w_bar_{t-1} + alpha (w - w_bar_{t-1}))
                                        + L_sub(w_hat_t   + alpha (w - w_hat_t))
     with SGD over minibatches of the episodic memory (tasks 1..t) and of a random subset of
     task t; the result is ``w_bar_t``, the model that is evaluated. ``w_bar_1 = w_hat_1``.

The line gradient (``line_gradient``; alpha_j = j/K, p_j = anchor + alpha_j (w - anchor) for
each term's anchor, L the batch-mean cross-entropy):
  - ``exact``: sum_j alpha_j dL/dw(p_j), the gradient of the objective above;
  - ``unweighted``: sum_j dL/dw(p_j), every point weight 1 (this runner's ``authors`` before
    2026-12-03);
  - ``authors``: what the authors' code (github imirzadeh/CL-LinearModeConnectivity,
    ``core/mode_connectivity.py`` ``get_line_loss``/``get_clf_loss``, ``core/train_methods.py``
    ``train_task_LMC_offline``, ``core/data_utils.py``) computes: gradients are never zeroed
    between the K+1 points, so point j enters with weight (K+1-j); ``get_clf_loss`` divides the
    batch-mean loss by the batch size again, so each term is scaled by 1/B of its batch. Their
    memory holds ``memory_per_class * classes`` examples per task drawn uniformly *with
    replacement* (MNIST; per class without replacement on Split CIFAR-100) and is batched
    per task (a batch never mixes tasks), the batch list shuffled; the subset of task t is
    drawn with replacement (MNIST; per class on CIFAR-100); step i uses the i-th batch of each
    term that still has one (no cycling: the shorter term simply stops).
The line phase runs in train mode (dropout on, as the continual phase) by default, or in eval
mode (dropout off, as the authors' ``get_clf_loss``) with ``line_train_mode=false``; BatchNorm
running statistics are never changed by it (docs/results/mcsgd_line_mode.md: why the default).

On task-incremental benchmarks (Split CIFAR-100) every loss of the line phase uses the training
masks of :mod:`cl_runner.data.masking`: the subset is masked to task t's classes and each
memory example to the classes of the task it was stored from (``EpisodicMemory.task``), as the
authors' code calls the model with each batch's task id.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from cl_runner.data.masking import mask_logits, rows
from cl_runner.strategies.base import STRATEGIES, Strategy, TaskContext, cost
from cl_runner.strategies.memory import EpisodicMemory, per_class_indices, stored_floats
from cl_runner.strategies.schemas import ContinualStart, LineGradient, MCSGDConfig
from cl_runner.training.hooks import PhaseRunner
from cl_runner.training.steps import classification_loss, cyclic_batch, shuffled

LineTerm = tuple  # (anchor dict, x (N, ...) uint8, y (N,) int64, allowed mask or None)


def _clone_params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _group_batches(sizes: list[int], batch_size: int, generator: torch.Generator,
                   device: torch.device) -> list[torch.Tensor]:
    """The authors' line-phase batching: consecutive groups of ``sizes`` examples (e.g. the
    memory's tasks), each cut into batches of at most ``batch_size`` in stored order, the list
    of batches in a random order drawn from ``generator``. Returns int64 index tensors."""
    batches, start = [], 0
    for size in sizes:
        batches += [torch.arange(start + o, start + min(o + batch_size, size), device=device)
                    for o in range(0, size, batch_size)]
        start += size
    return [batches[j] for j in torch.randperm(len(batches), generator=generator).tolist()]


def _full_batch(batches: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``batches`` as one step of the authors' full-batch line phase: their indices
    concatenated, and per-example weights ``1 / (B_b * N)`` (B_b the example's batch size, N
    all examples), so the weighted sum of per-example losses is ``get_clf_loss`` over the
    whole loader: the sum of batch means divided by N."""
    n = sum(len(b) for b in batches)
    weights = torch.cat([torch.full((len(b),), 1.0 / (len(b) * n), device=b.device)
                         for b in batches])
    return torch.cat(batches), weights


@STRATEGIES.register("mcsgd", config=MCSGDConfig)
class MCSGD(Strategy):
    """MC-SGD (see the module docstring). ``stats()`` reports, per task t >= 2, the line
    objective on the whole memory and subset before and after the line phase."""

    own_backward = "its line phase runs"

    def __init__(self, cfg: MCSGDConfig) -> None:
        super().__init__(cfg)
        cfg.validate()  # ConfigError on an out-of-range value (checked first by dispatch)
        self.memory = EpisodicMemory()
        self.w_hat: dict[str, torch.Tensor] | None = None  # w_hat_{t}
        self.w_bar: dict[str, torch.Tensor] | None = None  # w_bar_{t}
        self.w_hat_buffers: dict[str, torch.Tensor] = {}  # BatchNorm buffers at w_hat_{t}
        self.line_history: list[dict[str, float]] = []

    def before_task(self, ctx: TaskContext) -> None:
        if ctx.task > 1 and self.cfg.continual_start == ContinualStart.w_hat:
            self._load(ctx.model, self.w_hat)

    def after_training(self, ctx: TaskContext) -> None:
        cfg = self.cfg
        w_hat = _clone_params(ctx.model)
        self.w_hat_buffers = {n: b.detach().clone() for n, b in ctx.model.named_buffers()}
        masks = ctx.benchmark.class_masks("train")  # (T, C) bool or None
        authors = cfg.line_gradient == LineGradient.authors
        if authors and masks is None:  # the authors' MNIST memory: uniform, with replacement
            classes = int(torch.unique(ctx.train_y).numel())
            self.memory.add_with_replacement(ctx.train_x, ctx.train_y, ctx.task,
                                             cfg.memory_per_class * classes, ctx.generator)
        else:
            self.memory.add_per_class(ctx.train_x, ctx.train_y, ctx.task,
                                      cfg.memory_per_class, ctx.generator)
        if ctx.task == 1:
            self.w_hat, self.w_bar = w_hat, w_hat
            return
        pick = self.subset_indices(ctx.train_y, ctx.generator, masks is not None)
        sub_x, sub_y = ctx.train_x[pick], ctx.train_y[pick]
        w_prev = self.w_bar
        to_input = ctx.benchmark.to_input
        mem_allowed = None if masks is None else masks[self.memory.task - 1]  # (M, C)
        sub_allowed = None if masks is None else masks[ctx.task - 1]  # (C,)
        terms = ((w_prev, self.memory.x, self.memory.y, mem_allowed),
                 (w_hat, sub_x, sub_y, sub_allowed))
        groups = [self.memory.task_counts(), [len(sub_y)]] if authors else None

        start = {n: w_prev[n] + cfg.beta * (w_hat[n] - w_prev[n]) for n in w_hat}
        self._load(ctx.model, start)
        before = self.line_objective(ctx.model, terms, to_input)
        self.line_phase(ctx.model, terms, to_input, ctx.generator, ctx.phases, ctx.task, groups,
                        autocast=ctx.precision.autocast)
        after = self.line_objective(ctx.model, terms, to_input)
        self.line_history.append({"task": ctx.task, "line_loss_before": before,
                                  "line_loss_after": after})
        self.w_hat, self.w_bar = w_hat, _clone_params(ctx.model)

    def subset_indices(self, y: torch.Tensor, generator: torch.Generator,
                       task_incremental: bool) -> torch.Tensor:
        """Indices into task t's training set ``y (N,)`` of the line phase's subset:
        ``min(subset_size, N)`` without replacement; with ``line_gradient=authors``
        ``subset_size`` drawn with replacement (MNIST) or ``subset_size / classes`` per class
        without replacement, shuffled (task-incremental: the authors' CIFAR-100 code).
        int64 ``(n_sub,)`` on ``y``'s device."""
        k = self.cfg.subset_size
        if self.cfg.line_gradient != LineGradient.authors:
            return torch.randperm(len(y), generator=generator)[:min(k, len(y))].to(y.device)
        if not task_incremental:
            return torch.randint(len(y), (k,), generator=generator).to(y.device)
        classes = int(torch.unique(y).numel())
        pick = per_class_indices(y, max(1, k // classes), generator)
        return pick[torch.randperm(len(pick), generator=generator).to(y.device)]

    def alphas(self) -> list[float]:
        """The K+1 interpolation points 0, 1/K, ..., 1."""
        k = self.cfg.line_samples
        return [i / k for i in range(k + 1)]

    def point_weights(self) -> list[tuple[float, float]]:
        """``(alpha_j, weight_j)`` of the points that enter the line gradient (module
        docstring): ``exact`` (alpha_j, alpha_j) for j >= 1; ``unweighted`` (alpha_j, 1);
        ``authors`` (alpha_j, K + 1 - j)."""
        alphas = self.alphas()
        if self.cfg.line_gradient == LineGradient.exact:
            return [(a, a) for a in alphas if a != 0.0]
        if self.cfg.line_gradient == LineGradient.unweighted:
            return [(a, 1.0) for a in alphas]
        k = self.cfg.line_samples
        return [(a, float(k + 1 - j)) for j, a in enumerate(alphas)]

    def line_phase(self, model: nn.Module, terms: tuple[LineTerm, ...], to_input,
                   generator: torch.Generator, phases: PhaseRunner | None = None, task: int = 0,
                   groups: list[list[int]] | None = None,
                   autocast: Callable[[], AbstractContextManager] = nullcontext) -> None:
        """Minimize the line objective over ``model``'s parameters in place, with SGD
        (``lmc_lr``, ``lmc_momentum``) and the gradient of ``line_gradient`` (module docstring).

        Runs as the phase ``"line"`` of ``phases`` (the loop's :class:`PhaseRunner`, from
        ``ctx.phases``: progress, interruption and the divergence check of the continual
        phase), ``lmc_epochs`` passes. ``exact``/``unweighted``: ``max_i ceil(N_i / B)``
        steps per pass; each term draws its own shuffle per pass and reads it as a cycle
        (:func:`~cl_runner.training.steps.cyclic_batch`), so the smaller term repeats.
        ``authors``: each term's groups are cut into batches of at most B, the batch list is
        shuffled once (the same batches every pass, as the authors' prebuilt loaders), and
        step i uses batch i of every term that has one.

        Train mode (dropout on) when ``line_train_mode`` (the default), else eval mode; in
        train mode the buffers (BatchNorm running statistics) are restored afterwards, so
        they never change.

        Args:
            terms: ``((anchor, x, y, allowed), ...)``: each anchor a name -> tensor dict of
                weights, x uint8 inputs ``(N_i, ...)``, y int64 ``(N_i,)``, allowed the
                task-incremental mask (``None``, bool ``(C,)`` or per example ``(N_i, C)``);
                the objective sums the (masked) loss on (x, y) at every point of the segment
                from the anchor to w.
            phases: the runner of the phase (None: one without hooks).
            task: the 1-based task id, for the hooks.
            groups: ``authors`` only: per term, sizes of its consecutive groups (the memory:
                examples per task); a batch never spans two groups. None: one group per term.
            autocast: the run's ``hardware.precision`` context (``ctx.precision.autocast``):
                each point's forward pass and loss run under it (bf16; 16-mixed is refused,
                as this phase's backward has no gradient scaler).
        """
        cfg = self.cfg
        params = dict(model.named_parameters())
        opt = torch.optim.SGD(params.values(), lr=cfg.lmc_lr, momentum=cfg.lmc_momentum)
        points = self.point_weights()
        authors = cfg.line_gradient == LineGradient.authors
        bs = cfg.lmc_batch_size
        if authors:
            sizes = groups or [[len(y)] for _, _, y, _ in terms]
            plans = [_group_batches(g, bs, generator, y.device)
                     for g, (_, _, y, _) in zip(sizes, terms, strict=True)]
            if cfg.lmc_full_batch:  # one step over all batches of each term
                plans = [[_full_batch(p)] for p in plans]
            n_steps = max(len(p) for p in plans)

            def start_epoch() -> list[list[torch.Tensor]]:
                return plans

            def batch(state, k: int, i: int) -> torch.Tensor | None:
                return state[k][i] if i < len(state[k]) else None
        else:
            n_steps = max(math.ceil(len(y) / bs) for _, _, y, _ in terms)

            def start_epoch() -> list[torch.Tensor]:
                return [shuffled(len(y), generator, y.device) for _, _, y, _ in terms]

            def batch(state, k: int, i: int) -> torch.Tensor | None:
                return cyclic_batch(state[k], i, bs)

        def step(state, i: int) -> torch.Tensor:
            grads = {n: torch.zeros_like(p) for n, p in params.items()}
            total = torch.zeros((), device=next(iter(grads.values())).device)
            for k, (anchor, x, y, allowed) in enumerate(terms):
                idx = batch(state, k, i)
                if idx is None:  # authors: this term has no batch left
                    continue
                idx, per_example = idx if isinstance(idx, tuple) else (idx, None)
                xb, yb, ab = to_input(x[idx]), y[idx], rows(allowed, idx)
                # authors: get_clf_loss's extra 1/B (full batch: per-example weights hold it)
                scale = 1.0 / len(idx) if authors and per_example is None else 1.0
                for alpha, weight in points:
                    point = {n: (anchor[n] + alpha * (p.detach() - anchor[n])).requires_grad_()
                             for n, p in params.items()}
                    with autocast():
                        logits = functional_call(model, point, (xb,))
                        if per_example is None:
                            loss = classification_loss(logits, yb, ab)
                        else:
                            if ab is not None:
                                logits = mask_logits(logits, ab)
                            loss = (F.cross_entropy(logits, yb, reduction="none")
                                    * per_example).sum()
                    g = torch.autograd.grad(loss, list(point.values()))
                    for n, gi in zip(point, g, strict=True):
                        grads[n].add_(gi, alpha=weight * scale)
                    total += loss.detach()
            for n, p in params.items():
                p.grad = grads[n]
            opt.step()
            return total

        was_training = model.training
        kept = ({n: b.detach().clone() for n, b in model.named_buffers()}
                if cfg.line_train_mode else None)
        model.train(cfg.line_train_mode)
        (phases or PhaseRunner()).run(task, "line", cfg.lmc_epochs, n_steps, start_epoch, step)
        for p in params.values():
            p.grad = None
        if kept:
            with torch.no_grad():
                for n, b in model.named_buffers():
                    b.copy_(kept[n])
        model.train(was_training)

    @torch.no_grad()
    def line_objective(self, model: nn.Module, terms, to_input) -> float:
        """The line objective at ``model``'s current weights on the whole memory and subset:
        sum over alpha and terms of the mean (masked) cross-entropy (nats), in eval mode."""
        was_training = model.training
        model.eval()
        w = {n: p.detach() for n, p in model.named_parameters()}
        total = torch.zeros((), device=next(model.parameters()).device)
        for anchor, x, y, allowed in terms:
            xin = to_input(x)
            for alpha in self.alphas():
                point = {n: anchor[n] + alpha * (w[n] - anchor[n]) for n in w}
                logits = functional_call(model, point, (xin,))
                if allowed is not None:
                    logits = mask_logits(logits, allowed)
                total += F.cross_entropy(logits, y)
        model.train(was_training)
        return float(total)

    @staticmethod
    @torch.no_grad()
    def _load(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
        for n, p in model.named_parameters():
            p.copy_(weights[n])

    def stats(self) -> dict[str, Any]:
        return {"episodic_memory_size": len(self.memory), "line_phase": self.line_history}

    def solutions(self, model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
        """``w_hat_t`` (end of the continual phase, with the buffers it had then) and
        ``w_bar_t`` (the evaluated model); after task 1 both are ``w_hat_1``."""
        w_hat = {n: self.w_hat[n] if n in self.w_hat else self.w_hat_buffers[n]
                 for n in model.state_dict()}
        return {"w_hat": w_hat, "w_bar": model.state_dict()}

    def parameter_cost(self, model: nn.Module, num_tasks: int) -> dict[str, Any]:
        """Task k: its examples in the episodic memory (input as stored, label, task id).
        State: the anchors ``w_hat_t`` and ``w_bar_t`` (one parameter vector each; one in all
        while they are the same, after task 1) and the BatchNorm buffers at ``w_hat_t``."""
        anchors = [self.w_hat] if self.w_bar is None or self.w_bar is self.w_hat else [
            self.w_hat, self.w_bar]
        state = sum(stored_floats(*w.values()) for w in anchors if w is not None)
        state += stored_floats(*self.w_hat_buffers.values())
        return cost(model, self.memory.floats_by_task(num_tasks), state,
                    "task_floats: the episodic memory's examples of task k (input, label, task "
                    "id); state_floats: the anchor weights w_hat_t and w_bar_t and the "
                    "BatchNorm buffers at w_hat_t")
