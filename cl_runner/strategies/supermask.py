"""What SupSup and ImpressLearn share: per-task masks over a fixed network, evaluation with
the task given (the task's own mask) and with the task inferred (SupSup's one-shot inference).

The strategies here need a :class:`~cl_runner.models.supermask.SupermaskNet`
(``model=masked_mlp`` or ``model=masked_resnet18_reduced``; checked when the config is
resolved). The fixed weights are buffers and the optimizer only sees the current task's
scores or coefficients (``trainable_parameters``), so a learned task's mask never changes:
with the task given there is no forgetting by construction.

Task inference (Wortsman et al. 2020, SupSup, Section 3.3, "One-Shot"): for a test batch x
and the K tasks learned so far with masks M_1..M_K, set alpha = (1/K, ..., 1/K), run the
superposed network with mask ``sum_i alpha_i M_i`` (per layer), take the gradient g of the
batch's mean output entropy H = -sum_c p_c log p_c with respect to alpha, and infer the task
``argmin_i g_i`` (the coefficient whose increase lowers the entropy the most). The batch is
then classified by the inferred task's mask. Test sets are cut into batches of
``inference_batch_size`` examples, each of a single task (the SupSup protocol). The other
procedures (Binary, an exhaustive oracle), the objective G of superfluous output neurons and
the paper's rule that a wrongly inferred batch scores 0 are options
(:mod:`cl_runner.strategies.task_inference`, ``strategy.inference*``, ``wrong_inference``).
Real-valued
masks (ImpressLearn's superpositions) are rescaled to a binary mask's mean before they are
superposed (:func:`equal_scale`; this project's choice).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from cl_runner.data.benchmark import Benchmark
from cl_runner.data.masking import mask_logits
from cl_runner.errors import ConfigError
from cl_runner.models.supermask import SupermaskNet
from cl_runner.strategies.base import Strategy, TaskContext
from cl_runner.strategies.schemas import (
    InferenceMethod,
    InferenceObjective,
    SupermaskStrategyConfig,
    WrongInference,
)
from cl_runner.strategies.task_inference import infer_task

#: names of the extra accuracy matrices (``accuracy_matrix_<name>.csv``)
TASK_INFERRED = "task_inferred"
TASK_INFERENCE = "task_inference"


def supermask_net(model: nn.Module, strategy: str) -> SupermaskNet:
    """``model`` as a :class:`SupermaskNet`.

    Raises:
        ConfigError: it is not one (names the strategy and the models to use).
    """
    if not isinstance(model, SupermaskNet):
        raise ConfigError(f"strategy={strategy} needs a supermask model (model=masked_mlp, "
                          f"model=masked_resnet18_reduced), got {type(model).__name__}")
    return model


def one_shot_inference(model: SupermaskNet, x: torch.Tensor,
                       stacks: list[torch.Tensor]) -> torch.Tensor:
    """SupSup's one-shot task inference for one batch with objective H (module docstring;
    :func:`~cl_runner.strategies.task_inference.infer_task` has every variant).

    Returns:
        int64 0-dim tensor: the index in 0..K-1 of the inferred task.
    """
    return torch.tensor(infer_task(model, x, stacks))


def equal_scale(mask: torch.Tensor, keep_fraction: float) -> torch.Tensor:
    """A candidate's mask as it enters the one-shot superposition, float.

    Binary (bool) masks are used as they are (SupSup). A real-valued mask (ImpressLearn's
    superposition of basis masks) is rescaled to the mean absolute value of a top-k mask,
    ``keep_fraction``: otherwise the entropy gradient favours whichever task's mask has the
    largest scale (larger logits, lower entropy) whatever the input; this project's choice.
    """
    if mask.dtype == torch.bool:
        return mask.float()
    return mask * (keep_fraction / mask.abs().mean().clamp_min(1e-12))


def evaluate_task_inferred(model: SupermaskNet, benchmark: Benchmark,
                           task_masks: list[list[torch.Tensor]], tasks: range,
                           batch_size: int, cfg: SupermaskStrategyConfig | None = None
                           ) -> tuple[list[float], list[float]]:
    """Accuracy with the task inferred, and task-inference accuracy, on ``tasks``' test sets.

    Each test set is cut into batches of ``batch_size``; per batch the task is inferred among
    the ``K = len(task_masks)`` candidates (:func:`~cl_runner.strategies.task_inference.infer_task`
    with ``cfg``'s ``inference``, ``inference_objective`` and ``inference_images``; default
    one-shot on H over the whole batch) and the batch is scored with that task's masks (and,
    on task-incremental benchmarks, that task's classes); with ``wrong_inference=zero`` a
    wrongly inferred batch scores 0 (SupSup's rule). With ``inference_shuffle`` the batches
    are cut from a random order of the test set, seeded by the task id (a generator of its
    own: the training's random stream is untouched). Candidates enter the superposition
    through :func:`equal_scale`.

    Args:
        task_masks: for candidate task i (0-based, task i+1), its per-layer masks.
        tasks: 1-based ids of the test sets to score.
        cfg: the strategy's inference settings (None: the defaults above).

    Returns:
        ``(accuracy, inference_accuracy)``: per task in ``tasks``, fractions of its test
        examples classified right / whose task was inferred right.
    """
    was_training = model.training
    model.eval()
    stacks = [torch.stack([equal_scale(m[layer], model.keep_fraction) for m in task_masks])
              for layer in range(len(task_masks[0]))]
    test_masks = benchmark.class_masks("test")
    settings = ((cfg.inference, cfg.inference_objective, cfg.inference_images) if cfg
                else (InferenceMethod.one_shot, InferenceObjective.H, None))
    zero_if_wrong = cfg is not None and cfg.wrong_inference == WrongInference.zero
    shuffle = cfg is not None and cfg.inference_shuffle
    accuracy, inferred_right = [], []
    for task in tasks:
        x_all, y_all = benchmark.test_data(task)
        correct = torch.zeros((), dtype=torch.long, device=y_all.device)
        right = torch.zeros((), dtype=torch.long, device=y_all.device)
        order = (torch.randperm(len(y_all), generator=torch.Generator().manual_seed(task))
                 .to(y_all.device) if shuffle else None)
        for start in range(0, len(y_all), batch_size):
            part = (slice(start, start + batch_size) if order is None
                    else order[start : start + batch_size])
            x = benchmark.to_input(x_all[part])
            y = y_all[part]
            guess = infer_task(model, x, stacks, *settings)
            right += len(y) if guess == task - 1 else 0
            if guess != task - 1 and zero_if_wrong:
                continue
            model.use_masks(task_masks[guess])
            with torch.no_grad():
                logits = model(x)
            if test_masks is not None:
                logits = mask_logits(logits, test_masks[guess])
            correct += (logits.argmax(1) == y).sum()
        n = max(len(y_all), 1)
        accuracy.append(float(correct) / n)
        inferred_right.append(float(right) / n)
    model.train(was_training)
    return accuracy, inferred_right


class SupermaskStrategy(Strategy):
    """Base of SupSup and ImpressLearn: keeps the mask of every learned task, selects it for
    evaluation, runs the task-inferred evaluation and reports the parameter cost.

    Subclasses set ``self.params`` (what the optimizer trains) in ``before_task`` and call
    :meth:`learned` in ``after_training`` with the task's final masks, and implement
    :meth:`task_floats`.
    """

    #: the current task's trainable parameters (the model's own): set in before_task
    transient_attributes = ("params",)
    #: the accuracy matrix scores each task with its own mask: the task id is given at test
    #: time (task-incremental) whatever the benchmark; the task-inferred matrix is the
    #: scenario's own (``task_inference``)
    task_given_evaluation = True

    def __init__(self, cfg: SupermaskStrategyConfig) -> None:
        super().__init__(cfg)
        cfg.validate()
        self.params: list = []  # parameters or parameter-group dicts
        self.task_masks: dict[int, list[torch.Tensor]] = {}
        self.inferred_rows: list[list[float]] = []
        self.inference_rows: list[list[float]] = []

    def trainable_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return self.params

    def learned(self, ctx: TaskContext, masks: list[torch.Tensor]) -> None:
        """Record task ``ctx.task``'s masks and, with ``task_inference``, evaluate the learned
        tasks with the task inferred (one new row of each extra matrix; NaN for tasks not
        learned yet)."""
        self.task_masks[ctx.task] = masks
        if not self.cfg.task_inference:
            return
        model = supermask_net(ctx.model, self.cfg.name)
        learned = sorted(self.task_masks)
        acc, right = evaluate_task_inferred(model, ctx.benchmark,
                                            [self.task_masks[t] for t in learned],
                                            range(1, ctx.task + 1), self.cfg.inference_batch_size,
                                            self.cfg)
        pad = [math.nan] * (ctx.benchmark.num_tasks - ctx.task)
        self.inferred_rows.append(acc + pad)
        self.inference_rows.append(right + pad)

    def eval_task(self, model: nn.Module, task: int) -> None:
        """Task ``task``'s own masks; a task not learned yet gets the latest learned task's
        (before the first task: score slot 0, untrained)."""
        net = supermask_net(model, self.cfg.name)
        if task in self.task_masks:
            net.use_masks(self.task_masks[task])
        elif self.task_masks:
            net.use_masks(self.task_masks[max(self.task_masks)])
        else:
            net.use_slot(0)

    def accuracy_matrices(self) -> dict[str, list[list[float]]]:
        if not self.cfg.task_inference:
            return {}
        return {TASK_INFERRED: self.inferred_rows, TASK_INFERENCE: self.inference_rows}

    def task_floats(self, model: SupermaskNet, num_tasks: int) -> tuple[list[float], float, str]:
        """Per task, the float32-equivalents stored for it alone; extra shared storage beyond
        the fixed weights; a one-line definition."""
        raise NotImplementedError

    def parameter_cost(self, model: nn.Module, num_tasks: int) -> dict[str, Any]:
        """``shared_floats``: the fixed weights (float32; SupSup notes they can be regenerated
        from the seed, but they are counted) plus any shared basis; ``task_floats``: per task,
        a binary mask counts ``num_weights / 32``, a coefficient counts 1."""
        net = supermask_net(model, self.cfg.name)
        per_task, extra_shared, definition = self.task_floats(net, num_tasks)
        return {"shared_floats": net.num_weights() + extra_shared, "task_floats": per_task,
                "state_floats": 0.0, "mask_bits": net.num_weights(),
                "definition": "shared_floats: the fixed random weights (float32, counted although "
                              "they can be regenerated from the seed)" + definition}
