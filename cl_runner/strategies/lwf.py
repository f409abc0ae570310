"""LwF, Learning without Forgetting (Li & Hoiem, ECCV 2016; TPAMI 40(12), 2017, Section 3
"Learning without Forgetting", Algorithm 1 and its losses).

The paper's objective for a new task, with the old tasks' recorded responses ``Y_o``::

    L = L_new(Y_n, Y^_n) + lambda_o * L_old(Y_o, Y^_o) + R(theta)

``L_new`` is the multinomial logistic loss (cross-entropy) of the new task's labels and
``L_old`` the knowledge-distillation loss of Hinton et al.: a cross-entropy with soft targets,
both distributions softened by a temperature T::

    L_old = - sum_i y'_o(i) log y^'_o(i),   y'_o(i) = y_o(i)^(1/T) / sum_j y_o(j)^(1/T)

and the same for the current network's ``y^'_o``; with ``y = softmax(z)`` this is
``softmax(z / T)``. The paper uses T = 2 and lambda_o = 1 (the defaults of ``strategy.alpha``
and ``strategy.temperature``); ``R`` is weight decay (the optimizer group's). This module
writes the term exactly so: a cross-entropy with soft targets, **not** a KL divergence (the two
differ by the teacher's entropy, a constant: same gradients, a larger loss value) and **no**
T^2 factor (Hinton et al.'s gradient rescaling; the paper does not use it, so alpha = 1 here is
the paper's lambda_o = 1). It is averaged over the batch.

Choices this runner makes, where the paper's setting (a shared trunk, one new head per task)
differs from ours (one output layer shared by all tasks):

- **Teacher outputs.** The paper records ``Y_o`` once, with the original network, on the new
  task's images before training. Here the network as left after task t-1 (a frozen copy, the
  attribute ``teacher``, kept in **eval mode** with ``requires_grad`` off) is run on
  ``batch.inputs`` inside the ``loss`` hook, under ``torch.no_grad``. Without data
  augmentation this gives the recorded responses (the teacher is deterministic), one extra
  forward pass per step instead of a stored ``(N, C)`` table. Eval mode because the recorded
  responses are the original network's predictions: dropout off (train mode would make the
  targets random and draw from the global random generator), and BatchNorm with its running
  statistics (train mode would normalize with each batch's statistics and update the
  teacher's running buffers at every step). The student keeps the loop's train mode.
- **Which output units.** Single-head domain-incremental benchmarks (Rotated/Permuted MNIST):
  every task uses all units, so the old tasks' "head" is the whole layer: one softmax over all
  C units. Task-incremental benchmarks (Split CIFAR-100's training masks): the old tasks'
  heads are their class masks (``benchmark.class_masks("train")`` rows 1..t-1); each old
  task's units get their own softmax and distillation term, and the terms are summed over the
  old tasks (the paper's one ``L_old`` per old task, as Avalanche's multi-head LwF sums its
  heads). The current task's units are not distilled: the teacher never trained them.
  Class-incremental splits (one head, no training masks): one softmax over the classes of
  tasks 1..t-1, as Mammoth's class-IL LwF (``models/lwf.py``: the KL term over
  ``outputs[:, :(t-1)*cpt]``, read); its other two choices are not reproduced (the
  cross-entropy masked to the classes seen so far, a warm-up of the classifier on the new
  classes). ``strategy.distill_classes=all`` distills over every output instead, the
  teacher's softmax over all C units (the current and future classes included), as van de
  Ven's code does in class-IL with every class active (GMvandeVen/continual-learning at
  e6d795a, ``train/train_task_based.py``: the previous model's scores are cut to the old
  classes only with ``--active-classes all-so-far``; read); the ``split_mnist_lwf`` preset
  uses it.
- **No warm-up.** The paper first trains the new head alone (Sec. 3, "warm-up step"); with a
  shared output layer there are no new parameters to warm up, so training starts at once.
- Task 1 has no teacher: its loss is the cross-entropy alone.

The teacher is an ``nn.Module`` attribute, saved whole in the resume state (strategies/base.py)
and restored with its weights and its eval mode.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cl_runner.strategies.base import STRATEGIES, Strategy, TaskContext, cost
from cl_runner.strategies.memory import stored_floats
from cl_runner.strategies.schemas import DistillClasses, LwFConfig
from cl_runner.training.batch import Batch
from cl_runner.training.steps import classification_loss


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
                      heads: torch.Tensor | None = None) -> torch.Tensor:
    """Li & Hoiem's ``L_old``: the cross-entropy of the student's softened probabilities
    against the teacher's, ``-sum_i softmax(t/T)_i log softmax(s/T)_i``, per example, summed
    over the old heads, averaged over the batch (no T^2 factor).

    Args:
        student: float ``(B, C)`` logits of the network being trained (differentiable).
        teacher: float ``(B, C)`` logits of the frozen previous network (no gradient).
        temperature: T > 0.
        heads: None: one head of all C units; else bool ``(K, C)``, the units of each of K
            old heads (each softmax ranges over one head's units; terms summed over heads).

    Returns:
        Scalar tensor (nats).
    """
    s, t = student / temperature, teacher / temperature
    if heads is None:
        return -(F.softmax(t, 1) * F.log_softmax(s, 1)).sum(1).mean()
    off = ~heads[:, None, :]  # (K, 1, C): units outside each head
    log_q = F.log_softmax(s.unsqueeze(0).masked_fill(off, float("-inf")), 2)
    p = F.softmax(t.unsqueeze(0).masked_fill(off, float("-inf")), 2)  # 0 outside the head
    return -(p * log_q.masked_fill(off, 0.0)).sum(2).sum(0).mean()


@STRATEGIES.register("lwf", config=LwFConfig)
class LwF(Strategy):
    """Learning without Forgetting (see the module docstring). ``stats()`` reports the task
    whose network is the current teacher.

    Attributes:
        teacher: frozen copy of the model after the previous task (eval mode), or None
            during task 1.
        teacher_task: the task after which ``teacher`` was copied (0: none).
    """

    transient_attributes = ("_heads",)

    def __init__(self, cfg: LwFConfig) -> None:
        super().__init__(cfg)
        self.teacher: nn.Module | None = None
        self.teacher_task = 0
        self._heads: torch.Tensor | None = None

    def before_task(self, ctx: TaskContext) -> None:
        """The old tasks' heads: rows 1..t-1 of the training class masks; on a
        class-incremental split (no training masks) one head over the classes of tasks
        1..t-1 (``distill_classes=previous``); otherwise None (one head of all units)."""
        masks = ctx.benchmark.class_masks("train")
        if masks is not None:
            self._heads = masks[: ctx.task - 1]
            return
        task_masks = getattr(ctx.benchmark, "task_masks", None)
        if (getattr(ctx.benchmark, "scenario", None) == "class_incremental"
                and task_masks is not None and ctx.task > 1
                and DistillClasses(self.cfg.distill_classes) == DistillClasses.previous):
            self._heads = task_masks[: ctx.task - 1].any(0, keepdim=True)  # (1, C)
        else:
            self._heads = None

    def loss(self, batch: Batch, output: torch.Tensor, model: nn.Module) -> torch.Tensor:
        """Cross-entropy of the batch (the loop's masked one) + ``alpha`` times the
        distillation term of the teacher's outputs on ``batch.inputs``; the cross-entropy
        alone during task 1."""
        loss = classification_loss(output, batch.y, batch.allowed)
        if self.teacher is None:
            return loss
        with torch.no_grad():
            target = self.teacher(batch.inputs)
        return loss + self.cfg.alpha * distillation_loss(output, target, self.cfg.temperature,
                                                         self._heads)

    def after_training(self, ctx: TaskContext) -> None:
        """Freeze a copy of the model as the next task's teacher."""
        teacher = copy.deepcopy(ctx.model).eval()
        teacher.requires_grad_(False)
        self.teacher, self.teacher_task = teacher, ctx.task

    def stats(self) -> dict[str, Any]:
        return {"teacher_task": self.teacher_task}

    def parameter_cost(self, model: nn.Module, num_tasks: int) -> dict[str, Any]:
        """State: the teacher's weights and buffers (a copy of the model)."""
        state = 0.0 if self.teacher is None else stored_floats(
            *self.teacher.state_dict().values())
        return cost(model, [0.0] * num_tasks, state,
                    "task_floats: nothing stored per task; state_floats: the teacher network "
                    "(the model after the previous task: weights and buffers)")
