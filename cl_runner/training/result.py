"""What the loop measured over a task sequence: :class:`SequenceResult` (its own module, so
hooks, loggers and the runner import it without importing the loop)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SequenceResult:
    """What the loop measured. Rows are "after training task i", columns "on task j"
    (both 1-based in files, 0-based here).

    Attributes:
        accuracy: ``accuracy[i][j]`` test accuracy (fraction) on task j+1 after task i+1.
        loss: same layout, mean test cross-entropy (nats).
        initial_accuracy: accuracy on every task before any training (length T).
        initial_loss: the matching losses.
        task_seconds: wall time of each task: training, strategy hooks and evaluation.
        eval_seconds: wall time of each evaluation pass over all T test sets: the initial
            one first, then one per task (each also counted in that task's ``task_seconds``).
        steps: optimizer steps of the continual phase, per task.
        learning_rates: learning rate of each task.
        matrices: the accuracy matrices the evaluation measured beside the headline, by name
            (:data:`~cl_runner.training.evaluate.MATRICES`: ``task_il``, the
            task-incremental matrix; ``task_inferred`` and ``task_inference`` of a strategy
            that infers the task), rows as ``accuracy`` (NaN: not evaluated).
        confusion: on class-incremental benchmarks, per task end, the headline's confusion
            counts ``confusion[i][true][predicted]`` over the test sets of all T tasks
            (``C x C`` ints); empty elsewhere.
    """

    accuracy: list[list[float]] = field(default_factory=list)
    loss: list[list[float]] = field(default_factory=list)
    initial_accuracy: list[float] = field(default_factory=list)
    initial_loss: list[float] = field(default_factory=list)
    task_seconds: list[float] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)
    matrices: dict[str, list[list[float]]] = field(default_factory=dict)
    confusion: list[list[list[int]]] = field(default_factory=list)

    def add_matrices(self, rows: dict[str, list[float]],
                     confusion: list[list[int]] | None) -> None:
        """Append one task end's rows of the matrices beside the headline (``rows``: name ->
        one value per task) and its confusion counts (None: not measured)."""
        for name, row in rows.items():
            self.matrices.setdefault(name, []).append(row)
        if confusion is not None:
            self.confusion.append(confusion)
