"""The two hook sets of the one loop (docs/design.md, principle 1), with one vocabulary of
events whose names say when they run:

==================  ==========================================  ============================
event               when                                        who
==================  ==========================================  ============================
before_run          once, before the initial evaluation          runner hooks
before_task         before task t's first step                   strategy, then runner hooks
before/after_phase  around each training phase of a task         runner hooks
after_backward      in each step, gradients in ``p.grad``        strategy
after_step          after each optimizer step                    strategy, runner hooks
after_step_loss     after each step, with its loss tensor        runner hooks (loggers)
after_training      task t trained, BEFORE its evaluation        strategy (may run phases)
after_evaluation    task t evaluated (rows in the result)        runner hooks
after_run           once, after the last task                    runner hooks
==================  ==========================================  ============================

Both receive the task's :class:`TaskContext` at ``before_task`` (the strategy also at
``after_training``). The old name ``after_task`` meant either of the last two by hook set; a
subclass that still defines it is refused at class creation (it would never be called).

- :class:`StrategyHooks`: what a continual-learning algorithm changes in training (the data of
  a task, the batch, the loss, the gradient, the weights at task boundaries). The strategies
  in :mod:`cl_runner.strategies` subclass it; the loop only knows this interface, so
  ``training/`` never imports ``strategies/``.
- :class:`RunnerHook`: what the runner does around training without changing any number
  (files, checkpoints, probes, progress, interruption), in detectron2's ``HookBase`` pattern:
  the loop takes ``hooks=[...]`` and calls each at fixed points, in list order.

:class:`PhaseRunner` runs the optimization steps of one phase of a task (the continual
phase, or a strategy's own phase such as MC-SGD's line phase, reached through
``TaskContext.phases``), so that progress, interruption and the divergence check are the
same for every phase.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from cl_runner.data.benchmark import Benchmark
from cl_runner.training.batch import Batch
from cl_runner.training.precision import Precision
from cl_runner.training.result import SequenceResult
from cl_runner.training.steps import classification_loss

EpochState = TypeVar("EpochState")


class RunnerHook:
    """Base class of runner hooks: every method is a no-op. Hooks read the run; they must not
    change the model, the data or any random generator the training uses.

    Call order for a run of T tasks (``ctx`` is the task's :class:`TaskContext`)::

        before_run(model)
        for each task t: strategy.before_task -> before_task(ctx) -> training phases, each
            before_phase(t, phase, steps) -> after_step() per step -> after_phase(t, phase)
            -> strategy.after_training (its own phases, e.g. MC-SGD's line phase) -> evaluation
            -> after_evaluation(t, result)
        after_run(result)

    ``after_step`` and ``after_step_loss`` are called only for hooks whose class overrides
    them (they run in the training step: keep them to a counter, a flag test or an operation
    on the device, no host sync).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _refuse_old_event(cls, "after_evaluation")

    def before_run(self, model: nn.Module) -> None:
        """Once, before the evaluation of the initial model."""

    def before_task(self, ctx: TaskContext) -> None:
        """After the strategy's ``before_task``, before ``task_data``; the time spent here
        counts in the task's ``task_seconds``."""

    def before_phase(self, task: int, phase: str, total_steps: int) -> None:
        """A training phase of ``task`` (``"train"``: the continual phase; a strategy's own
        phases by name, e.g. ``"line"``) is about to run ``total_steps`` steps."""

    def after_step(self) -> None:
        """After every optimizer step of every phase."""

    def after_step_loss(self, loss: torch.Tensor) -> None:
        """After ``after_step``, with the step's scalar loss tensor as the phase's step
        returned it (on the device, not synced; may still hold the graph: detach it)."""

    def after_phase(self, task: int, phase: str) -> None:
        """After the last step of a phase."""

    def after_evaluation(self, task: int, result: SequenceResult) -> None:
        """After task ``task`` (1-based) was evaluated; ``result`` holds the rows so far."""

    def after_run(self, result: SequenceResult) -> None:
        """Once, after the last task."""

    def state_dict(self) -> dict[str, Any]:
        """What the hook must carry over when a run resumes (default: nothing)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


def _refuse_old_event(cls: type, new_name: str) -> None:
    """Raise ``TypeError`` when ``cls`` defines the retired event ``after_task``, naming
    ``new_name`` (a hook under the old name would silently never run)."""
    if "after_task" in vars(cls):
        raise TypeError(f"{cls.__qualname__} defines after_task, an event that no longer "
                        f"exists: rename it {new_name} (cl_runner/training/hooks.py lists the "
                        f"events)")


def overrides(obj: object, base: type, method: str) -> bool:
    """True when ``type(obj)`` overrides ``base.method``."""
    return getattr(type(obj), method) is not getattr(base, method)


class PhaseRunner:
    """Runs the optimization steps of the phases of a task and tells the runner hooks.

    Every phase (the loop's continual phase, a strategy's own phase) runs through :meth:`run`:
    the same epoch/step structure, the same ``before_phase / after_step / after_phase`` calls
    (progress bars, interruption at a step boundary), and the same divergence check: the last
    loss of each phase is kept on the device and checked once per task by the loop
    (:meth:`pop_last_losses`), with a single host sync.

    Args:
        hooks: the runner hooks (empty: a phase runs with no progress and no interruption,
            e.g. a strategy's hook called by a unit test).
    """

    def __init__(self, hooks: Sequence[RunnerHook] = ()) -> None:
        self.hooks = list(hooks)
        self._step_hooks = [h for h in self.hooks if overrides(h, RunnerHook, "after_step")]
        self._loss_hooks = [h for h in self.hooks
                            if overrides(h, RunnerHook, "after_step_loss")]
        self._last: list[tuple[str, torch.Tensor]] = []

    def run(self, task: int, phase: str, epochs: int, steps_per_epoch: int,
            start_epoch: Callable[[], EpochState],
            step: Callable[[EpochState, int], torch.Tensor],
            max_steps: int | None = None) -> int:
        """Run ``epochs * steps_per_epoch`` steps of ``phase``, or the first ``max_steps``
        of them (the last epoch cut short).

        Args:
            task: 1-based task id (for the hooks).
            phase: the phase's name (``"train"`` for the continual phase).
            start_epoch: called at the start of every epoch; its value (e.g. the epoch's
                shuffled order) is passed to ``step``.
            step: ``step(epoch_state, i)`` does optimizer step ``i`` of the epoch (0-based)
                and returns its scalar loss tensor (not synced).
            max_steps: None: every step of every epoch; otherwise at most this many.

        Returns:
            The number of steps run.
        """
        total = epochs * steps_per_epoch if max_steps is None else min(
            max_steps, epochs * steps_per_epoch)
        for hook in self.hooks:
            hook.before_phase(task, phase, total)
        loss = None
        for epoch in range(epochs):
            steps = min(steps_per_epoch, total - epoch * steps_per_epoch)
            if steps <= 0:
                break
            state = start_epoch()
            for i in range(steps):
                loss = step(state, i)
                for hook in self._step_hooks:
                    hook.after_step()
                for hook in self._loss_hooks:  # empty unless a logger is on
                    hook.after_step_loss(loss)
        if loss is not None:
            self._last.append((phase, loss.detach()))
        for hook in self.hooks:
            hook.after_phase(task, phase)
        return total

    def pop_last_losses(self) -> list[tuple[str, float]]:
        """The last loss of every phase run since the previous call, ``(phase, value)``, in
        run order (one host sync for all), and forget them."""
        if not self._last:
            return []
        values = torch.stack([loss.float() for _, loss in self._last]).tolist()
        out = [(phase, value) for (phase, _), value in zip(self._last, values, strict=True)]
        self._last.clear()
        return out


@dataclass(frozen=True)
class InferenceProtocol:
    """How a strategy that infers the task at test time has its test sets scored
    (:meth:`StrategyHooks.inference_protocol`).

    Attributes:
        batch_size: test examples per inferred batch (one task per batch; 1: per image).
        shuffle: cut each test set in a fixed random order seeded by the task id (a
            generator of its own), instead of its file order.
        zero_if_wrong: a batch whose task is inferred wrong scores 0 (SupSup's rule).
    """

    batch_size: int
    shuffle: bool = False
    zero_if_wrong: bool = False


@dataclass
class TaskContext:
    """What a strategy sees at a task boundary.

    Attributes:
        task: 1-based task id.
        train_x: the task's training inputs, uint8 ``(N, *input_shape)`` on ``device``.
        train_y: int64 ``(N,)``.
        model: the network being trained (the strategy may read or overwrite its weights).
        benchmark: the task sequence (``to_input`` turns stored batches into model inputs).
        device: where model and data live.
        generator: the run's CPU random generator (seeded), for every random choice a
            strategy makes (memory selection, subsets, shuffles).
        phases: runs a strategy's own optimization phase (MC-SGD's line phase) with the
            loop's progress, interruption and divergence check (:class:`PhaseRunner`).
        precision: the run's ``hardware.precision``
            (:class:`~cl_runner.training.precision.Precision`): a strategy's own training
            phase runs its forward passes under ``ctx.precision.autocast()``.
    """

    task: int
    train_x: torch.Tensor
    train_y: torch.Tensor
    model: nn.Module
    benchmark: Benchmark
    device: torch.device
    generator: torch.Generator
    phases: PhaseRunner = field(default_factory=PhaseRunner)
    precision: Precision = field(default_factory=Precision)


class StrategyHooks:
    """The hooks of a continual-learning strategy, as the loop calls them; every hook is a
    no-op (plain fine-tuning). :class:`cl_runner.strategies.base.Strategy` adds the rest of
    the strategy interface (stats, checkpoints, resume state).

    Hooks, in the order the loop calls them for task t:
        ``before_task(ctx)`` -> ``task_data(ctx)`` (the task's training set)
        -> optimizer over ``trainable_parameters(model)`` -> per step:
        ``train_batch(batch)`` -> one forward pass ``output = model(batch.inputs)``
        -> ``loss(batch, output, model)`` (+ ``penalty(model)``) -> backward
        -> ``after_backward(model)`` -> optimizer step -> ``after_step(model)``
        -> ``after_training(ctx)`` -> evaluation of all tasks with the model as left by ``after_training``
        (``eval_task(model, j)`` before scoring task j, when overridden; each test batch
        classified by ``predict(model, inputs, task)``).

    The loop checks once which hooks are overridden and skips the others, so an unused hook
    costs nothing in the training step.

    Attributes:
        mixes_tasks: the strategy's ``train_batch`` or ``task_data`` may return examples of
            other tasks than the current one (replay, multitask). On task-incremental
            benchmarks the loop then masks each example to the classes of the task owning
            its label, instead of the whole batch to the current task's classes. Declared by
            the strategy (default False).
        task_given_evaluation: the strategy's ``eval_task`` needs the true task id at test
            time (SupSup's and ImpressLearn's per-task masks). On a benchmark that is not
            task-incremental the evaluation then also scores it with the task given, as the
            task-incremental matrix beside the headline (``accuracy_matrix_task_il.csv``),
            never as the headline, which there is always scored without the task id
            (:class:`~cl_runner.training.evaluate.Evaluator`). Default False.
        predict_needs_grad: the strategy's test-time hooks (``infer_task``) need autograd
            (SupSup's one-shot inference differentiates the output entropy by the mask
            coefficients): the evaluation runs this strategy under ``torch.no_grad`` (the
            hook enables gradients where it needs them) instead of ``torch.inference_mode``,
            which every other strategy keeps. Default False.
    """

    mixes_tasks: bool = False
    task_given_evaluation: bool = False
    predict_needs_grad: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _refuse_old_event(cls, "after_training")
        if "accuracy_matrices" in vars(cls):  # the retired side path around the evaluation
            raise TypeError(f"{cls.__qualname__} defines accuracy_matrices: every accuracy "
                            "matrix now comes from the one evaluation (cl_runner/training/"
                            "evaluate.py, which decides the headline by the scenario); use "
                            "eval_task / predict / inference_protocol instead")

    def before_task(self, ctx: TaskContext) -> None:
        """Called before the first training step of a task."""

    def task_data(self, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor]:
        """The training set of task ``ctx.task``, called once per task after ``before_task``:
        ``(x uint8 (N, *input_shape), y int64 (N,))`` on ``ctx.device``. The loop shuffles and
        batches it (its size sets the number of steps). Default: the task's own data
        (``ctx.train_x``, ``ctx.train_y``); multitask returns the union of tasks 1..t (and
        declares :attr:`mixes_tasks`).
        """
        return ctx.train_x, ctx.train_y

    def train_batch(self, batch: Batch) -> Batch:
        """Return the batch to train on (e.g. the current batch plus a replay batch, with
        stored logits). ``batch.x`` stored inputs ``(B, *input_shape)``, ``batch.y`` int64
        ``(B,)``; ``allowed`` and ``inputs`` are set by the loop afterwards. May modify and
        return ``batch`` itself. Default: unchanged."""
        return batch

    def loss(self, batch: Batch, output: torch.Tensor, model: nn.Module) -> torch.Tensor:
        """The scalar training loss of ``batch`` from the model's output, float ``(B, C)``
        logits of ``model(batch.inputs)`` (one forward pass per step, done by the loop).

        Default: the mean cross-entropy over ``batch.allowed`` classes
        (:func:`~cl_runner.training.steps.classification_loss`). A strategy with its own
        objective (LwF's distillation, DER's logit matching, iCaRL's binary cross-entropy)
        overrides this; ``penalty(model)`` is added by the loop after it either way.
        """
        return classification_loss(output, batch.y, batch.allowed)

    def trainable_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """The parameters the optimizer of the current task updates, asked once per task after
        ``task_data``. Default: all of ``model.parameters()``; supermask strategies return the
        current task's scores or coefficients only (or parameter-group dicts, as
        ``torch.optim`` optimizers accept, to give them their own learning rate)."""
        return list(model.parameters())

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """An extra scalar loss term added to the cross-entropy (e.g. EWC), or None."""
        return None

    def after_backward(self, model: nn.Module) -> None:
        """Called with the gradients in ``p.grad``, before the optimizer step (projection)."""

    def after_step(self, model: nn.Module) -> None:
        """Called after every optimizer step."""

    def after_training(self, ctx: TaskContext) -> None:
        """Called after the last training step of a task, before evaluation."""

    def eval_task(self, model: nn.Module, task: int) -> None:
        """Called by the evaluation before it scores task ``task`` (1-based), including the
        evaluation before any training; only when overridden, and on a benchmark that is not
        task-incremental only when :attr:`task_given_evaluation` is declared (for the
        task-incremental matrix beside the headline) or with the task the strategy inferred
        itself (:meth:`infer_task`). Supermask strategies switch the model to the task's
        mask here."""

    def inference_protocol(self) -> InferenceProtocol | None:
        """How the strategy infers the task of a test batch itself (SupSup's one-shot
        inference), or None (default): the strategy does not infer tasks. When set, the
        evaluation cuts each test set as the protocol says and, per batch, calls
        :meth:`infer_task`, then ``eval_task(model, inferred)`` and ``predict(model, inputs,
        None)``: the headline matrix on benchmarks that do not give the task id, a
        ``task_inferred`` diagnostic matrix on task-incremental ones; the fraction of
        examples whose task was inferred right is the ``task_inference`` matrix."""
        return None

    def infer_task(self, model: nn.Module, inputs: torch.Tensor) -> int:
        """The 1-based id of the learned task a test batch (model inputs ``(B, ...)``, all of
        one unknown task) is inferred to belong to; before any task is learned, any id
        (``eval_task`` then selects the untrained state). Called only when
        :meth:`inference_protocol` is set, in eval mode; may sync with the host once per
        batch (the id selects the task's masks)."""
        raise NotImplementedError(f"{type(self).__name__} sets inference_protocol but does not "
                                  "implement infer_task")

    def predict(self, model: nn.Module, inputs: torch.Tensor, task: int | None) -> torch.Tensor:
        """Class scores of a test batch, float ``(B, C)``: the evaluation takes their argmax
        (over the task's classes on task-incremental benchmarks) and their cross-entropy as
        the test loss. Called in eval mode under ``torch.inference_mode`` (``torch.no_grad`` with
        :attr:`predict_needs_grad`).

        Args:
            inputs: model inputs ``(B, *input_shape)``, float.
            task: the 1-based task id of the batch on task-incremental benchmarks; None on
                the other scenarios (the scenario forbids it).

        Default: the model's output (logits). iCaRL overrides it with the nearest mean of
        exemplars (``model.features``)."""
        return model(inputs)

    def overrides(self, hook: str) -> bool:
        """True when this strategy's class overrides ``hook`` of :class:`StrategyHooks`."""
        return overrides(self, StrategyHooks, hook)
