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
from cl_runner.training.evaluate import Evaluation, Evaluator
from cl_runner.training.hooks import PhaseRunner, RunnerHook, StrategyHooks, TaskContext
from cl_runner.training.precision import Precision, compiled
from cl_runner.training.result import SequenceResult
from cl_runner.training.steps import classification_loss, shuffled, task_inputs

log = logging.getLogger(__name__)


def _continual_step(model: nn.Module, strategy: StrategyHooks, optimizer: torch.optim.Optimizer,
                    task: int, train_x: torch.Tensor, train_y: torch.Tensor,
                    to_input: Callable[[torch.Tensor], torch.Tensor], batch_size: int,
                    masks: torch.Tensor | None,
                    inputs: torch.Tensor | None = None,
                    augment: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
                    precision: Precision | None = None,
                    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    ) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """The continual phase's step ``step(order, i) -> loss`` for task ``task``.

    One step: a :class:`~cl_runner.training.batch.Batch` from an index slice ->
    ``strategy.train_batch`` -> its class mask -> one forward pass -> ``strategy.loss``
    (+ ``strategy.penalty``) -> zero_grad, backward -> ``strategy.after_backward`` ->
    optimizer step -> ``strategy.after_step``. Hooks the strategy does not override are not
    called (the default loss is inlined), so plain fine-tuning pays for none of them. When the
    strategy overrides neither ``train_batch`` nor ``loss`` and ``inputs`` is given, the step
    gathers float rows of ``inputs`` and builds no Batch (nothing would read it): the same
    numbers, the bare loop's work (issue 32).

    Args:
        masks: None (no masking), the task's bool ``(C,)`` mask, or the per-label table
            ``(C, C)`` of :func:`~cl_runner.data.masking.masks_by_label` (rows picked by each
            example's label) when the strategy mixes tasks.
        inputs: ``to_input(train_x)`` computed once for the task
            (:func:`~cl_runner.training.steps.task_inputs`), or None: convert per batch.
        augment: None, or the benchmark's train-time augmentation ``(x, num_current) -> x'``
            applied to the stored batch just before ``to_input`` (``batch.x`` itself stays
            un-augmented: what a replay buffer stores); with it, ``inputs`` must be None.
        precision: None or ``32``: float32, the step as it always was. Otherwise the batch,
            forward pass, loss, penalty and ``after_backward`` (A-GEM's and GEM's reference
            passes) run under ``precision.autocast()``; for ``16-mixed`` the loss is scaled
            by a new ``GradScaler`` (per task, as the optimizer), the gradients unscaled
            before ``after_backward`` and the optimizer step taken by the scaler.
        forward: the step's forward pass (``hardware.compile``: the compiled model of
            :func:`~cl_runner.training.precision.compiled`); None: ``model``.
    """
    use_batch = strategy.overrides("train_batch")
    use_loss = strategy.overrides("loss")
    use_penalty = strategy.overrides("penalty")
    use_after_backward = strategy.overrides("after_backward")
    use_after_step = strategy.overrides("after_step")
    by_label = masks is not None and masks.dim() == 2
    plain = inputs is not None and not use_batch and not use_loss
    forward = model if forward is None else forward

    def step_loss(order: torch.Tensor, i: int) -> torch.Tensor:
        # ---- hot path: keep syncs, logging and allocations out of here ----
        idx = order[i * batch_size : (i + 1) * batch_size]
        if plain:  # default batch and loss: no Batch, float rows converted once per task
            y = train_y[idx]
            allowed = masks if not by_label else masks[y]
            loss = classification_loss(forward(inputs[idx]), y, allowed)
        else:
            batch = Batch(train_x[idx], train_y[idx], task, idx.shape[0])
            if use_batch:
                batch = strategy.train_batch(batch)
            if masks is not None:
                batch.allowed = masks[batch.y] if by_label else masks
            batch.inputs = to_input(batch.x if augment is None
                                    else augment(batch.x, batch.num_current))
            output = forward(batch.inputs)
            if use_loss:
                loss = strategy.loss(batch, output, model)
            else:
                loss = classification_loss(output, batch.y, batch.allowed)
        if use_penalty:
            extra = strategy.penalty(model)
            if extra is not None:
                loss = loss + extra
        return loss

    if precision is not None and precision.enabled:
        return _mixed_step(step_loss, model, strategy, optimizer, precision)

    def step(order: torch.Tensor, i: int) -> torch.Tensor:
        loss = step_loss(order, i)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if use_after_backward:
            strategy.after_backward(model)
        optimizer.step()
        if use_after_step:
            strategy.after_step(model)
        return loss

    return step


def _mixed_step(step_loss: Callable[[torch.Tensor, int], torch.Tensor], model: nn.Module,
                strategy: StrategyHooks, optimizer: torch.optim.Optimizer,
                precision: Precision) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """The continual phase's step under autocast (``precision`` not ``32``): ``step_loss``
    and ``after_backward`` under ``precision.autocast()``, backward and optimizer step
    outside it, through a new ``GradScaler`` for ``16-mixed`` (gradients unscaled before
    ``after_backward``; the scaler's overflow check is one host sync per step)."""
    use_after_backward = strategy.overrides("after_backward")
    use_after_step = strategy.overrides("after_step")
    autocast, scaler = precision.autocast, precision.scaler()

    def step(order: torch.Tensor, i: int) -> torch.Tensor:
        with autocast():
            loss = step_loss(order, i)
        optimizer.zero_grad(set_to_none=True)
        (loss if scaler is None else scaler.scale(loss)).backward()
        if use_after_backward:
            if scaler is not None:
                scaler.unscale_(optimizer)
            with autocast():
                strategy.after_backward(model)
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()
        if use_after_step:
            strategy.after_step(model)
        return loss

    return step


def evaluated_tasks(trained: int, num_tasks: int, future_tasks: str) -> range:
    """The tasks (1-based) the end-of-task evaluation scores after ``trained`` tasks (0: the
    initial evaluation) of ``num_tasks``: all of them (``"all"``); tasks 1..trained+1, and
    every task initially (``"next"``: forward transfer needs the initial accuracies and
    a[t-1, t]); tasks 1..trained (``"none"``).

    Raises:
        ValueError: ``future_tasks`` is none of these.
    """
    if future_tasks == "all" or (future_tasks == "next" and trained == 0):
        return range(1, num_tasks + 1)
    if future_tasks == "next":
        return range(1, min(trained + 1, num_tasks) + 1)
    if future_tasks == "none":
        return range(1, trained + 1)
    raise ValueError(f"future_tasks must be all, next or none, got {future_tasks!r}")


def _evaluate(evaluator: Evaluator, model: nn.Module, trained: int, tasks: range,
              num_tasks: int) -> Evaluation:
    """The :class:`Evaluation` of ``tasks`` after ``trained`` tasks with every row as a
    length-``num_tasks`` list, NaN for a task not evaluated (the confusion counts cover the
    evaluated test sets)."""
    accuracy, loss = [math.nan] * num_tasks, [math.nan] * num_tasks
    if not len(tasks):
        return Evaluation(accuracy, loss)
    scored = evaluator.evaluate(model, trained=trained, tasks=tasks)
    matrices = {name: [math.nan] * num_tasks for name in scored.matrices}
    for i, j in enumerate(tasks):
        accuracy[j - 1], loss[j - 1] = scored.accuracy[i], scored.loss[i]
        for name, row in scored.matrices.items():
            matrices[name][j - 1] = row[i]
    return Evaluation(accuracy, loss, matrices, scored.confusion)


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
    future_tasks: str = "all",
    precision: str = "32",
    compile: str | bool = False,
) -> SequenceResult:
    """Train ``model`` on tasks 1..T of ``benchmark`` in order with ``strategy``'s hooks.

    After each task the model is evaluated on the test sets of the tasks trained so far and,
    as ``future_tasks`` says, of tasks not trained yet, batched and without gradients.

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
        future_tasks: which tasks not trained yet are evaluated (:func:`evaluated_tasks`):
            ``"all"`` (the whole matrix), ``"next"`` (the initial evaluation of all tasks,
            then tasks 1..t+1 after task t) or ``"none"``; a cell not evaluated holds NaN
            in ``result.accuracy`` and ``result.loss`` (and the initial row under ``"none"``).
        precision: ``"32"``, ``"bf16"`` or ``"16-mixed"`` (:mod:`~cl_runner.training.precision`):
            the training steps (:func:`_mixed_step`), the evaluations and strategies' own
            phases (through ``TaskContext.precision``) run their forward passes under autocast.
        compile: ``False`` or a ``hardware.compile`` mode: the step's forward pass through
            ``torch.compile`` (:func:`~cl_runner.training.precision.compiled`, once per run).

    Raises:
        TrainingDivergedError: the last loss of a training phase of a task is NaN or
            infinite, or its test loss on a task is NaN (checked once per task, before the runner
            hooks' ``after_evaluation``: no file and no resume state records a diverged task).

    Returns:
        The :class:`SequenceResult`.
    """
    device = next(model.parameters()).device
    phases = PhaseRunner(hooks)
    amp = Precision(precision, device.type)
    forward = compiled(model, compile)
    evaluator = Evaluator(benchmark, strategy, eval_batch_size, autocast=amp.autocast)
    if start is None:
        for hook in hooks:
            hook.before_run(model)
        result = SequenceResult()
        evaluated = time.perf_counter()
        initial = _evaluate(evaluator, model, 0,
                            evaluated_tasks(0, benchmark.num_tasks, future_tasks),
                            benchmark.num_tasks)
        result.initial_accuracy, result.initial_loss = initial.accuracy, initial.loss
        result.eval_seconds.append(time.perf_counter() - evaluated)
    else:
        result = copy.deepcopy(start)
    to_input = benchmark.to_input
    train_masks = benchmark.class_masks("train")  # (T, C) bool, or None: no masking at all
    label_masks = (masks_by_label(train_masks) if train_masks is not None and strategy.mixes_tasks
                   else None)
    inputs = None  # the float copy of the current task's inputs, its buffer reused per task

    for task in range(len(result.accuracy) + 1, benchmark.num_tasks + 1):
        started = time.perf_counter()
        train_x, train_y = benchmark.train_data(task)
        ctx = TaskContext(task, train_x, train_y, model, benchmark, device, generator, phases,
                          amp)
        strategy.before_task(ctx)
        for hook in hooks:
            hook.before_task(ctx)
        train_x, train_y = strategy.task_data(ctx)  # the task's data, or e.g. multitask's union
        optimizer = make_optimizer(strategy.trainable_parameters(model), task)
        n = len(train_y)
        # decided once per task: None (MNIST), this task's (C,) mask, or per-example by label
        allowed = None if train_masks is None else train_masks[task - 1]

        # the task's inputs as floats once (into last task's buffer), unless the strategy's
        # own batch or loss needs the stored ones per batch or the batches are augmented
        augment = benchmark.train_augmenter(generator)
        inputs = (None if strategy.overrides("train_batch") or strategy.overrides("loss")
                  or augment is not None else task_inputs(train_x, to_input, inputs))
        step = _continual_step(model, strategy, optimizer, task, train_x, train_y, to_input,
                               batch_size, allowed if label_masks is None else label_masks,
                               inputs, augment, amp, forward)
        model.train()
        steps_per_epoch = math.ceil(n / batch_size)
        steps = phases.run(task, "train", epochs_per_task, steps_per_epoch,
                           lambda: shuffled(n, generator, device), step,  # noqa: B023
                           max_steps=max_steps_per_task)
        strategy.after_training(ctx)  # may run phases of its own (MC-SGD's line phase)
        last_losses = phases.pop_last_losses()  # one sync per task, for the log and the check
        evaluated = time.perf_counter()
        evaluation = _evaluate(evaluator, model, task,
                               evaluated_tasks(task, benchmark.num_tasks, future_tasks),
                               benchmark.num_tasks)
        accuracy, losses = evaluation.accuracy, evaluation.loss
        result.eval_seconds.append(time.perf_counter() - evaluated)
        result.add_matrices(evaluation.matrices, evaluation.confusion)
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
                  *((f"test loss on task {j}", losses[j - 1], not math.isnan(losses[j - 1]))
                    for j in evaluated_tasks(task, benchmark.num_tasks, future_tasks))]
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
