"""The one training loop (DESIGN.md, principle 1): every strategy runs through it via hooks."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from cl_runner.data.benchmark import Benchmark
from cl_runner.errors import TrainingDivergedError
from cl_runner.strategies.base import Strategy, TaskContext
from cl_runner.training.evaluate import evaluate_tasks
from cl_runner.training.masking import class_masks, mask_logits, masks_by_label
from cl_runner.training.progress import TrainingProgress

log = logging.getLogger(__name__)

#: how often (in steps) the progress bar is refreshed; keeps rich out of the hot path
PROGRESS_EVERY = 100


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
        steps: optimizer steps of the continual phase, per task.
        learning_rates: learning rate of each task.
    """

    accuracy: list[list[float]] = field(default_factory=list)
    loss: list[list[float]] = field(default_factory=list)
    initial_accuracy: list[float] = field(default_factory=list)
    initial_loss: list[float] = field(default_factory=list)
    task_seconds: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)


def train_sequence(
    benchmark: Benchmark,
    model: nn.Module,
    strategy: Strategy,
    make_optimizer: Callable[[list[nn.Parameter], int], torch.optim.Optimizer],
    *,
    batch_size: int,
    eval_batch_size: int,
    epochs_per_task: int,
    generator: torch.Generator,
    progress: TrainingProgress | None = None,
    on_task_end: Callable[[int, SequenceResult], None] | None = None,
    on_task_start: Callable[[TaskContext], None] | None = None,
) -> SequenceResult:
    """Train ``model`` on tasks 1..T of ``benchmark`` in order with ``strategy``'s hooks.

    After each task the model is evaluated on the test sets of all T tasks (trained and not
    yet trained), batched and without gradients.

    Task-incremental benchmarks (``class_masks(benchmark, "train")`` not None) train task t
    on logits masked to task t's classes (:mod:`cl_runner.training.masking`); when the
    strategy's ``train_batch`` or ``task_data`` hook may add examples of other tasks (replay,
    multitask), each example is masked to the task owning its label. Without masks the step
    does no masking work.

    Args:
        make_optimizer: ``(params, task) -> optimizer``; called once per task, so the
            learning rate can decay per task and momentum restarts.
        batch_size: training minibatch size; a task's data are shuffled each epoch with
            ``generator`` and batches are index slices of that shuffle.
        eval_batch_size: batch size of the evaluation passes.
        generator: CPU generator for the shuffles (and strategies' random choices).
        progress: optional progress display.
        on_task_end: called as ``on_task_end(task, result_so_far)`` after each evaluation
            (the runner writes partial results there, so a crash loses at most one task).
        on_task_start: called as ``on_task_start(ctx)`` once per task, after the strategy's
            ``before_task`` and before ``task_data`` (the runner's probes measure there; they
            must not change the model). Its time counts in the task's ``task_seconds``.

    Raises:
        TrainingDivergedError: the last training loss of a task is NaN or infinite (checked
            once per task, after its results are passed to ``on_task_end``).

    Returns:
        The :class:`SequenceResult`.
    """
    device = next(model.parameters()).device
    result = SequenceResult()
    # supermask strategies select each task's mask before it is scored (checked once)
    eval_hook = ((lambda t: strategy.eval_task(model, t)) if strategy.overrides("eval_task")
                 else None)
    result.initial_accuracy, result.initial_loss = evaluate_tasks(model, benchmark, eval_batch_size,
                                                                  eval_hook)
    to_input = benchmark.to_input
    use_batch = strategy.overrides("train_batch")
    use_penalty = strategy.overrides("penalty")
    use_after_backward = strategy.overrides("after_backward")
    use_after_step = strategy.overrides("after_step")
    train_masks = class_masks(benchmark, "train")  # (T, C) bool, or None: no masking at all
    mixes_tasks = use_batch or strategy.overrides("task_data")  # batches may hold other tasks
    label_masks = masks_by_label(train_masks) if train_masks is not None and mixes_tasks else None

    for task in range(1, benchmark.num_tasks + 1):
        started = time.perf_counter()
        train_x, train_y = benchmark.train_data(task)
        ctx = TaskContext(task, train_x, train_y, model, benchmark, device, generator)
        strategy.before_task(ctx)
        if on_task_start is not None:
            on_task_start(ctx)
        train_x, train_y = strategy.task_data(ctx)  # the task's data, or e.g. multitask's union
        optimizer = make_optimizer(strategy.trainable_parameters(model), task)
        n = len(train_y)
        steps_per_epoch = math.ceil(n / batch_size)
        if progress is not None:
            progress.start_task(task, steps_per_epoch * epochs_per_task)
        # decided once per task: None (MNIST), this task's (C,) mask, or per-example by label
        allowed = None if train_masks is None else train_masks[task - 1]
        model.train()
        for _ in range(epochs_per_task):
            order = torch.randperm(n, generator=generator).to(device)
            for step in range(steps_per_epoch):
                # ---- hot path: keep syncs, logging and allocations out of here ----
                idx = order[step * batch_size : (step + 1) * batch_size]
                x, y = train_x[idx], train_y[idx]
                if use_batch:
                    x, y = strategy.train_batch(x, y)
                logits = model(to_input(x))
                if allowed is not None:
                    logits = mask_logits(logits, allowed if label_masks is None else label_masks[y])
                loss = F.cross_entropy(logits, y)
                if use_penalty:
                    extra = strategy.penalty(model)
                    if extra is not None:
                        loss = loss + extra
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if use_after_backward:
                    strategy.after_backward(model)
                optimizer.step()
                if use_after_step:
                    strategy.after_step(model)
                if progress is not None and (step + 1) % PROGRESS_EVERY == 0:
                    progress.advance_steps(PROGRESS_EVERY)
            if progress is not None:
                progress.advance_steps(steps_per_epoch % PROGRESS_EVERY)
        last_loss = float(loss.detach())  # one sync per task, for the log line
        strategy.after_task(ctx)
        accuracy, losses = evaluate_tasks(model, benchmark, eval_batch_size, eval_hook)
        result.accuracy.append(accuracy)
        result.loss.append(losses)
        result.steps.append(steps_per_epoch * epochs_per_task)
        result.learning_rates.append(optimizer.param_groups[0]["lr"])
        result.task_seconds.append(time.perf_counter() - started)
        seen = accuracy[:task]
        log.info(
            "task %2d/%d  lr %.4g  last train loss %.3f  acc on this task %.2f%%  "
            "avg acc on tasks 1..%d %.2f%%  (%.1fs)",
            task, benchmark.num_tasks, result.learning_rates[-1], last_loss,
            100 * accuracy[task - 1], task, 100 * sum(seen) / len(seen), result.task_seconds[-1],
        )
        if progress is not None:
            progress.end_task()
        if on_task_end is not None:
            on_task_end(task, result)
        if not math.isfinite(last_loss):
            raise TrainingDivergedError(
                f"training diverged: the training loss of task {task} is {last_loss} (the rows "
                f"so far are in accuracy_matrix.csv); lower the learning rate or the penalty"
            )
        del train_x, train_y, ctx
    return result
