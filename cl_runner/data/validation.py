"""A validation split held out of each task's training data (``benchmark.validation_fraction``),
for choosing hyperparameters without looking at the test sets.

The protocol follows Chaudhry et al. (A-GEM, ICLR 2019, Sec. 5 and App. C), who tuned on data
kept apart from the evaluation data; ours holds out a seeded fraction of every task's training
examples (the test sets are never read for the score): the run then trains on the rest and its
accuracy matrix, metrics and continual evaluation are measured on the held-out examples.
"""

from __future__ import annotations

import math

import pandas as pd
import torch

from cl_runner.data.benchmark import Benchmark
from cl_runner.data.masking import Split
from cl_runner.errors import ConfigError

#: added to the run's seed for the split's generator (any fixed offset: a generator of its own)
_SPLIT_SEED_OFFSET = 104_729


class ValidationSplit(Benchmark):
    """``benchmark`` with a fraction of each task's training set moved into its evaluation
    set: :meth:`train_data` returns the kept examples, :meth:`test_data` the held-out ones
    (the real test set is never returned). The split of task t is a seeded permutation of its
    training examples (fixed by the run's seed and t, the same in every trial of a search).

    Args:
        benchmark: the benchmark to split (as built from its config).
        fraction: share of each task's training examples held out, in (0, 1).
        seed: the run's seed.

    Raises:
        ConfigError: ``fraction`` outside (0, 1), or a task whose split would leave the
            training or the validation part empty.
    """

    def __init__(self, benchmark: Benchmark, fraction: float, seed: int) -> None:
        if not 0.0 < fraction < 1.0:
            raise ConfigError(f"benchmark.validation_fraction must be in [0, 1), got {fraction}")
        self.inner = benchmark
        self.fraction = fraction
        self.name = benchmark.name
        self.num_tasks = benchmark.num_tasks
        self.input_shape = benchmark.input_shape
        self.num_classes = benchmark.num_classes
        self.device = benchmark.device
        self.seed = seed
        self.train_samples_per_task = getattr(benchmark, "train_samples_per_task", None)
        self._validation: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._keep: dict[int, torch.Tensor] = {}

    def _split(self, task: int) -> None:
        x, y = self.inner.train_data(task)
        n = len(y)
        held = math.floor(n * self.fraction)
        if held < 1 or held >= n:
            raise ConfigError(f"benchmark.validation_fraction={self.fraction} of task {task}'s "
                              f"{n} training examples leaves an empty part")
        gen = torch.Generator().manual_seed(self.seed + _SPLIT_SEED_OFFSET + 7 * task)
        order = torch.randperm(n, generator=gen).to(y.device)
        self._validation[task] = (x[order[:held]], y[order[:held]])
        self._keep[task] = order[held:].sort().values  # the kept examples in their own order

    def train_data(self, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Task ``task``'s training examples minus its held-out ones (in their order)."""
        self.check_task(task)
        if task not in self._keep:
            self._split(task)
        x, y = self.inner.train_data(task)
        keep = self._keep[task]
        return x[keep], y[keep]

    def test_data(self, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The held-out validation examples of ``task`` (not the test set)."""
        self.check_task(task)
        if task not in self._validation:
            self._split(task)
        return self._validation[task]

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.to_input(x)

    def train_augmenter(self, generator: torch.Generator):
        """The wrapped benchmark's train-time augmentation (held-out examples are evaluated,
        never augmented)."""
        return self.inner.train_augmenter(generator)

    def artifacts(self) -> dict[str, pd.DataFrame]:
        return self.inner.artifacts()

    def class_masks(self, split: Split) -> torch.Tensor | None:
        return self.inner.class_masks(split)

    def eval_mask(self, task: int, trained: int) -> torch.Tensor | None:
        return self.inner.eval_mask(task, trained)

    @property
    def scenario(self) -> str:  # type: ignore[override]
        """The wrapped benchmark's scenario."""
        return self.inner.scenario
