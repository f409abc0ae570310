"""The one evaluation (docs/design.md, principles 1 and 2): gradient-free, batched scoring of a
model on test sets, used by the end-of-task accuracy matrix, continual evaluation and the
strategies' own evaluations.

The scenario decides what the evaluation may know: on a task-incremental benchmark (test-time
class masks) each test set is scored over its task's classes and a strategy's ``predict``
receives the task id; on the other scenarios no strategy receives a task id, except one that
declares a task-given evaluation (``StrategyHooks.task_given_evaluation``: SupSup's per-task
masks), whose matrix is then labelled task-incremental (:attr:`Evaluator.scenario`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cl_runner.data.benchmark import Benchmark
from cl_runner.data.masking import mask_logits
from cl_runner.training.hooks import StrategyHooks

#: ``predict(inputs float (B, *input_shape)) -> scores float (B, C)``
Predictor = Callable[[torch.Tensor], torch.Tensor]

TASK_INCREMENTAL = "task_incremental"


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
    was_training = model.training
    model.eval()
    forward = model if predict is None else predict
    correct = torch.zeros((), dtype=torch.long, device=y.device)
    loss_sum = torch.zeros((), dtype=torch.float32, device=y.device)
    for start in range(0, len(y), batch_size):
        xb, yb = to_input(x[start : start + batch_size]), y[start : start + batch_size]
        logits = forward(xb)
        if allowed is not None:
            logits = mask_logits(logits, allowed)
        loss_sum += F.cross_entropy(logits, yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    model.train(was_training)
    return correct, loss_sum


class Evaluator:
    """Scores a model on test sets as the benchmark's scenario allows, with a strategy's
    evaluation hooks: the one evaluation of the end-of-task matrix
    (:meth:`tasks`) and continual evaluation (:meth:`score`).

    Args:
        benchmark: the task sequence (its ``scenario``, test-time ``eval_mask``, ``to_input``).
        strategy: whose ``eval_task`` and ``predict`` hooks apply (when overridden), or None.
        batch_size: examples per forward pass.
        switch_tasks: call the strategy's ``eval_task`` before each task is scored (where
            allowed). False for evaluations in the middle of training (continual evaluation):
            switching a supermask strategy to another task's mask there would change what is
            being trained; such strategies are then scored with the mask being trained.

    Attributes:
        scenario: what the scores measure: ``"task_incremental"`` when the benchmark is, or
            when the strategy is given the task id (a task-given diagnostic, see the module
            docstring); else the benchmark's own scenario (``benchmark.scenario``).
    """

    def __init__(self, benchmark: Benchmark, strategy: StrategyHooks | None,
                 batch_size: int, switch_tasks: bool = True) -> None:
        self.benchmark = benchmark
        self.batch_size = batch_size
        own = getattr(benchmark.scenario, "value", benchmark.scenario)
        task_incremental = own == TASK_INCREMENTAL
        self.strategy = strategy
        self._eval_task = (switch_tasks and strategy is not None
                           and strategy.overrides("eval_task")
                           and (task_incremental or strategy.task_given_evaluation))
        self._predict = strategy is not None and strategy.overrides("predict")
        self._task_incremental = task_incremental
        self.scenario: str = TASK_INCREMENTAL if task_incremental or self._eval_task else own

    def score(self, model: nn.Module, task: int, x: torch.Tensor, y: torch.Tensor,
              trained: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(correct, loss_sum)`` of ``model`` on examples ``x``, ``y`` of task ``task``
        (1-based) after ``trained`` tasks (None: all of them), scored over
        ``benchmark.eval_mask(task, trained)``, as :func:`evaluate` returns them (no host
        sync)."""
        if self._eval_task:
            self.strategy.eval_task(model, task)
        predict = None
        if self._predict:
            given = task if self._task_incremental else None
            predict = lambda inputs: self.strategy.predict(model, inputs, given)  # noqa: E731
        done = self.benchmark.num_tasks if trained is None else trained
        allowed = self.benchmark.eval_mask(task, done)
        return evaluate(model, x, y, self.benchmark.to_input, self.batch_size, allowed, predict)

    def tasks(self, model: nn.Module, trained: int | None = None,
              tasks: Sequence[int] | None = None) -> tuple[list[float], list[float]]:
        """Test accuracy and loss on the test sets of ``tasks`` (default: every task of the
        benchmark, trained or not), task order as given, after ``trained`` tasks (0: the
        initial evaluation; None: all; sets what ``benchmark.eval_mask`` allows).

        Returns:
            ``(accuracies, losses)``: lists of ``len(tasks)`` (fractions; nats per example).
            One host sync for the whole pass.
        """
        tasks = range(1, self.benchmark.num_tasks + 1) if tasks is None else tasks
        sizes = torch.tensor([len(self.benchmark.test_data(t)[1]) for t in tasks],
                             dtype=torch.float64)
        results = [self.score(model, t, *self.benchmark.test_data(t), trained) for t in tasks]
        stacked = torch.stack([torch.stack([c.double(), s.double()]) for c, s in results]).cpu()
        per_example = stacked / sizes.clamp(min=1).unsqueeze(1)  # (T, 2)
        return per_example[:, 0].tolist(), per_example[:, 1].tolist()


def evaluate_tasks(model: nn.Module, benchmark: Benchmark, batch_size: int,
                   strategy: StrategyHooks | None = None) -> tuple[list[float], list[float]]:
    """Test accuracy and loss on every task of ``benchmark`` (trained or not), with
    ``strategy``'s evaluation hooks where the scenario allows them (:class:`Evaluator`).

    Returns:
        ``(accuracies, losses)``: lists of length T (fractions; nats), task 1 first.
        One host sync for the whole pass.
    """
    return Evaluator(benchmark, strategy, batch_size).tasks(model)
