"""Gradients, Hessian-vector products, top Hessian eigenpairs and the Lie bracket of two losses.

Everything acts on a loss written as an :class:`Objective`: a function of the model's
parameters (a tuple of tensors, in ``model.named_parameters()`` order) that is a sum of terms,
so a data set can be processed in chunks without changing the values. Hessian-vector products
use double backward (Pearlmutter, "Fast exact multiplication by the Hessian", Neural
Computation 1994): ``H v = d/dw <grad L(w), v>``; one costs about two gradient evaluations.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from cl_runner.data.masking import mask_logits, rows

Params = tuple[torch.Tensor, ...]
Term = Callable[[Sequence[torch.Tensor]], torch.Tensor]


def flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors into one vector ``(P,)``, P = total number of entries."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflat(vector: torch.Tensor, like: Sequence[torch.Tensor]) -> Params:
    """Split a ``(P,)`` vector into tensors shaped like ``like`` (the inverse of :func:`flat`)."""
    out, start = [], 0
    for t in like:
        out.append(vector[start : start + t.numel()].view_as(t))
        start += t.numel()
    return tuple(out)


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(a, b, strict=True))


class Objective:
    """A scalar loss ``L(w) = sum_k term_k(w)`` of the parameters ``w`` (a tuple of tensors).

    Args:
        terms: callables ``params -> 0-dim tensor``, differentiable twice in the params.
    """

    def __init__(self, terms: Sequence[Term]) -> None:
        self.terms = list(terms)

    def _leaves(self, params: Sequence[torch.Tensor]) -> Params:
        return tuple(p.detach().requires_grad_() for p in params)

    def value(self, params: Sequence[torch.Tensor]) -> torch.Tensor:
        """``L(params)``, a 0-dim tensor (no graph)."""
        with torch.no_grad():
            return sum(term(params) for term in self.terms)

    def gradient(self, params: Sequence[torch.Tensor]) -> Params:
        """``grad L(params)``, shaped like ``params``."""
        total = [torch.zeros_like(p) for p in params]
        for term in self.terms:
            leaves = self._leaves(params)
            for acc, g in zip(total, torch.autograd.grad(term(leaves), leaves), strict=True):
                acc.add_(g)
        return tuple(total)

    def hvp(self, params: Sequence[torch.Tensor], v: Sequence[torch.Tensor]) -> Params:
        """The Hessian-vector product ``H(params) v`` by double backward, shaped like ``params``.

        Args:
            v: a direction shaped like ``params`` (no gradient flows into it).
        """
        total = [torch.zeros_like(p) for p in params]
        v = [t.detach() for t in v]
        for term in self.terms:
            leaves = self._leaves(params)
            grads = torch.autograd.grad(term(leaves), leaves, create_graph=True)
            hv = torch.autograd.grad(_dot(grads, v), leaves)
            for acc, h in zip(total, hv, strict=True):
                acc.add_(h)
        return tuple(total)


def model_objective(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                    to_input: Callable[[torch.Tensor], torch.Tensor],
                    allowed: torch.Tensor | None = None, chunk_size: int = 1024) -> Objective:
    """The mean cross-entropy of ``model`` on ``(x, y)`` as a function of its parameters.

    The model runs in whatever mode it is in (call ``model.eval()`` first for a deterministic
    loss without dropout); its buffers are used as they are. Parameters are passed with
    ``torch.func.functional_call``, so ``model``'s own tensors are never changed.

    Args:
        x: stored inputs ``(N, ...)``; ``to_input`` turns a chunk into model inputs.
        y: int64 labels ``(N,)``.
        allowed: task-incremental mask: None, bool ``(C,)`` or per example ``(N, C)``.
        chunk_size: examples per term (memory only: the sum of the terms is the mean loss).

    Returns:
        An :class:`Objective` with one term per chunk: ``sum_chunk CE / N``.
    """
    names = [n for n, _ in model.named_parameters()]
    n = len(y)
    terms = []
    for start in range(0, n, chunk_size):
        idx = torch.arange(start, min(start + chunk_size, n), device=y.device)
        xb, yb, ab = x[idx], y[idx], rows(allowed, idx)

        def term(params, xb=xb, yb=yb, ab=ab):
            logits = functional_call(model, dict(zip(names, params, strict=True)), (to_input(xb),))
            if ab is not None:
                logits = mask_logits(logits, ab)
            return F.cross_entropy(logits, yb, reduction="sum") / n

        terms.append(term)
    return Objective(terms)


def lie_bracket(loss_a: Objective, loss_b: Objective, params: Sequence[torch.Tensor],
                grad_a: Sequence[torch.Tensor] | None = None,
                grad_b: Sequence[torch.Tensor] | None = None) -> Params:
    """The Lie bracket of the gradient fields of two losses: ``H_B g_A - H_A g_B``.

    Source: Dherin, "Implicit biases in multitask and continual learning from a backward error
    analysis perspective" (arXiv 2311.00235): in continual training (A, then B) the implicit
    conflict term is this bracket ``[g_A, g_B]``; docs/papers.md, "Implicit-bias diagnostics".
    Antisymmetric in (A, B); zero when both losses are quadratic forms about the same point
    with commuting Hessians. Costs two Hessian-vector products (plus the two gradients when
    not given).

    Args:
        grad_a, grad_b: the gradients at ``params`` when already computed.

    Returns:
        A vector shaped like ``params``.
    """
    g_a = loss_a.gradient(params) if grad_a is None else grad_a
    g_b = loss_b.gradient(params) if grad_b is None else grad_b
    hb_ga = loss_b.hvp(params, g_a)
    ha_gb = loss_a.hvp(params, g_b)
    return tuple(x - y for x, y in zip(hb_ga, ha_gb, strict=True))


class EigenMethod(str, enum.Enum):
    """How :func:`top_eigenpairs` finds the top of the Hessian spectrum."""

    lanczos = "lanczos"  # Lanczos with full reorthogonalization: largest algebraic eigenvalues
    power = "power"  # power iteration with deflation: largest-magnitude eigenvalues


def lanczos(matvec: Callable[[torch.Tensor], torch.Tensor], dim: int, k: int, iterations: int,
            generator: torch.Generator, dtype: torch.dtype = torch.float32,
            device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest eigenvalues of a symmetric operator and their Ritz vectors.

    Lanczos iteration with full reorthogonalization (Golub & Van Loan, "Matrix Computations",
    Chapter 10, the Lanczos process with complete reorthogonalization); the Ritz values
    of the ``m x m`` tridiagonal matrix (``m = min(iterations, dim)``) approximate the extreme
    eigenvalues, exactly when ``m = dim``.

    Args:
        matvec: ``v (dim,) -> A v (dim,)``.
        k: eigenpairs wanted (``k <= iterations``).
        iterations: Lanczos steps m (memory: m vectors of size dim).
        generator: for the random start vector.

    Returns:
        ``(eigenvalues (k,), eigenvectors (k, dim))``, eigenvalues in decreasing order,
        eigenvectors of unit norm.

    Raises:
        ValueError: ``k < 1`` or ``k > min(iterations, dim)``.
    """
    m = min(iterations, dim)
    if not 1 <= k <= m:
        raise ValueError(f"need 1 <= k <= min(iterations, dim) = {m}, got k={k}")
    q = torch.randn(dim, generator=generator, dtype=dtype).to(device)
    q = q / q.norm()
    basis = [q]
    alphas, betas = [], []
    for j in range(m):
        w = matvec(basis[j])
        alpha = torch.dot(w, basis[j])
        alphas.append(alpha)
        Q = torch.stack(basis)
        w = w - Q.T @ (Q @ w)  # full reorthogonalization, twice for stability
        w = w - Q.T @ (Q @ w)
        beta = w.norm()
        if j == m - 1 or beta <= 1e-10 * max(1.0, float(alpha.abs())):
            break
        betas.append(beta)
        basis.append(w / beta)
    size = len(alphas)
    T = torch.diag(torch.stack(alphas))
    if betas:
        off = torch.stack(betas[: size - 1])
        T = T + torch.diag(off, 1) + torch.diag(off, -1)
    evals, evecs = torch.linalg.eigh(T)  # ascending
    k = min(k, size)
    order = torch.argsort(evals, descending=True)[:k]
    ritz = (torch.stack(basis[:size]).T @ evecs[:, order]).T  # (k, dim)
    ritz = ritz / ritz.norm(dim=1, keepdim=True)
    return evals[order], ritz


def power_iteration(matvec: Callable[[torch.Tensor], torch.Tensor], dim: int, k: int,
                    iterations: int, generator: torch.Generator, tol: float = 1e-4,
                    dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest-magnitude eigenvalues of a symmetric operator by power iteration with
    deflation (each vector kept orthogonal to the ones found before; as PyHessian, Yao et al.,
    "PyHessian: Neural Networks Through the Lens of the Hessian", IEEE BigData 2020).

    Args:
        matvec: ``v (dim,) -> A v (dim,)``.
        iterations: at most this many products per eigenpair; stops earlier when the Rayleigh
            quotient changes by less than ``tol`` (relative).

    Returns:
        ``(eigenvalues (k,), eigenvectors (k, dim))`` in the order found (decreasing |value|).
    """
    found_vals: list[torch.Tensor] = []
    found_vecs: list[torch.Tensor] = []
    for _ in range(k):
        v = torch.randn(dim, generator=generator, dtype=dtype).to(device)
        value = None
        for _ in range(iterations):
            for u in found_vecs:
                v = v - torch.dot(u, v) * u
            v = v / v.norm()
            hv = matvec(v)
            new = torch.dot(v, hv)
            for u in found_vecs:
                hv = hv - torch.dot(u, hv) * u
            converged = value is not None and abs(new - value) <= tol * abs(value) + 1e-12
            value, v = new, hv
            if converged:
                break
        for u in found_vecs:
            v = v - torch.dot(u, v) * u
        found_vals.append(value)
        found_vecs.append(v / v.norm())
    return torch.stack(found_vals), torch.stack(found_vecs)


def top_eigenpairs(objective: Objective, params: Sequence[torch.Tensor], k: int = 5,
                   method: EigenMethod = EigenMethod.lanczos, iterations: int = 50,
                   generator: torch.Generator | None = None, tol: float = 1e-4
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` eigenvalues and unit eigenvectors of the Hessian of ``objective`` at
    ``params``, using only Hessian-vector products (:meth:`Objective.hvp`).

    Args:
        method: ``lanczos`` (largest algebraic eigenvalues; ``iterations`` Lanczos steps) or
            ``power`` (largest magnitudes; at most ``iterations`` products per eigenpair).
        generator: random start vectors (default: seeded with 0).

    Returns:
        ``(eigenvalues (k,), eigenvectors (k, P))``, P = number of parameter entries; the
        eigenvectors are flat (see :func:`unflat`).
    """
    params = tuple(p.detach() for p in params)
    dim = sum(p.numel() for p in params)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    dtype, device = params[0].dtype, params[0].device

    def matvec(v: torch.Tensor) -> torch.Tensor:
        return flat(objective.hvp(params, unflat(v, params)))

    if EigenMethod(method) == EigenMethod.lanczos:
        return lanczos(matvec, dim, k, iterations, gen, dtype, device)
    return power_iteration(matvec, dim, k, iterations, gen, tol, dtype, device)
