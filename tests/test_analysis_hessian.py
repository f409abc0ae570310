"""Hessian-vector products, top eigenpairs and the Lie bracket (cl_runner/analysis/hessian.py)
against finite differences and the full Hessian of tiny models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cl_runner.analysis.hessian import (
    EigenMethod,
    Objective,
    flat,
    lie_bracket,
    model_objective,
    top_eigenpairs,
    unflat,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_problem(seed: int = 0, n: int = 40):
    """A float64 3-5-3 tanh network and a random 3-class data set (x float, identity input)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=gen)
    return model, x, y


def objective(model, x, y, chunk_size=1000):
    return model_objective(model, x, y, to_input=lambda b: b, chunk_size=chunk_size)


def full_hessian(obj: Objective, params) -> torch.Tensor:
    def f(w):
        return sum(term(unflat(w, params)) for term in obj.terms)
    return torch.autograd.functional.hessian(f, flat(params).detach(), vectorize=True)


def test_hvp_matches_finite_differences():
    model, x, y = tiny_problem()
    obj = objective(model, x, y)
    params = tuple(p.detach() for p in model.parameters())
    v = unflat(torch.randn(sum(p.numel() for p in params), dtype=torch.float64,
                           generator=torch.Generator().manual_seed(1)), params)
    eps = 1e-5
    plus = obj.gradient(tuple(p + eps * d for p, d in zip(params, v, strict=True)))
    minus = obj.gradient(tuple(p - eps * d for p, d in zip(params, v, strict=True)))
    fd = (flat(plus) - flat(minus)) / (2 * eps)
    hv = flat(obj.hvp(params, v))
    assert hv.norm() > 1e-3
    torch.testing.assert_close(hv, fd, rtol=1e-6, atol=1e-8)


def test_chunking_does_not_change_values():
    model, x, y = tiny_problem()
    params = tuple(p.detach() for p in model.parameters())
    a, b = objective(model, x, y, chunk_size=7), objective(model, x, y, chunk_size=1000)
    assert len(a.terms) == 6 and len(b.terms) == 1
    torch.testing.assert_close(a.value(params), b.value(params))
    torch.testing.assert_close(flat(a.gradient(params)), flat(b.gradient(params)))
    v = a.gradient(params)
    torch.testing.assert_close(flat(a.hvp(params, v)), flat(b.hvp(params, v)))


@pytest.mark.parametrize("method", list(EigenMethod))
def test_top_eigenvalues_match_eigvalsh(method):
    model, x, y = tiny_problem()
    obj = objective(model, x, y)
    params = tuple(p.detach() for p in model.parameters())
    hessian = full_hessian(obj, params)
    exact = torch.linalg.eigvalsh(hessian)  # ascending
    dim = hessian.shape[0]  # 38
    lanczos = method == EigenMethod.lanczos
    vals, vecs = top_eigenpairs(obj, params, k=2, method=method,
                                iterations=dim if lanczos else 300, tol=1e-12)
    # Lanczos: largest algebraic; power iteration: largest magnitude (here both 0.543, 0.352)
    expected = exact.flip(0)[:2] if lanczos else exact[exact.abs().argsort(descending=True)][:2]
    torch.testing.assert_close(vals, expected, rtol=1e-6, atol=1e-8)
    # eigenvectors: H u = lambda u (power iteration's vectors converge more slowly), unit norm
    for lam, u in zip(vals, vecs, strict=True):
        torch.testing.assert_close(hessian @ u, lam * u, rtol=0, atol=1e-6 if lanczos else 1e-4)
        torch.testing.assert_close(u.norm(), torch.tensor(1.0, dtype=torch.float64))


def quadratic(matrix: torch.Tensor, center: torch.Tensor) -> Objective:
    """0.5 (w - c)^T M (w - c) for one parameter tensor w of shape (d,)."""
    return Objective([lambda p: 0.5 * (p[0] - center) @ matrix @ (p[0] - center)])


def random_spd(q: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    eig = torch.rand(q.shape[0], generator=gen, dtype=torch.float64) + 0.1
    return q @ torch.diag(eig) @ q.T


def test_lie_bracket_zero_for_commuting_quadratics_and_not_otherwise():
    gen = torch.Generator().manual_seed(0)
    d = 6
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    a, b = random_spd(q, gen), random_spd(q, gen)  # same eigenbasis: AB = BA
    center = torch.randn(d, generator=gen, dtype=torch.float64)
    w = (torch.randn(d, generator=gen, dtype=torch.float64),)
    bracket = lie_bracket(quadratic(a, center), quadratic(b, center), w)[0]
    torch.testing.assert_close(bracket, torch.zeros(d, dtype=torch.float64), atol=1e-12, rtol=0)
    # non-commuting Hessians: the bracket is (BA - AB)(w - c), not zero
    q2, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    b2 = random_spd(q2, gen)
    bracket2 = lie_bracket(quadratic(a, center), quadratic(b2, center), w)[0]
    torch.testing.assert_close(bracket2, (b2 @ a - a @ b2) @ (w[0] - center))
    assert bracket2.norm() > 1e-3


def test_lie_bracket_antisymmetric_and_matches_finite_differences():
    model, x, y = tiny_problem(n=60)
    loss_a, loss_b = objective(model, x[:30], y[:30]), objective(model, x[30:], y[30:])
    params = tuple(p.detach() for p in model.parameters())
    ab = flat(lie_bracket(loss_a, loss_b, params))
    ba = flat(lie_bracket(loss_b, loss_a, params))
    assert ab.norm() > 1e-4
    torch.testing.assert_close(ab, -ba)
    # finite differences: H_B g_A ~ (g_B(w + e g_A) - g_B(w - e g_A)) / 2e, and vice versa
    g_a, g_b = loss_a.gradient(params), loss_b.gradient(params)
    eps = 1e-5

    def directional(loss, direction):
        plus = loss.gradient(tuple(p + eps * d for p, d in zip(params, direction, strict=True)))
        minus = loss.gradient(tuple(p - eps * d for p, d in zip(params, direction, strict=True)))
        return (flat(plus) - flat(minus)) / (2 * eps)

    fd = directional(loss_b, g_a) - directional(loss_a, g_b)
    torch.testing.assert_close(ab, fd, rtol=1e-5, atol=1e-8)
