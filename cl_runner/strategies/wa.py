"""WA, Weight Aligning: Zhao, Xiao, Gan, Zhang & Xia, "Maintaining Discrimination and Fairness
in Class Incremental Learning", CVPR 2020 (arXiv 1911.07053).

Two parts on top of the exemplar-and-distillation baseline of
:mod:`cl_runner.strategies.exemplar_kd` (Sec. 3.2: herded exemplars, ``L = lambda * L_KD +
(1 - lambda) * L_CE`` with lambda = n / (n + m), T = 2):

Where to find each part in the paper: the section and equation numbers below are recalled
[M], not read (the paper's text could not be retrieved here); the algorithm itself was checked
against PyCIL's ``models/wa.py`` and ``utils/inc_net.py`` ``weight_align`` [R] and a FACIL-style
re-implementation (``src/approach/wa.py``, ``src/networks/wa_network.py``) [R].

**Weight aligning** (Sec. 3.3 [M]). The output layer's weight vectors
``W = (W_old, W_new)``, one row per class, are biased after task t: the n old classes' rows
are shorter than the m new classes'. With ``Norm_old = (||w_1||, ..., ||w_n||)`` and
``Norm_new = (||w_{n+1}||, ..., ||w_{n+m}||)``::

    gamma = Mean(Norm_old) / Mean(Norm_new),     W^_new = gamma * W_new

so the corrected logits are ``(W_old^T x, gamma W_new^T x)``. Done once after the training of
every task t >= 2, before its evaluation and before its exemplars are chosen (features do not
depend on the head); the next task's teacher is the aligned model, as in PyCIL's ``wa.py``
(``weight_align`` at the end of ``_train``, then ``_old_network`` copied). The bias vector of
the layer is not scaled (the paper's formula has none; PyCIL scales ``weight`` only).
``n`` old classes: those of tasks 1..t-1; ``m`` new: task t's classes not seen before.

**Weight clipping** (Sec. 3.3 and its ablation in Sec. 4 [M]): the
features entering the output layer come out of a ReLU and are non-negative; the paper clips
the **weights of the output (FC) layer** to be non-negative after every optimization step, so
that a row's norm measures how large its logits can get. Here: ``after_step`` clamps
``model.head.weight`` at 0 (every row, every task, task 1 included; the bias is not clipped),
``strategy.clip_weights=false`` turns it off. (The paper's text was not available to this
runner's author when this was written: the clipping is stated from the WA re-implementations
read, FACIL-style ``--clip-head-weights`` "clipped after each update to positive values only",
and ``runhang/Incremental-Learning-with-Weight-Aligning``'s "TODO: add weight clipping";
PyCIL's ``wa.py`` does not clip.)

Deviations: PyCIL weights its loss ``L_CE + 2 L_KD``; this module uses the paper's lambda.
Task-incremental benchmarks run the same algorithm (their evaluation masks each task's scores);
domain-incremental ones are refused (``WAConfig.unsupported_scenarios``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cl_runner.strategies.base import STRATEGIES, TaskContext
from cl_runner.strategies.bias_schemas import WAConfig
from cl_runner.strategies.exemplar_kd import ExemplarDistillation


@torch.no_grad()
def align_weights(weight: torch.Tensor, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Weight aligning (Zhao et al. 2020, Sec. 3.3), in place: multiply the rows ``new`` of
    ``weight`` by ``gamma = mean_k ||w_k|| over old / mean_k ||w_k|| over new``.

    Args:
        weight: the output layer's weight ``(C, D)``, changed in place.
        old: bool ``(C,)``: the old classes' rows (at least one).
        new: bool ``(C,)``: the new classes' rows (at least one).

    Returns:
        gamma, a 0-dim tensor (no host sync).
    """
    norms = weight.norm(dim=1)
    gamma = norms[old].mean() / norms[new].mean()
    weight[new] *= gamma
    return gamma


@STRATEGIES.register("wa", config=WAConfig)
class WA(ExemplarDistillation):
    """Weight Aligning (module docstring). ``stats()`` adds ``gamma`` per task t >= 2.

    Attributes:
        gammas: ``{"task": t, "gamma": value}`` for every aligned task.
    """

    def __init__(self, cfg: WAConfig) -> None:
        super().__init__(cfg)
        self.gammas: list[dict[str, float]] = []

    def after_step(self, model: nn.Module) -> None:
        """Weight clipping: ``model.head.weight`` clamped at 0 in place (no host sync)."""
        if self.cfg.clip_weights:
            with torch.no_grad():
                model.head.weight.clamp_(min=0)

    def correct(self, ctx: TaskContext) -> None:
        """Align the new classes' weight norms to the old classes' (tasks t >= 2 with new
        classes)."""
        if self.seen is not None and bool(self.seen.any()) and bool(self._new.any()):
            gamma = align_weights(ctx.model.head.weight, self.seen, self._new)
            self.gammas.append({"task": ctx.task, "gamma": float(gamma)})

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "gamma": self.gammas}
