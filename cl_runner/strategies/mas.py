"""MAS, Memory Aware Synapses (Aljundi, Babiloni, Elhoseiny, Rohrbach & Tuytelaars, "Memory Aware
Synapses: Learning what (not) to forget", ECCV 2018, Section 4.1, Eqs. 2-4 and Section 4.3; the
authors' code rahafaljundi/MAS-Memory-Aware-Synapses, ``MAS_utils/MAS_based_Training.py``).
Section and equation numbers are recalled (the paper's text was not at hand when this was
written); every statement about the authors' code was read in it.

**Importance (Eqs. 2 and 4).** At the end of task t (``after_training``), for N training
examples of the task, with F the network's output (the logits: no softmax, no label)::

    g_ij(x_k) = d [ ||F(x_k; theta)||_2^2 ] / d theta_ij,
    Omega^t_ij = 1/N sum_k | g_ij(x_k) |

per example (``torch.func.vmap(grad(...))``, model in eval mode as the authors'
``compute_importance_l2``), i.e. the mean over examples of the gradient magnitude: the
authors' running average weighted by the number of samples (``MAS_Omega_update.step``:
``omega = (omega * prev_size + |g|) / curr_size``) with their per-sample setting
(``b1=True``, ``MAS_Omega_Acuumelation``). No label is used. On task-incremental benchmarks F
is the task's head: the outputs of the task's classes (its training mask).

**Accumulation over tasks**: a plain sum, ``Omega <- Omega + Omega^t`` (the authors'
``accumelate_reg_params``: ``acc_omega = prev_omega + new_omega``), and the anchor
``theta*`` becomes the weights after task t (``init_val``).

**Penalty (Eq. 3)** while training task t > 1: ``lambda * sum_ij Omega_ij (theta_ij -
theta*_ij)^2`` (no 1/2: the authors' ``Weight_Regularized_SGD`` adds ``2 lambda Omega (theta -
theta*)`` to the gradient). Hot path: the value without autograd and the gradient added to
``p.grad`` after backward, in place, on buffers made once per task
(:class:`~cl_runner.strategies.quadratic.AnchoredQuadratic`).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from cl_runner.strategies.base import STRATEGIES, Strategy, TaskContext, cost
from cl_runner.strategies.ewc import _split_like, flat_params
from cl_runner.strategies.quadratic import AnchoredQuadratic
from cl_runner.strategies.schemas import MASConfig


def output_sensitivity(model: nn.Module, x: torch.Tensor, *, batch_size: int, to_input=None,
                       outputs: torch.Tensor | None = None) -> torch.Tensor:
    """MAS importance of ``model`` at its current weights (Aljundi et al. 2018, Eq. 4).

    ``Omega_i = 1/N sum_n | d ||F(x_n)||_2^2 / d theta_i |``. When every trainable parameter
    belongs to an ``nn.Linear`` (the MLPs), :func:`_linear_sensitivity` computes it exactly
    from one batched backward pass per batch; otherwise :func:`_vmap_sensitivity` forms the
    per-example gradients. Arguments and result as :func:`_vmap_sensitivity`.
    """
    fast = _linear_sensitivity(model, x, batch_size=batch_size, to_input=to_input,
                               outputs=outputs)
    if fast is not None:
        return fast
    return _vmap_sensitivity(model, x, batch_size=batch_size, to_input=to_input, outputs=outputs)


def _linear_sensitivity(model: nn.Module, x: torch.Tensor, *, batch_size: int, to_input=None,
                        outputs: torch.Tensor | None = None) -> torch.Tensor | None:
    """:func:`output_sensitivity` for networks whose trainable parameters all belong to
    ``nn.Linear`` layers (None otherwise).

    For a linear layer ``z_n = W a_n + b`` the per-example gradient of ``l_n = ||F(x_n)||^2``
    is ``dl_n/dW = delta_n a_n^T`` and ``dl_n/db = delta_n`` with ``delta_n = dl_n/dz_n``, so
    ``sum_n |dl_n/dW| = |Delta|^T |A|`` (rows: examples) and ``sum_n |dl_n/db| = sum_n
    |delta_n|``: exact, with no per-example gradient formed. ``delta_n`` is the gradient of
    the batch's summed loss with respect to ``z_n`` (examples do not interact in eval mode).
    """
    owner: dict[int, tuple[nn.Linear, str]] = {}
    for module in model.modules():
        if type(module) is nn.Linear:
            owner[id(module.weight)] = (module, "weight")
            if module.bias is not None:
                owner[id(module.bias)] = (module, "bias")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params or any(id(p) not in owner for p in params):
        return None
    layers = list(dict.fromkeys(owner[id(p)][0] for p in params))
    seen: dict[nn.Linear, tuple[torch.Tensor, torch.Tensor]] = {}

    def keep(module, args, output):
        if module in seen:  # a layer applied twice in one pass: the formula does not hold
            raise _SharedLayer
        seen[module] = (args[0], output)

    sums = {id(p): torch.zeros_like(p, requires_grad=False) for p in params}
    handles = [layer.register_forward_hook(keep) for layer in layers]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size]
            try:
                out = model(to_input(xb) if to_input is not None else xb)
            except _SharedLayer:
                return None
            if outputs is not None:
                out = out[:, outputs]
            if any(seen[layer][0].dim() != 2 for layer in layers):
                return None  # a linear layer applied to sequences: not the MLP case
            deltas = torch.autograd.grad(out.square().sum(), [seen[layer][1] for layer in layers])
            with torch.no_grad():
                for layer, delta in zip(layers, deltas, strict=True):
                    a = seen[layer][0].detach().abs()
                    d = delta.abs()
                    if id(layer.weight) in sums:
                        sums[id(layer.weight)] += d.T @ a
                    if layer.bias is not None and id(layer.bias) in sums:
                        sums[id(layer.bias)] += d.sum(0)
            seen.clear()
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return torch.cat([sums[id(p)].reshape(-1) for p in params]) / len(x)


class _SharedLayer(Exception):
    """Raised by :func:`_linear_sensitivity`'s hook when a layer runs twice in one pass."""


def _vmap_sensitivity(model: nn.Module, x: torch.Tensor, *, batch_size: int, to_input=None,
                      outputs: torch.Tensor | None = None) -> torch.Tensor:
    """MAS importance from per-example gradients (any network).

    ``Omega_i = 1/N sum_n | d ||F(x_n)||_2^2 / d theta_i |``: the mean over the N examples of
    the magnitude of the per-example gradient of the squared L2 norm of the output, computed
    with ``torch.func.vmap(grad(...))`` in batches (no per-example Python loop). The model is
    put in eval mode for the computation (dropout off) and its mode is restored afterwards.

    Args:
        model: the network; its buffers are used read-only.
        x: ``(N, ...)`` stored inputs, N >= 1 (no labels).
        batch_size: examples per vectorized batch (memory only; the result does not depend
            on it).
        to_input: turns a stored batch into model input (``benchmark.to_input``); identity
            when None.
        outputs: bool ``(C,)``, the output units that make up F (a task's head), or None for
            all of them.

    Returns:
        float32 ``(P,)`` over the trainable parameters, in :func:`~cl_runner.strategies.ewc.flat_params` order.
    """
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def squared_norm(theta, xi):
        out = functional_call(model, (theta, frozen, buffers), (xi.unsqueeze(0),))[0]
        if outputs is not None:
            out = out[outputs]
        return out.square().sum()

    per_example = vmap(grad(squared_norm), in_dims=(None, 0))
    total = torch.zeros(sum(params[n].numel() for n in names), device=x.device)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size]
            g = per_example(params, to_input(xb) if to_input is not None else xb)
            total += torch.cat([g[n].abs().sum(0).reshape(-1) for n in names])
    finally:
        model.train(was_training)
    return total / len(x)


@STRATEGIES.register("mas", config=MASConfig)
class MAS(Strategy):
    """Memory Aware Synapses (see the module docstring). ``stats()`` reports, per task, the
    mean and max of the task's importance and the seconds spent computing it.

    Attributes:
        omega: the accumulated importance ``(P,)`` (sum over the tasks so far), or None.
        anchor: ``theta*`` ``(P,)``, the weights after the last task.
    """

    #: the penalty's buffers over views of omega/anchor, rebuilt by the next penalty
    transient_attributes = ("_quadratic",)

    def __init__(self, cfg: MASConfig) -> None:
        super().__init__(cfg)
        cfg.validate()  # ConfigError on an out-of-range value (checked first by dispatch)
        self.omega: torch.Tensor | None = None
        self.anchor: torch.Tensor | None = None
        self.history: list[dict[str, float]] = []
        self._quadratic: AnchoredQuadratic | None = None

    def after_training(self, ctx: TaskContext) -> None:
        """Omega += the task's importance on its training examples; anchor = the weights."""
        started = time.perf_counter()
        n = len(ctx.train_y)
        if self.cfg.importance_samples is not None and self.cfg.importance_samples < n:
            pick = torch.randperm(n, generator=ctx.generator)[: self.cfg.importance_samples]
            x = ctx.train_x[pick.to(ctx.device)]
        else:
            x = ctx.train_x
        masks = ctx.benchmark.class_masks("train")
        importance = output_sensitivity(ctx.model, x, batch_size=self.cfg.importance_batch_size,
                                        to_input=ctx.benchmark.to_input,
                                        outputs=None if masks is None else masks[ctx.task - 1])
        with torch.no_grad():
            self.add_task(importance, flat_params(ctx.model).detach().clone())
        self.history.append({"task": ctx.task, "omega_mean": float(importance.mean()),
                             "omega_max": float(importance.max()),
                             "omega_seconds": time.perf_counter() - started})

    def add_task(self, importance: torch.Tensor, anchor: torch.Tensor) -> None:
        """Accumulate a task's importance ``(P,)`` (a sum over tasks) and set the anchor
        ``(P,)``."""
        self.omega = importance.clone() if self.omega is None else self.omega + importance
        self.anchor = anchor
        self._quadratic = None

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """The penalty's value ``lambda * sum Omega (theta - theta*)^2`` (no autograd: its
        gradient is added in :meth:`after_backward`)."""
        if self.omega is None:
            return None
        if self._quadratic is None:
            params = [p for p in model.parameters() if p.requires_grad]
            self._quadratic = AnchoredQuadratic(params, _split_like(self.omega, params),
                                                _split_like(self.anchor, params))
        return self.cfg.mas_lambda * self._quadratic.value()

    def after_backward(self, model: nn.Module) -> None:
        """Add the penalty's gradient ``2 lambda Omega (theta - theta*)`` to ``p.grad``."""
        if self._quadratic is not None:
            self._quadratic.add_gradient(self.cfg.mas_lambda)

    def stats(self) -> dict[str, Any]:
        return {"mas": self.history}

    def parameter_cost(self, model: nn.Module, num_tasks: int) -> dict[str, Any]:
        """State: the accumulated Omega and the anchor (2 P floats), not tied to one task."""
        state = 0.0 if self.omega is None else float(self.omega.numel() + self.anchor.numel())
        return cost(model, [0.0] * num_tasks, state,
                    "task_floats: none; state_floats: the accumulated importance Omega and the "
                    "anchor weights (2 x trainable parameters)")
