"""EWC and A-GEM: the Fisher and the penalty against hand computations, A-GEM's projection,
and EWC forgetting less than naive fine-tuning on real MNIST."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cl_runner.experiment import run_experiment
from cl_runner.strategies.agem import AGEM, AGEMConfig, project_gradient
from cl_runner.strategies.base import TaskContext
from cl_runner.strategies.ewc import EWC, EWCConfig, EWCMode, empirical_fisher, flat_params
from tests.conftest import FloatBenchmark, compose_run

CPU = torch.device("cpu")


def tiny_linear() -> nn.Linear:
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -1.0], [0.25, 2.0]]))
        model.bias.copy_(torch.tensor([0.1, -0.3]))
    return model


def ctx(task: int, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> TaskContext:
    return TaskContext(task, x, y, model, FloatBenchmark(), CPU, torch.Generator().manual_seed(0))


def test_fisher_equals_analytic_value_on_a_linear_model():
    model = tiny_linear()
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    y = torch.tensor([0, 1])
    # d/dW log softmax(Wx + b)[y] = (onehot(y) - p) x^T, d/db = onehot(y) - p
    expected = torch.zeros(6)
    with torch.no_grad():
        for xi, yi in zip(x, y, strict=True):
            p = torch.softmax(model(xi), 0)
            e = F.one_hot(yi, 2).float() - p
            expected += torch.cat([torch.outer(e, xi).reshape(-1), e]).square()
    expected /= 2
    got = empirical_fisher(model, x, y, batch_size=1)  # batches of 1 and of 2 agree
    assert got == pytest.approx(expected, rel=1e-5)
    assert empirical_fisher(model, x, y, batch_size=2) == pytest.approx(expected, rel=1e-5)

    ewc = EWC(EWCConfig(fisher_samples=2, fisher_batch_size=2))
    ewc.after_training(ctx(1, model, x, y))
    assert ewc.fishers[0] == pytest.approx(expected, rel=1e-5)  # all 2 examples, in any order


def test_fisher_with_an_explicit_loop_on_a_hidden_layer_with_dropout_in_eval_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 3)).train()
    x, y = torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
    expected = torch.zeros(sum(p.numel() for p in model.parameters()))
    model.eval()
    for xi, yi in zip(x, y, strict=True):
        ll = F.log_softmax(model(xi[None]), -1)[0, yi]
        g = torch.autograd.grad(ll, list(model.parameters()))
        expected += torch.cat([gi.reshape(-1) for gi in g]).square()
    model.train()
    got = empirical_fisher(model, x, y, batch_size=2)
    assert got == pytest.approx(expected / 5, rel=1e-4, abs=1e-7)
    assert model.training  # mode restored


def direct_penalty(lam, fishers, anchors, theta):
    return lam / 2 * sum((f * (theta - a) ** 2).sum() for f, a in zip(fishers, anchors, strict=True))


def test_separate_penalty_equals_the_definition_for_two_past_tasks():
    torch.manual_seed(1)
    model = nn.Linear(3, 2)
    p = sum(q.numel() for q in model.parameters())
    fishers = [torch.rand(p), torch.rand(p)]
    fishers[1][:2] = 0  # parameters unimportant to one task or to both
    fishers[0][:1] = 0
    anchors = [torch.randn(p), torch.randn(p)]
    ewc = EWC(EWCConfig(ewc_lambda=7.0))
    assert ewc.penalty(model) is None  # before any task
    for f, a in zip(fishers, anchors, strict=True):
        ewc.add_task(f, a)
    theta = flat_params(model)
    expected = direct_penalty(7.0, fishers, anchors, theta.detach())
    got = ewc.penalty(model)
    assert float(got.detach()) == pytest.approx(float(expected), rel=1e-5)
    # and its gradient: lambda * sum_k F_k (theta - theta_k)
    (g,) = torch.autograd.grad(got, [model.weight])
    grad_flat = 7.0 * sum(f * (theta.detach() - a) for f, a in zip(fishers, anchors, strict=True))
    assert g.reshape(-1) == pytest.approx(grad_flat[:6], rel=1e-4, abs=1e-6)
    # at an anchor the penalty is only the other task's term
    with torch.no_grad():
        model.weight.copy_(anchors[0][:6].view(2, 3))
        model.bias.copy_(anchors[0][6:])
    assert float(ewc.penalty(model).detach()) == pytest.approx(
        float(direct_penalty(7.0, fishers[1:], anchors[1:], anchors[0])), rel=1e-4)


def test_online_penalty_uses_the_running_fisher_and_the_latest_anchor():
    torch.manual_seed(2)
    model = nn.Linear(3, 2)
    f1, f2, a1, a2 = torch.rand(8), torch.rand(8), torch.randn(8), torch.randn(8)
    ewc = EWC(EWCConfig(ewc_lambda=3.0, mode=EWCMode.online, gamma_ewc=0.5))
    ewc.add_task(f1, a1)
    ewc.add_task(f2, a2)
    theta = flat_params(model).detach()
    expected = direct_penalty(3.0, [0.5 * f1 + f2], [a2], theta)
    assert float(ewc.penalty(model).detach()) == pytest.approx(float(expected), rel=1e-5)


def test_projection_removes_the_conflict_and_keeps_aligned_gradients():
    g_ref = torch.tensor([1.0, 2.0, -1.0])
    for g in (torch.tensor([-3.0, 1.0, 0.5]), torch.tensor([-1.0, -1.0, 4.0])):
        assert g @ g_ref < 0
        out = project_gradient(g, g_ref)
        assert float(out @ g_ref) >= -1e-6
        assert float(out @ g_ref) == pytest.approx(0.0, abs=1e-5)  # onto the boundary
        # the change is along g_ref only
        assert torch.linalg.matrix_rank(torch.stack([out - g, g_ref])) == 1
    for g in (torch.tensor([1.0, 0.0, 0.5]), torch.tensor([2.0, -1.0, 0.0])):  # dot >= 0
        assert g @ g_ref >= 0
        assert torch.equal(project_gradient(g, g_ref), g)
    assert torch.equal(project_gradient(g, torch.zeros(3)), g)


def agem_with_memory(model):
    """A-GEM after one task whose memory is the single example (x=[1, 0], y=0)."""
    agem = AGEM(AGEMConfig(memory_per_class=1, memory_batch_size=256))
    c = ctx(1, model, torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    agem.before_task(c)
    agem.after_training(c)
    agem.before_task(ctx(2, model, c.train_x, c.train_y))
    return agem


def memory_gradient(model):
    loss = F.cross_entropy(model(torch.tensor([[1.0, 0.0]])), torch.tensor([0]))
    return torch.autograd.grad(loss, list(model.parameters()))


@pytest.mark.parametrize("conflict", [True, False])
def test_agem_changes_grad_only_when_conflicting(conflict):
    model = tiny_linear()
    agem = agem_with_memory(model)
    g_ref = torch.cat([g.reshape(-1) for g in memory_gradient(model)])
    proposed = -g_ref + 0.3 * torch.tensor([1.0, 0, 0, 0, 0, 0]) if conflict else (
        g_ref + torch.tensor([0.0, 1.0, 0, 0, 0, 0]))
    model.weight.grad = proposed[:4].view(2, 2).clone()
    model.bias.grad = proposed[4:].clone()
    agem.after_backward(model)
    after = torch.cat([model.weight.grad.reshape(-1), model.bias.grad])
    if conflict:
        assert not torch.allclose(after, proposed)
        assert after == pytest.approx(project_gradient(proposed, g_ref), abs=1e-6)
        assert float(after @ g_ref) == pytest.approx(0.0, abs=1e-5)
    else:
        assert torch.equal(after, proposed)
    agem.after_training(ctx(2, model, torch.tensor([[0.0, 1.0]]), torch.tensor([1])))
    assert agem.stats()["projections"] == [
        {"task": 2, "steps": 1, "projected_fraction": 1.0 if conflict else 0.0}]
    assert agem.stats()["episodic_memory_size"] == 2


def test_agem_does_nothing_on_the_first_task():
    model = tiny_linear()
    agem = AGEM(AGEMConfig())
    agem.before_task(ctx(1, model, torch.zeros(1, 2), torch.tensor([0])))
    model.weight.grad, model.bias.grad = torch.ones(2, 2), torch.ones(2)
    agem.after_backward(model)
    assert torch.equal(model.weight.grad, torch.ones(2, 2))


@pytest.mark.slow
def test_ewc_forgets_less_than_naive_on_real_mnist(tmp_path, mnist_root):
    """Rotations by 45 degrees and 1,000 examples per task, naive regime (lr 0.01, batch 10):
    with a large lambda EWC keeps more of the old tasks than naive fine-tuning. Measured
    (seeds 1, 2): naive forgetting 0.225 / 0.208, EWC (lambda 1000) 0.036 / 0.081 (with 2,000
    examples per task: 0.351 / 0.342 against 0.112 / 0.091)."""
    common = ["benchmark.num_tasks=3", "benchmark.train_samples_per_task=1000", "progress=false",
              "hardware=cpu", "hardware.num_threads=1", f"data.root={mnist_root}",
              "benchmark.angle_step=45"]
    for seed in (1, 2):
        runs = {}
        ewc = ["strategy.ewc_lambda=1000", "strategy.fisher_samples=256"]
        for name, extra in (("naive", []), ("ewc", ewc)):
            run = compose_run(common + [f"strategy={name}", f"seed={seed}"] + extra)
            runs[name] = run_experiment(run, tmp_path / f"{name}{seed}")
        assert runs["ewc"]["forgetting"] < runs["naive"]["forgetting"] - 0.08, (seed, runs)
