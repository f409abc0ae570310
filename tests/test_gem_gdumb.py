"""GEM and GDumb pinned against hand computations: GEM's projection onto the cone of the past
tasks' gradients (Lopez-Paz & Ranzato 2017, Eqs. 10-11) through its after_backward hook, its
per-task ring memory and the outputs its memory loss uses; GDumb's greedy class-balanced
sampler on a hand-traced stream, and its retraining from the initial weights as a phase of the
loop's PhaseRunner."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cl_runner.errors import ConfigError
from cl_runner.strategies.base import TaskContext
from cl_runner.strategies.gdumb import GDumb, GreedyClassBalancedMemory, random_crop
from cl_runner.strategies.gem import GEM, project
from cl_runner.strategies.memory_schemas import GDumbConfig, GEMConfig
from cl_runner.training.batch import Batch
from cl_runner.training.hooks import PhaseRunner, RunnerHook
from tests.conftest import FloatBenchmark

CPU = torch.device("cpu")


def context(task, model, x, y, masks=None, phases=None) -> TaskContext:
    return TaskContext(task, x, y, model, FloatBenchmark(masks), CPU,
                       torch.Generator().manual_seed(0), phases or PhaseRunner())


# ---------------------------------------------------------------- GEM


class Vector(nn.Module):
    """A model whose only parameter is a 2-D vector: its gradient is the hook's g."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))


def gem_step(g, memory_grads, **cfg) -> torch.Tensor:
    """p.grad after GEM's after_backward with gradient ``g`` and past-task gradients
    ``memory_grads`` (rows), the memory gradients given instead of computed."""
    strategy = GEM(GEMConfig(**cfg))
    strategy.memories = [object()] * len(memory_grads)  # past tasks exist
    strategy.memory_gradients = lambda model, params: torch.tensor(memory_grads)
    model = Vector()
    model.w.grad = torch.tensor(g)
    strategy.after_backward(model)
    return model.w.grad


def test_gem_projects_a_conflicting_gradient_onto_the_hand_computed_point():
    # g = (1, 0), g_1 = (-1, 1): <g, g_1> = -1 < 0. Dual (Eq. 10): min_v v^2 - v (G G^T = 2,
    # G g = -1), v >= 0 -> v* = 1/2, g~ = g + v* g_1 = (1/2, 1/2): the projection of g onto
    # the half-plane <z, g_1> >= 0, on its boundary.
    assert gem_step([1.0, 0.0], [[-1.0, 1.0]], margin=0.0, qp_eps=0.0).tolist() == (
        pytest.approx([0.5, 0.5]))
    # margin gamma = 1 binds (v* = max(1/2, 1) = 1): g~ = (1, 0) + (-1, 1) = (0, 1)
    assert gem_step([1.0, 0.0], [[-1.0, 1.0]], margin=1.0, qp_eps=0.0).tolist() == (
        pytest.approx([0.0, 1.0]))
    # a second past task that does not conflict (g_2 = (1, 1)): G G^T = diag(2, 2),
    # G g = (-1, 1) -> v* = (1/2, 0): the same point, which also keeps <g~, g_2> = 1 >= 0
    assert gem_step([1.0, 0.0], [[-1.0, 1.0], [1.0, 1.0]], margin=0.0, qp_eps=0.0).tolist() == (
        pytest.approx([0.5, 0.5]))


def test_gem_leaves_a_gradient_without_conflict_unchanged():
    # <g, g_1> = 1 >= 0: no QP, even with a margin (the authors solve it only on a conflict)
    assert gem_step([1.0, 0.0], [[1.0, 1.0]], margin=0.5).tolist() == [1.0, 0.0]


def test_gem_project_function_matches_the_hand_values():
    g, mem = torch.tensor([1.0, 0.0]), torch.tensor([[-1.0, 1.0]])
    assert project(g, mem, margin=0.0).tolist() == pytest.approx([0.5, 0.5])
    assert project(g, torch.tensor([[1.0, 1.0]]), margin=0.5).tolist() == [1.0, 0.0]


def test_gem_keeps_the_last_memory_per_task_examples_of_each_task_stream():
    strategy = GEM(GEMConfig(memory_per_task=4))
    x = torch.arange(9, dtype=torch.uint8).view(9, 1)
    y = torch.arange(9) % 2
    model = nn.Linear(1, 2)
    for task in (1, 2):
        ctx = context(task, model, x, y)
        strategy.before_task(ctx)
        for start in range(0, 9, 3):  # batches of 3: examples 0-2, 3-5, 6-8
            strategy.train_batch(Batch(x[start:start + 3], y[start:start + 3], task, 3))
        strategy.after_training(ctx)
    assert strategy.memory_tasks == [1, 2]
    for mem in strategy.memories:  # the last 4 of the stream: 5, 6, 7, 8 (ring order)
        assert sorted(mem.x.view(-1).tolist()) == [5, 6, 7, 8]
        assert mem.y.tolist() == [int(v) % 2 for v in mem.x.view(-1).tolist()]


def memory_gradient_setup(masks):
    torch.manual_seed(0)
    model = nn.Linear(3, 4)
    x = torch.randint(0, 5, (6, 3), dtype=torch.uint8)
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    strategy = GEM(GEMConfig(memory_per_task=6))
    ctx = context(1, model, x, y, masks)
    strategy.before_task(ctx)
    strategy.train_batch(Batch(x, y, 1, 6))
    strategy.after_training(ctx)
    strategy.before_task(context(2, model, x, y + 2, masks))
    params = list(model.parameters())
    got = strategy.memory_gradients(model, params)[0]
    return model, x.float(), y, params, got


def flat_grad(loss, params):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])


def test_gem_memory_loss_uses_all_outputs_class_incrementally_and_the_task_masked_ones_else():
    # class-IL with every output active (no training masks): the mean cross-entropy over all
    # 4 outputs, as Mammoth's class-IL GEM
    model, xf, y, params, got = memory_gradient_setup(None)
    every = flat_grad(F.cross_entropy(model(xf), y), params)
    masked = flat_grad(F.cross_entropy(model(xf)[:, :2], y), params)
    assert torch.allclose(got, every)
    assert not torch.allclose(got, masked)
    # task masks (task-incremental, or train_mask=true): task 1's classes {0, 1} only, as the
    # authors' per-task output offsets
    masks = torch.tensor([[True, True, False, False], [False, False, True, True]])
    model, xf, y, params, got = memory_gradient_setup(masks)
    assert torch.allclose(got, flat_grad(F.cross_entropy(model(xf)[:, :2], y), params))


def test_gem_schema_refuses_bad_values_naming_the_key():
    for key, value in (("memory_per_task", 0), ("margin", -0.1), ("qp_eps", -1.0)):
        with pytest.raises(ConfigError, match=f"strategy.{key}"):
            GEMConfig(**{key: value}).validate()


# ---------------------------------------------------------------- GDumb


def test_greedy_sampler_contents_after_a_hand_traced_stream():
    # k = 4; stream labels 0 0 0 1 1 2 1, example i has input i; every eviction draw u = 0
    # (the first slot listed for the largest class). Trace:
    #   i0-i2 (0): slots 0, 1, 2; i3 (1): |M_1| = 0 < 4/2 -> slot 3 (memory full);
    #   i4 (1): |M_1| = 1 < 2 -> evict from class 0 (3 items) its first, slot 0 -> slot 0 = i4;
    #   i5 (2): |M_2| = 0 < 4/3 -> classes 0 and 1 tie at 2, the smaller label 0 loses its
    #           first remaining slot, 1 -> slot 1 = i5;
    #   i6 (1): |M_1| = 2 >= 4/3 -> dropped.
    memory = GreedyClassBalancedMemory(4)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 1])
    x = torch.arange(7, dtype=torch.uint8).view(7, 1)
    held = memory.add_stream(x, labels, 1, [0.0] * 7)
    assert held == 4 and len(memory) == 4
    assert memory.x.view(-1).tolist() == [4, 5, 2, 3]
    assert memory.y.tolist() == [1, 2, 0, 1]
    assert memory.task.tolist() == [1, 1, 1, 1]
    assert memory.classes_seen == [0, 1, 2]
    assert memory.class_counts() == {0: 1, 1: 2, 2: 1}
    # task 2 brings class 3: |Y| = 4, k/|Y| = 1; its first example replaces one of class 1
    # (the largest, slots [0, 3]; u = 0.99 picks the last listed, 3), the second is dropped
    held = memory.add_stream(torch.tensor([[10], [11]], dtype=torch.uint8),
                             torch.tensor([3, 3]), 2, [0.99, 0.99])
    assert held == 1
    assert memory.x.view(-1).tolist() == [4, 5, 2, 10]
    assert memory.y.tolist() == [1, 2, 0, 3] and memory.task.tolist() == [1, 1, 1, 2]
    assert memory.class_counts() == {0: 1, 1: 1, 2: 1, 3: 1}


def test_greedy_sampler_eviction_draw_picks_the_slot():
    memory = GreedyClassBalancedMemory(4)
    x = torch.arange(7, dtype=torch.uint8).view(7, 1)
    # u = 0.99: i4 evicts the last of class 0's slots [0, 1, 2] (slot 2); i5 the last of
    # [0, 1] (slot 1)
    memory.add_stream(x, torch.tensor([0, 0, 0, 1, 1, 2, 1]), 1, [0.99] * 7)
    assert memory.x.view(-1).tolist() == [0, 5, 4, 3]


class PhaseRecorder(RunnerHook):
    def __init__(self) -> None:
        self.phases: list[tuple[int, str, int]] = []
        self.steps = 0

    def before_phase(self, task, phase, total_steps):
        self.phases.append((task, phase, total_steps))

    def after_step(self):
        self.steps += 1


def gdumb_after_task_1(start_weights: dict[str, torch.Tensor] | None = None):
    """GDumb through task 1 of a tiny 3-class stream; ``start_weights`` overwrite the model
    after the initial weights were taken (what training a previous task would leave)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x = torch.randint(0, 255, (30, 1, 2, 2), dtype=torch.uint8)
    y = torch.arange(30) % 3
    recorder = PhaseRecorder()
    strategy = GDumb(GDumbConfig(memory_size=9, epochs=3, batch_size=4, crop_padding=1))
    ctx = context(1, model, x, y, phases=PhaseRunner([recorder]))
    initial = {n: t.clone() for n, t in model.state_dict().items()}
    strategy.before_task(ctx)
    train_x, train_y = strategy.task_data(ctx)
    assert len(train_y) == 0  # the continual phase trains on nothing
    if start_weights is not None:
        model.load_state_dict(start_weights)
    strategy.after_training(ctx)
    return model, strategy, recorder, initial


def test_gdumb_retrains_from_the_initial_weights_on_the_memory_as_a_loop_phase():
    model, strategy, recorder, initial = gdumb_after_task_1()
    assert strategy.memory.class_counts() == {0: 3, 1: 3, 2: 3}
    # the phase "memory" of the PhaseRunner: 3 epochs x ceil(9 / 4) = 9 steps, each seen by
    # the runner hooks (progress, interruption)
    assert recorder.phases == [(1, "memory", 9)] and recorder.steps == 9
    assert strategy.retrain_steps == [9]
    trained = model.state_dict()
    assert not torch.equal(trained["1.weight"], initial["1.weight"])  # it trained
    # from scratch: whatever weights the model had before, the same generator gives the same
    # result, because the retraining starts from the run's initial weights
    moved = {n: t + 1.0 for n, t in initial.items()}
    again, _, _, _ = gdumb_after_task_1(start_weights=moved)
    for name, value in trained.items():
        assert torch.equal(again.state_dict()[name], value), name


def test_random_crop_pads_with_zeros_and_cuts_at_the_offsets():
    x = torch.arange(1, 5, dtype=torch.uint8).view(1, 1, 2, 2)  # [[1, 2], [3, 4]]
    # padding 1 -> 4 x 4 with a zero border; offset (0, 0) is the top-left 2 x 2 of it
    assert random_crop(x, torch.tensor([[0, 0]]), 1).view(-1).tolist() == [0, 0, 0, 1]
    assert random_crop(x, torch.tensor([[1, 1]]), 1).view(-1).tolist() == [1, 2, 3, 4]
    assert random_crop(x, torch.tensor([[2, 1]]), 1).view(-1).tolist() == [3, 4, 0, 0]


def test_gdumb_schema_refuses_bad_values_naming_the_key():
    for key, value in (("memory_size", 0), ("epochs", 0), ("max_lr", 0.0), ("min_lr", 1.0),
                       ("momentum", 1.0), ("clip", 0.0), ("crop_padding", -1)):
        with pytest.raises(ConfigError, match=f"strategy.{key}"):
            GDumbConfig(**{key: value}).validate()


def test_gdumb_learning_rate_per_epoch_is_the_authors_schedule(monkeypatch):
    # max_lr 0.05, min_lr 0.0005: epoch 0 at 0.1 max_lr, epoch 1 at max_lr, then
    # CosineAnnealingWarmRestarts(T_0=1, T_mult=2) stepped per epoch: restarts (max_lr) at
    # epochs 2 and 4, in between eta_min + (max - min)(1 + cos(pi T_cur / T_i)) / 2:
    # epoch 3 (T_cur 1, T_i 2): 0.0005 + 0.0495 / 2 = 0.02525;
    # epoch 5 (T_cur 1, T_i 4): 0.0005 + 0.0495 (1 + cos(pi / 4)) / 2 = 0.0005 + 0.0495 x
    # 0.85355339 = 0.04275089
    seen = []
    step = torch.optim.SGD.step

    def recording_step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    strategy = GDumb(GDumbConfig(memory_size=6, epochs=6, batch_size=6, crop_padding=0))
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x = torch.randint(0, 255, (6, 1, 2, 2), dtype=torch.uint8)
    ctx = context(1, model, x, torch.arange(6) % 3)
    strategy.before_task(ctx)
    strategy.task_data(ctx)
    strategy.after_training(ctx)
    assert seen == pytest.approx([0.005, 0.05, 0.05, 0.02525, 0.05, 0.04275089], abs=1e-7)
