"""BiC, Bias Correction: Wu, Chen, Wang, Ye, Liu, Guo & Fu, "Large Scale Incremental
Learning", CVPR 2019.

Section and equation numbers below are recalled [M] (the paper's text could not be retrieved
here); every rule was read [R] in the authors' code (wuyuebupt/LargeScaleIncrementalLearning,
``resnet.py`` ``resnet_model_fn`` and ``imagenet_main.py``) and compared with PyCIL's
``models/bic.py`` and Avalanche PR #1550 ("Major BiC fix/reimplementation").

**Stage 1, training** (Sec. 4.1 [M]): the baseline of :mod:`cl_runner.strategies.exemplar_kd`,
``L = lambda L_d + (1 - lambda) L_c`` with lambda = n / (n + m) (authors' code: ``lambda_ =
itera / (itera + 1)``, n old and m new classes in equal groups), T = 2, on the task's data and
the exemplars **minus the validation split** below.

**Validation split** (Sec. 4.2 and 5.1 [M]; authors' ``nb_val = 0.1``): at task t >= 2, with m
exemplars per old class (the smallest set, where a class had fewer images than m), v =
max(1, floor(``val_fraction`` * m)) exemplars of every old class
(the last v of its herding order, keeping the best ones for training) and v randomly drawn
training images of every new class (``ctx.generator``) are held out: a validation set balanced
over the n + m classes (the authors hold out as many per class, ``nb_val_itera``). The rest
trains stage 1. Task 1 has no old class, no split and no correction (authors: ``itera == 0``).

**Stage 2, bias correction** (Sec. 4.2, Eq. 4-5 [M]): with the network frozen, two scalars
(alpha, beta), initialized (1, 0), correct the logits of the **newest task's** classes only::

    q_k = o_k                 k = 1..n          (old classes)
    q_k = alpha o_k + beta    k = n+1..n+m      (the m classes of task t)

trained to minimize the cross-entropy of ``softmax(q)`` over the n + m seen classes on the
validation set (Eq. 5 [M]), by SGD (``bias_lr``, ``bias_momentum``, ``bias_batch_size``,
``bias_epochs``). It runs as the phase ``"bias"`` of the loop's :class:`PhaseRunner`
(``ctx.phases``: progress, interruption at a step, the divergence check of its last loss). The
network is frozen and in eval mode, so its validation logits are computed once and the phase
trains on them (the same numbers as a forward pass per step; the authors' estimator ran the
network in training mode, PyCIL too: their BatchNorm statistics moved during stage 2, which a
frozen network's should not). Deviations: no learning-rate decay in stage 2; the authors' code
adds ``0.1 * l2_loss(beta)`` (= 0.05 beta^2) to the loss, which the paper does not state and
this module leaves out; PyCIL passes ``softmax(q)`` to ``cross_entropy`` (a second softmax),
this module the logits.

**Which corrections are kept, and where they apply** (the authors' code; what Avalanche got
wrong before PR #1550 and PyCIL's ``IncrementalNetWithBias`` and sairin1202/BIC still do: one
bias layer per task, all of them applied to the network being trained and evaluated, the old
ones frozen). One (alpha_t, beta_t) is learned per task t >= 2 and kept; it belongs to the
network as trained on task t and applies to task t's classes only:

- at **evaluation** after task t, ``predict`` corrects task t's classes with (alpha_t, beta_t)
  and leaves every other class raw: the correction of task t-1 was fitted to the network of
  task t-1, which task t retrained (authors' EVAL: ``concat(o_initial, beta * o_new + gamma)``
  with the current increment's pair only);
- in the **distillation targets** of task t+1, the teacher (the network after task t) is
  corrected with (alpha_t, beta_t) on task t's classes (authors: ``distill_pred_pre_new_classes``
  corrected with the previous increment's pair for ``itera >= 2``); the network being trained
  is never corrected (its logits enter ``L_c`` and ``L_d`` raw);
- during task t+1's training (continual evaluation) the network is not corrected yet:
  ``predict`` returns its raw logits until stage 2 of task t+1 ends.

``corrections`` records every task's pair (the authors' ``beta_all``/``gamma_all``); only the
latest is ever applied. Task-incremental benchmarks run the same algorithm (the evaluation's
task mask then leaves the argmax unchanged when alpha > 0); domain-incremental ones are refused
(``BiCConfig.unsupported_scenarios``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cl_runner.strategies.base import STRATEGIES, TaskContext
from cl_runner.strategies.bias_schemas import BiCConfig
from cl_runner.strategies.exemplar_kd import ExemplarDistillation
from cl_runner.strategies.memory import per_class_indices
from cl_runner.training.steps import batch_slice, shuffled


def apply_correction(logits: torch.Tensor, correction: torch.Tensor,
                     classes: torch.Tensor) -> torch.Tensor:
    """BiC's bias-correction layer (Wu et al. 2019, Sec. 4.2 [M]): ``alpha * o + beta`` on the
    logits of ``classes``, the others unchanged.

    Args:
        logits: float ``(B, C)`` (or ``(B, K)`` over K units).
        correction: float ``(2,)``: (alpha, beta); differentiable in stage 2.
        classes: bool ``(C,)`` (or ``(K,)``): the newest task's classes.

    Returns:
        float, the shape of ``logits``. No host sync.
    """
    return torch.where(classes, correction[0] * logits + correction[1], logits)


@torch.no_grad()
def frozen_logits(model: nn.Module, x: torch.Tensor, to_input, batch_size: int) -> torch.Tensor:
    """``model``'s logits ``(N, C)`` on stored inputs ``x (N, ...)`` in eval mode (the mode is
    restored), ``batch_size`` per forward pass."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(to_input(x[i : i + batch_size])) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


@STRATEGIES.register("bic", config=BiCConfig)
class BiC(ExemplarDistillation):
    """Bias Correction (module docstring). ``stats()`` adds every task's (alpha, beta) and
    validation size.

    Attributes:
        correction: float ``(2,)`` (alpha, beta) of the current network, applied by ``predict``
            to ``corrected``; None before stage 2 of a task t >= 2 ends.
        corrected: bool ``(C,)``: the classes of the task ``correction`` was learned on.
        teacher_correction, teacher_corrected: the same for the teacher while a task trains
            (the previous task's pair), else None.
        corrections: ``{"task", "alpha", "beta", "validation_examples"}`` of every task t >= 2.
    """

    transient_attributes = (*ExemplarDistillation.transient_attributes, "_train", "_val")

    def __init__(self, cfg: BiCConfig) -> None:
        super().__init__(cfg)
        self.correction: torch.Tensor | None = None
        self.corrected: torch.Tensor | None = None
        self.teacher_correction: torch.Tensor | None = None
        self.teacher_corrected: torch.Tensor | None = None
        self.corrections: list[dict[str, float]] = []
        self._train = self._val = None

    def before_task(self, ctx: TaskContext) -> None:
        """The baseline's setup, the teacher's correction (the current network's, which then
        has none) and the train/validation split (module docstring)."""
        super().before_task(ctx)
        self.teacher_correction, self.teacher_corrected = self.correction, self.corrected
        self.correction = self.corrected = None
        self._train = self._val = None
        if len(self.memory) == 0:
            return
        mem = self.memory
        counts = torch.bincount(mem.y, minlength=len(self.seen))
        set_size = counts[mem.y]
        # m, or fewer where a class had fewer images than m (one host sync per task)
        smallest = int(counts[self.seen].min())
        v = max(1, math.floor(self.cfg.val_fraction * smallest))
        held = mem.rank >= set_size - v  # the last v of each old class's herding order
        take = per_class_indices(ctx.train_y, v, ctx.generator)  # v per new class
        keep = torch.ones(len(ctx.train_y), dtype=torch.bool, device=ctx.device)
        keep[take] = False
        self._train = (torch.cat([ctx.train_x[keep], mem.x[~held]]),
                       torch.cat([ctx.train_y[keep], mem.y[~held]]))
        self._val = (torch.cat([ctx.train_x[take], mem.x[held]]),
                     torch.cat([ctx.train_y[take], mem.y[held]]))

    def task_data(self, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1's training set: the task's data and the exemplars, less the validation
        split (task 1: its data)."""
        return (ctx.train_x, ctx.train_y) if self._train is None else self._train

    def teacher_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """The teacher's logits with the previous task's correction on its classes."""
        out = self.teacher(inputs)
        if self.teacher_correction is None:
            return out
        return apply_correction(out, self.teacher_correction, self.teacher_corrected)

    def correct(self, ctx: TaskContext) -> None:
        """Stage 2 (module docstring) on task t >= 2: fit (alpha, beta) of task t's classes on
        the validation split, the network frozen, as the phase ``"bias"``."""
        self.teacher_correction = self.teacher_corrected = None
        if self._val is None:
            return
        val_x, val_y = self._val
        units = self._units
        z = frozen_logits(ctx.model, val_x, ctx.benchmark.to_input,
                          self.cfg.feature_batch_size).index_select(1, units)
        y = self._label_unit[val_y]
        newest = self._new[units]
        ab = torch.tensor([1.0, 0.0], device=z.device, dtype=z.dtype, requires_grad=True)
        opt = torch.optim.SGD([ab], lr=self.cfg.bias_lr, momentum=self.cfg.bias_momentum)
        n, bs = len(y), self.cfg.bias_batch_size

        def step(order: torch.Tensor, i: int) -> torch.Tensor:
            idx = batch_slice(order, i, bs)
            loss = F.cross_entropy(apply_correction(z[idx], ab, newest), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.detach()

        ctx.phases.run(ctx.task, "bias", self.cfg.bias_epochs, math.ceil(n / bs),
                       lambda: shuffled(n, ctx.generator, z.device), step)
        self.correction, self.corrected = ab.detach().clone(), self._new.clone()
        alpha, beta = self.correction.tolist()
        self.corrections.append({"task": ctx.task, "alpha": alpha, "beta": beta,
                                 "validation_examples": n})
        self._train = self._val = None

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """The current network's correction on its newest classes (none during training)."""
        if self.correction is None:
            return logits
        return apply_correction(logits, self.correction, self.corrected)

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "bias_correction": self.corrections}

    def state_floats(self) -> float:
        return 0.0 if self.correction is None else 2.0

    def state_definition(self) -> str:
        return ("the bias correction (alpha, beta) of the last task (the teacher is a copy of "
                "the model, dropped at each task's end)")
