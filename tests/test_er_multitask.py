"""ER-Reservoir (its reservoir buffer), Multitask (the ``task_data`` hook) and Stable SGD (a
preset of the naive loop): unit tests and short real-MNIST runs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cl_runner.data.benchmark import Benchmark
from cl_runner.experiment import run_experiment
from cl_runner.strategies import STRATEGIES
from cl_runner.strategies.base import TaskContext
from cl_runner.strategies.er import ER, ERConfig
from cl_runner.strategies.memory import ReservoirBuffer
from cl_runner.strategies.multitask import Multitask, MultitaskConfig
from cl_runner.strategies.naive import Naive
from cl_runner.strategies.stable_sgd import StableSGD
from cl_runner.training.batch import Batch
from cl_runner.training.loop import train_sequence
from tests.conftest import compose_run, train_resnet_head_snapshots

HOOKS = ["before_task", "task_data", "train_batch", "loss", "penalty", "after_backward", "after_step",
         "after_training"]


class SmallPool(ReservoirBuffer):
    POOL = 256  # many short-lived buffers: keep the random draws per buffer small


def stream(buffer: ReservoirBuffer, n: int, batch: int, task: int = 1) -> None:
    """Offer items 0..n-1 (x = y = the item's index) to ``buffer`` in batches of ``batch``."""
    for start in range(0, n, batch):
        ids = torch.arange(start, min(start + batch, n))
        buffer.add(ids.to(torch.uint8).view(-1, 1), ids, task)


# ---------------------------------------------------------------- the reservoir buffer

# slow: batch 4, the batched update that batch 23 (kept in make test) runs too, with more
# items per batch than slots
@pytest.mark.parametrize("batch", [pytest.param(4, marks=pytest.mark.slow), 23])
def test_reservoir_keeps_every_seen_item_with_probability_m_over_n(batch):
    """Stream N = 50 items through a buffer of M = 10, R = 2,000 times (fixed seed). Each
    item's inclusion frequency is Binomial(R, M/N) / R: mean 0.2, sd sqrt(0.2 * 0.8 / R) =
    0.0089. Tolerance 0.045 (5 sd): for 50 items the chance of a false failure is < 3e-5 (and
    the seed is fixed, so the test is deterministic). Batches of 23 > M exercise several items
    of one batch landing in the same slot; batch 1 is covered by the sequential test below."""
    n, m, reps = 50, 10, 2000
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(n)
    for _ in range(reps):
        buffer = SmallPool(m, gen)
        stream(buffer, n, batch)
        counts[buffer.y[: len(buffer)]] += 1
    freq = counts / reps
    assert freq.sum().item() == pytest.approx(m)  # always exactly M distinct items
    assert (freq - m / n).abs().max().item() < 0.045, freq


def reference_reservoir(uniforms: list[float], m: int) -> list[int]:
    """Algorithm R one item at a time, with given uniforms: item i -> slot i while i < m,
    else slot floor(u_i * (i + 1)) when < m."""
    slots: list[int] = []
    for i, u in enumerate(uniforms):
        if i < m:
            slots.append(i)
        else:
            j = int(u * (i + 1))
            if j < m:
                slots[j] = i
    return slots


@pytest.mark.parametrize("batch", [1, 3, 16, 40])
def test_reservoir_batches_match_the_sequential_algorithm(batch):
    """Same random numbers, same buffer: the vectorized batch update leaves exactly what the
    one-by-one algorithm leaves (collisions within a batch: the later item wins)."""
    used: list[float] = []

    class Recording(SmallPool):
        def uniform(self, k, device):
            u = super().uniform(k, device)
            used.extend(u.tolist())
            return u

    buffer = Recording(5, torch.Generator().manual_seed(3))
    n = 120
    for start in range(0, n, batch):
        used_before = len(used)
        ids = torch.arange(start, min(start + batch, n))
        buffer.add(ids.to(torch.uint8).view(-1, 1), ids, 1)
        assert len(used) - used_before == len(ids)
    assert buffer.y[:5].tolist() == reference_reservoir(used, 5)
    assert buffer.x[:5, 0].tolist() == buffer.y[:5].tolist()


def test_reservoir_never_exceeds_its_size_and_holds_only_seen_items():
    buffer = ReservoirBuffer(8, torch.Generator().manual_seed(1))
    seen: set[int] = set()
    for step, b in enumerate([3, 1, 10, 2, 7, 30, 5] * 4):
        ids = torch.arange(len(seen), len(seen) + b)
        buffer.add(ids.to(torch.uint8).view(-1, 1), ids, task=step % 3 + 1)
        seen.update(ids.tolist())
        stored = buffer.y[: len(buffer)].tolist()
        assert len(buffer) == min(len(seen), 8) and buffer.seen == len(seen)
        assert buffer.x.shape[0] == 9  # capacity + the scratch row, never more
        assert len(set(stored)) == len(stored) and set(stored) <= seen
        assert buffer.x.dtype == torch.uint8
        assert set(buffer.task[: len(buffer)].tolist()) <= {1, 2, 3}
    x, y, t = buffer.sample(5)
    assert len(set(y.tolist())) == 5 and set(y.tolist()) <= set(buffer.y[:8].tolist())
    assert len(buffer.sample(50)[1]) == 8  # at most the whole buffer


# ---------------------------------------------------------------- ER

def context(task: int, x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> TaskContext:
    return TaskContext(task, x, y, nn.Linear(1, 1), None, torch.device("cpu"),
                       torch.Generator().manual_seed(seed))


def xy(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    return batch.x, batch.y


def test_er_train_batch_returns_the_current_batch_plus_a_memory_batch():
    er = ER(ERConfig(memory_size=20))
    x = torch.arange(100, dtype=torch.uint8).view(-1, 1, 1, 1)
    y = torch.arange(100)
    er.before_task(context(1, x, y))
    bx, by = xy(er.train_batch(Batch(x[:10], y[:10])))
    assert torch.equal(by, y[:10])  # empty buffer: the current batch alone
    bx, by = xy(er.train_batch(Batch(x[10:20], y[10:20])))
    assert len(by) == 20 and torch.equal(by[:10], y[10:20])
    assert set(by[10:].tolist()) == set(range(10))  # replay: the 10 stored before this step
    assert torch.equal(bx[:, 0, 0, 0].long(), by)
    er.train_batch(Batch(x[20:30], y[20:30]))
    er.before_task(context(2, x, y))
    bx, by = xy(er.train_batch(Batch(x[30:40], y[30:40])))
    mem = by[10:].tolist()
    assert len(mem) == 10 and len(set(mem)) == 10 and set(mem) <= set(range(30))
    stats = er.stats()
    assert stats["memory_size"] == 20 and stats["examples_seen"] == 40
    assert sum(stats["memory_per_task"].values()) == 20 and set(stats["memory_per_task"]) <= {"1", "2"}

    er5 = ER(ERConfig(memory_size=20, replay_batch_size=5))
    er5.before_task(context(1, x, y))
    er5.train_batch(Batch(x[:10], y[:10]))
    assert len(er5.train_batch(Batch(x[10:20], y[10:20])).y) == 15


def test_er_config_and_validation():
    run = compose_run(["strategy=er"])
    assert isinstance(run.strategy, ERConfig)
    assert run.strategy.memory_size == 200 and run.strategy.replay_batch_size is None
    assert compose_run(["strategy=er", "strategy.memory_size=100"]).strategy.memory_size == 100
    with pytest.raises(Exception, match="memory_size"):
        ER(ERConfig(memory_size=0))


# ---------------------------------------------------------------- multitask

class TinyBenchmark(Benchmark):
    """T tasks of n examples; task t's inputs are all equal to t (so the union is readable)."""

    name = "tiny"
    input_shape = (1, 2, 2)
    num_classes = 4
    device = torch.device("cpu")

    def __init__(self, num_tasks: int = 4, n: int = 30) -> None:
        self.num_tasks, self.n = num_tasks, n

    def train_data(self, task):
        self.check_task(task)
        return (torch.full((self.n, 1, 2, 2), task, dtype=torch.uint8),
                torch.arange(self.n) % self.num_classes)

    def test_data(self, task):
        return self.train_data(task)


def test_multitask_data_for_task_t_is_exactly_tasks_1_to_t():
    bench = TinyBenchmark(num_tasks=4, n=30)
    seen_by_loop: list[torch.Tensor] = []

    class Recording(Multitask):
        def task_data(self, ctx):
            x, y = super().task_data(ctx)
            seen_by_loop.append(x[:, 0, 0, 0].clone())
            assert torch.equal(x[:, 0, 0, 0].long(), self.data.task)  # ids = the input values
            return x, y

    strategy = Recording(MultitaskConfig())
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 4))
    result = train_sequence(bench, model, strategy,
                            lambda params, task: torch.optim.SGD(params, lr=0.01),
                            batch_size=7, eval_batch_size=100, epochs_per_task=1,
                            generator=torch.Generator().manual_seed(0))
    for t, values in enumerate(seen_by_loop, start=1):
        assert sorted(set(values.tolist())) == list(range(1, t + 1))
        assert torch.bincount(values.long(), minlength=t + 1)[1:].tolist() == [30] * t
    assert result.steps == [math.ceil(30 * t / 7) for t in range(1, 5)]  # the union's size
    assert len(result.accuracy) == 4 and all(len(row) == 4 for row in result.accuracy)
    assert strategy.stats()["union_size_per_task"] == [30, 60, 90, 120]

    capped = Multitask(MultitaskConfig(samples_per_task=10))
    for t in (1, 2, 3):
        x, y = capped.task_data(context(t, *bench.train_data(t)))
        assert len(y) == 10 * t and sorted(set(x[:, 0, 0, 0].tolist())) == list(range(1, t + 1))


@pytest.mark.parametrize("strategy", [ER(ERConfig(memory_size=10)), Multitask(MultitaskConfig())],
                         ids=["er", "multitask"])
def test_mixed_task_batches_are_masked_per_label_on_split_cifar100(cifar_root, strategy):
    """ER's replay batches and Multitask's union hold task-1 examples while task 2 trains:
    each must be masked to its own task's classes (by label). Masked to task 2's classes, a
    task-1 label would get probability 0 and the loss would be +inf (the run diverges)."""
    from cl_runner.data.cifar import SplitCIFAR100, SplitCIFAR100Config

    assert strategy.mixes_tasks
    bench = SplitCIFAR100(SplitCIFAR100Config(num_tasks=2, verify_checksums=False),
                          str(cifar_root), False, seed=1, device=torch.device("cpu"))
    initial, snapshots, result = train_resnet_head_snapshots(bench, strategy)
    after_1, after_2 = snapshots
    assert all(math.isfinite(v) for row in result.loss for v in row)
    assert not torch.equal(after_2[:5], after_1[:5])  # task 1's classes trained in task 2
    assert torch.equal(after_2[10:], initial[10:])  # classes of no task: never touched


@pytest.mark.slow
def test_multitask_forgets_less_than_naive_on_real_mnist(tmp_path, mnist_root):
    """3 tasks of 2,000 real MNIST images rotated by 0, 45, 90 degrees, the naive regime:
    naive fine-tuning forgets the earlier rotations; multitask (trained on the union) keeps
    them. Measured (seed 1, 1 thread, ~2 s each): naive 58.2% / forgetting 0.351, multitask
    82.2% / -0.028."""
    common = ["benchmark.num_tasks=3", "benchmark.train_samples_per_task=2000",
              "benchmark.angle_step=45", "progress=false", "hardware=cpu",
              "hardware.num_threads=1", f"data.root={mnist_root}"]
    naive = run_experiment(compose_run(common + ["strategy=naive"]), tmp_path / "naive")
    multi = run_experiment(compose_run(common + ["strategy=multitask"]), tmp_path / "multi")
    assert multi["steps"] == 200 + 400 + 600 and naive["steps"] == 3 * 200
    assert multi["forgetting"] < naive["forgetting"] - 0.1
    assert multi["average_accuracy"] > naive["average_accuracy"] + 0.05


# ---------------------------------------------------------------- Stable SGD

def test_stable_sgd_is_naive_with_its_regime():
    run = compose_run(["strategy=stable_sgd"])
    assert run.strategy.name == "stable_sgd"
    assert (run.optimizer.lr, run.optimizer.gamma) == (0.1, 0.55)
    assert run.benchmark.batch_size == 64 and run.model.dropout == 0.25
    strategy = STRATEGIES.build(run.strategy)
    assert isinstance(strategy, StableSGD) and isinstance(strategy, Naive)
    assert not any(strategy.overrides(h) for h in HOOKS)  # the naive loop, nothing added
    other = compose_run(["strategy=stable_sgd", "optimizer.gamma=0.8", "benchmark.batch_size=10",
                         "model.dropout=0.5"])
    assert (other.optimizer.gamma, other.benchmark.batch_size, other.model.dropout) == (0.8, 10, 0.5)
