"""MC-SGD's line phase pinned on a tiny model (issue 12): the anchors and the start point, the
three line gradients against independent computations, the authors' batching, eval mode and
untouched BatchNorm statistics, and the episodic memory after each task."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from cl_runner.strategies.mcsgd import MCSGD, _group_batches
from cl_runner.strategies.schemas import LineGradient, MCSGDConfig
from cl_runner.training.hooks import TaskContext

K = 4  # line_samples


class TinyBenchmark:
    """The two things the line phase asks of a benchmark."""

    @staticmethod
    def to_input(x: torch.Tensor) -> torch.Tensor:
        return x.float() / 255.0

    @staticmethod
    def class_masks(split: str) -> None:
        return None


def tiny_model(seed: int = 0, batchnorm: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Linear(6, 5)] + ([nn.BatchNorm1d(5)] if batchnorm else [])
    return nn.Sequential(*layers, nn.ReLU(), nn.Dropout(0.5), nn.Linear(5, 3))


def data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 6), generator=g, dtype=torch.uint8)
    return x, torch.arange(n) % 3  # every class present


def params_of(model: nn.Module, seed: int, scale: float = 0.5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: scale * torch.randn(p.shape, generator=g) for n, p in model.named_parameters()}


def strategy(gradient: str, **kw) -> MCSGD:
    """The gradient formulas are pinned in eval mode (deterministic); train mode (the
    default since issue 33) where a test says ``line_train_mode=True``."""
    kw.setdefault("line_train_mode", False)
    cfg = MCSGDConfig(line_gradient=LineGradient(gradient), line_samples=K, lmc_lr=1.0,
                      lmc_momentum=0.0, lmc_batch_size=64, **kw)
    return MCSGD(cfg)


def one_step_update(gradient: str, terms, model: nn.Module) -> dict[str, torch.Tensor]:
    """w - w' after one line-phase step at lr 1, momentum 0: the line gradient itself."""
    s = strategy(gradient)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    s.line_phase(model, terms, TinyBenchmark.to_input, torch.Generator().manual_seed(0))
    return {n: before[n] - p.detach() for n, p in model.named_parameters()}


def setup_terms(model: nn.Module):
    """Memory (7 examples) anchored at w_prev, subset (9) anchored at w_hat, w in the model."""
    w_prev, w_hat = params_of(model, 1), params_of(model, 2)
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(w_prev[n] + 0.3 * (w_hat[n] - w_prev[n]))
    (mx, my), (sx, sy) = data(7, 3), data(9, 4)
    return ((w_prev, mx, my, None), (w_hat, sx, sy, None))


def mean_loss(model, point, x, y):
    return nn.functional.cross_entropy(
        functional_call(model, point, (TinyBenchmark.to_input(x),)), y)


def test_exact_gradient_is_autograd_of_the_line_objective():
    model = tiny_model()
    terms = setup_terms(model)
    w = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    model.eval()  # the objective with dropout off
    objective = sum(
        mean_loss(model, {n: a[n] + (j / K) * (w[n] - a[n]) for n in w}, x, y)
        for a, x, y, _ in terms for j in range(K + 1))
    expected = torch.autograd.grad(objective, list(w.values()))
    model.train()  # the line phase must switch to eval mode itself
    got = one_step_update("exact", terms, model)
    for (n, g), e in zip(got.items(), expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6, msg=n)


def test_unweighted_gradient_gives_every_point_weight_one():
    model = tiny_model()
    terms = setup_terms(model)
    model.eval()
    w = {n: p.detach().clone() for n, p in model.named_parameters()}
    expected = {n: torch.zeros_like(p) for n, p in w.items()}
    for a, x, y, _ in terms:
        for j in range(K + 1):
            point = {n: (a[n] + (j / K) * (w[n] - a[n])).requires_grad_() for n in w}
            for n, g in zip(point, torch.autograd.grad(mean_loss(model, point, x, y),
                                                       list(point.values())), strict=True):
                expected[n] += g
    got = one_step_update("unweighted", terms, model)
    for n in w:
        torch.testing.assert_close(got[n], expected[n], rtol=1e-5, atol=1e-6, msg=n)


def test_train_mode_line_step_draws_dropout_masks_in_every_forward():
    """Train mode (the default, issue 33): each of the 2 x (K+1) forwards of a step draws its
    own dropout mask from the global generator, in the order term, then point, over the
    term's shuffled examples; the step is the unweighted sum of those gradients, and not the
    eval-mode one."""
    model = tiny_model()
    terms = setup_terms(model)
    w = {n: p.detach().clone() for n, p in model.named_parameters()}

    def expected_update(train: bool) -> dict[str, torch.Tensor]:
        model.train(train)
        torch.manual_seed(123)
        out = {n: torch.zeros_like(p) for n, p in w.items()}
        order = torch.Generator().manual_seed(0)  # the phase's shuffles: a mask hits a row
        for a, x, y, _ in terms:
            perm = torch.randperm(len(y), generator=order)
            x, y = x[perm], y[perm]
            for j in range(K + 1):
                point = {n: (a[n] + (j / K) * (w[n] - a[n])).requires_grad_() for n in w}
                for n, g in zip(point, torch.autograd.grad(mean_loss(model, point, x, y),
                                                           list(point.values())), strict=True):
                    out[n] += g
        return out

    with_dropout, without = expected_update(True), expected_update(False)
    model.eval()  # the line phase must switch to train mode itself, and restore eval
    s = strategy("unweighted", line_train_mode=True)
    torch.manual_seed(123)
    s.line_phase(model, terms, TinyBenchmark.to_input, torch.Generator().manual_seed(0))
    assert not model.training
    got = {n: w[n] - p.detach() for n, p in model.named_parameters()}
    for n in w:
        torch.testing.assert_close(got[n], with_dropout[n], rtol=1e-5, atol=1e-6, msg=n)
    assert any(not torch.allclose(got[n], without[n], atol=1e-4) for n in w)


def authors_mechanism(model: nn.Module, anchor, w, x, y,
                      batches: list[slice] | None = None) -> dict[str, torch.Tensor]:
    """The authors' accumulation, re-enacted: one module whose weights are overwritten at each
    point (``load_state_dict`` keeps ``.grad``), ``.grad`` never zeroed between points, the
    sum of batch-mean losses over the loader (``batches``, default one) divided by the number
    of examples, the running ``.grad`` added up."""
    m = tiny_model()
    m.eval()
    accum = None
    for j in range(K + 1):
        m.load_state_dict({n: anchor[n] + (j / K) * (w[n] - anchor[n]) for n in w},
                          strict=False)
        loss = sum(nn.functional.cross_entropy(m(TinyBenchmark.to_input(x[b])), y[b])
                   for b in (batches or [slice(None)])) / len(y)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in m.named_parameters()}
        accum = grads if accum is None else {n: accum[n] + grads[n] for n in grads}
    return accum


def test_authors_gradient_is_the_weighted_sum_of_their_code():
    model = tiny_model()
    terms = setup_terms(model)
    w = {n: p.detach().clone() for n, p in model.named_parameters()}
    mech = [authors_mechanism(model, a, w, x, y) for a, x, y, _ in terms]
    # the same by hand: point j weighted (K+1-j), each term scaled by 1/B
    model.eval()
    hand = {n: torch.zeros_like(p) for n, p in w.items()}
    for a, x, y, _ in terms:
        for j in range(K + 1):
            point = {n: (a[n] + (j / K) * (w[n] - a[n])).requires_grad_() for n in w}
            g = torch.autograd.grad(mean_loss(model, point, x, y), list(point.values()))
            for n, gi in zip(point, g, strict=True):
                hand[n] += (K + 1 - j) / len(y) * gi
    got = one_step_update("authors", terms, model)
    for n in w:
        torch.testing.assert_close(mech[0][n] + mech[1][n], hand[n], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(got[n], hand[n], rtol=1e-5, atol=1e-7, msg=n)
    unweighted = one_step_update("unweighted", setup_terms(tiny_model()), tiny_model())
    assert not torch.allclose(unweighted["0.weight"], got["0.weight"])


def test_authors_full_batch_is_one_step_of_their_early_code():
    model = tiny_model()
    terms = setup_terms(model)  # memory 7, subset 9
    w = {n: p.detach().clone() for n, p in model.named_parameters()}
    # memory in two tasks of 3 and 4, batch size 2: batches 2+1 and 2+2; subset 2+2+2+2+1
    mem = [slice(0, 2), slice(2, 3), slice(3, 5), slice(5, 7)]
    sub = [slice(i, min(i + 2, 9)) for i in range(0, 9, 2)]
    expected = [authors_mechanism(model, a, w, x, y, b)
                for (a, x, y, _), b in zip(terms, (mem, sub), strict=True)]
    s = strategy("authors", lmc_full_batch=True)
    s.cfg.lmc_batch_size = 2
    s.line_phase(model, terms, TinyBenchmark.to_input, torch.Generator().manual_seed(0),
                 groups=[[3, 4], [9]])
    for n, p in model.named_parameters():  # one step at lr 1: w - w' is the gradient
        torch.testing.assert_close(w[n] - p.detach(), expected[0][n] + expected[1][n],
                                   rtol=1e-5, atol=1e-7, msg=n)


def test_full_batch_needs_the_authors_gradient():
    with pytest.raises(Exception, match="lmc_full_batch"):
        strategy("exact", lmc_full_batch=True)


def test_authors_batches_stay_within_a_task_and_the_shorter_term_stops():
    batches = _group_batches([10, 10, 3], 4, torch.Generator().manual_seed(0), "cpu")
    assert sorted(torch.cat(batches).tolist()) == list(range(23))  # each example once
    for b in batches:  # a batch never spans two tasks
        assert len({int(i) // 10 for i in b}) == 1
    assert sorted(len(b) for b in batches) == [2, 2, 3, 4, 4, 4, 4]
    # memory of 3 tasks x 2 examples (3 batches of 2) and a subset of 9 (3 batches of 4)
    model = tiny_model()
    w_prev, w_hat = params_of(model, 1), params_of(model, 2)
    (mx, my), (sx, sy) = data(6, 3), data(9, 4)
    s = strategy("authors")
    seen: list[int] = []  # batch sizes, one per term per step

    class Spy(TinyBenchmark):
        @staticmethod
        def to_input(x):
            seen.append(len(x))
            return x.float() / 255.0

    s.cfg.lmc_batch_size = 2
    s.line_phase(model, ((w_prev, mx, my, None), (w_hat, sx, sy, None)), Spy.to_input,
                 torch.Generator().manual_seed(0), groups=[[2, 2, 2], [9]])
    # 5 steps (max of 3 memory batches and 5 subset batches): the memory is not cycled
    assert sorted(seen) == [1, 2, 2, 2, 2, 2, 2, 2]


@pytest.mark.parametrize("train_mode", [False, True])
def test_line_phase_keeps_batchnorm_statistics(train_mode):
    model = tiny_model(batchnorm=True)
    terms = setup_terms(model)
    before = {n: b.clone() for n, b in model.named_buffers()}
    s = strategy("unweighted", line_train_mode=train_mode)
    s.cfg.lmc_lr = 0.1
    model.train()
    s.line_phase(model, terms, TinyBenchmark.to_input, torch.Generator().manual_seed(0))
    for n, b in model.named_buffers():
        assert torch.equal(b, before[n]), n
    assert model.training  # the mode it had is restored


def run_tasks(s: MCSGD, model: nn.Module, tasks: list[tuple[torch.Tensor, torch.Tensor]],
              trained: list[dict[str, torch.Tensor]], spy: list) -> None:
    """Drive ``before_task``/``after_training`` like the loop; ``trained[t]`` plays the continual
    phase's result; ``spy`` records (terms, start weights) of every line phase."""
    def capture(model, terms, to_input, generator, phases=None, task=0, groups=None,
                autocast=None):
        spy.append((terms, {n: p.detach().clone() for n, p in model.named_parameters()}))
    s.line_phase = capture
    gen = torch.Generator().manual_seed(0)
    for t, (x, y) in enumerate(tasks, start=1):
        ctx = TaskContext(t, x, y, model, TinyBenchmark(), torch.device("cpu"), gen, None)
        s.before_task(ctx)
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(trained[t - 1][n])
        s.after_training(ctx)


def drive(gradient: str, n_tasks: int, n: int, **kw):
    """An MC-SGD strategy driven through ``n_tasks`` tasks of ``n`` examples each."""
    model = tiny_model()
    tasks = [data(n, 10 + t) for t in range(n_tasks)]
    trained = [params_of(model, 20 + t) for t in range(n_tasks)]
    s, spy = strategy(gradient, **kw), []
    run_tasks(s, model, tasks, trained, spy)
    return s, tasks, trained, spy


def test_line_phase_anchors_start_point_and_memory_after_each_task():
    s, tasks, trained, spy = drive("unweighted", 3, 30, beta=0.25, memory_per_class=2)
    assert len(spy) == 2  # tasks 2 and 3
    w_bar = trained[0]  # w_bar_1 = w_hat_1; the spy leaves w at its start point
    for t, (terms, start) in enumerate(spy, start=2):
        (mem_anchor, mx, my, _), (sub_anchor, sx, sy, _) = terms
        w_hat = trained[t - 1]
        for n in w_hat:
            assert torch.equal(mem_anchor[n], w_bar[n])  # memory term: w_bar_{t-1}
            assert torch.equal(sub_anchor[n], w_hat[n])  # subset term: w_hat_t
            torch.testing.assert_close(start[n], w_bar[n] + 0.25 * (w_hat[n] - w_bar[n]))
        assert len(sy) == 30 and len(my) == 2 * 3 * t  # subset min(500, N); 2/class/task
        w_bar = start
    # memory: 2 examples per class per task, task ids 1..3, each a row of its task's data
    assert s.memory.task.tolist() == [1] * 6 + [2] * 6 + [3] * 6
    for t, (x, y) in enumerate(tasks, start=1):
        rows, labels = s.memory.x[s.memory.task == t], s.memory.y[s.memory.task == t]
        assert labels.tolist() == [0, 0, 1, 1, 2, 2]
        for r, lab in zip(rows, labels, strict=True):
            match = (x == r).all(1) & (y == lab)
            assert match.any()


def test_authors_memory_and_subset_are_drawn_with_replacement():
    s, tasks, _, spy = drive("authors", 2, 12, memory_per_class=3, subset_size=50)
    # memory_per_class x classes = 9 per task, uniform with replacement (12 examples only)
    assert s.memory.task_counts() == [9, 9]
    (_, _, _, _), (_, sx, sy, _) = spy[0][0]
    assert len(sy) == 50  # more than the task holds: drawn with replacement
    x2, y2 = tasks[1]
    assert all(((x2 == r).all(1) & (y2 == lab)).any() for r, lab in zip(sx, sy, strict=True))


def test_line_phase_reports_progress_through_the_phase_runner():
    from cl_runner.training.hooks import PhaseRunner, RunnerHook

    class Record(RunnerHook):
        def __init__(self):
            self.phases, self.steps = [], 0

        def before_phase(self, task, phase, total_steps):
            self.phases.append((task, phase, total_steps))

        def after_step(self):
            self.steps += 1

    model, rec = tiny_model(), Record()
    terms = setup_terms(model)  # memory 7, subset 9
    s = strategy("authors")
    s.cfg.lmc_batch_size, s.cfg.lmc_epochs = 2, 2
    s.line_phase(model, terms, TinyBenchmark.to_input, torch.Generator().manual_seed(0),
                 PhaseRunner([rec]), task=5, groups=[[3, 4], [9]])
    # memory: 2+1 and 2+2 = 4 batches; subset 5 batches -> 5 steps per pass, 2 passes
    assert rec.phases == [(5, "line", 10)] and rec.steps == 10


@pytest.mark.usefixtures("mnist_small_test_set")
def test_a_diverging_line_phase_fails_the_run(tmp_path, mnist_root):
    from cl_runner.errors import TrainingDivergedError
    from cl_runner.experiment import run_experiment
    from tests.conftest import compose_run

    run = compose_run(["benchmark.num_tasks=2", "benchmark.train_samples_per_task=200",
                       "progress=false", "hardware=cpu", "hardware.num_threads=1",
                       f"data.root={mnist_root}", "strategy=mcsgd", "strategy.lmc_lr=1e30",
                       "strategy.subset_size=50", "strategy.lmc_batch_size=10",
                       "strategy.line_samples=2"])
    with pytest.raises(TrainingDivergedError, match="line-phase loss of task 2"):
        run_experiment(run, tmp_path)
