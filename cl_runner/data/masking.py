"""Task-incremental logit masking: the one place where "only the task's classes count" lives.

In the task-incremental protocol of Split CIFAR-100 (Mirzadeh et al. 2020, Section 5.1;
2021, Section 5; docs/papers.md, Protocol) the network has one shared 100-way output layer and an
example of task t may only be classified among task t's classes: the other logits are masked
out, at training and at test time (the authors' code fills them with -1e11; here they are set
to -inf, which gives the same softmax, loss, gradient and argmax).

A benchmark that has per-task classes overrides :meth:`Benchmark.class_masks
<cl_runner.data.benchmark.Benchmark.class_masks>`: it returns a ``(T, C)`` boolean table whose
row ``t-1`` marks the classes of task t, separately for the training phase and for evaluation
(so class-incremental evaluation is "no mask at test time"). The base class returns ``None``
(Rotated/Permuted MNIST: every task has all 10 classes), and every caller then skips masking
entirely (decided once, outside the training step).

This module holds the mask arithmetic on tensors; it lives in the data layer beside the
benchmarks that define the masks, so the loop, the evaluation, the strategies (MC-SGD's line
phase, whose episodic memory mixes tasks and uses one mask row per example) and the analyses
all import it downwards.
"""

from __future__ import annotations

from typing import Literal

import torch

Split = Literal["train", "test"]


def mask_logits(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Set the logits of classes that are not allowed to -inf.

    Args:
        logits: float ``(B, C)``.
        allowed: bool ``(C,)`` (one task for the whole batch) or ``(B, C)`` (one row per
            example, for batches that mix tasks); at least one True per row.

    Returns:
        float ``(B, C)``, a new tensor (differentiable; masked entries get zero gradient).
        Softmax, cross-entropy and argmax then range over the allowed classes only; the
        cross-entropy of an example whose label is not allowed is +inf.
    """
    return logits.masked_fill(~allowed, float("-inf"))


def masks_by_label(masks: torch.Tensor) -> torch.Tensor:
    """For each class c, the mask of the task(s) that own c: bool ``(C, C)``.

    Row c is the union of the rows of ``masks`` whose task contains class c (for a class
    split, exactly one task), all False for a class no task owns. ``masks_by_label(m)[y]``
    gives a ``(B, C)`` per-example mask for a batch that mixes tasks but carries no task ids
    (e.g. the current batch concatenated with a replay batch by a ``train_batch`` hook).

    Args:
        masks: bool ``(T, C)`` from ``Benchmark.class_masks``.
    """
    return (masks.T.unsqueeze(2) & masks.unsqueeze(0)).any(1)


def rows(allowed: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor | None:
    """The mask of a batch selected by ``idx`` from a data set with mask ``allowed``.

    Args:
        allowed: ``None`` (no masking), bool ``(C,)`` (one mask for the whole set) or
            ``(N, C)`` (one row per example).
        idx: int64 ``(B,)`` indices into the data set.

    Returns:
        ``None``, the same ``(C,)`` mask, or ``allowed[idx]`` ``(B, C)``.
    """
    if allowed is None or allowed.dim() == 1:
        return allowed
    return allowed[idx]

