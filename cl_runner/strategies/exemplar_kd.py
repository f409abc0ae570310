"""What WA (Zhao et al., CVPR 2020) and BiC (Wu et al., CVPR 2019) share: herded exemplars, a
cross-entropy over the classes seen so far, knowledge distillation on the old classes weighted
lambda = n / (n + m), and class scores that give classes not seen yet no output.

Both papers build on the same class-incremental baseline (Wu et al. 2019, Sec. 4.1; Zhao et al.
2020, Sec. 3.2; section numbers recalled [M], the rules read [R] in the BiC authors' code and
PyCIL, see :mod:`cl_runner.strategies.bic` and :mod:`cl_runner.strategies.wa`), written here once:

- **Exemplars** (iCaRL's memory, which both use: the BiC authors' code and PyCIL's
  ``build_rehearsal_memory`` select by herding): a fixed total K = ``memory_size``, split evenly over the classes seen, m = K //
  #classes per class; a new class's exemplars are picked by herding in normalized feature space,
  an old class keeps the first m of its herding order (:mod:`cl_runner.strategies.icarl`'s
  :func:`herding` and :class:`ExemplarMemory`). Task t trains on its data and the exemplars
  (``task_data``; the strategy declares ``mixes_tasks``).
- **Loss** of task t with n old classes (those of tasks 1..t-1) and m new ones (the labels of
  task t's data not seen before)::

      L = lambda * L_d + (1 - lambda) * L_c,   lambda = n / (n + m)

  ``L_c`` the cross-entropy of the softmax over the n + m classes seen so far (the papers'
  output layer has one unit per class seen; the units of future classes are left out, as an FC
  layer that grows per task), ``L_d = -sum_{k<=n} pi^_k(x) log pi_k(x)`` with ``pi_k =
  softmax(o_{1..n} / T)_k`` of the network being trained and ``pi^`` of the previous task's
  network (the teacher), T = ``temperature``, no T^2 factor; both averaged over the batch.
  Task 1 (no old class) is the cross-entropy alone. The task-incremental class mask of the
  loop (``batch.allowed``) is not applied: the objective spans every seen class, as on
  class-incremental benchmarks; the evaluation still masks each task's scores.
- **Teacher**: a frozen copy (eval mode) of the model taken at the start of task t >= 2 and run
  on ``batch.inputs`` under ``no_grad`` in the ``loss`` hook (one extra forward pass per step,
  as both reference implementations do), dropped at the task's end: a resume state never holds
  it. :meth:`ExemplarDistillation.teacher_logits` is where BiC corrects it.
- **Scores at evaluation**: the (corrected) logits; a class with no output yet (not in the
  tasks trained so far, nor in the task being trained) scores the lowest seen score of the
  example minus :data:`UNSEEN_MARGIN`: never predicted, and the test loss of a not yet trained
  task stays finite (the papers' layer has no unit for it).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cl_runner.errors import ConfigError
from cl_runner.strategies.base import Strategy, TaskContext, cost
from cl_runner.strategies.icarl import ExemplarMemory
from cl_runner.training.batch import Batch

#: score gap below the lowest seen class given to the classes without an output (nats)
UNSEEN_MARGIN = 10.0


def kd_lambda(old: int, new: int) -> float:
    """BiC's (and WA's) distillation weight lambda = n / (n + m) for n old and m new classes
    (Wu et al. 2019, Sec. 4.1; the authors' ``lambda_ = itera / (itera + 1)``); 0 when there is
    no class at all."""
    return old / (old + new) if old + new else 0.0


def floor_unseen(scores: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """``scores`` float ``(B, C)`` with every class outside ``active`` (bool ``(C,)``, at least
    one True) set to the lowest active score of its row minus :data:`UNSEEN_MARGIN`. No host
    sync."""
    low = scores.masked_fill(~active, float("inf")).amin(1, keepdim=True) - UNSEEN_MARGIN
    return torch.where(active, scores, low)


class ExemplarDistillation(Strategy):
    """The common part of WA and BiC (module docstring). Subclasses implement
    :meth:`correct` (after training a task, before its exemplars are chosen and before it is
    evaluated) and may override :meth:`teacher_logits` and :meth:`scores`.

    Attributes:
        memory: the :class:`~cl_runner.strategies.icarl.ExemplarMemory` (one set per class).
        num_sets: exemplar sets held.
        seen: bool ``(C,)``: classes of the tasks finished, or None before task 1.
        active: bool ``(C,)``: classes with an output unit: ``seen`` and the classes of the task
            being trained; None before task 1.
        teacher: the frozen previous model while task t >= 2 trains, else None.
        exemplars_per_set: m after each task.
    """

    mixes_tasks = True  # task t trains on its data and the exemplars of earlier tasks
    transient_attributes = ("_units", "_label_unit", "_inactive", "_old", "_new", "_present",
                            "_lambda")

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.memory = ExemplarMemory()
        self.num_sets = 0
        self.seen: torch.Tensor | None = None
        self.active: torch.Tensor | None = None
        self.teacher: nn.Module | None = None
        self.exemplars_per_set: list[int] = []

    def before_task(self, ctx: TaskContext) -> None:
        """Old classes (seen), new classes (in the task's data, not seen), the units of the
        loss (both), lambda, and the frozen teacher when there are old classes (one host sync
        per task for the counts)."""
        num_classes = ctx.benchmark.num_classes
        if self.seen is None:
            self.seen = torch.zeros(num_classes, dtype=torch.bool, device=ctx.device)
        self._present = torch.bincount(ctx.train_y, minlength=num_classes) > 0
        self._new = self._present & ~self.seen
        self.active = self.seen | self._present
        self._units = torch.nonzero(self.active).flatten()  # ascending class ids
        self._label_unit = torch.full((num_classes,), -1, dtype=torch.long, device=ctx.device)
        self._label_unit[self._units] = torch.arange(len(self._units), device=ctx.device)
        self._inactive = ~self.active
        self._old = torch.nonzero(self.seen).flatten()
        old, new = len(self._old), int(self._new.sum())
        self._lambda = kd_lambda(old, new)
        self.teacher = (copy.deepcopy(ctx.model).eval().requires_grad_(False) if old else None)

    def task_data(self, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor]:
        """The task's data followed by every exemplar."""
        if len(self.memory) == 0:
            return ctx.train_x, ctx.train_y
        return torch.cat([ctx.train_x, self.memory.x]), torch.cat([ctx.train_y, self.memory.y])

    def teacher_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """The teacher's logits ``(B, C)`` on model inputs (called under ``no_grad``); BiC
        applies the previous task's bias correction here."""
        return self.teacher(inputs)

    def loss(self, batch: Batch, output: torch.Tensor, model: nn.Module) -> torch.Tensor:
        """``lambda * L_d + (1 - lambda) * L_c`` (module docstring); float scalar. No host
        sync. ``L_c``: the cross-entropy with the logits of classes without an output set to
        -inf (the same value and gradients as over the seen units alone); ``L_d``: the
        soft-target cross-entropy of Li & Hoiem's ``distillation_loss`` (lwf.py), fused."""
        ce = F.cross_entropy(output.masked_fill(self._inactive, float("-inf")), batch.y)
        if self.teacher is None:
            return ce
        temperature = self.cfg.temperature
        with torch.no_grad():
            target = F.softmax(self.teacher_logits(batch.inputs).index_select(1, self._old)
                               / temperature, 1)
        # soft-target cross-entropy -sum_k pi^_k log pi_k, batch mean (fused: one kernel)
        kd = F.cross_entropy(output.index_select(1, self._old) / temperature, target)
        return torch.lerp(ce, kd, self._lambda)  # lambda * kd + (1 - lambda) * ce

    def correct(self, ctx: TaskContext) -> None:
        """The method's own step after training task ``ctx.task`` (WA: weight aligning; BiC:
        the bias-correction stage). Default: nothing."""

    def after_training(self, ctx: TaskContext) -> None:
        """Drop the teacher, :meth:`correct`, then the exemplars: m = K // #sets, reduce the
        old sets, herd one set per new class among the task's training images.

        Raises:
            ConfigError: ``memory_size`` is smaller than the number of classes seen.
        """
        self.teacher = None
        self.correct(ctx)
        labels = torch.nonzero(self._new).flatten().tolist()
        sets = self.num_sets + len(labels)
        m = self.cfg.memory_size // max(sets, 1)
        if m < 1:
            raise ConfigError(f"strategy.memory_size={self.cfg.memory_size} is smaller than the "
                              f"{sets} classes seen after task {ctx.task}: {self.cfg.name} keeps "
                              f"at least one exemplar per class")
        self.memory.update(ctx, labels, m, self.cfg.feature_batch_size)
        self.num_sets = sets
        self.seen = self.seen | self._present
        self.exemplars_per_set.append(m)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """The model's logits ``(B, C)`` as the method scores them (BiC: corrected)."""
        return logits

    def predict(self, model: nn.Module, inputs: torch.Tensor, task: int | None) -> torch.Tensor:
        """:meth:`scores` of the model's logits, classes without an output floored
        (:func:`floor_unseen`); the raw logits before task 1. ``task`` is not used."""
        out = self.scores(model(inputs))
        return out if self.active is None else floor_unseen(out, self.active)

    def stats(self) -> dict[str, Any]:
        return {"memory_size": len(self.memory), "exemplars_per_set": self.exemplars_per_set,
                "memory_per_task": self.memory.per_task()}

    def parameter_cost(self, model: nn.Module, num_tasks: int) -> dict[str, Any]:
        """Task k: its exemplars held at the end (input as stored, label, task id)."""
        return cost(model, self.memory.floats_by_task(num_tasks), self.state_floats(),
                    "task_floats: the exemplars of task k held at the end (input, label, task "
                    "id; memory_size in all); state_floats: " + self.state_definition())

    def state_floats(self) -> float:
        """Further state after the run (float32 equivalents). Default 0."""
        return 0.0

    def state_definition(self) -> str:
        """What :meth:`state_floats` counts, in words."""
        return "none (the teacher is a copy of the model, dropped at each task's end)"
