"""Task inference for supermask strategies: which learned task's mask fits a test batch.

SupSup (Wortsman et al., NeurIPS 2020, Section 3.3) superposes the K learned masks with
coefficients alpha (mask of a layer = ``sum_i alpha_i M_i``) and uses the gradient of an
objective F of the network's outputs with respect to alpha. The procedures and objectives
below follow the paper and the authors' code (RAIVNLab/supsup, ``adaptors.py``; read for
understanding, written here from that reading):

- ``one_shot``: alpha = 1/K for every task; the task is ``argmin_i dF/dalpha_i``.
- ``binary``: alpha uniform over the remaining candidates; keep those whose gradient is at
  most the (lower) median of the candidates' gradients; repeat until one is left (about
  log2 K gradient steps; the authors' ``se_binary_*`` with ``log_base`` 2).
- ``exhaustive``: run every candidate's mask alone and take the lowest F (K forward passes;
  an oracle of what the masks can tell apart, for diagnosis; not a paper method; for G the
  value compared is the superfluous outputs' logsumexp, see :func:`objective_value`).

Objectives, on all output neurons, superfluous ones included (``model.output_size``):

- ``H``: the mean over the images of the output entropy ``-sum_c p_c log p_c``.
- ``G``: the mean over the images of ``logsumexp`` of the outputs, with the gradient blocked
  through the real class neurons (the first C): only the superfluous neurons steer the
  inference (the authors' ``se_oneshot_g_minimization``). Without superfluous neurons G has
  no gradient: refused.

``images``: the objective reads the first ``images`` examples of the batch (the authors'
``data_to_repeat``, 1 in their runs: one image decides for the whole batch) or all (None).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cl_runner.errors import ConfigError
from cl_runner.models.supermask import SupermaskNet
from cl_runner.strategies.schemas import InferenceMethod, InferenceObjective


def output_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the entropy (nats) of ``softmax(logits)``; logits ``(B, O)``."""
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(1).mean()


def superfluous_logsumexp(logits: torch.Tensor, real: int) -> torch.Tensor:
    """SupSup's G: mean over the batch of ``logsumexp`` over all outputs, the first ``real``
    (the real classes) detached so that the gradient flows through the others only."""
    keep = torch.arange(logits.shape[1], device=logits.device) < real
    blocked = torch.where(keep, logits.detach(), logits)
    return blocked.logsumexp(dim=1).mean()


def objective_value(model: SupermaskNet, x: torch.Tensor, objective: InferenceObjective,
                    compare: bool = False) -> torch.Tensor:
    """F of the model's full outputs on ``x`` (its current mask state). With ``compare``
    (values of different masks compared, ``exhaustive``), G is the mean logsumexp of the
    superfluous outputs alone: the value of G itself also counts the real logits, which are
    largest under the fitting mask, while its gradient reads only the superfluous ones.

    Raises:
        ConfigError: objective G on a model without superfluous output neurons.
    """
    with model.all_outputs():
        logits = model(x)
    if objective == InferenceObjective.H:
        return output_entropy(logits)
    if model.real_outputs is None:
        raise ConfigError("strategy.inference_objective=G needs superfluous output neurons "
                          "(model.output_size larger than the number of classes)")
    if compare:
        return logits[:, model.real_outputs:].logsumexp(dim=1).mean()
    return superfluous_logsumexp(logits, model.real_outputs)


def _gradient(model: SupermaskNet, x: torch.Tensor, stacks: list[torch.Tensor],
              alpha: torch.Tensor, objective: InferenceObjective) -> torch.Tensor:
    alpha = alpha.detach().requires_grad_(True)
    model.use_combination(stacks, alpha)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(objective_value(model, x, objective), alpha)
    return grad


def infer_task(model: SupermaskNet, x: torch.Tensor, stacks: list[torch.Tensor],
               method: InferenceMethod = InferenceMethod.one_shot,
               objective: InferenceObjective = InferenceObjective.H,
               images: int | None = None) -> int:
    """The inferred task of a batch (module docstring).

    Args:
        model: the supermask network, in eval mode; left in the last mask state used.
        x: model inputs ``(B, ...)``, all of one (unknown) task.
        stacks: per layer, the K candidates' masks stacked, float ``(K, *weight.shape)``.
        method, objective, images: see the module docstring.

    Returns:
        The index in 0..K-1 of the inferred task (one host sync per gradient step).
    """
    if images is not None:
        x = x[:images]
    k = stacks[0].shape[0]
    if method == InferenceMethod.exhaustive:
        values = []
        with torch.no_grad():
            for i in range(k):
                model.use_masks([stack[i] for stack in stacks])
                values.append(objective_value(model, x, objective, compare=True))
        return int(torch.stack(values).argmin())
    alpha = torch.full((k,), 1.0 / k, device=x.device)
    if method == InferenceMethod.one_shot:
        return int(_gradient(model, x, stacks, alpha, objective).argmin())
    good = torch.ones(k, dtype=torch.bool, device=x.device)
    for _ in range(math.ceil(math.log2(k)) + 1):  # halves each round unless gradients tie
        if int(good.sum()) == 1:
            break
        grad = _gradient(model, x, stacks, alpha, objective)
        good &= grad <= grad[good].median()  # torch's median of an even count: the lower one
        alpha = good.float() / good.sum()
    else:  # ties kept several: the lowest gradient of the last round among them
        grad = _gradient(model, x, stacks, alpha, objective)
        return int(torch.where(good, grad, torch.inf).argmin())
    return int(good.nonzero()[0, 0])
