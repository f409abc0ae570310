"""ER-Reservoir: experience replay with a reservoir-sampled buffer (Chaudhry et al., "On Tiny
Episodic Memories in Continual Learning", 2019, arXiv 1902.10486, Section 4 "ER-Reservoir";
Riemer et al., "Learning to Learn without Forgetting by Maximizing Transfer and Minimizing
Interference", ICLR 2019; docs/papers.md, Baselines; MC-SGD paper, Table 1 "ER-Reservoir").

Each training step takes a random batch of ``replay_batch_size`` distinct examples from the
buffer, trains on the current batch concatenated with it (one cross-entropy over the
concatenation, the loop's step), and then offers the current batch to the buffer
(:class:`~cl_runner.strategies.memory.ReservoirBuffer`). Both happen in ``train_batch``: the
memory batch is drawn before the current batch is added, which is the same as adding it after
the optimizer step, and spares an ``after_step`` hook. The buffer's total size is fixed
(``memory_size``) and shared by all tasks seen so far; replay starts at the second step of
task 1 (the buffer then holds task-1 examples, as in Chaudhry et al.'s algorithm).

On task-incremental benchmarks (Split CIFAR-100) the loop masks each example of the
concatenated batch to the classes of the task owning its label.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cl_runner.strategies.base import STRATEGIES, Strategy, TaskContext, cost
from cl_runner.strategies.memory import ReservoirBuffer, reservoir_floats, reservoir_stats
from cl_runner.strategies.schemas import ERConfig
from cl_runner.training.batch import Batch


@STRATEGIES.register("er", config=ERConfig)
class ER(Strategy):
    """ER-Reservoir (see the module docstring). ``stats()`` reports the buffer's size, the
    number of examples offered to it, and how many stored examples come from each task."""

    mixes_tasks = True  # replay batches hold examples of earlier tasks

    def __init__(self, cfg: ERConfig) -> None:
        super().__init__(cfg)
        cfg.validate()  # ConfigError on an out-of-range value (checked first by dispatch)
        self.buffer: ReservoirBuffer | None = None
        self.task = 0

    def before_task(self, ctx: TaskContext) -> None:
        if self.buffer is None:
            self.buffer = ReservoirBuffer(self.cfg.memory_size, ctx.generator)
        self.buffer.generator = ctx.generator  # a resumed buffer comes without it
        self.task = ctx.task

    def train_batch(self, batch: Batch) -> Batch:
        """The stream batch followed by ``replay_batch_size`` examples drawn uniformly from the
        buffer (drawn before the stream batch is added to it, by reservoir sampling)."""
        x, y = batch.x, batch.y
        buffer = self.buffer
        k = self.cfg.replay_batch_size or len(y)
        replay = buffer.sample(k) if len(buffer) else None  # drawn before this batch is added
        buffer.add(x, y, self.task)
        if replay is None:
            return batch
        mem_x, mem_y, _ = replay
        batch.x, batch.y = torch.cat([x, mem_x]), torch.cat([y, mem_y])
        return batch

    def stats(self) -> dict[str, Any]:
        return reservoir_stats(self.buffer)

    def parameter_cost(self, model: nn.Module, num_tasks: int) -> dict[str, Any]:
        """Task k: the buffer's examples of task k held at the end (input as stored, label,
        task id; the buffer holds ``memory_size`` examples in all, whatever the number of
        tasks)."""
        return cost(model, reservoir_floats(self.buffer, num_tasks), 0.0,
                    "task_floats: the reservoir buffer's examples of task k held at the end "
                    "(input, label, task id; memory_size examples in all, shared by the "
                    "tasks); state_floats: none")
