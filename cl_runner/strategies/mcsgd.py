"""MC-SGD: Mode Connectivity SGD (Mirzadeh et al., "Linear Mode Connectivity in Multitask and
Continual Learning", ICLR 2021, Section 4 and Algorithm 1; PAPERS.md, "MC-SGD").

Per task t:
  1. continual phase (the loop's plain SGD) gives ``w_hat_t``, starting from ``w_hat_{t-1}``
     (``continual_start=w_hat``, the authors' code) or ``w_bar_{t-1}`` (``w_bar``, CL-Gym);
  2. line phase (t >= 2), in ``after_task``: start at
     ``w = w_bar_{t-1} + beta * (w_hat_t - w_bar_{t-1})`` and minimize
         sum_{alpha in {0, 1/K, ..., 1}} L_mem(w_bar_{t-1} + alpha (w - w_bar_{t-1}))
                                        + L_sub(w_hat_t   + alpha (w - w_hat_t))
     with SGD over minibatches of the episodic memory (tasks 1..t) and of a random subset of
     task t; the result is ``w_bar_t``, the model that is evaluated. ``w_bar_1 = w_hat_1``.

On task-incremental benchmarks (Split CIFAR-100) every loss of the line phase uses the training
masks of :mod:`cl_runner.data.masking`: the subset is masked to task t's classes and each
memory example to the classes of the task it was stored from (``EpisodicMemory.task``), as the
authors' code calls the model with each batch's task id.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from cl_runner.data.masking import mask_logits, rows
from cl_runner.errors import ConfigError
from cl_runner.strategies.base import STRATEGIES, Strategy, TaskContext
from cl_runner.strategies.memory import EpisodicMemory
from cl_runner.strategies.schemas import ContinualStart, LineGradient, MCSGDConfig
from cl_runner.training.hooks import PhaseRunner
from cl_runner.training.steps import classification_loss, cyclic_batch, shuffled


def _clone_params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@STRATEGIES.register("mcsgd", config=MCSGDConfig)
class MCSGD(Strategy):
    """MC-SGD (see the module docstring). ``stats()`` reports, per task t >= 2, the line
    objective on the whole memory and subset before and after the line phase."""

    def __init__(self, cfg: MCSGDConfig) -> None:
        super().__init__(cfg)
        for key in ("lmc_batch_size", "lmc_epochs", "line_samples", "subset_size"):
            if getattr(cfg, key) < 1:
                raise ConfigError(f"strategy.{key} must be >= 1, got {getattr(cfg, key)}")
        if cfg.lmc_lr <= 0:
            raise ConfigError(f"strategy.lmc_lr must be > 0, got {cfg.lmc_lr}")
        self.memory = EpisodicMemory()
        self.w_hat: dict[str, torch.Tensor] | None = None  # w_hat_{t}
        self.w_bar: dict[str, torch.Tensor] | None = None  # w_bar_{t}
        self.w_hat_buffers: dict[str, torch.Tensor] = {}  # BatchNorm buffers at w_hat_{t}
        self.line_history: list[dict[str, float]] = []

    def before_task(self, ctx: TaskContext) -> None:
        if ctx.task > 1 and self.cfg.continual_start == ContinualStart.w_hat:
            self._load(ctx.model, self.w_hat)

    def after_task(self, ctx: TaskContext) -> None:
        cfg = self.cfg
        w_hat = _clone_params(ctx.model)
        self.w_hat_buffers = {n: b.detach().clone() for n, b in ctx.model.named_buffers()}
        self.memory.add_per_class(ctx.train_x, ctx.train_y, ctx.task, cfg.memory_per_class,
                                  ctx.generator)
        if ctx.task == 1:
            self.w_hat, self.w_bar = w_hat, w_hat
            return
        n_sub = min(cfg.subset_size, len(ctx.train_y))
        pick = torch.randperm(len(ctx.train_y), generator=ctx.generator)[:n_sub].to(ctx.device)
        sub_x, sub_y = ctx.train_x[pick], ctx.train_y[pick]
        w_prev = self.w_bar
        to_input = ctx.benchmark.to_input
        masks = ctx.benchmark.class_masks("train")  # (T, C) bool or None
        mem_allowed = None if masks is None else masks[self.memory.task - 1]  # (M, C)
        sub_allowed = None if masks is None else masks[ctx.task - 1]  # (C,)
        terms = ((w_prev, self.memory.x, self.memory.y, mem_allowed),
                 (w_hat, sub_x, sub_y, sub_allowed))

        start = {n: w_prev[n] + cfg.beta * (w_hat[n] - w_prev[n]) for n in w_hat}
        self._load(ctx.model, start)
        before = self.line_objective(ctx.model, terms, to_input)
        self.line_phase(ctx.model, terms, to_input, ctx.generator, ctx.phases, ctx.task)
        after = self.line_objective(ctx.model, terms, to_input)
        self.line_history.append({"task": ctx.task, "line_loss_before": before,
                                  "line_loss_after": after})
        self.w_hat, self.w_bar = w_hat, _clone_params(ctx.model)

    def alphas(self) -> list[float]:
        """The K+1 interpolation points 0, 1/K, ..., 1."""
        k = self.cfg.line_samples
        return [i / k for i in range(k + 1)]

    def line_phase(self, model: nn.Module, terms, to_input, generator: torch.Generator,
                   phases: PhaseRunner | None = None, task: int = 0) -> None:
        """Minimize the line objective over ``model``'s parameters in place.

        Runs as the phase ``"line"`` of ``phases`` (the loop's :class:`PhaseRunner`, from
        ``ctx.phases``: progress, interruption and the divergence check of the continual
        phase), ``lmc_epochs`` passes of ``max_i ceil(N_i / lmc_batch_size)`` steps; each term
        draws its own shuffle per pass and reads it as a cycle
        (:func:`~cl_runner.training.steps.cyclic_batch`), so the smaller term repeats.

        Args:
            terms: ``((anchor, x, y, allowed), ...)``: each anchor a name -> tensor dict of
                weights, x uint8 inputs ``(N_i, ...)``, y int64 ``(N_i,)``, allowed the
                task-incremental mask (``None``, bool ``(C,)`` or per example ``(N_i, C)``);
                the objective sums the (masked) loss on (x, y) at every point of the segment
                from the anchor to w.
            phases: the runner of the phase (None: one without hooks).
            task: the 1-based task id, for the hooks.
        """
        cfg = self.cfg
        params = dict(model.named_parameters())
        opt = torch.optim.SGD(params.values(), lr=cfg.lmc_lr, momentum=cfg.lmc_momentum)
        exact = cfg.line_gradient == LineGradient.exact
        bs = cfg.lmc_batch_size
        n_steps = max(math.ceil(len(y) / bs) for _, _, y, _ in terms)
        alphas = [a for a in self.alphas() if not (exact and a == 0.0)]

        def start_epoch() -> list[torch.Tensor]:
            return [shuffled(len(y), generator, y.device) for _, _, y, _ in terms]

        def step(orders: list[torch.Tensor], i: int) -> torch.Tensor:
            grads = {n: torch.zeros_like(p) for n, p in params.items()}
            total = torch.zeros((), device=next(iter(grads.values())).device)
            for (anchor, x, y, allowed), order in zip(terms, orders, strict=True):
                idx = cyclic_batch(order, i, bs)
                xb, yb, ab = to_input(x[idx]), y[idx], rows(allowed, idx)
                for alpha in alphas:
                    point = {n: (anchor[n] + alpha * (p.detach() - anchor[n])).requires_grad_()
                             for n, p in params.items()}
                    loss = classification_loss(functional_call(model, point, (xb,)), yb, ab)
                    g = torch.autograd.grad(loss, list(point.values()))
                    scale = alpha if exact else 1.0
                    for n, gi in zip(point, g, strict=True):
                        grads[n].add_(gi, alpha=scale)
                    total += loss.detach()
            for n, p in params.items():
                p.grad = grads[n]
            opt.step()
            return total

        model.train()
        (phases or PhaseRunner()).run(task, "line", cfg.lmc_epochs, n_steps, start_epoch, step)
        for p in params.values():
            p.grad = None

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
