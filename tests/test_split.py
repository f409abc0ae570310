"""The class-split family (cl_runner/data/split.py): Split MNIST on the real MNIST, Split
CIFAR-10 on a generated archive in CIFAR-10's own format, Split CIFAR-100 10 x 10; the three
scenarios, the class order, the class-incremental evaluation protocols."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch import nn

from cl_runner.data.cifar import SplitCIFAR10, SplitCIFAR100, write_cifar10_archive
from cl_runner.data.mnist import SplitMNIST
from cl_runner.data.schemas import (
    Scenario,
    SplitCIFAR10Config,
    SplitCIFAR100Config,
    SplitMNISTConfig,
)
from cl_runner.data.sources import (
    CIFAR10_FILES,
    CIFAR10_FORMAT,
    _cifar_reader,
    load_cifar10,
    load_mnist,
)
from cl_runner.errors import ConfigError
from cl_runner.training.evaluate import Evaluator
from tests.conftest import compose_run

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def mnist_data(mnist_root):
    return load_mnist(mnist_root, download=False)


def split_mnist(mnist_root, seed=1, **kwargs) -> SplitMNIST:
    return SplitMNIST(SplitMNISTConfig(**kwargs), str(mnist_root), False, seed=seed, device=CPU)


# ---------------------------------------------------------------- Split MNIST, three scenarios

@pytest.mark.parametrize("scenario", ["task", "domain", "class"])
def test_split_mnist_tasks_hold_their_digits(mnist_root, mnist_data, scenario):
    """Task t holds every MNIST image of digits 2(t-1), 2t-1 (in MNIST's order); the labels
    are the digits, or 0/1 on domain-incremental."""
    bench = split_mnist(mnist_root, scenario=scenario)
    train_x, train_y, test_x, test_y = mnist_data
    for t in range(1, 6):
        digits = torch.tensor([2 * t - 2, 2 * t - 1])
        for (x, y), (all_x, all_y) in ((bench.train_data(t), (train_x, train_y)),
                                       (bench.test_data(t), (test_x, test_y))):
            keep = torch.isin(all_y, digits)
            assert torch.equal(x, all_x[keep])
            expected = all_y[keep] - (2 * t - 2 if scenario == "domain" else 0)
            assert torch.equal(y, expected)
    assert bench.num_classes == (2 if scenario == "domain" else 10)
    # 0/1 training images of MNIST: 5,923 + 6,742
    assert len(bench.train_data(1)[1]) == 5923 + 6742


def test_split_mnist_masks_per_scenario(mnist_root):
    task = split_mnist(mnist_root, scenario="task")
    expected = torch.zeros(5, 10, dtype=torch.bool)
    for t in range(5):
        expected[t, 2 * t: 2 * t + 2] = True
    assert torch.equal(task.class_masks("train"), expected)
    assert torch.equal(task.class_masks("test"), expected)
    assert torch.equal(task.eval_mask(3, trained=1), expected[2])
    assert task.scenario == Scenario.task_incremental

    cls = split_mnist(mnist_root, scenario="class")
    assert cls.class_masks("train") is None and cls.class_masks("test") is None
    assert cls.eval_mask(1, trained=3) is None
    current = split_mnist(mnist_root, scenario="class", train_mask=True)  # van de Ven's "current"
    assert torch.equal(current.class_masks("train"), expected)
    assert current.class_masks("test") is None

    seen = split_mnist(mnist_root, scenario="class", eval_classes="seen")
    assert seen.eval_mask(5, trained=0).tolist() == [True, True] + [False] * 8  # task 1's
    assert seen.eval_mask(5, trained=1).tolist() == [True, True] + [False] * 8
    assert seen.eval_mask(1, trained=3).tolist() == [True] * 6 + [False] * 4

    dom = split_mnist(mnist_root, scenario="domain")
    assert dom.class_masks("train") is None and dom.class_masks("test") is None
    assert dom.eval_mask(2, trained=2) is None


def test_classes_csv_per_scenario(mnist_root):
    frame = split_mnist(mnist_root, scenario="class").artifacts()["classes.csv"]
    assert frame.to_dict("list") == {"task": [1, 1, 2, 2, 3, 3, 4, 4, 5, 5],
                                     "class_id": list(range(10)),
                                     "class_name": [str(d) for d in range(10)]}
    dom = split_mnist(mnist_root, scenario="domain", class_order=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    frame = dom.artifacts()["classes.csv"]
    assert frame["class_id"].tolist() == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert frame["label"].tolist() == [0, 1] * 5
    x, y = dom.train_data(1)  # digits 9 -> label 0, 8 -> label 1
    assert len(y) == 5949 + 5851 and set(y.tolist()) == {0, 1}


def test_class_order_seed_is_not_the_run_seed(mnist_root):
    """A seeded class order is the permutation of its own seed, whatever the run seed."""
    a = split_mnist(mnist_root, seed=1, class_order_seed=1993)
    b = split_mnist(mnist_root, seed=7, class_order_seed=1993)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(1993))
    assert torch.equal(a.task_classes, perm.view(5, 2))
    assert torch.equal(b.task_classes, a.task_classes)
    assert not torch.equal(a.task_classes, torch.arange(10).view(5, 2))
    c = split_mnist(mnist_root, class_order=[3, 1, 4, 0, 5, 9, 2, 6, 8, 7], class_order_seed=5)
    assert c.task_classes.tolist() == [[3, 1], [4, 0], [5, 9], [2, 6], [8, 7]]
    x, y = c.train_data(2)
    assert set(y.tolist()) == {4, 0}


class FixedLogits(nn.Module):
    """Scores every input with the same logits (a model that always says digit 9, then 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor([0.0, 5.0, 0, 0, 0, 0, 0, 0, 0, 9.0]))

    def forward(self, x):
        return self.logits.expand(len(x), -1)


@pytest.mark.parametrize("eval_classes", ["all", "seen"])
def test_class_il_evaluation_protocol(mnist_root, eval_classes):
    """After task 1, a model that prefers 9, then 1: over all outputs every task-1 image is
    called 9 (accuracy 0); over the seen classes (0, 1) it is called 1: accuracy = the share
    of ones in task 1's test set."""
    bench = split_mnist(mnist_root, scenario="class", eval_classes=eval_classes)
    acc, _ = Evaluator(bench, None, 1000).tasks(FixedLogits(), trained=1, tasks=[1])
    y = bench.test_data(1)[1]
    ones = (y == 1).double().mean().item()
    assert acc[0] == pytest.approx(0.0 if eval_classes == "all" else ones)
    assert 0.4 < ones < 0.6


# ---------------------------------------------------------------- config

def test_scenario_aliases_and_train_mask_defaults(mnist_root):
    base = [f"data.root={mnist_root}", "benchmark=split_mnist"]
    run = compose_run(base)
    assert run.benchmark.scenario == Scenario.class_incremental
    assert run.benchmark.train_mask is False  # van de Ven's default: all outputs active
    run = compose_run(base + ["benchmark.scenario=task"])
    assert run.benchmark.scenario.value == "task_incremental" and run.benchmark.train_mask is True
    run = compose_run(base + ["benchmark.scenario=domain"])
    assert run.benchmark.scenario.value == "domain_incremental" and run.benchmark.train_mask is False
    with pytest.raises(ConfigError, match="benchmark.train_mask=true does not apply"):
        compose_run(base + ["benchmark.scenario=domain", "benchmark.train_mask=true"])
    with pytest.raises(ConfigError, match="exceeds MNIST's 10 classes"):
        compose_run(base + ["benchmark.classes_per_task=3"])
    # the long names stay valid (stored Split CIFAR-100 configs)
    run = compose_run(["benchmark=split_cifar100", "benchmark.scenario=class_incremental"])
    assert run.benchmark.scenario.value == "class_incremental" and run.benchmark.train_mask is False
    assert compose_run(["benchmark=split_cifar100"]).benchmark.train_mask is True


# ---------------------------------------------------------------- CIFAR-10 and CIFAR-100

def test_cifar10_archive_round_trip_through_torchvision(cifar10_root):
    folder = cifar10_root / "cifar-10-batches-py"
    assert sorted(p.name for p in folder.iterdir()) == sorted(CIFAR10_FILES)
    raws = []
    for name in CIFAR10_FILES[:5]:
        with open(folder / name, "rb") as f:
            raws.append(pickle.load(f, encoding="latin1"))
    data = np.concatenate([r["data"] for r in raws])
    labels = sum((r["labels"] for r in raws), [])
    assert data.shape == (100, 3072) and sorted(labels) == sorted(list(range(10)) * 10)
    from torchvision.datasets import CIFAR10

    assert issubclass(_cifar_reader(CIFAR10_FORMAT, False), CIFAR10)
    train_x, train_y, test_x, test_y, names = load_cifar10(cifar10_root, download=False,
                                                           verify_checksums=False)
    assert train_x.shape == (100, 3, 32, 32) and train_x.dtype == torch.uint8
    assert torch.equal(train_x.reshape(100, -1), torch.from_numpy(data))  # CHW planes, in order
    assert train_y.tolist() == labels and test_x.shape == (40, 3, 32, 32)
    assert names == [f"class_{c}" for c in range(10)]


def test_split_cifar10_five_by_two(cifar10_root):
    bench = SplitCIFAR10(SplitCIFAR10Config(verify_checksums=False), str(cifar10_root), False,
                         seed=1, device=CPU)
    assert bench.scenario == Scenario.class_incremental and bench.num_classes == 10
    for t in range(1, 6):
        assert sorted(set(bench.train_data(t)[1].tolist())) == [2 * t - 2, 2 * t - 1]
        assert len(bench.train_data(t)[1]) == 20 and len(bench.test_data(t)[1]) == 8
    assert bench.class_masks("train") is None


def test_split_cifar10_refuses_official_checksums_on_a_generated_archive(tmp_path):
    write_cifar10_archive(tmp_path, 2, 1)
    from cl_runner.errors import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError, match="benchmark.verify_checksums=false"):
        load_cifar10(tmp_path, download=False, verify_checksums=True)


def test_split_cifar100_ten_by_ten(cifar_root):
    bench = SplitCIFAR100(SplitCIFAR100Config(num_tasks=10, classes_per_task=10,
                                              verify_checksums=False),
                          str(cifar_root), False, seed=1, device=CPU)
    assert bench.task_classes.tolist() == [list(range(10 * t, 10 * t + 10)) for t in range(10)]
    assert sorted(set(bench.train_data(10)[1].tolist())) == list(range(90, 100))
    assert bench.class_masks("test")[9].nonzero().flatten().tolist() == list(range(90, 100))


@pytest.mark.parametrize("preset", ["naive", "er", "derpp", "icarl", "ewc", "ewc_online", "agem",
                                    "multitask", "lwf"])
def test_split_mnist_presets_hold_van_de_vens_setting(preset):
    """conf/experiment/split_mnist_*.yaml: van de Ven's Split MNIST protocol (CLASS_IL.md [R])."""
    run = compose_run([f"+experiment=split_mnist_{preset}"])
    strategy = preset.removesuffix("_online")
    assert run.benchmark.name == "split_mnist" and run.strategy.name == strategy
    assert run.benchmark.scenario == Scenario.class_incremental
    assert run.benchmark.train_mask is False and run.benchmark.eval_classes.value == "all"
    assert (run.benchmark.num_tasks, run.benchmark.classes_per_task) == (5, 2)
    assert run.benchmark.class_order is None and run.benchmark.class_order_seed is None
    assert run.model.name == "mlp" and run.model.hidden_sizes == [400, 400]
    assert run.optimizer.name == "adam" and run.optimizer.lr == 1e-3
    assert run.optimizer.betas == [0.9, 0.999] and run.optimizer.gamma == 1.0
    assert run.benchmark.batch_size == 128 and run.benchmark.max_steps_per_task == 2000
    # 23 epochs of the smallest task (digits 4/5: 11,263 images, 88 batches) hold 2,000 steps
    assert run.benchmark.epochs_per_task * -(-11_263 // 128) >= 2000
    if strategy in ("er", "derpp", "icarl"):
        assert run.strategy.memory_size == 1000  # 100 per class
    if strategy == "agem":
        assert (run.strategy.memory_per_class, run.strategy.memory_batch_size) == (100, 128)
    if strategy == "ewc":  # param_values.py: class-IL lambda 1e9, Fisher on the whole context
        assert (run.strategy.ewc_lambda, run.strategy.fisher_samples) == (1e9, 12000)
        assert run.strategy.mode.value == ("online" if preset == "ewc_online" else "separate")
    if strategy == "lwf":
        assert (run.strategy.alpha, run.strategy.temperature) == (1.0, 2.0)
