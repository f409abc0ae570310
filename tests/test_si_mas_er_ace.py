"""SI, MAS and ER-ACE pinned on tiny models against values computed by hand: SI's path integral
and consolidation through the loop's own step (and that the path integral uses the
cross-entropy's gradient, not the surrogate's), MAS's importance of a linear model in closed
form and its sum over tasks, ER-ACE's asymmetric cross-entropy on a batch holding 2 of 4 seen
classes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cl_runner.strategies.base import TaskContext
from cl_runner.strategies.er_ace import ERACE
from cl_runner.strategies.mas import MAS, _linear_sensitivity, _vmap_sensitivity
from cl_runner.strategies.schemas import ERACEConfig, MASConfig, SIConfig
from cl_runner.strategies.si import SI
from cl_runner.training.batch import Batch
from cl_runner.training.loop import _continual_step
from tests.conftest import FloatBenchmark

CPU = torch.device("cpu")


def ctx(task: int, model: nn.Module, x: torch.Tensor | None = None,
        masks: torch.Tensor | None = None) -> TaskContext:
    x = torch.zeros(1, 1) if x is None else x
    return TaskContext(task, x, torch.zeros(len(x), dtype=torch.int64), model,
                       FloatBenchmark(masks), CPU, torch.Generator().manual_seed(0))


def run_steps(strategy, model: nn.Module, task: int, x: list[list[float]], y: list[int],
              steps: int, lr: float = 1.0) -> list[float]:
    """``steps`` steps of the loop's continual step (plain SGD, the whole set as one batch);
    returns each step's loss."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    step = _continual_step(model, strategy, opt, task, torch.tensor(x), torch.tensor(y),
                           lambda b: b.float(), len(y), None)
    order = torch.arange(len(y))
    return [float(step(order, 0).detach()) for _ in range(steps)]


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


# ---- SI (Zenke et al. 2017, Eqs. 3-5) ----

def two_logit_model() -> nn.Linear:
    """logits = [a, b] * x with a = b = 0 (no bias): CE(label 0) = log(1 + e^(b - a))."""
    model = nn.Linear(1, 2, bias=False)
    nn.init.zeros_(model.weight)
    return model


def test_si_omega_after_two_sgd_steps_is_the_hand_computed_path_integral():
    # Input 1, label 0, SGD lr 1. With p = sigmoid(b - a): dCE/da = -p, dCE/db = p.
    # Step 1 (a = b = 0, p = 1/2): delta = (+1/2, -1/2), -g * delta = 1/4 for both weights.
    # Step 2 (a = 1/2, b = -1/2, p = sigmoid(-1)): delta = (p, -p), -g * delta = p^2.
    # Task end: Delta = +-(1/2 + p), Omega = (1/4 + p^2) / (Delta^2 + xi) (Eq. 5).
    si, model = SI(SIConfig(c=1.0, xi=0.1)), two_logit_model()
    si.before_task(ctx(1, model))
    run_steps(si, model, 1, [[1.0]], [0], steps=2)
    p = sigmoid(-1.0)
    assert si.path[0].flatten().tolist() == pytest.approx([0.25 + p * p] * 2, rel=1e-6)
    si.after_training(ctx(1, model))
    omega = (0.25 + p * p) / ((0.5 + p) ** 2 + 0.1)
    assert si.omega[0].flatten().tolist() == pytest.approx([omega, omega], rel=1e-6)
    assert si.anchor[0].flatten().tolist() == pytest.approx([0.5 + p, -0.5 - p], rel=1e-6)
    assert si.path[0].abs().sum() == 0  # the next task's path integral starts at zero


def test_si_surrogate_moves_the_weights_but_the_path_integral_uses_the_cross_entropy_alone():
    # Task 2 with Omega = (2, 3), anchor (1, -1), weights (a, b) = (0, 0), c = 0.5, lr 1:
    # CE gradient g = (-1/2, 1/2); surrogate gradient 2c Omega (theta - anchor) = (-2, 3).
    # The optimizer follows the sum; the path integral takes -g * delta (pathint's
    # ``unreg_grads``), not -(g + surrogate gradient) * delta.
    si, model = SI(SIConfig(c=0.5, xi=0.1)), two_logit_model()
    si.before_task(ctx(1, model))
    si.omega = [torch.tensor([[2.0], [3.0]])]
    si.anchor = [torch.tensor([[1.0], [-1.0]])]
    si.before_task(ctx(2, model))
    (loss,) = run_steps(si, model, 2, [[1.0]], [0], steps=1)
    assert loss == pytest.approx(math.log(2) + 0.5 * (2 * 1 + 3 * 1), rel=1e-6)  # CE + c Omega d^2
    delta = [0.5 + 2.0, -0.5 - 3.0]
    assert model.weight.flatten().tolist() == pytest.approx(delta, rel=1e-6)
    assert si.path[0].flatten().tolist() == pytest.approx(
        [0.5 * delta[0], -0.5 * delta[1]], rel=1e-6)


def test_si_consolidation_sums_over_tasks_and_clamps_at_zero():
    # Omega <- relu(Omega + omega / (Delta^2 + xi)) (pathint PATH_INT_PROTOCOL, 'sum').
    si, w = SI(SIConfig(xi=0.5)), torch.tensor([1.0, 2.0])
    si.omega, si.anchor = [torch.tensor([0.25, 0.5])], [torch.tensor([0.0, 1.0])]
    si.path = [torch.tensor([3.0, -2.0])]
    si.consolidate([w])
    assert si.omega[0].tolist() == pytest.approx([0.25 + 3.0 / 1.5, 0.0])
    assert si.anchor[0].tolist() == [1.0, 2.0]


# ---- MAS (Aljundi et al. 2018, Eqs. 2-4) ----

def test_mas_importance_of_a_linear_model_is_the_closed_form_and_sums_over_tasks():
    # F(x) = W x + b: d||F||^2/dW_cd = 2 F_c x_d, d||F||^2/db_c = 2 F_c, so
    # Omega_W = mean_n 2 |F_nc| |x_nd|, Omega_b = mean_n 2 |F_nc| (per example, no labels).
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x1, x2 = torch.randn(5, 3), torch.randn(4, 3)

    def closed_form(x):
        with torch.no_grad():
            f = model(x).abs()
        return torch.cat([(2 * f[:, :, None] * x.abs()[:, None, :]).mean(0).reshape(-1),
                          (2 * f).mean(0)])

    mas = MAS(MASConfig(mas_lambda=2.0, importance_batch_size=2))
    mas.after_training(ctx(1, model, x1))
    assert torch.allclose(mas.omega, closed_form(x1), rtol=1e-5)
    first = closed_form(x1)
    with torch.no_grad():
        model.weight.add_(0.5)
    mas.after_training(ctx(2, model, x2))
    assert torch.allclose(mas.omega, first + closed_form(x2), rtol=1e-5)  # a sum over tasks
    # penalty lambda * sum Omega (theta - theta*)^2, theta* = the weights after task 2
    with torch.no_grad():
        model.bias.add_(1.0)
    expected = 2.0 * mas.omega[-2:].sum()
    assert float(mas.penalty(model)) == pytest.approx(float(expected), rel=1e-5)


def test_mas_task_head_restricts_the_output_norm_to_the_task_classes():
    torch.manual_seed(1)
    model, x = nn.Linear(3, 4), torch.randn(6, 3)
    masks = torch.tensor([[True, True, False, False], [False, False, True, True]])
    mas = MAS(MASConfig())
    mas.after_training(ctx(2, model, x, masks))
    weight, bias = mas.omega[:12].view(4, 3), mas.omega[12:]
    assert weight[:2].abs().sum() == 0 and bias[:2].abs().sum() == 0
    assert (weight[2:] > 0).all() and (bias[2:] > 0).all()


def test_mas_linear_layer_shortcut_equals_the_per_example_gradients():
    # sum_n |delta_n a_n^T| = |Delta|^T |A| for every linear layer of an MLP (ReLU between):
    # the shortcut must give the per-example vmap result, with and without a task head.
    torch.manual_seed(2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))
    x, head = torch.randn(7, 2, 3), torch.tensor([False, True, True, False])
    for outputs in (None, head):
        fast = _linear_sensitivity(model, x, batch_size=3, outputs=outputs)
        slow = _vmap_sensitivity(model, x, batch_size=3, outputs=outputs)
        assert fast is not None and torch.allclose(fast, slow, rtol=1e-5, atol=1e-7)
    shared = nn.Linear(3, 3)  # one layer applied twice: no shortcut
    assert _linear_sensitivity(nn.Sequential(shared, shared), torch.randn(2, 3),
                               batch_size=2) is None


# ---- ER-ACE (Caccia et al. 2022, Sec. 4) ----

LOGITS = torch.tensor([[2.0, 0.5, 1.0, -1.0, 3.0, 0.0],
                       [0.0, 1.5, 2.5, 0.5, -2.0, 1.0],
                       [1.0, 0.0, 0.5, 2.0, 1.0, 4.0],
                       [0.5, 1.0, -1.0, 1.5, 0.0, 2.0]])


def ce(row: list[float], label: int, classes: list[int]) -> float:
    """-log softmax over ``classes`` of ``row`` at ``label``, by hand."""
    return -row[label] + math.log(sum(math.exp(row[c]) for c in classes))


def ace_loss(variant: str, seen: list[bool], y: list[int], num_incoming: int) -> float:
    strategy = ERACE(ERACEConfig(variant=variant))
    strategy.seen = torch.tensor(seen)
    batch = Batch(torch.zeros(len(y), 1), torch.tensor(y), 2, num_incoming)
    return float(strategy.loss(batch, LOGITS, nn.Identity()))


def test_er_ace_incoming_softmax_covers_the_present_classes_and_replay_the_seen_ones():
    # 6 outputs, classes 0..3 seen; incoming batch labels (0, 1): 2 of the 4 seen classes;
    # replayed labels (2, 3). Paper: incoming CE over {0, 1}, replay CE over {0, 1, 2, 3}.
    rows = LOGITS.tolist()
    seen = [True] * 4 + [False] * 2
    incoming = (ce(rows[0], 0, [0, 1]) + ce(rows[1], 1, [0, 1])) / 2
    replay = (ce(rows[2], 2, [0, 1, 2, 3]) + ce(rows[3], 3, [0, 1, 2, 3])) / 2
    assert ace_loss("paper", seen, [0, 1, 2, 3], 2) == pytest.approx(incoming + replay, rel=1e-6)
    # the authors' code: incoming also over the unseen classes {4, 5}, replay over every output
    incoming = (ce(rows[0], 0, [0, 1, 4, 5]) + ce(rows[1], 1, [0, 1, 4, 5])) / 2
    replay = (ce(rows[2], 2, range(6)) + ce(rows[3], 3, range(6))) / 2
    assert ace_loss("authors", seen, [0, 1, 2, 3], 2) == pytest.approx(incoming + replay, rel=1e-6)


def test_er_ace_incoming_batch_of_one_class_costs_nothing_and_adds_to_the_seen_classes():
    rows = LOGITS.tolist()
    strategy = ERACE(ERACEConfig())
    strategy.seen = torch.tensor([True, True, False, False, False, False])
    batch = Batch(torch.zeros(4, 1), torch.tensor([4, 4, 0, 1]), 3, 2)
    loss = float(strategy.loss(batch, LOGITS, nn.Identity()))
    replay = (ce(rows[2], 0, [0, 1, 4]) + ce(rows[3], 1, [0, 1, 4])) / 2  # 4 is seen now
    assert loss == pytest.approx(replay, rel=1e-6)  # a softmax over one class: CE 0
    assert strategy.seen.tolist() == [True, True, False, False, True, False]
