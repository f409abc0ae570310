"""ImpressLearn: continual learning via combined task impressions (Bhardwaj et al. 2022,
arXiv 2210.01987; docs/papers.md, "ImpressLearn").

A fixed random network as in SupSup (:mod:`cl_runner.strategies.supsup`). A basis of B binary
supermasks ("impressions") M_1..M_B is built first; every later task learns only coefficients
c, and its mask in layer l is the linear combination of the basis masks

    superposition (default):  M_t,l = sum_b c_b M_b,l                   (real-valued mask)
    topk:                     M_t,l = TopK_k(sum_b c_b M_b,l + eps U_l)  (binary; straight-
                              through gradient to c; U_l a fixed U[0,1) tensor drawn once, eps
                              = 1e-6, breaks the ties of a sum of binary masks)

with c shared by all layers (``coefficients=network``: B floats per task) or one vector per
layer (``coefficients=layer``, default: B x L floats per task). c starts at 1/B
(``coefficient_init`` overrides it). The basis (``basis``):

    heterogeneous (default)  the SupSup masks of tasks 1..B (each trained on its task alone;
                             tasks 1..B are evaluated with their own mask)
    homogeneous              B masks of task 1 from different score seeds, trained together in
                             one pass over task 1 (each batch is replicated B times and copy b
                             goes through mask b; the loss is the mean of the B losses, so each
                             mask's gradient is 1/B of a separate training's: Adam, the default
                             optimizer of the presets, is insensitive to that scale); task 1 is
                             evaluated with the first of them; tasks 2..T learn coefficients
    random                   B random top-k masks (uniform scores from the run's generator),
                             untrained; every task learns coefficients

The first author's MNIST code (fork dhrupadb/supsup, branch dhrupad/dev, ``mnist.py`` and
``mnist-basis-clean.py``; docs/papers.md, "ImpressLearn") uses the heterogeneous basis, the
real-valued superposition, one coefficient vector per layer per task at 1/B and RMSprop lr 1e-3
on the coefficients: ``+experiment=*_mnist_impresslearn_paper``. The paper's text also names
homogeneous (one task, several seeds) and random bases. Ours: the ``topk`` combination,
network-wide coefficients, the homogeneous basis's joint one-pass training, and task
inference without task labels, which is SupSup's inference (one-shot, Binary or exhaustive)
over the tasks' combined masks (:mod:`cl_runner.strategies.supermask`); the fork has none.
"""

from __future__ import annotations

import torch
from torch import nn

from cl_runner.models.supermask import SupermaskNet
from cl_runner.strategies.base import STRATEGIES, TaskContext
from cl_runner.strategies.schemas import Basis, CoefficientScope, Combine, ImpressLearnConfig
from cl_runner.strategies.supermask import (
    SupermaskStrategy,
    supermask_net,
)
from cl_runner.training.batch import Batch

#: scale of the fixed tie-breaking noise of ``combine=topk``
TIEBREAK = 1e-6


@STRATEGIES.register("impresslearn", config=ImpressLearnConfig)
class ImpressLearn(SupermaskStrategy):
    """ImpressLearn (module docstring). ``stats()`` gives each coefficient task's learned
    coefficients and which tasks made the basis."""

    def __init__(self, cfg: ImpressLearnConfig) -> None:
        super().__init__(cfg)
        self.basis: list[list[torch.Tensor]] = []  # B entries, each per-layer bool masks
        self.stacks: list[torch.Tensor] | None = None  # per layer, float (B, *weight.shape)
        self.tiebreak: list[torch.Tensor] | None = None
        self.replicas = 1  # > 1 while the homogeneous basis is trained (batch replication)
        self.coefficients: dict[int, list] = {}
        self.slots: list[int] = []

    # ------------------------------------------------------------------ task phases

    def is_basis_task(self, task: int) -> bool:
        """Whether task ``task`` trains basis masks (rather than coefficients)."""
        cfg = self.cfg
        if cfg.basis == Basis.heterogeneous:
            return task <= cfg.basis_size
        return cfg.basis == Basis.homogeneous and task == 1

    def before_task(self, ctx: TaskContext) -> None:
        net = supermask_net(ctx.model, self.cfg.name)
        b = self.cfg.basis_size
        if self.cfg.basis == Basis.random and not self.basis:
            for _ in range(b):
                self.basis.append(net.slot_masks(net.add_slot(ctx.generator)))
        if self.is_basis_task(ctx.task):
            if self.cfg.basis == Basis.homogeneous:
                self.slots = [0] + [net.add_slot(ctx.generator) for _ in range(b - 1)]
            else:
                self.slots = [0 if ctx.task == 1 else net.add_slot(ctx.generator)]
            self.replicas = len(self.slots)
            if self.replicas > 1:
                net.use_slots_batched(self.slots)
            else:
                net.use_slot(self.slots[0])
            self.params = [p for s in self.slots for p in net.slot_parameters(s)]
            return
        self.replicas = 1
        if self.stacks is None:
            self.build_stacks(net, ctx.generator)
        layers = len(net.masked_layers())
        shape = (layers, b) if self.cfg.coefficients == CoefficientScope.layer else (b,)
        init = self.cfg.coefficient_init if self.cfg.coefficient_init is not None else 1.0 / b
        coef = nn.Parameter(torch.full(shape, float(init), device=ctx.device))
        net.coefficients.append(coef)
        net.use_combination(self.stacks, coef, topk=self.cfg.combine == Combine.topk,
                            tiebreak=self.tiebreak)
        self.params = [coef]
        if self.cfg.coefficient_lr is not None:
            self.params = [{"params": [coef], "lr": self.cfg.coefficient_lr}]

    def train_batch(self, batch: Batch) -> Batch:
        """The homogeneous basis's task 1: the batch replicated once per basis mask."""
        if self.replicas == 1:
            return batch
        x = batch.x
        batch.x = x.repeat(self.replicas, *([1] * (x.dim() - 1)))
        batch.y = batch.y.repeat(self.replicas)
        return batch

    def after_training(self, ctx: TaskContext) -> None:
        net = supermask_net(ctx.model, self.cfg.name)
        self.params = []
        if self.is_basis_task(ctx.task):
            masks = [net.slot_masks(s) for s in self.slots]
            self.basis.extend(masks)
            self.replicas = 1
            self.learned(ctx, masks[0])
            return
        coef = net.coefficients[-1].detach()
        self.coefficients[ctx.task] = coef.cpu().tolist()
        masks = net.current_masks()
        if self.cfg.combine == Combine.topk:
            masks = [m.bool() for m in masks]
        self.learned(ctx, masks)

    def build_stacks(self, net: SupermaskNet, generator: torch.Generator) -> None:
        """Stack the basis per layer (float ``(B, *weight.shape)``) and draw the tie-breaks."""
        if len(self.basis) != self.cfg.basis_size:
            raise RuntimeError(f"basis has {len(self.basis)} masks, expected {self.cfg.basis_size}")
        layers = range(len(self.basis[0]))
        self.stacks = [torch.stack([m[layer].float() for m in self.basis]) for layer in layers]
        if self.cfg.combine == Combine.topk:
            self.tiebreak = [TIEBREAK * torch.rand(s.shape[1:], generator=generator).to(s.device)
                             for s in self.stacks]

    # ------------------------------------------------------------------ reporting

    def coefficients_per_task(self, net: SupermaskNet) -> int:
        """Floats one coefficient task stores: B per layer, or B."""
        b = self.cfg.basis_size
        return b * len(net.masked_layers()) if self.cfg.coefficients == CoefficientScope.layer else b

    def task_floats(self, model: SupermaskNet, num_tasks: int) -> tuple[list[float], float, str]:
        mask = model.num_weights() / 32
        coef = float(self.coefficients_per_task(model))
        b = self.cfg.basis_size
        if self.cfg.basis == Basis.heterogeneous:
            return ([mask if t <= b else coef for t in range(1, num_tasks + 1)], 0.0,
                    f"; task_floats: tasks 1..{b} one binary mask each (the basis, "
                    f"num_weights/32 floats), later tasks {coef:g} coefficients")
        if self.cfg.basis == Basis.homogeneous:
            return ([b * mask] + [coef] * (num_tasks - 1), 0.0,
                    f"; task_floats: task 1 the {b} basis masks (b x num_weights/32 floats), "
                    f"later tasks {coef:g} coefficients")
        return ([coef] * num_tasks, b * mask,
                f", plus the {b} random basis masks (b x num_weights/32 floats, also counted "
                f"although regenerable from the seed); task_floats: {coef:g} coefficients")

    def stats(self) -> dict:
        return {"basis": self.cfg.basis.value, "basis_size": self.cfg.basis_size,
                "coefficients": {str(t): c for t, c in self.coefficients.items()}}

