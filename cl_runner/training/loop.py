"""The one training loop (docs/design.md, principle 1): every strategy runs through it via hooks."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from cl_runner.data.benchmark import Benchmark
from cl_runner.data.masking import masks_by_label
from cl_runner.errors import TrainingDivergedError
from cl_runner.training.batch import Batch
from cl_runner.training.evaluate import Evaluator
from cl_runner.training.hooks import PhaseRunner, RunnerHook, StrategyHooks, TaskContext
from cl_runner.training.result import SequenceResult
from cl_runner.training.steps import batch_slice, classification_loss, shuffled

log = logging.getLogger(__name__)


def _continual_step(model: nn.Module, strategy: StrategyHooks, optimizer: torch.optim.Optimizer,
                    task: int, train_x: torch.Tensor, train_y: torch.Tensor,
                    to_input: Callable[[torch.Tensor], torch.Tensor], batch_size: int,
                    masks: torch.Tensor | None,
                    augment: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
                    ) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """The continual phase's step ``step(order, i) -> loss`` for task ``task``.

    One step: a :class:`~cl_runner.training.batch.Batch` from an index slice ->
    ``strategy.train_batch`` -> its class mask -> one forward pass -> ``strategy.loss``
    (+ ``strategy.penalty``) -> zero_grad, backward -> ``strategy.after_backward`` ->
    optimizer step -> ``strategy.after_step``. Hooks the strategy does not override are not
    called (the default loss is inlined), so plain fine-tuning pays for none of them.

    Args:
        masks: None (no masking), the task's bool ``(C,)`` mask, or the per-label table
            ``(C, C)`` of :func:`~cl_runner.data.masking.masks_by_label` (rows picked by each
            example's label) when the strategy mixes tasks.
        augment: None, or the benchmark's train-time augmentation ``(x, num_current) -> x'``
            applied to the stored batch just before ``to_input`` (``batch.x`` itself stays
            un-augmented: what a replay buffer stores).
    """
    use_batch = strategy.overrides("train_batch")
    use_loss = strategy.overrides("loss")
    use_penalty = strategy.overrides("penalty")
    use_after_backward = strategy.overrides("after_backward")
    use_after_step = strategy.overrides("after_step")
    by_label = masks is not None and masks.dim() == 2

    def step(order: torch.Tensor, i: int) -> torch.Tensor:
        # ---- hot path: keep syncs, logging and allocations out of here ----
        idx = batch_slice(order, i, batch_size)
        batch = Batch(train_x[idx], train_y[idx], task, len(idx))
        if use_batch:
            batch = strategy.train_batch(batch)
        if masks is not None:
            batch.allowed = masks[batch.y] if by_label else masks
        batch.inputs = to_input(batch.x if augment is None else augment(batch.x, batch.num_current))
        output = model(batch.inputs)
        if use_loss:
            loss = strategy.loss(batch, output, model)
        else:
            loss = classification_loss(output, batch.y, batch.allowed)
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
        return loss

    return step


def train_sequence(
    benchmark: Benchmark,
    model: nn.Module,
    strategy: StrategyHooks,
    make_optimizer: Callable[[list[nn.Parameter], int], torch.optim.Optimizer],
    *,
    batch_size: int,
    eval_batch_size: int,
    epochs_per_task: int,
    generator: torch.Generator,
    max_steps_per_task: int | None = None,
    hooks: Sequence[RunnerHook] = (),
    start: SequenceResult | None = None,
) -> SequenceResult:
    """Train ``model`` on tasks 1..T of ``benchmark`` in order with ``strategy``'s hooks.

    After each task the model is evaluated on the test sets of all T tasks (trained and not
    yet trained), batched and without gradients.

    Task-incremental benchmarks (``benchmark.class_masks("train")`` not None) train task t
    on logits masked to task t's classes (:mod:`cl_runner.data.masking`); when the strategy
    declares ``mixes_tasks`` (replay, multitask), each example is masked to the task owning
    its label. Without masks the step does no masking work.

    Args:
        make_optimizer: ``(params, task) -> optimizer``; called once per task, so the
            learning rate can decay per task and momentum restarts.
        batch_size: training minibatch size; a task's data are shuffled each epoch with
            ``generator`` and batches are index slices of that shuffle.
        eval_batch_size: batch size of the evaluation passes.
        max_steps_per_task: None: ``epochs_per_task`` whole passes per task; otherwise the
            continual phase of each task stops after at most this many optimizer steps (a
            cap: fewer when the passes hold fewer; ``result.steps`` records the count).
        generator: CPU generator for the shuffles (and strategies' random choices).
        hooks: runner hooks (:class:`~cl_runner.training.hooks.RunnerHook`: files,
            checkpoints, probes, progress, interruption), called in list order.
        start: the result of tasks 1..k of an interrupted run (a resumed run: model, strategy
            and generators already restored to the end of task k); training continues with
            task k+1 and the initial evaluation is not repeated. None: start at task 1.

    Raises:
        TrainingDivergedError: the last loss of a training phase of a task is NaN or
            infinite, or its test loss on a task is NaN (checked once per task, before the runner
            hooks' ``after_evaluation``: no file and no resume state records a diverged task).

    Returns:
        The :class:`SequenceResult`.
    """
    device = next(model.parameters()).device
    phases = PhaseRunner(hooks)
    evaluator = Evaluator(benchmark, strategy, eval_batch_size)
    if start is None:
        for hook in hooks:
            hook.before_run(model)
        result = SequenceResult()
        evaluated = time.perf_counter()
        result.initial_accuracy, result.initial_loss = evaluator.tasks(model, trained=0)
        result.eval_seconds.append(time.perf_counter() - evaluated)
    else:
        result = copy.deepcopy(start)
    to_input = benchmark.to_input
    train_masks = benchmark.class_masks("train")  # (T, C) bool, or None: no masking at all
    label_masks = (masks_by_label(train_masks) if train_masks is not None and strategy.mixes_tasks
                   else None)

    for task in range(len(result.accuracy) + 1, benchmark.num_tasks + 1):
        started = time.perf_counter()
        train_x, train_y = benchmark.train_data(task)
        ctx = TaskContext(task, train_x, train_y, model, benchmark, device, generator, phases)
        strategy.before_task(ctx)
        for hook in hooks:
            hook.before_task(ctx)
        train_x, train_y = strategy.task_data(ctx)  # the task's data, or e.g. multitask's union
        optimizer = make_optimizer(strategy.trainable_parameters(model), task)
        n = len(train_y)
        # decided once per task: None (MNIST), this task's (C,) mask, or per-example by label
        allowed = None if train_masks is None else train_masks[task - 1]

        step = _continual_step(model, strategy, optimizer, task, train_x, train_y, to_input,
                               batch_size, allowed if label_masks is None else label_masks,
                               benchmark.train_augmenter(generator))
        model.train()
        steps_per_epoch = math.ceil(n / batch_size)
        steps = phases.run(task, "train", epochs_per_task, steps_per_epoch,
                           lambda: shuffled(n, generator, device), step,  # noqa: B023
                           max_steps=max_steps_per_task)
        strategy.after_training(ctx)  # may run phases of its own (MC-SGD's line phase)
        last_losses = phases.pop_last_losses()  # one sync per task, for the log and the check
        evaluated = time.perf_counter()
        accuracy, losses = evaluator.tasks(model, trained=task)
        result.eval_seconds.append(time.perf_counter() - evaluated)
        result.accuracy.append(accuracy)
        result.loss.append(losses)
        result.steps.append(steps)
        result.learning_rates.append(optimizer.param_groups[0]["lr"])
        result.task_seconds.append(time.perf_counter() - started)
        seen = accuracy[:task]
        log.info(
            "task %2d/%d  lr %.4g  last train loss %.3f  acc on this task %.2f%%  "
            "avg acc on tasks 1..%d %.2f%%  (%.1fs)",
            task, benchmark.num_tasks, result.learning_rates[-1], last_losses[0][1],
            100 * accuracy[task - 1], task, 100 * sum(seen) / len(seen), result.task_seconds[-1],
        )
        # before the runner hooks: no file (rows, checkpoint, resume state) keeps a diverged
        # task. Training losses must be finite; a test loss only must not be NaN (NaN weights
        # after the last step): +inf is legitimate where the evaluation's class mask excludes
        # a test set's labels (a class-incremental test set of a task not trained yet).
        checks = [*(("training loss" if phase == "train" else f"{phase}-phase loss", value,
                     math.isfinite(value)) for phase, value in last_losses),
                  *((f"test loss on task {j}", value, not math.isnan(value))
                    for j, value in enumerate(losses, 1))]
        for what, value, good in checks:
            if not good:
                raise TrainingDivergedError(
                    f"training diverged: the {what} of task {task} is {value} (no file or resume "
                    f"state records it); lower the learning rate or the penalty"
                )
        for hook in hooks:
            hook.after_evaluation(task, result)
        del train_x, train_y, ctx, step
    for hook in hooks:
        hook.after_run(result)
    return result
