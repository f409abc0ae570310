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

from typing import Any

import torch
from torch import nn

from cl_runner.errors import ConfigError
from cl_runner.models.supermask import SupermaskNet
from cl_runner.strategies.base import Strategy, TaskContext
from cl_runner.strategies.schemas import (
    SupermaskStrategyConfig,
    WrongInference,
)
from cl_runner.strategies.task_inference import infer_task
from cl_runner.training import evaluate
from cl_runner.training.hooks import InferenceProtocol

#: names of the matrices beside the headline (``accuracy_matrix_<name>.csv``; written by the
#: one evaluation, :mod:`cl_runner.training.evaluate`)
TASK_INFERRED, TASK_INFERENCE, TASK_IL = evaluate.TASK_INFERRED, evaluate.TASK_INFERENCE, evaluate.TASK_IL


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


class SupermaskStrategy(Strategy):
    """Base of SupSup and ImpressLearn: keeps the mask of every learned task, selects it for
    evaluation (``eval_task``), infers the task of a test batch (``infer_task``, with
    ``task_inference``) and reports the parameter cost.

    The one evaluation (:mod:`cl_runner.training.evaluate`) scores it. On a benchmark that
    does not give the task id at test time (Rotated/Permuted MNIST: domain-incremental) the
    headline ``accuracy_matrix.csv`` is the task-inferred accuracy and the task-given one is
    the task-incremental matrix beside it (``accuracy_matrix_task_il.csv``); on a
    task-incremental benchmark the headline is task-given and the task-inferred accuracy a
    diagnostic (``accuracy_matrix_task_inferred.csv``). ``accuracy_matrix_task_inference.csv``:
    the fraction of examples whose task was inferred right. Without ``task_inference`` the
    strategy runs only where the task id is given (:meth:`SupermaskStrategyConfig.check_scenario`).

    Subclasses set ``self.params`` (what the optimizer trains) in ``before_task`` and call
    :meth:`learned` in ``after_training`` with the task's final masks, and implement
    :meth:`task_floats`.

    With ``task_inference`` the evaluation differentiates the output entropy by the mask
    coefficients, a backward pass without gradient scaling: ``16-mixed`` is refused then.
    ``hardware.compile`` is refused: the forward pass reads the current task's mask slot, a
    Python int TorchDynamo guards on, so every task recompiles and past torch's recompile
    limit (8) the step would silently run eagerly.
    """

    #: the current task's trainable parameters (the model's own): set in before_task; the
    #: candidates' superposition stacks of the task inference (rebuilt when a task is learned)
    transient_attributes = ("params", "_stacks")
    #: ``eval_task`` selects the task's own mask: with the true task id it scores the
    #: task-incremental matrix (beside the headline where the scenario does not give the id)
    task_given_evaluation = True
    #: one-shot inference differentiates the output entropy by the masks' coefficients
    predict_needs_grad = True

    def __init__(self, cfg: SupermaskStrategyConfig) -> None:
        super().__init__(cfg)
        cfg.validate()
        self.params: list = []  # parameters or parameter-group dicts
        self.task_masks: dict[int, list[torch.Tensor]] = {}
        self._stacks: list[torch.Tensor] | None = None

    def trainable_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return self.params

    def learned(self, ctx: TaskContext, masks: list[torch.Tensor]) -> None:
        """Record task ``ctx.task``'s masks (the evaluation that follows scores it)."""
        self.task_masks[ctx.task] = masks
        self._stacks = None

    compile_problem = ("its model's forward reads the task's mask slot (a recompilation per task; "
                       "past torch's limit of 8 the step silently runs eagerly)")

    @property
    def own_backward(self) -> str | None:  # type: ignore[override]
        """The one-shot task inference's gradient, with ``task_inference`` (else None)."""
        return ("its one-shot task inference (at test time) runs" if self.cfg.task_inference
                else None)

    def inference_protocol(self) -> InferenceProtocol | None:
        """With ``task_inference``: batches of ``inference_batch_size``, shuffled with
        ``inference_shuffle``, scored 0 when wrong with ``wrong_inference=zero``."""
        if not self.cfg.task_inference:
            return None
        return InferenceProtocol(self.cfg.inference_batch_size, bool(self.cfg.inference_shuffle),
                                 self.cfg.wrong_inference == WrongInference.zero)

    def infer_task(self, model: nn.Module, inputs: torch.Tensor) -> int:
        """The learned task whose mask fits ``inputs`` (module docstring; ``cfg``'s
        ``inference``, ``inference_objective``, ``inference_images``), among the K tasks
        learned so far, their masks entering the superposition through :func:`equal_scale`;
        1 before any task is learned (``eval_task`` then scores slot 0, untrained)."""
        if not self.task_masks:
            return 1
        net = supermask_net(model, self.cfg.name)
        learned = sorted(self.task_masks)
        if self._stacks is None:
            masks = [self.task_masks[t] for t in learned]
            self._stacks = [torch.stack([equal_scale(m[layer], net.keep_fraction) for m in masks])
                            for layer in range(len(masks[0]))]
        guess = infer_task(net, inputs, self._stacks, self.cfg.inference,
                           self.cfg.inference_objective, self.cfg.inference_images)
        return learned[guess]

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
