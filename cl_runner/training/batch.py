"""The training batch that flows through the step (docs/design.md, principle 1).

The loop builds a :class:`Batch` from an index slice of the task's data, a strategy may
replace it (``train_batch``: add replayed examples, their stored logits, weights), the loop
turns the stored inputs into model inputs once and runs one forward pass, and the strategy's
``loss`` hook computes the loss from the batch and that output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(slots=True)
class Batch:
    """One training batch, as the step sees it.

    The first ``num_current`` examples come from the current task's stream; a strategy's
    ``train_batch`` may append others after them (replayed examples, DER's buffer examples).

    Attributes:
        x: stored inputs, ``(B, *input_shape)`` in the benchmark's storage dtype (uint8 for
            the image benchmarks).
        y: int64 labels ``(B,)``.
        current_task: 1-based id of the task being trained.
        num_current: how many of the B examples (the first ones) belong to the current
            task's stream (the loop's index slice).
        task: int64 ``(B,)`` 1-based task id of every example, or None when not needed.
        logits: stored logits ``(B_s, C)`` of examples the strategy stored them with (DER's
            buffer examples), in an order the strategy defines (e.g. the last B_s examples),
            or None.
        weight: float per-example loss weights ``(B,)``, or None.
        allowed: the task-incremental class mask the default loss uses: None (no masking),
            bool ``(C,)`` (the whole batch) or ``(B, C)`` (per example); set by the loop after
            ``train_batch``.
        inputs: model inputs ``benchmark.to_input(x)`` (float), set by the loop before the
            forward pass; the ``loss`` hook may run other networks on them (a teacher).
    """

    x: torch.Tensor
    y: torch.Tensor
    current_task: int = 0
    num_current: int = 0
    task: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    weight: torch.Tensor | None = None
    allowed: torch.Tensor | None = None
    inputs: torch.Tensor | None = None
