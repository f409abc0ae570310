"""The one evaluation (docs/design.md, principles 1 and 2): batched scoring of a model on test
sets, used by the end-of-task accuracy matrix, continual evaluation and task-inferred
evaluation.

**The scenario decides the headline**, here and nowhere else (:func:`plan_passes`). The
headline matrix (``accuracy_matrix.csv``) is scored with what the benchmark's scenario lets
evaluation know: on a task-incremental benchmark (test-time class masks) each test set is
scored over its task's classes and a strategy's ``eval_task``/``predict`` receive the task id;
on the other scenarios no strategy receives the true task id for the headline: it is scored
either blind (``predict(model, inputs, None)``) or with the task the strategy infers itself
(``StrategyHooks.inference_protocol``: SupSup's one-shot inference). Beside the headline the
evaluation writes **the task-incremental matrix** (``task_il``,
``accuracy_matrix_task_il.csv``), where the scenario is not task-incremental and the task id
makes a difference:

- class-incremental: the headline's own logits masked to each evaluated task's classes
  (one forward pass, two masks; Mammoth reports both);
- a strategy that declares ``task_given_evaluation`` (SupSup's per-task masks): a second pass
  with the true task given (``eval_task(model, task)``), never the headline.

A strategy that infers tasks also gets ``task_inference`` (fraction of test examples whose
task was inferred right, tasks learned so far) and, on task-incremental benchmarks, the
``task_inferred`` diagnostic matrix (tasks learned so far). Its headline scores every task,
learned or not (inferred among the tasks learned so far), except in the evaluation before
any training, where there is nothing to infer: the model is scored blind, as it is.

Gradients: everything runs under ``torch.inference_mode`` except for a strategy that declares
``predict_needs_grad`` (task inference differentiates through the model), which runs under
``torch.no_grad`` and enables gradients inside its hook; with ``hardware.precision`` bf16 or
16-mixed, under the run's autocast too.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cl_runner.data.benchmark import Benchmark
from cl_runner.data.masking import mask_logits
from cl_runner.training.hooks import StrategyHooks

#: ``predict(inputs float (B, *input_shape)) -> scores float (B, C)``
Predictor = Callable[[torch.Tensor], torch.Tensor]

TASK_INCREMENTAL = "task_incremental"
CLASS_INCREMENTAL = "class_incremental"

#: the matrices the evaluation writes beside the headline (``accuracy_matrix_<name>.csv``)
TASK_IL = "task_il"
TASK_INFERRED = "task_inferred"
TASK_INFERENCE = "task_inference"
MATRICES = {
    TASK_IL: "task-incremental accuracy (the task id given at test time) beside a headline "
             "that is not task-incremental",
    TASK_INFERRED: "accuracy with the task inferred by the strategy, on a task-incremental "
                   "benchmark (a diagnostic; tasks learned so far)",
    TASK_INFERENCE: "fraction of test examples whose task the strategy inferred right (tasks "
                    "learned so far)",
}

#: the headline pass's name in :func:`plan_passes`
HEADLINE = "headline"
#: how a pass may know the task: ``given`` (``eval_task(model, task)``, ``predict(.., task)``),
#: ``blind`` (no task id), ``inferred`` (the strategy's own ``infer_task`` per batch)
GIVEN, BLIND, INFERRED = "given", "blind", "inferred"


class Pass(NamedTuple):
    """One scoring pass over the test sets: the matrix it fills and what it knows of the task."""

    name: str
    knows: str


def plan_passes(scenario: str, task_given: bool, infers: bool) -> tuple[Pass, ...]:
    """The passes of an end-of-task evaluation, in run order; the one rule that decides which
    matrix is the headline (module docstring).

    Args:
        scenario: the benchmark's scenario value.
        task_given: the strategy declares ``task_given_evaluation``.
        infers: the strategy infers tasks (``inference_protocol()`` is set).

    Returns:
        Passes; exactly one is named :data:`HEADLINE`, and it is ``given`` only when
        ``scenario`` is task-incremental. Inferred passes come first (they leave the model
        in an inferred task's state, which a later given pass resets).
    """
    if scenario == TASK_INCREMENTAL:
        head = (Pass(HEADLINE, GIVEN),)
        return ((Pass(TASK_INFERRED, INFERRED),) + head) if infers else head
    passes = (Pass(HEADLINE, INFERRED if infers else BLIND),)
    if task_given:
        passes += (Pass(TASK_IL, GIVEN),)
    return passes


class Scores(NamedTuple):
    """What one pass measured on one test set: 0-dim tensors on the data's device (no host
    sync). ``correct`` int64, ``loss_sum`` float32 (nats, summed), ``correct_task`` int64 or
    None (correct among the task's classes: the task-incremental view of the same logits),
    ``right`` int64 or None (examples whose task was inferred right), ``confusion`` int64
    ``(C * C,)`` or None (counts at ``true * C + predicted``)."""

    correct: torch.Tensor
    loss_sum: torch.Tensor
    correct_task: torch.Tensor | None = None
    right: torch.Tensor | None = None
    confusion: torch.Tensor | None = None


def _forward_pass(model: nn.Module, x: torch.Tensor, y: torch.Tensor, to_input,
                  batch_size: int, allowed: torch.Tensor | None, predict: Predictor | None,
                  task_allowed: torch.Tensor | None = None, classes: int = 0) -> Scores:
    """Score one data set batch by batch in eval mode: one forward pass per batch, the
    headline mask ``allowed`` and, when given, the task's mask ``task_allowed`` on the same
    logits; confusion counts over ``classes`` outputs when ``classes`` > 0."""
    was_training = model.training
    model.eval()
    forward = model if predict is None else predict
    zero = torch.zeros((), dtype=torch.long, device=y.device)
    correct, loss_sum = zero.clone(), torch.zeros((), dtype=torch.float32, device=y.device)
    correct_task = None if task_allowed is None else zero.clone()
    confusion = (torch.zeros(classes * classes, dtype=torch.long, device=y.device)
                 if classes else None)
    for start in range(0, len(y), batch_size):
        xb, yb = to_input(x[start : start + batch_size]), y[start : start + batch_size]
        logits = forward(xb)
        if task_allowed is not None:
            correct_task += (mask_logits(logits, task_allowed).argmax(1) == yb).sum()
        if allowed is not None:
            logits = mask_logits(logits, allowed)
        loss_sum += F.cross_entropy(logits, yb, reduction="sum")
        predicted = logits.argmax(1)
        correct += (predicted == yb).sum()
        if confusion is not None:
            confusion += torch.bincount(yb * classes + predicted, minlength=classes * classes)
    model.train(was_training)
    return Scores(correct, loss_sum, correct_task, None, confusion)


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, to_input, batch_size: int,
             allowed: torch.Tensor | None = None,
             predict: Predictor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Correct predictions and summed cross-entropy of ``model`` on one data set, in eval mode.

    Args:
        x: stored inputs ``(N, ...)`` (turned into model inputs by ``to_input`` per batch).
        y: int64 labels ``(N,)``.
        batch_size: examples per forward pass.
        allowed: bool ``(C,)`` task-incremental mask of the data set's task (prediction and
            loss range over the allowed classes only), or ``None`` (all classes).
        predict: the class scores of a batch of model inputs, float ``(B, C)`` (a strategy's
            ``predict``, e.g. iCaRL's nearest mean of exemplars); None: ``model(inputs)``.

    Returns:
        ``(correct, loss_sum)``: 0-dim tensors on the model's device: the number of correct
        predictions (int64) and the summed cross-entropy of the scores (nats, float32). No
        host sync here.
    """
    scores = _forward_pass(model, x, y, to_input, batch_size, allowed, predict)
    return scores.correct, scores.loss_sum


@dataclass
class Evaluation:
    """One end-of-task evaluation (:meth:`Evaluator.evaluate`).

    Attributes:
        accuracy: headline test accuracy per evaluated task (fractions).
        loss: headline mean test cross-entropy per evaluated task (nats).
        matrices: rows of the matrices beside the headline by name (:data:`MATRICES`), one
            value per evaluated task (NaN: not evaluated); none after 0 tasks.
        confusion: class-incremental headline: ``confusion[true][predicted]`` counts over
            the evaluated test sets (``C x C``); else None.
    """

    accuracy: list[float]
    loss: list[float]
    matrices: dict[str, list[float]] = field(default_factory=dict)
    confusion: list[list[int]] | None = None


class Evaluator:
    """Scores a model on test sets as the benchmark's scenario allows, with a strategy's
    evaluation hooks: the one evaluation of the end-of-task matrices (:meth:`evaluate`) and
    continual evaluation (:meth:`score`).

    Args:
        benchmark: the task sequence (``scenario``, ``eval_mask``, ``task_mask``, ``to_input``).
        strategy: whose ``eval_task``, ``predict`` and task-inference hooks apply (when
            overridden), or None.
        batch_size: examples per forward pass (task-inferred passes use the strategy's
            protocol's batch size).
        autocast: None, or a context factory every forward pass runs under
            (``Precision.autocast`` of a run with ``hardware.precision`` bf16 or 16-mixed).
        switch_tasks: False for evaluations in the middle of training (continual evaluation,
            :meth:`score` only): no ``eval_task`` and no task inference there (switching a
            supermask strategy to another task's mask would change what is being trained).

    Attributes:
        scenario: the benchmark's scenario, what the headline measures.
        passes: the passes of :meth:`evaluate` (:func:`plan_passes`).
    """

    def __init__(self, benchmark: Benchmark, strategy: StrategyHooks | None,
                 batch_size: int, switch_tasks: bool = True,
                 autocast: Callable[[], contextlib.AbstractContextManager] | None = None) -> None:
        self.autocast = autocast
        self.benchmark = benchmark
        self.batch_size = batch_size
        self.scenario: str = getattr(benchmark.scenario, "value", benchmark.scenario)
        self._task_incremental = self.scenario == TASK_INCREMENTAL
        self.strategy = strategy
        has = (lambda hook: strategy is not None and strategy.overrides(hook))  # noqa: E731
        self._eval_task = switch_tasks and has("eval_task")
        self._predict = has("predict")
        self._grad = strategy is not None and strategy.predict_needs_grad
        self.protocol = (strategy.inference_protocol() if switch_tasks and strategy is not None
                         else None)
        task_given = switch_tasks and strategy is not None and strategy.task_given_evaluation
        self.passes = plan_passes(self.scenario, task_given, self.protocol is not None)
        # class-incremental: the task-IL view of the blind headline's own logits
        self._task_view = (not self._task_incremental and not task_given
                           and benchmark.task_mask(1) is not None)
        self._classes = benchmark.num_classes if self.scenario == CLASS_INCREMENTAL else 0

    def _grad_mode(self) -> contextlib.AbstractContextManager:
        """The grad mode of the evaluation, under the run's autocast when it has one."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.no_grad() if self._grad else torch.inference_mode())
        if self.autocast is not None:
            stack.enter_context(self.autocast())
        return stack

    def _predictor(self, model: nn.Module, task: int | None) -> Predictor | None:
        if not self._predict:
            return None
        return lambda inputs: self.strategy.predict(model, inputs, task)

    def score(self, model: nn.Module, task: int, x: torch.Tensor, y: torch.Tensor,
              trained: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(correct, loss_sum)`` of the headline on examples ``x``, ``y`` of task ``task``
        (1-based) after ``trained`` tasks (None: all of them), as :func:`evaluate` returns
        them (no host sync). Task inference is not run here: with ``switch_tasks`` false
        (continual evaluation) the model is scored as it is."""
        with self._grad_mode():
            scores = self._score(Pass(HEADLINE, GIVEN if self._task_incremental else BLIND),
                                 model, task, x, y, self._done(trained), headline=True)
        return scores.correct, scores.loss_sum

    def _done(self, trained: int | None) -> int:
        return self.benchmark.num_tasks if trained is None else trained

    def _score(self, pass_: Pass, model: nn.Module, task: int, x: torch.Tensor,
               y: torch.Tensor, trained: int, headline: bool) -> Scores:
        bench = self.benchmark
        if pass_.knows == INFERRED and trained > 0:
            return self._score_inferred(model, task, x, y, trained)
        # (before any task is learned there is nothing to infer: scored blind, as it is)
        given = pass_.knows == GIVEN
        if given and self._eval_task:
            self.strategy.eval_task(model, task)
        if self._task_incremental or not given:
            allowed = bench.eval_mask(task, trained)
        else:  # the task-IL matrix beside another scenario's headline
            allowed = bench.task_mask(task)
        task_allowed = bench.task_mask(task) if headline and self._task_view else None
        return _forward_pass(model, x, y, bench.to_input, self.batch_size, allowed,
                             self._predictor(model, task if given else None), task_allowed,
                             self._classes if headline else 0)

    def _score_inferred(self, model: nn.Module, task: int, x: torch.Tensor, y: torch.Tensor,
                        trained: int) -> Scores:
        """Per batch of the protocol: infer the task, select it (``eval_task``), predict
        without the task id, score over the inferred task's classes on task-incremental
        benchmarks; a wrongly inferred batch scores 0 under ``zero_if_wrong``."""
        proto, bench, strategy = self.protocol, self.benchmark, self.strategy
        was_training = model.training
        model.eval()
        order = (torch.randperm(len(y), generator=torch.Generator().manual_seed(task))
                 .to(y.device) if proto.shuffle else None)
        zero = torch.zeros((), dtype=torch.long, device=y.device)
        correct, right = zero.clone(), zero.clone()
        loss_sum = torch.zeros((), dtype=torch.float32, device=y.device)
        for start in range(0, len(y), proto.batch_size):
            part = (slice(start, start + proto.batch_size) if order is None
                    else order[start : start + proto.batch_size])
            xb, yb = bench.to_input(x[part]), y[part]
            guess = strategy.infer_task(model, xb)  # the batch's one host sync
            if self._eval_task:
                strategy.eval_task(model, guess)
            logits = strategy.predict(model, xb, None) if self._predict else model(xb)
            allowed = bench.eval_mask(guess if self._task_incremental else task, trained)
            if allowed is not None:
                logits = mask_logits(logits, allowed)
            loss_sum += F.cross_entropy(logits, yb, reduction="sum")
            if guess == task:
                right += len(yb)
            if guess == task or not proto.zero_if_wrong:
                correct += (logits.argmax(1) == yb).sum()
        model.train(was_training)
        return Scores(correct, loss_sum, None, right, None)

    def evaluate(self, model: nn.Module, trained: int | None = None,
                 tasks: Sequence[int] | None = None) -> Evaluation:
        """Every pass of :attr:`passes` on the test sets of ``tasks`` (default: every task of
        the benchmark, trained or not), after ``trained`` tasks (0: the initial evaluation,
        headline only; None: all).

        Returns:
            The :class:`Evaluation`, one value per task of ``tasks`` in the order given.
            One host sync for all passes (plus one per inferred batch).
        """
        tasks = list(range(1, self.benchmark.num_tasks + 1) if tasks is None else tasks)
        done = self._done(trained)
        data = [self.benchmark.test_data(t) for t in tasks]
        sizes = torch.tensor([len(y) for _, y in data], dtype=torch.float64)
        columns: list[tuple[str, int]] = []  # (matrix, index into tasks) of each measured value
        values: list[torch.Tensor] = []
        confusion = None
        with self._grad_mode():
            for pass_ in self.passes:
                headline = pass_.name == HEADLINE
                if not headline and done == 0:
                    continue
                for i, (t, (x, y)) in enumerate(zip(tasks, data, strict=True)):
                    if not headline and pass_.knows == INFERRED and t > done:
                        continue  # a diagnostic of the tasks learned so far
                    s = self._score(pass_, model, t, x, y, done, headline)
                    name = HEADLINE if headline else pass_.name
                    columns += [(name, i), (name + ":loss", i)]
                    values += [s.correct.double(), s.loss_sum.double()]
                    if s.correct_task is not None and done > 0:
                        columns.append((TASK_IL, i))
                        values.append(s.correct_task.double())
                    if s.right is not None and t <= done:
                        columns.append((TASK_INFERENCE, i))
                        values.append(s.right.double())
                    if s.confusion is not None and done > 0:
                        confusion = s.confusion if confusion is None else confusion + s.confusion
        flat = torch.stack(values)
        if confusion is not None:
            flat = torch.cat([flat, confusion.double()])
        host = flat.cpu()  # the one host sync
        n = len(columns)
        per_example = host[:n] / sizes[[i for _, i in columns]].clamp(min=1)
        out: dict[str, list[float]] = {}
        for (name, i), value in zip(columns, per_example.tolist(), strict=True):
            out.setdefault(name, [math.nan] * len(tasks))[i] = value
        accuracy, loss = out.pop(HEADLINE), out.pop(HEADLINE + ":loss")
        matrices = {k: v for k, v in out.items() if not k.endswith(":loss")}
        table = None
        if confusion is not None:
            c = self._classes
            table = host[n:].long().view(c, c).tolist()
        return Evaluation(accuracy, loss, matrices, table)

    def tasks(self, model: nn.Module, trained: int | None = None,
              tasks: Sequence[int] | None = None) -> tuple[list[float], list[float]]:
        """Headline test accuracy and loss on the test sets of ``tasks`` (:meth:`evaluate`).

        Returns:
            ``(accuracies, losses)``: lists of ``len(tasks)`` (fractions; nats per example).
        """
        evaluation = self.evaluate(model, trained, tasks)
        return evaluation.accuracy, evaluation.loss


def task_of_class(benchmark: Benchmark) -> list[int] | None:
    """The 0-based task of each of the benchmark's C outputs (-1: no task's class), from
    ``benchmark.task_mask``; None where tasks share every output. For the class-incremental
    metrics of the confusion counts (:func:`cl_runner.results.metrics.confusion_metrics`)."""
    if benchmark.task_mask(1) is None:
        return None
    masks = torch.stack([benchmark.task_mask(t) for t in range(1, benchmark.num_tasks + 1)])
    owner = torch.where(masks.any(0), masks.long().argmax(0), -1)
    return owner.cpu().tolist()


def evaluate_tasks(model: nn.Module, benchmark: Benchmark, batch_size: int,
                   strategy: StrategyHooks | None = None) -> tuple[list[float], list[float]]:
    """Headline test accuracy and loss on every task of ``benchmark`` (trained or not), with
    ``strategy``'s evaluation hooks where the scenario allows them (:class:`Evaluator`).

    Returns:
        ``(accuracies, losses)``: lists of length T (fractions; nats), task 1 first.
        One host sync for the whole pass.
    """
    return Evaluator(benchmark, strategy, batch_size).tasks(model)
