"""Continual evaluation (``eval.every_steps``): the accuracy on the tasks seen so far measured
during training, every N optimizer steps, as a runner hook.

De Lange, van de Ven & Tuytelaars, "Continual evaluation for lifelong learning: identifying
the stability gap", ICLR 2023: evaluating only at task ends hides a sharp, transient drop of
the previous tasks' accuracy when a new task starts (the stability gap). The metrics are in
:mod:`cl_runner.results.continual_metrics`.

The hook never touches what training reads: each task's evaluation subset is drawn once with a
generator of its own (seeded from the run's seed), the evaluation runs in eval mode without
gradients (no dropout draw, no batch-norm update) and puts the model back in its mode, so a
run's accuracy matrix is the same with continual evaluation on or off (tested).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from cl_runner.data.benchmark import Benchmark
from cl_runner.results.continual_metrics import COLUMNS, EvalRow
from cl_runner.results.writer import atomic_write_csv
from cl_runner.training.evaluate import Evaluator
from cl_runner.training.hooks import RunnerHook, StrategyHooks, TaskContext
from cl_runner.training.result import SequenceResult

#: the file the hook writes into the run folder
CONTINUAL_EVAL = "continual_eval.csv"

#: added to the run's seed for the subsets' generator (any fixed offset: a generator of its own)
_SUBSET_SEED_OFFSET = 7919


class ContinualEvalHook(RunnerHook):
    """Evaluates the tasks seen so far every ``every_steps`` optimizer steps (counted over all
    phases of all tasks, e.g. MC-SGD's line phase too), or every ``every_examples`` training
    examples of the stream (``train_batch_size`` per step of the continual phase ``"train"``;
    a strategy's own phases and replayed examples do not count, so runs of different batch
    sizes are sampled at the same points), and at the end of every task, on a fixed subset of
    each task's test set; rewrites ``continual_eval.csv`` after every task.

    Args:
        benchmark: the task sequence (its test sets and test-time class masks).
        model: the network being trained (read only).
        every_steps: N >= 1, the evaluation period in optimizer steps; None: ``every_examples``.
        every_examples: E >= 1, the period in stream examples (a point whenever the count
            crosses a multiple of E; the last batch of an epoch counted as a whole batch);
            None: ``every_steps``. Exactly one of the two is set.
        train_batch_size: stream examples per step of the continual phase.
        subset_size: test examples per task (the first ``subset_size`` of a seeded
            permutation; the whole test set when it is smaller).
        batch_size: examples per forward pass.
        seed: the run's seed (the subsets are drawn from ``seed + 7919``).
        path: the CSV file; None: keep the rows in memory only.
        on_rows: called with the new rows of every evaluation point (e.g. a logger), or None.
        strategy: whose ``predict`` classifies the test batches (:class:`Evaluator`; its
            ``eval_task`` is not called in the middle of training), or None.

    Cost per evaluation point: one forward pass over ``k * subset_size`` examples for k seen
    tasks, and one host sync.

    Raises:
        ValueError: ``every_steps``, ``every_examples`` or ``subset_size`` below 1, or not
            exactly one of ``every_steps`` and ``every_examples`` set.
    """

    def __init__(self, benchmark: Benchmark, model: nn.Module, every_steps: int | None,
                 subset_size: int, batch_size: int, seed: int, path: str | Path | None = None,
                 on_rows: Callable[[list[EvalRow]], None] | None = None,
                 strategy: StrategyHooks | None = None, every_examples: int | None = None,
                 train_batch_size: int = 1) -> None:
        periods = [p for p in (every_steps, every_examples) if p is not None]
        if len(periods) != 1 or min(periods[0], subset_size) < 1:
            raise ValueError(f"one of eval.every_steps and eval.every_examples (at least 1) and "
                             f"eval.subset_size at least 1, got {every_steps}, {every_examples} "
                             f"and {subset_size}")
        self.benchmark = benchmark
        self.model = model
        self.every_steps = every_steps
        self.every_examples = every_examples
        self.train_batch_size = train_batch_size
        #: stream examples trained on (continual phase steps x ``train_batch_size``)
        self.examples = 0
        self._phase = ""
        self.batch_size = batch_size
        self.path = None if path is None else Path(path)
        self.on_rows = on_rows
        self.rows: list[EvalRow] = []
        self.global_step = 0
        #: wall time spent evaluating (seconds) and evaluation points, in this process
        self.seconds = 0.0
        self.points = 0
        self._task = 0
        self._task_step = 0
        self.evaluator = Evaluator(benchmark, strategy, batch_size, switch_tasks=False)
        gen = torch.Generator().manual_seed(seed + _SUBSET_SEED_OFFSET)
        self._subsets: list[tuple[torch.Tensor, torch.Tensor]] = []
        for t in range(1, benchmark.num_tasks + 1):
            x, y = benchmark.test_data(t)
            keep = torch.randperm(len(y), generator=gen)[:subset_size].to(y.device)
            self._subsets.append((x[keep], y[keep]))

    def before_task(self, ctx: TaskContext) -> None:
        self._task, self._task_step = ctx.task, 0
        self.evaluator.autocast = ctx.precision.autocast  # the run's hardware.precision

    def before_phase(self, task: int, phase: str, total_steps: int) -> None:
        self._phase = phase

    def after_step(self) -> None:
        self._task_step += 1
        self.global_step += 1
        if self.every_steps is not None:
            if self.global_step % self.every_steps == 0:
                self._evaluate("step")
        elif self._phase == "train":
            before, self.examples = self.examples, self.examples + self.train_batch_size
            if self.examples // self.every_examples > before // self.every_examples:
                self._evaluate("step")

    def after_evaluation(self, task: int, result: SequenceResult) -> None:
        self._evaluate("task_end")
        if self.path is not None:
            atomic_write_csv(self.path, self.frame())

    def _evaluate(self, point: str) -> None:
        started = time.perf_counter()
        scores = []
        for t in range(1, self._task + 1):
            x, y = self._subsets[t - 1]
            correct, loss = self.evaluator.score(self.model, t, x, y, self._task)
            scores.append(torch.stack([correct.double() / max(len(y), 1),
                                       loss.double() / max(len(y), 1)]))
        values = torch.stack(scores).cpu().tolist()  # the one host sync of the point
        new = [EvalRow(self._task_step, self.global_step, self._task, point, t, acc, loss)
               for t, (acc, loss) in enumerate(values, start=1)]
        self.rows.extend(new)
        self.seconds += time.perf_counter() - started
        self.points += 1
        if self.on_rows is not None:
            self.on_rows(new)

    def frame(self) -> pd.DataFrame:
        """The rows so far as a DataFrame with the columns of ``continual_eval.csv``."""
        return pd.DataFrame([[getattr(r, c) for c in COLUMNS] for r in self.rows],
                            columns=list(COLUMNS))

    def state_dict(self) -> dict[str, Any]:
        """The rows and the step counter up to the last finished task (a resumed run
        continues the same curves)."""
        return {"global_step": self.global_step, "examples": self.examples,
                "rows": [[getattr(r, c) for c in COLUMNS] for r in self.rows]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.global_step = int(state["global_step"])
        self.examples = int(state.get("examples", 0))  # states written before it counted
        self.rows = [EvalRow(*row) for row in state["rows"]]
        if self.path is not None:  # drop rows of a task that was cut off
            atomic_write_csv(self.path, self.frame())


def read_continual_eval(path: str | Path) -> list[EvalRow]:
    """The rows of a ``continual_eval.csv`` (an empty list when the file does not exist).

    Raises:
        ValueError: the file lacks a column of :data:`~cl_runner.results.continual_metrics.COLUMNS`.
    """
    path = Path(path)
    if not path.is_file():
        return []
    frame = pd.read_csv(path)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    return [EvalRow(int(r.step), int(r.global_step), int(r.task), str(r.point),
                    int(r.eval_task), float(r.accuracy),
                    float(r.loss) if not math.isnan(r.loss) else math.nan)
            for r in frame[list(COLUMNS)].itertuples(index=False)]
