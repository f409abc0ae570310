"""The anchored quadratic penalty ``sum_j sum(w_j * (theta_j - a_j)^2)`` of the importance-weighted
regularizers (SI's surrogate, MAS's penalty), computed in the training step without
allocating: every intermediate lives in buffers made once per task, and the gradient
``2 w (theta - a)`` is added to ``p.grad`` in place after backward instead of going through
autograd (on the CPU, a fresh 300 KB tensor per step costs more than the arithmetic).
"""

from __future__ import annotations

import torch


class AnchoredQuadratic:
    """``Q(theta) = sum_j sum(w_j * (theta_j - a_j)^2)`` over a list of parameter tensors.

    :meth:`value` computes Q and keeps ``S_j = w_j (theta_j - a_j)``; :meth:`add_gradient`
    then adds ``factor * 2 S_j`` to each ``p.grad`` (the gradient of ``factor * Q``). Between
    the two the weights must not change (the loop calls them around ``backward``).

    Args:
        params: the parameters, in the order of ``weight`` and ``center``.
        weight: ``[w_j]`` per-element weights (importances), shaped like ``params``.
        center: ``[a_j]`` anchors, shaped like ``params``.
    """

    def __init__(self, params: list[torch.Tensor], weight: list[torch.Tensor],
                 center: list[torch.Tensor]) -> None:
        self.params, self.weight, self.center = params, weight, center
        self.diff = [torch.empty_like(p, requires_grad=False) for p in params]
        self.scaled = [torch.empty_like(p, requires_grad=False) for p in params]

    @torch.no_grad()
    def value(self) -> torch.Tensor:
        """``Q`` at the current weights, a 0-d tensor without autograd history; no host
        sync."""
        torch._foreach_copy_(self.diff, self.params)
        torch._foreach_sub_(self.diff, self.center)
        torch._foreach_copy_(self.scaled, self.diff)
        torch._foreach_mul_(self.scaled, self.weight)
        return torch.stack([torch.vdot(s.reshape(-1), d.reshape(-1))
                            for s, d in zip(self.scaled, self.diff, strict=True)]).sum()

    @torch.no_grad()
    def add_gradient(self, factor: float) -> None:
        """``p.grad += factor * 2 S`` in place for every parameter (a parameter without a
        gradient gets ``factor * 2 S``), S from the last :meth:`value`."""
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in self.params]
        torch._foreach_add_(grads, self.scaled, alpha=2.0 * factor)
