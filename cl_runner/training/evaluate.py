"""Gradient-free, batched evaluation of a model on the test sets of a benchmark."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cl_runner.data.benchmark import Benchmark
from cl_runner.data.masking import mask_logits


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, to_input, batch_size: int,
             allowed: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Correct predictions and summed cross-entropy of ``model`` on one data set, in eval mode.

    Args:
        x: stored inputs ``(N, ...)`` (turned into model inputs by ``to_input`` per batch).
        y: int64 labels ``(N,)``.
        batch_size: examples per forward pass.
        allowed: bool ``(C,)`` task-incremental mask of the data set's task (prediction and
            loss range over the allowed classes only), or ``None`` (all classes).

    Returns:
        ``(correct, loss_sum)``: 0-dim tensors on the model's device: the number of correct
        predictions (int64) and the summed cross-entropy (nats, float32). No host sync here.
    """
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=y.device)
    loss_sum = torch.zeros((), dtype=torch.float32, device=y.device)
    for start in range(0, len(y), batch_size):
        xb, yb = to_input(x[start : start + batch_size]), y[start : start + batch_size]
        logits = model(xb)
        if allowed is not None:
            logits = mask_logits(logits, allowed)
        loss_sum += F.cross_entropy(logits, yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    model.train(was_training)
    return correct, loss_sum


def evaluate_tasks(model: nn.Module, benchmark: Benchmark, batch_size: int,
                   before_task: Callable[[int], None] | None = None
                   ) -> tuple[list[float], list[float]]:
    """Test accuracy and loss on every task of ``benchmark`` (trained or not).

    Task t is scored with the test-time mask of task t when the benchmark has one
    (``benchmark.class_masks("test")``; task-incremental), else over all classes.

    Args:
        before_task: called as ``before_task(t)`` before task t is scored (a strategy's
            ``eval_task``: e.g. switch the model to task t's supermask), or None.

    Returns:
        ``(accuracies, losses)``: lists of length T (fractions; nats), task 1 first.
        One host sync for the whole pass.
    """
    tasks = range(1, benchmark.num_tasks + 1)
    sizes = torch.tensor([len(benchmark.test_data(t)[1]) for t in tasks], dtype=torch.float64)
    masks = benchmark.class_masks("test")
    results = []
    for t in tasks:
        if before_task is not None:
            before_task(t)
        results.append(evaluate(model, *benchmark.test_data(t), benchmark.to_input, batch_size,
                                None if masks is None else masks[t - 1]))
    stacked = torch.stack([torch.stack([c.double(), s.double()]) for c, s in results]).cpu()
    per_example = stacked / sizes.clamp(min=1).unsqueeze(1)  # (T, 2)
    return per_example[:, 0].tolist(), per_example[:, 1].tolist()
