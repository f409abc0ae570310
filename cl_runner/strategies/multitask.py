"""Multitask: the upper bound of the MC-SGD paper (Mirzadeh et al., "Linear Mode Connectivity
in Multitask and Continual Learning", ICLR 2021, Section 3 and Table 1 "Multitask";
docs/papers.md, Notation ``w_star_t`` and Baselines).

For task t the loop trains on the union of the training sets of tasks 1..t, shuffled together,
starting from the multitask weights after task t-1 (``w_star_{t-1}``; for t = 1 the run's
initialization, the same as every continual run of the same seed). The model evaluated after
task t is therefore ``w_star_t`` and the accuracy matrix has the usual T x T shape (row t:
``w_star_t`` on every task). The union is returned by the ``task_data`` hook, so this is the
one loop with a larger training set per task: task t takes t times the steps of a continual
task (one epoch over the union).

Memory and time: every task's examples are kept (uint8, on the run's device) once they have
been seen. With ``samples_per_task: null`` (all, the default) on 20 MNIST tasks that is
20 x 60,000 x 784 bytes = 941 MB at t = 20 (plus a transient copy while a task is appended),
and the whole run makes sum_t t = 210 task-epochs of steps instead of 20, i.e. ~10.5x the
steps of naive. ``samples_per_task: K`` keeps a random subset of K examples of each task
(drawn once with the run's generator, when the task is first seen; the current task is
subsampled too), dividing both by 60,000 / K.

``protocol: authors`` is the multitask protocol of the MC-SGD authors' public code
(github imirzadeh/CL-LinearModeConnectivity, commit 2580b49: ``experiment_1.py``,
``core/train_methods.py`` ``train_task_MTL``, ``core/data_utils.py``
``get_multitask_rotated_mnist``; read, not copied): ``w_star_1`` is the continual model
(task 1 trains on its whole training set); for t >= 2 one epoch over the union of K examples
of each of tasks 1..t (K = ``samples_per_task``, null = their 20,000), each task's K drawn
uniformly with replacement once (with the run's generator, when the task is first seen, so
task j's sample is the same at every later t; task 1's sample is drawn at t = 1 but first
trained at t = 2). On 20 MNIST tasks: sum_{t>=2} t * 20,000 + 60,000 = 4.24 M examples
(~3.5x naive's) and 314 MB of stored uint8 images at t = 20. Not reproduced: their union is a
shuffled list of single-task batches (every batch of 64 from one task); ours shuffles
examples, so a batch mixes tasks. The regime (lr, momentum, batch, dropout) is the
optimizer/benchmark/model groups' (presets ``*_multitask_authors``).

On task-incremental benchmarks (Split CIFAR-100) the union mixes tasks; the loop masks each
example to the classes of the task owning its label (the strategy declares ``mixes_tasks``).

Resume state: not the union itself (941 MB at t = 20) but which examples of each task it
holds (``picks``: None = all, else the indices drawn, with repeats under ``authors``); a
resumed run rebuilds the union from
the benchmark, whose task data are deterministic, when its next task starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from cl_runner.strategies.base import STRATEGIES, Strategy, TaskContext
from cl_runner.strategies.memory import EpisodicMemory
from cl_runner.strategies.schemas import MultitaskConfig, MultitaskProtocol


@STRATEGIES.register("multitask", config=MultitaskConfig)
class Multitask(Strategy):
    """Trains task t on the union of tasks 1..t (see the module docstring). ``data`` holds the
    union with each example's task id (``data.task``; under ``protocol: authors`` the samples,
    task 1's included, not its whole data). ``stats()`` reports the size of what each task
    trained on (``authors``: n at t = 1, t * K after).

    Raises:
        ConfigError: ``samples_per_task`` < 1.
    """

    mixes_tasks = True  # task t trains on the union of tasks 1..t

    def __init__(self, cfg: MultitaskConfig) -> None:
        super().__init__(cfg)
        cfg.validate()  # ConfigError on a bad samples_per_task
        self.data = EpisodicMemory()
        self.union_sizes: list[int] = []
        self.picks: list[torch.Tensor | None] = []  # per task seen: indices kept (None: all)

    def task_data(self, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self.data) == 0 and self.picks:  # resumed: rebuild tasks 1..t-1 of the union
            for task, kept in enumerate(self.picks, start=1):
                x, y = ctx.benchmark.train_data(task)
                self.data.add(*((x, y) if kept is None else (x[kept], y[kept])), task)
        x, y = ctx.train_x, ctx.train_y
        k = self.cfg.sample_size()
        authors = self.cfg.protocol == MultitaskProtocol.authors
        pick = None
        if authors:  # K uniform draws with replacement (RandomSampler(replacement=True))
            pick = torch.randint(len(y), (k,), generator=ctx.generator).to(y.device)
        elif k is not None and k < len(y):
            pick = torch.randperm(len(y), generator=ctx.generator)[:k].to(y.device)
        self.picks.append(pick)
        self.data.add(*((x, y) if pick is None else (x[pick], y[pick])), ctx.task)
        if authors and ctx.task == 1:  # w_star_1 = w_hat_1: task 1 trains on all its data
            self.union_sizes.append(len(y))
            return x, y
        self.union_sizes.append(len(self.data))
        return self.data.x, self.data.y

    def state_dict(self) -> dict[str, Any]:
        """``union_sizes`` and ``picks`` (the union is rebuilt from them, see the module
        docstring)."""
        return {"union_sizes": self.union_sizes, "picks": self.picks}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.union_sizes, self.picks = list(state["union_sizes"]), list(state["picks"])
        self.data = EpisodicMemory()  # rebuilt by the next task_data

    def stats(self) -> dict[str, Any]:
        return {"union_size_per_task": self.union_sizes}

    def solutions(self, model: torch.nn.Module) -> dict[str, dict[str, torch.Tensor]]:
        """The evaluated model is the multitask minimum: ``{"w_star": state_dict}``."""
        return {"w_star": model.state_dict()}
