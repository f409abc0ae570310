"""The runner's hooks around the one loop (:class:`~cl_runner.training.hooks.RunnerHook`):
the run files after every task and the checkpoints. Progress is
:class:`~cl_runner.training.progress.ProgressHook`, the probes are
:class:`~cl_runner.analysis.probes.ProbeSet`. None of them changes a training number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from cl_runner.results.checkpoints import INIT, CheckpointWriter
from cl_runner.results.run_folder import ACCURACY_MATRIX, CONFUSION, METRICS, extra_matrix_file
from cl_runner.results.writer import (
    accuracy_matrix_frame,
    atomic_write_csv,
    confusion_frame,
    metrics_frame,
)
from cl_runner.strategies.base import Strategy
from cl_runner.training.hooks import RunnerHook
from cl_runner.training.result import SequenceResult


def write_results(out_dir: Path, result: SequenceResult, num_tasks: int) -> None:
    """Write ``accuracy_matrix.csv`` and ``metrics.csv`` for the rows trained so far, each
    matrix the evaluation measured beside the headline (``result.matrices``) as
    ``accuracy_matrix_<name>.csv`` (empty cells: not evaluated) and, on class-incremental
    benchmarks, the confusion counts (``confusion.csv``)."""
    atomic_write_csv(out_dir / ACCURACY_MATRIX, accuracy_matrix_frame(result.accuracy, num_tasks),
                     index=True)
    atomic_write_csv(out_dir / METRICS, metrics_frame(result.accuracy, result.loss))
    for name, rows in result.matrices.items():
        atomic_write_csv(out_dir / extra_matrix_file(name),
                         accuracy_matrix_frame(rows, num_tasks), index=True)
    if result.confusion:
        atomic_write_csv(out_dir / CONFUSION, confusion_frame(result.confusion))


class ResultsHook(RunnerHook):
    """Rewrites the run's result files (:func:`write_results`) after every task, so a crash
    loses at most the task in progress."""

    def __init__(self, out_dir: str | Path, strategy: Strategy, num_tasks: int) -> None:
        self.out_dir = Path(out_dir)
        self.strategy = strategy
        self.num_tasks = num_tasks

    def after_evaluation(self, task: int, result: SequenceResult) -> None:
        write_results(self.out_dir, result, self.num_tasks)


class CheckpointHook(RunnerHook):
    """``checkpoints.enabled``: the initialization (``before_run``) and the end-of-task
    solutions the strategy names (``Strategy.solutions``; ``after_evaluation``) into
    ``checkpoints/`` (:mod:`cl_runner.results.checkpoints`)."""

    def __init__(self, out_dir: str | Path, tasks: list[int] | None, model: nn.Module,
                 strategy: Strategy) -> None:
        self.writer = CheckpointWriter(out_dir, tasks)
        self.model = model
        self.strategy = strategy

    def before_run(self, model: nn.Module) -> None:
        self.writer.save(INIT, 0, model.state_dict())

    def after_evaluation(self, task: int, result: SequenceResult) -> None:
        self.writer.save_task(task, self.strategy.solutions(self.model))

    def state_dict(self) -> dict[str, Any]:
        """The index rows written so far, so a resumed run's ``index.csv`` keeps the initial
        weights and the tasks before the resume."""
        return {"rows": [dict(row) for row in self.writer.rows]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.writer.rows = [dict(row) for row in state["rows"]]
