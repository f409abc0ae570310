"""Terminal progress for a run: a rich bar over tasks and one over the current phase's steps,
and the runner hook that feeds it (:class:`ProgressHook`)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cl_runner.training.hooks import RunnerHook
from cl_runner.training.result import SequenceResult

#: how often (in steps) the progress bar is refreshed; keeps rich out of the hot path
PROGRESS_EVERY = 100


class TrainingProgress:
    """Context manager wrapping :class:`rich.progress.Progress`; a no-op when disabled."""

    def __init__(self, num_tasks: int, enabled: bool = True, console: Console | None = None):
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not enabled,
            transient=False,
        )
        self._tasks = self._progress.add_task("tasks", total=num_tasks)
        self._steps = None

    def __enter__(self) -> TrainingProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def start_task(self, task: int, total_steps: int, phase: str = "train") -> None:
        """Reset the step bar for 1-based ``task`` with ``total_steps`` steps of ``phase``
        (``"train"``: the continual phase; else e.g. ``"line"``)."""
        desc = f"task {task} steps" if phase == "train" else f"task {task} {phase} phase"
        if self._steps is None:
            self._steps = self._progress.add_task(desc, total=total_steps)
        else:
            self._progress.reset(self._steps, total=total_steps, description=desc)

    def advance_steps(self, n: int) -> None:
        """Advance the step bar by ``n`` steps."""
        if self._steps is not None:
            self._progress.advance(self._steps, n)

    def end_task(self) -> None:
        """Advance the task bar by one."""
        self._progress.advance(self._tasks, 1)


class ProgressHook(RunnerHook):
    """Runner hook driving a :class:`TrainingProgress`: one step bar per phase, refreshed
    every :data:`PROGRESS_EVERY` steps (a counter in the step, no rich call), and the task bar.

    Args:
        progress: the display.
        done: tasks already finished before this process started (a resumed run): the task
            bar starts at ``done``.
    """

    def __init__(self, progress: TrainingProgress, done: int = 0) -> None:
        self.progress = progress
        self._pending = 0
        if done:
            for _ in range(done):
                progress.end_task()

    def before_phase(self, task: int, phase: str, total_steps: int) -> None:
        self._pending = 0
        self.progress.start_task(task, total_steps, phase)

    def after_step(self) -> None:
        self._pending += 1
        if self._pending == PROGRESS_EVERY:
            self.progress.advance_steps(PROGRESS_EVERY)
            self._pending = 0

    def after_phase(self, task: int, phase: str) -> None:
        self.progress.advance_steps(self._pending)
        self._pending = 0

    def after_evaluation(self, task: int, result: SequenceResult) -> None:
        self.progress.end_task()
