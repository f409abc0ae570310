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
        size = sum(p.numel() for p in params)
        ref = params[0]
        #: theta - a and S = w (theta - a), flat (one dot product gives Q) with views per tensor
        self.flat_diff = torch.empty(size, dtype=ref.dtype, device=ref.device)
        self.flat_scaled = torch.empty_like(self.flat_diff)
        splits = [p.numel() for p in params]
        self.diff = [v.view_as(p) for v, p in zip(self.flat_diff.split(splits), params,
                                                     strict=True)]
        self.scaled = [v.view_as(p) for v, p in zip(self.flat_scaled.split(splits), params,
                                                       strict=True)]

    @torch.no_grad()
    def value(self) -> torch.Tensor:
        """``Q`` at the current weights, a 0-d tensor without autograd history; no host
        sync."""
        for p, a, w, d, s in zip(self.params, self.center, self.weight, self.diff, self.scaled,
                                 strict=True):
            torch.sub(p, a, out=d)
            torch.mul(d, w, out=s)
        return torch.vdot(self.flat_scaled, self.flat_diff)

    @torch.no_grad()
    def add_gradient(self, factor: float) -> None:
        """``p.grad += factor * 2 S`` in place for every parameter (a parameter without a
        gradient gets ``factor * 2 S``), S from the last :meth:`value`."""
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in self.params]
        torch._foreach_add_(grads, self.scaled, alpha=2.0 * factor)
