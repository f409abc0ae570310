"""Gradient-free, batched evaluation of a model on the test sets of a benchmark."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cl_runner.data.benchmark import Benchmark


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, to_input, batch_size: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Accuracy and mean cross-entropy of ``model`` on one data set, in eval mode.

    Args:
        x: stored inputs ``(N, ...)`` (turned into model inputs by ``to_input`` per batch).
        y: int64 labels ``(N,)``.
        batch_size: examples per forward pass.

    Returns:
        ``(accuracy, loss)``: 0-dim float tensors on the model's device (fraction in [0, 1],
        nats per example). No host sync happens here.
    """
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=y.device)
    loss_sum = torch.zeros((), dtype=torch.float32, device=y.device)
    for start in range(0, len(y), batch_size):
        xb, yb = to_input(x[start : start + batch_size]), y[start : start + batch_size]
        logits = model(xb)
        loss_sum += F.cross_entropy(logits, yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    model.train(was_training)
    n = max(len(y), 1)
    return correct.float() / n, loss_sum / n


def evaluate_tasks(model: nn.Module, benchmark: Benchmark, batch_size: int
                   ) -> tuple[list[float], list[float]]:
    """Test accuracy and loss on every task of ``benchmark`` (trained or not).

    Returns:
        ``(accuracies, losses)``: lists of length T (fractions; nats), task 1 first.
        One host sync for the whole pass.
    """
    results = [evaluate(model, *benchmark.test_data(t), benchmark.to_input, batch_size)
               for t in range(1, benchmark.num_tasks + 1)]
    stacked = torch.stack([torch.stack(r) for r in results]).cpu()  # (T, 2)
    return stacked[:, 0].tolist(), stacked[:, 1].tolist()
