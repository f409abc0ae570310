"""Continual-learning metrics as pure functions of the accuracy matrix (docs/papers.md, Metrics).

``a`` is the T x T accuracy matrix: ``a[t, i]`` is the test accuracy (fraction) on task i+1
after training task t+1 (0-based indices here; the papers number tasks from 1). Metrics "after
t tasks" are the metrics of the leading t x t block.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Matrix = Sequence[Sequence[float]] | np.ndarray


def _square(a: Matrix) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise ValueError(f"accuracy matrix must be square and non-empty, got shape {arr.shape}")
    return arr


def average_accuracy(a: Matrix) -> float:
    """``A_T = (1/T) sum_i a[T, i]``: mean accuracy on all tasks after the last one."""
    arr = _square(a)
    return float(arr[-1].mean())


def learning_accuracy(a: Matrix) -> float:
    """``(1/T) sum_i a[i, i]``: mean accuracy on each task right after learning it."""
    arr = _square(a)
    return float(np.diag(arr).mean())


def forgetting(a: Matrix) -> float:
    """Average forgetting ``(1/(T-1)) sum_{i<T} (max_{t<T} a[t, i] - a[T, i])``, where the max
    runs over the rows t >= i in which task i had been learned (Chaudhry et al. 2018; docs/papers.md).
    The last task is excluded. A fraction (can be negative). NaN when T = 1 (undefined).

    Raises:
        ValueError: ``a`` is not square.
    """
    arr = _square(a)
    t = arr.shape[0]
    if t == 1:
        return math.nan
    drops = [arr[i:t - 1, i].max() - arr[t - 1, i] for i in range(t - 1)]
    return float(np.mean(drops))


def backward_transfer(a: Matrix) -> float:
    """``BWT = (1/(T-1)) sum_{i<T} (a[T, i] - a[i, i])`` (Lopez-Paz & Ranzato 2017). NaN when T = 1."""
    arr = _square(a)
    t = arr.shape[0]
    if t == 1:
        return math.nan
    return float(np.mean(arr[-1, : t - 1] - np.diag(arr)[: t - 1]))


def forward_transfer(a: Matrix, initial: Sequence[float]) -> float:
    """``FWT = (1/(T-1)) sum_{i>=2} (a[i-1, i] - b_i)`` with ``b_i`` the accuracy of the initial
    (untrained) model on task i (Lopez-Paz & Ranzato 2017). NaN when T = 1.

    Args:
        initial: length-T accuracies before any training.
    """
    arr = _square(a)
    b = np.asarray(initial, dtype=np.float64)
    t = arr.shape[0]
    if b.shape != (t,):
        raise ValueError(f"initial accuracies must have length {t}, got shape {b.shape}")
    if t == 1:
        return math.nan
    return float(np.mean([arr[i - 1, i] - b[i] for i in range(1, t)]))


def average_accuracy_curve(a: Matrix) -> list[float]:
    """``[A_1, ..., A_T]``: average accuracy on tasks 1..t after training task t."""
    arr = _square(a)
    return [float(arr[t, : t + 1].mean()) for t in range(arr.shape[0])]


def all_metrics(a: Matrix, initial: Sequence[float] | None = None) -> dict[str, float]:
    """Every metric above for the full matrix, keyed by its standard name."""
    out = {
        "average_accuracy": average_accuracy(a),
        "forgetting": forgetting(a),
        "backward_transfer": backward_transfer(a),
        "learning_accuracy": learning_accuracy(a),
    }
    if initial is not None:
        out["forward_transfer"] = forward_transfer(a, initial)
    return out
