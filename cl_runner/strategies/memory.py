"""Episodic memory: a small store of past examples, selected per class per task."""

from __future__ import annotations

import torch


class EpisodicMemory:
    """Examples kept from past tasks, stored like the benchmark's data (uint8 inputs).

    Attributes:
        x: ``(M, *input_shape)`` stored inputs (empty until the first ``add``).
        y: int64 ``(M,)`` labels.
        task: int64 ``(M,)`` 1-based task id of each example.
    """

    def __init__(self) -> None:
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        self.task: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.y is None else len(self.y)

    def add_per_class(self, x: torch.Tensor, y: torch.Tensor, task: int, per_class: int,
                      generator: torch.Generator) -> None:
        """Add ``per_class`` random examples of every class present in ``y`` (fewer if a class
        has fewer examples).

        Args:
            x: ``(N, *input_shape)`` inputs of the task. y: int64 ``(N,)``.
            task: 1-based task id recorded with the examples.
            per_class: examples per class (the papers: 1).
            generator: CPU generator making the choice reproducible.
        """
        if per_class < 1:
            return
        order = torch.randperm(len(y), generator=generator).to(y.device)
        shuffled = y[order]
        # stable sort by class keeps the random order within each class
        by_class = order[torch.sort(shuffled, stable=True).indices]
        classes, counts = torch.unique_consecutive(y[by_class], return_counts=True)
        starts = torch.cumsum(counts, 0) - counts
        take = torch.cat([by_class[s : s + min(per_class, int(c))]
                          for s, c in zip(starts.tolist(), counts.tolist(), strict=True)])
        self.add(x[take], y[take], task)

    def add(self, x: torch.Tensor, y: torch.Tensor, task: int) -> None:
        """Append examples ``x (K, ...)``, ``y (K,)`` of ``task``."""
        t = torch.full_like(y, task)
        if self.y is None:
            self.x, self.y, self.task = x.clone(), y.clone(), t
        else:
            self.x = torch.cat([self.x, x])
            self.y = torch.cat([self.y, y])
            self.task = torch.cat([self.task, t])
