"""Terminal progress for a run: a rich bar over tasks and one over the current task's steps."""

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

    def start_task(self, task: int, total_steps: int) -> None:
        """Reset the step bar for 1-based ``task`` with ``total_steps`` steps."""
        desc = f"task {task} steps"
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
