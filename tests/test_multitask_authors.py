"""``strategy=multitask`` with ``protocol: authors`` (the MC-SGD authors' multitask protocol:
task 1 whole, then K examples per task drawn with replacement once) against the default
``union``, on a small real-MNIST subset."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from cl_runner.data.mnist import RotatedMNIST
from cl_runner.data.schemas import RotatedMNISTConfig
from cl_runner.errors import ConfigError
from cl_runner.strategies.base import TaskContext
from cl_runner.strategies.multitask import Multitask
from cl_runner.strategies.schemas import (
    AUTHORS_SAMPLES_PER_TASK,
    MultitaskConfig,
    MultitaskProtocol,
)
from cl_runner.training.loop import train_sequence
from tests.conftest import compose_run

AUTHORS = MultitaskProtocol.authors
N, K, T, BATCH = 300, 50, 3, 20  # examples per task, sample per task, tasks, batch


@pytest.fixture(scope="module")
def bench(mnist_root):
    """3 tasks of 300 real MNIST training images rotated by 0, 45, 90 degrees."""
    cfg = RotatedMNISTConfig(num_tasks=T, train_samples_per_task=N, angle_step=45.0)
    return RotatedMNIST(cfg, str(mnist_root), False, seed=1, device=torch.device("cpu"))


def run(bench, cfg: MultitaskConfig):
    """Train the 3 tasks; returns (strategy, result, [(x, y, task ids) the loop got per task])."""
    seen = []

    class Recording(Multitask):
        def task_data(self, ctx):
            x, y = super().task_data(ctx)
            ids = torch.full_like(y, 1) if len(y) == N and ctx.task == 1 else self.data.task
            seen.append((x.clone(), y.clone(), ids.clone()))
            return x, y

    strategy = Recording(cfg)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    result = train_sequence(bench, model, strategy,
                            lambda params, task: torch.optim.SGD(params, lr=0.05, momentum=0.8),
                            batch_size=BATCH, eval_batch_size=1000, epochs_per_task=1,
                            generator=torch.Generator().manual_seed(0))
    return strategy, result, seen


def test_authors_trains_task_1_whole_then_t_samples_of_k(bench):
    strategy, result, seen = run(bench, MultitaskConfig(protocol=AUTHORS, samples_per_task=K))
    sizes = [N, 2 * K, 3 * K]
    assert strategy.stats()["union_size_per_task"] == sizes
    assert [len(y) for _, y, _ in seen] == sizes
    assert result.steps == [math.ceil(s / BATCH) for s in sizes]
    x1, y1 = bench.train_data(1)
    assert torch.equal(seen[0][0], x1) and torch.equal(seen[0][1], y1)  # task 1: all of it
    for t in (2, 3):  # task t's union: K examples of each of tasks 1..t, from that task's data
        x, y, ids = seen[t - 1]
        assert torch.bincount(ids, minlength=t + 1)[1:].tolist() == [K] * t
        for j in range(1, t + 1):
            xj, yj = bench.train_data(j)
            pick = strategy.picks[j - 1]
            assert pick.shape == (K,) and 0 <= int(pick.min()) and int(pick.max()) < N
            assert torch.equal(x[ids == j], xj[pick]) and torch.equal(y[ids == j], yj[pick])


def test_authors_draw_is_made_once_and_reused_at_later_tasks(bench):
    _, _, seen = run(bench, MultitaskConfig(protocol=AUTHORS, samples_per_task=K))
    (x2, y2, ids2), (x3, y3, ids3) = seen[1], seen[2]
    for j in (1, 2):  # tasks 1 and 2: the same examples at t = 2 and at t = 3
        assert torch.equal(x2[ids2 == j], x3[ids3 == j]) and torch.equal(y2[ids2 == j], y3[ids3 == j])
    assert not torch.equal(x3[ids3 == 1], x3[ids3 == 2])  # different tasks' images


def test_authors_draws_with_replacement():
    """K > n is allowed and the K indices repeat (a draw without replacement could not give
    more than n); the default K is the authors' 20,000."""
    x = torch.arange(30, dtype=torch.uint8).view(-1, 1, 1, 1)
    y = torch.arange(30) % 10
    strategy = Multitask(MultitaskConfig(protocol=AUTHORS, samples_per_task=45))
    ctx = TaskContext(1, x, y, nn.Linear(1, 1), None, torch.device("cpu"),
                      torch.Generator().manual_seed(0))
    bx, _ = strategy.task_data(ctx)
    assert len(bx) == 30 and len(strategy.data) == 45  # task 1 trains whole; sample stored
    assert len(torch.unique(strategy.picks[0])) < 45
    assert MultitaskConfig(protocol=AUTHORS).sample_size() == AUTHORS_SAMPLES_PER_TASK == 20_000
    assert MultitaskConfig().sample_size() is None


def test_authors_resume_state_rebuilds_the_same_union(bench):
    """state_dict after task 2 -> torch.save/load -> a fresh strategy builds task 3's union
    identical to the uninterrupted strategy's."""
    cfg = MultitaskConfig(protocol=AUTHORS, samples_per_task=K)
    whole = Multitask(cfg)
    gen = torch.Generator().manual_seed(3)

    def ctx(task):
        return TaskContext(task, *bench.train_data(task), nn.Linear(1, 1), bench,
                           torch.device("cpu"), gen)

    for t in (1, 2):
        whole.task_data(ctx(t))
    buffer = io.BytesIO()
    torch.save(whole.state_dict(), buffer)
    buffer.seek(0)
    resumed = Multitask(cfg)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    state = gen.get_state()
    x_whole, y_whole = whole.task_data(ctx(3))
    gen.set_state(state)
    x_res, y_res = resumed.task_data(ctx(3))
    assert torch.equal(x_whole, x_res) and torch.equal(y_whole, y_res)
    assert resumed.stats() == whole.stats()


def test_default_union_is_every_example_and_draws_nothing(bench):
    """``union`` with samples_per_task null: task t trains on all of tasks 1..t and takes no
    random number from the run's generator (so its runs are those of before the option)."""
    strategy, result, seen = run(bench, MultitaskConfig())
    assert strategy.cfg.protocol == MultitaskProtocol.union
    assert strategy.stats()["union_size_per_task"] == [N, 2 * N, 3 * N]
    for t, (x, _, ids) in enumerate(seen, start=1):
        for j in range(1, t + 1):
            assert torch.equal(x[ids == j], bench.train_data(j)[0])
    gen = torch.Generator().manual_seed(0)
    before = gen.get_state()
    Multitask(MultitaskConfig()).task_data(
        TaskContext(1, *bench.train_data(1), nn.Linear(1, 1), bench, torch.device("cpu"), gen))
    assert torch.equal(gen.get_state(), before)
    capped = Multitask(MultitaskConfig(samples_per_task=K))  # union's K: without replacement
    capped.task_data(TaskContext(1, *bench.train_data(1), nn.Linear(1, 1), bench,
                                 torch.device("cpu"), gen))
    assert len(torch.unique(capped.picks[0])) == K


def test_protocol_config_is_validated():
    assert compose_run(["strategy=multitask"]).strategy.protocol == MultitaskProtocol.union
    run_cfg = compose_run(["strategy=multitask", "strategy.protocol=authors"])
    assert run_cfg.strategy.protocol == AUTHORS and run_cfg.strategy.sample_size() == 20_000
    with pytest.raises(Exception, match="protocol"):
        compose_run(["strategy=multitask", "strategy.protocol=bogus"])
    with pytest.raises(ConfigError, match="samples_per_task"):
        compose_run(["strategy=multitask", "strategy.samples_per_task=0"])
    with pytest.raises(ConfigError, match="samples_per_task"):
        Multitask(MultitaskConfig(protocol=AUTHORS, samples_per_task=-1))
